#!/usr/bin/env python3
"""The comparison harness: exportengine against the tools people
use instead, on the same data, the same machine, in one run. Start it with
benchmarks/compare.sh (which installs what it needs first); see
benchmarks/README.md, "Comparison harness".

What one run does, for each dataset (contacts; delivery reports) and size:
 1. seeds a SQLite file with `exportengine seed` (one account; reused from
    --keep when one with the same parameters exists);
 2. exports it once with ours, one reader, untimed: the reference file
    every other output is checked against;
 3. loads the same rows into PostgreSQL 15 (a throwaway cluster on
    127.0.0.1, started and stopped here) and into a DuckDB file (read_csv),
    untimed, reused from --keep;
 4. in each of --runs rounds, runs every tool once, warm cache, under GNU
    time: wall, CPU, peak RSS, and the CPU the rest of the machine used;
 5. checks the last round's output of every tool against the reference
    (csvcheck.py): ours byte for byte, the others row by row after bringing
    their values to contract §4's form; a difference is a loud failure;
 6. writes benchmarks/results/<date>-<host>.md and PNG plots.
The largest size runs every tool; the smaller ones run ours only (the
scaling plot: rows/s and peak RSS against row count).

--baseline DIR (before and after, on one machine in one run): DIR's
exportengine, another build (an older commit's), is copied to
KEEP/bin-baseline and run as base, base-2r, base-gzip, base-gzip-2r beside
each selected ours variant, in the same rounds, datasets and sizes; its
outputs must be the reference file byte for byte, and the page gets a
"Before and after" section (change = median of per-round ratios, ±5%).
"""
import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import benchlib
import csvcheck
from benchlib import CommandFailed, median, run_timed, warm

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SEED = 42
LISTS = 10
CAMPAIGNS = 10
q = shlex.quote


# -- what is exported ---------------------------------------------------------

@dataclass
class Dataset:
    key: str
    title: str
    table: str
    alias: str
    columns: tuple        # (header name, SQL column, kind for csvcheck)
    table_columns: tuple  # every column of the table: (name, int | text | ts)
    index: str            # the index the export query seeks on (SQLite has it from seed)
    where: str
    order: str
    export_args: tuple    # `exportengine export` arguments for the same rows

    def query(self):
        """The one query every tool runs: SQLite, PostgreSQL and DuckDB all
        read it the same way (aliases give contract §4's header names)."""
        cols = ", ".join(f'{self.alias}.{c} AS "{h}"' for h, c, _ in self.columns)
        return (f"SELECT {cols} FROM {self.table} AS {self.alias} WHERE {self.where} "
                f"ORDER BY {self.order}")

    def kinds(self):
        return tuple((h, k) for h, _, k in self.columns)


CONTACTS = Dataset(
    "contacts", "contacts", "contacts", "c",
    (("id", "id", "integer"), ("phoneNumber", "phone_number", "phone"), ("email", "email", "free_text"),
     ("firstName", "first_name", "free_text"), ("lastName", "last_name", "free_text"),
     ("createdAt", "created_at", "timestamp"), ("updatedAt", "updated_at", "timestamp")),
    (("id", "int"), ("account_id", "int"), ("phone_number", "text"), ("email", "text"),
     ("first_name", "text"), ("last_name", "text"), ("created_at", "ts"), ("updated_at", "ts")),
    "(account_id, id)",
    "c.account_id = 1", "c.id",
    ("contacts",))
# Every report of the account: ours needs a filter, so all tools get the
# same wide range (it covers every seeded report).
REPORTS_FROM, REPORTS_TO = "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"
REPORTS = Dataset(
    "reports", "delivery reports", "delivery_reports", "r",
    (("id", "id", "integer"), ("messageId", "message_id", "identifier"),
     ("campaignId", "campaign_id", "integer"), ("recipient", "recipient", "phone"),
     ("sender", "sender", "free_text"), ("status", "status", "identifier"),
     ("errorCode", "error_code", "integer"), ("parts", "parts", "integer"),
     ("submittedAt", "submitted_at", "timestamp"), ("statusAt", "status_at", "timestamp")),
    (("id", "int"), ("account_id", "int"), ("campaign_id", "int"), ("message_id", "text"),
     ("recipient", "text"), ("sender", "text"), ("status", "text"), ("error_code", "int"),
     ("parts", "int"), ("submitted_at", "ts"), ("status_at", "ts")),
    "(account_id, submitted_at, id)",
    f"r.account_id = 1 AND r.submitted_at >= '{REPORTS_FROM}' AND r.submitted_at < '{REPORTS_TO}'",
    "r.submitted_at, r.id",
    ("delivery-reports", "--start", REPORTS_FROM, "--end", REPORTS_TO))
DATASETS = {"contacts": CONTACTS, "reports": REPORTS}
PG_TYPES = {"int": "bigint", "text": "text", "ts": "timestamptz"}
DUCK_TYPES = {"int": "BIGINT", "text": "VARCHAR", "ts": "TIMESTAMPTZ"}


# -- the tools ------------------------------------------------------------------

@dataclass
class Tool:
    name: str
    label: str
    group: str            # ours | anchor | floor
    output: str           # csv | gzip | none
    check: str            # bytes (ours: identical bytes), rows (csvcheck), scan (row count), none
    datasets: tuple = ("contacts", "reports")
    refs: tuple = ("ours", "ours-2r")       # the ratio columns: ours variants it is compared with
    needs: str = ""       # postgres | duckdb
    scaling: bool = False  # also run at the smaller sizes


TOOLS = [
    Tool("ours", "**ours**: `exportengine export`, 1 reader", "ours", "csv", "bytes", scaling=True),
    Tool("ours-2r", "**ours**: `exportengine export --readers 2` (parallel ranges)", "ours", "csv", "bytes",
         scaling=True),
    Tool("ours-gzip", "**ours**: `exportengine export --gzip` (1 reader, 2 gzip threads)", "ours", "gzip",
         "bytes", ("contacts",), ("ours-gzip", "ours-gzip-2r"), scaling=True),
    Tool("ours-gzip-2r", "**ours**: `exportengine export --gzip --readers 2`", "ours", "gzip", "bytes",
         ("contacts",), ("ours-gzip", "ours-gzip-2r")),
    Tool("sqlite3", "`sqlite3 -csv -header` (Debian sqlite3)", "anchor", "csv", "rows"),
    Tool("python", "Python 3 `sqlite3` + `csv.writer` (`writerows(cursor)`)", "anchor", "csv", "rows"),
    Tool("postgres", "PostgreSQL 15 `COPY (SELECT …) TO STDOUT (FORMAT csv, HEADER)` via `psql`", "anchor", "csv",
         "rows", needs="postgres"),
    Tool("duckdb", "DuckDB `COPY (SELECT …) TO … (HEADER)`, 2 threads (`@duckdb/node-api`)", "anchor", "csv",
         "rows", needs="duckdb"),
    Tool("sqlite3-pigz", "`sqlite3 -csv -header … | pigz -1 -p 2`", "anchor", "gzip", "rows", ("contacts",),
         ("ours-gzip", "ours-gzip-2r")),
    Tool("scan", "floor: bare cursor scan, no output (`bench_sqlite_scan`: sqlite3_column_type/_text/_bytes)",
         "floor", "none", "scan", ("contacts",)),
    Tool("scan-value", "floor: the same scan through sqlite3_column_value, as our source reads (`bench_sqlite_scan "
         "DB 1 value`)", "floor", "none", "scan", ("contacts",)),
    Tool("cat", "floor: `cat` of our CSV to /dev/null", "floor", "none", "none", ("contacts",)),
    Tool("gzip", "floor: `gzip -1` of our CSV", "floor", "gzip", "bytes", ("contacts",),
         ("ours-gzip", "ours-gzip-2r")),
    Tool("pigz", "floor: `pigz -1 -p 2` of our CSV", "floor", "gzip", "bytes", ("contacts",),
         ("ours-gzip", "ours-gzip-2r")),
]
# --baseline DIR: another build's `exportengine` (an older commit's, say),
# run beside ours in the same rounds; one baseline variant per ours variant.
BASELINE = {"ours": "base", "ours-2r": "base-2r", "ours-gzip": "base-gzip", "ours-gzip-2r": "base-gzip-2r"}
OURS_OF = {b: o for o, b in BASELINE.items()}
BASELINE_TOOLS = [Tool(BASELINE[t.name], t.label.replace("**ours**", "**baseline**", 1), "baseline", t.output,
                       "bytes", t.datasets, t.refs, scaling=t.scaling) for t in TOOLS if t.name in BASELINE]
SELECTABLE = [t.name for t in TOOLS]  # --tools; the baseline variants follow the ours ones selected
TOOL = {t.name: t for t in TOOLS + BASELINE_TOOLS}
# The delivery-report comparison runs the exporters only (targets are on contacts).
REPORT_TOOLS = {"ours", "ours-2r", "sqlite3", "python", "postgres", "duckdb"}


def parse_size(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1M, 300K, 250000)")
    mult = {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def size_label(n):
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1_000 == 0:
        return f"{n // 1_000}K"
    return str(n)


def log(msg):
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- PostgreSQL: a throwaway cluster -------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir():
    for v in ("15", "16", "17", "14", "13"):
        d = f"/usr/lib/postgresql/{v}/bin"
        if os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    return None


def proc_stat(pid):
    """(ppid, utime + stime, cutime + cstime) in seconds, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    v = s[s.rindex(")") + 2:].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(v[1]), (int(v[11]) + int(v[12])) / tick, (int(v[13]) + int(v[14])) / tick


def vm_hwm(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Postgres:
    """A cluster in KEEP/postgres/data (kept, so loads are reused), run as
    the `postgres` user when we are root (PostgreSQL refuses to run as
    root), listening on 127.0.0.1 at a free port and on a unix socket in a
    temporary directory; started on first use, stopped by close()."""

    def __init__(self, keep):
        self.bindir = pg_bindir()
        if not self.bindir:
            sys.exit("PostgreSQL is missing: scripts/setup.sh --bench installs postgresql-15")
        self.root = os.path.join(keep, "postgres")
        self.data = os.path.join(self.root, "data")
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.port = None
        self.sockdir = None
        self.pid = None

    def _owner(self, path):
        if self.as_owner:
            shutil.chown(path, "postgres", "postgres")

    def start(self):
        if self.pid:
            return
        if self.as_owner and subprocess.run(self.as_owner + ["test", "-x", os.path.dirname(self.root)]).returncode:
            sys.exit(f"--keep {os.path.dirname(self.root)}: the postgres user cannot reach it; "
                     "choose a directory under /tmp (the default)")
        os.makedirs(self.root, exist_ok=True)
        self._owner(self.root)
        os.chmod(self.root, 0o700)
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            log("initdb (a throwaway cluster for the comparison)")
            subprocess.run(self.as_owner + [f"{self.bindir}/initdb", "-D", self.data, "-U", "postgres",
                                            "--auth=trust", "-E", "UTF8", "--locale=C"],
                           check=True, stdout=subprocess.DEVNULL)
        # A server left running by a killed earlier run (it is ours: our
        # data directory) is stopped first, so this run owns its port.
        if subprocess.run(self.as_owner + [f"{self.bindir}/pg_ctl", "-D", self.data, "status"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            log("stopping a PostgreSQL left running by an earlier run")
            subprocess.run(self.as_owner + [f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"],
                           stdout=subprocess.DEVNULL)
        self.sockdir = tempfile.mkdtemp(prefix="ee-pg-")
        self._owner(self.sockdir)
        self.port = free_port()
        # fsync/full_page_writes off only speed up the untimed load; the
        # timed COPY TO only reads.
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.sockdir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=8GB "
                "-c timezone=UTC -c logging_collector=off")
        subprocess.run(self.as_owner + [f"{self.bindir}/pg_ctl", "-D", self.data, "-l",
                                        os.path.join(self.root, "server.log"), "-w", "-t", "120", "-o", opts,
                                        "start"], check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())
        log(f"PostgreSQL started on 127.0.0.1:{self.port} (pid {self.pid})")

    def close(self):
        if self.pid:
            for mode in ("fast", "immediate"):
                r = subprocess.run(self.as_owner + [f"{self.bindir}/pg_ctl", "-D", self.data, "-m", mode, "-w",
                                                    "-t", "60", "stop"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if r.returncode == 0:
                    break
            log("PostgreSQL stopped")
            self.pid = None
        if self.sockdir:
            shutil.rmtree(self.sockdir, ignore_errors=True)
            self.sockdir = None

    def psql(self, dbname="postgres"):
        return [f"{self.bindir}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                str(self.port), "-U", "postgres", "-d", dbname]

    def sql(self, sql, dbname="postgres", stdin=None):
        r = subprocess.run(self.psql(dbname) + ["-At", "-c", sql], stdin=stdin, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {sql[:200]}: {r.stderr.strip()}")
        return r.stdout.strip()

    def children(self):
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                return {int(p) for p in f.read().split()}
        except OSError:
            return {int(p) for p in os.listdir("/proc") if p.isdigit() and (proc_stat(p) or (0,))[0] == self.pid}

    def cpu(self):
        """CPU seconds the server has used so far: the postmaster, its
        finished children (reaped: in its cutime) and its live children."""
        st = proc_stat(self.pid)
        total = st[1] + st[2] if st else 0.0
        for c in self.children():
            cs = proc_stat(c)
            total += cs[1] if cs else 0.0
        return total

    def db_dir(self, dbname):
        oid = self.sql(f"SELECT oid FROM pg_database WHERE datname = '{dbname}'")
        return os.path.join(self.data, "base", oid)

    def ensure_loaded(self, dbname, ds, sqlite_db, rows):
        """Loads ds's table from the SQLite file unless this database holds
        it already (the marker row is written last: a half load is redone)."""
        self.start()
        if not self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{dbname}'"):
            self.sql(f"CREATE DATABASE {dbname}")
            self.sql(f"ALTER DATABASE {dbname} SET timezone TO 'UTC'")
        self.sql("CREATE TABLE IF NOT EXISTS bench_loaded (tbl text PRIMARY KEY, row_count bigint)", dbname)
        if self.sql(f"SELECT row_count FROM bench_loaded WHERE tbl = '{ds.table}'", dbname) == str(rows):
            return False
        log(f"loading {rows:,} {ds.title} into PostgreSQL ({dbname}; untimed)")
        t0 = time.time()
        cols = ", ".join(f"{n} {PG_TYPES[t]}" + (" PRIMARY KEY" if n == "id" else "") for n, t in ds.table_columns)
        self.sql(f"DROP TABLE IF EXISTS {ds.table}; CREATE TABLE {ds.table} ({cols})", dbname)
        names = ", ".join(n for n, _ in ds.table_columns)
        # sqlite3 -csv writes NULL as an empty field and '' as "": exactly
        # what COPY ... (FORMAT csv) reads back as NULL and ''.
        dump = subprocess.Popen(["sqlite3", "-csv", "-header", sqlite_db, f"SELECT {names} FROM {ds.table}"],
                                stdout=subprocess.PIPE)
        try:
            self.sql(f"COPY {ds.table} FROM STDIN WITH (FORMAT csv, HEADER)", dbname, stdin=dump.stdout)
        finally:
            dump.stdout.close()
            if dump.wait() != 0:
                raise RuntimeError("sqlite3 dump for PostgreSQL failed")
        self.sql(f"CREATE INDEX ON {ds.table} {ds.index}", dbname)
        self.sql(f"VACUUM (FREEZE, ANALYZE) {ds.table}", dbname)
        self.sql(f"INSERT INTO bench_loaded VALUES ('{ds.table}', {rows}) "
                 "ON CONFLICT (tbl) DO UPDATE SET row_count = excluded.row_count", dbname)
        log(f"  loaded in {time.time() - t0:.0f} s")
        return True


class ServerSampler:
    """While a psql run lasts: the peak RSS (VmHWM) of the server processes
    that were not there before it (its backend), sampled every 20 ms."""

    def __init__(self, pg):
        self.pg = pg
        self.before = pg.children()
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.wait(0.02):
            for c in self.pg.children() - self.before:
                self.peak = max(self.peak, vm_hwm(c))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        # The backend outlives psql by a moment: wait for it to be reaped,
        # so its CPU has landed in the postmaster's cutime.
        deadline = time.time() + 5
        while self.pg.children() - self.before and time.time() < deadline:
            for c in self.pg.children() - self.before:
                self.peak = max(self.peak, vm_hwm(c))
            time.sleep(0.01)
        self.stop.set()
        self.thread.join()


# -- DuckDB ----------------------------------------------------------------------

def duckdb_version():
    try:
        with open(os.path.join(HERE, "duckdb", "node_modules", "@duckdb", "node-api", "package.json")) as f:
            return json.load(f)["version"]
    except OSError:
        return "not installed"


def ensure_duckdb(path, ds, sqlite_db, rows):
    if os.path.exists(path):
        return False
    log(f"loading {rows:,} {ds.title} into DuckDB ({os.path.basename(path)}; untimed)")
    t0 = time.time()
    names = ", ".join(n for n, _ in ds.table_columns)
    csv_path = path + ".load.csv"
    tmp = path + ".loading"
    for f in (tmp, tmp + ".wal"):
        if os.path.exists(f):
            os.remove(f)
    try:
        with open(csv_path, "wb") as out:
            subprocess.run(["sqlite3", "-csv", "-header", sqlite_db, f"SELECT {names} FROM {ds.table}"],
                           stdout=out, check=True)
        types = json.dumps({n: DUCK_TYPES[t] for n, t in ds.table_columns})
        subprocess.run(["node", os.path.join(HERE, "duckdb", "load.mjs"), tmp, ds.table, csv_path, types],
                       check=True, stdout=subprocess.DEVNULL)
        os.rename(tmp, path)
    finally:
        for f in (csv_path, tmp, tmp + ".wal"):
            if os.path.exists(f):
                os.remove(f)
    log(f"  loaded in {time.time() - t0:.0f} s")
    return True


# -- one measured run ------------------------------------------------------------

@dataclass
class Run:
    tool: str
    round: int
    wall: float
    cpu: float
    rss: int
    others: float
    out_bytes: int = 0


@dataclass
class Case:
    """One dataset at one size: its files and what was measured on it."""
    ds: Dataset
    rows: int
    db: str
    out_dir: str
    ref: str = ""
    ref_digest: object = None
    ref_sha: str = ""
    ref_bytes: int = 0
    pg_db: str = ""
    duck: str = ""
    tools: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    checks: dict = field(default_factory=dict)   # tool -> (ok, message, normalised counts)
    pg_plan: str = ""
    commands: dict = field(default_factory=dict)  # tool -> the shell command timed

    def runs_of(self, tool):
        return [r for r in self.runs if r.tool == tool]

    def median_run(self, tool):
        rs = self.runs_of(tool)
        return benchlib.median_by_wall(rs) if rs else None

    def ratio(self, tool, ref):
        """Median over rounds of (tool's wall / ref's wall) in the same
        round: > 1 means ref (ours) is that many times faster."""
        by_round = {r.round: r.wall for r in self.runs_of(ref)}
        vals = [r.wall / by_round[r.round] for r in self.runs_of(tool) if r.round in by_round]
        return median(vals) if vals else None


def short_symbol(line, width=110):
    """A `perf report` line, C++ templates and all, cut to a readable width."""
    line = re.sub(r"\s+", " ", line.strip())
    return line if len(line) <= width else line[:width - 1] + "…"


class Harness:
    def __init__(self, a):
        self.a = a
        self.keep = a.keep
        # A snapshot of the binaries: a rebuild of --bin during the run
        # (a shared machine) must not mix two builds in one page.
        self.bin_src = a.bin
        self.bin = os.path.join(a.keep, "bin")
        os.makedirs(self.bin, exist_ok=True)
        for b in ("exportengine", "bench_sqlite_scan", "bench_engine"):
            if os.path.exists(os.path.join(a.bin, b)):
                shutil.copy2(os.path.join(a.bin, b), os.path.join(self.bin, b))
        self.exe = os.path.join(self.bin, "exportengine")
        # --baseline: the other build's exportengine, snapshotted the same
        # way into its own folder; its revision is read now, before any
        # rebuild of it could change what the page says.
        self.base_exe = None
        self.base_revision = ""
        if a.baseline:
            base_bin = os.path.join(a.keep, "bin-baseline")
            os.makedirs(base_bin, exist_ok=True)
            self.base_exe = os.path.join(base_bin, "exportengine")
            shutil.copy2(os.path.join(a.baseline, "exportengine"), self.base_exe)
            self.base_revision = bin_revision(a.baseline, outside_git=True)
            same = csvcheck.bytes_sha256(self.base_exe) == csvcheck.bytes_sha256(self.exe)
            if same:
                self.base_revision += " — the same file as `--bin`'s, byte for byte"
            log(f"baseline: {self.base_revision}")
        self.pg = None
        self.cases = []
        self.failures = []
        self.profile = None
        self.extra_sections = []
        self.t_start = time.time()

    # files ----------------------------------------------------------------
    def fingerprint(self, n):
        return f"c{n}-r{n}-l{LISTS}-k{CAMPAIGNS}-s{SEED}"

    def seeded_db(self, n):
        path = os.path.join(self.keep, "db", self.fingerprint(n) + ".db")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            log(f"seeding {n:,} contacts and {n:,} delivery reports into {path} (untimed)")
            t0 = time.time()
            subprocess.run([self.exe, "seed", "--db", path, "--accounts", "1", "--contacts", str(n), "--lists",
                            str(LISTS), "--campaigns", str(CAMPAIGNS), "--reports", str(n), "--seed", str(SEED)],
                           check=True, stdout=subprocess.DEVNULL)
            log(f"  seeded in {time.time() - t0:.0f} s")
        return path

    # commands -------------------------------------------------------------
    def out_path(self, case, tool):
        ext = {"csv": ".csv", "gzip": ".csv.gz", "none": ""}[TOOL[tool].output]
        return os.path.join(case.out_dir, tool + ext)

    def ours_cmd(self, case, out, readers=1, gzip=False, exe=None):
        args = [exe or self.exe, "export", *case.ds.export_args, "--source", case.db, "--account", "1",
                "--readers", str(readers), *(["--gzip"] if gzip else []), "--out", out, "--quiet"]
        return " ".join(q(x) for x in args)

    def command(self, case, tool):
        out = self.out_path(case, tool)
        query = case.ds.query()
        db = q(case.db)
        if tool == "ours":
            return self.ours_cmd(case, out)
        if tool == "ours-2r":
            return self.ours_cmd(case, out, readers=2)
        if tool == "ours-gzip":
            return self.ours_cmd(case, out, gzip=True)
        if tool == "ours-gzip-2r":
            return self.ours_cmd(case, out, readers=2, gzip=True)
        if tool in OURS_OF:
            # The baseline build, with exactly the arguments of its ours variant.
            o = OURS_OF[tool]
            return self.ours_cmd(case, out, readers=2 if o.endswith("-2r") else 1, gzip="gzip" in o,
                                 exe=self.base_exe)
        if tool == "sqlite3":
            return f"sqlite3 -csv -header {db} {q(query)} > {q(out)}"
        if tool == "python":
            return f"{q(sys.executable)} {q(os.path.join(HERE, 'python_csv_export.py'))} {db} {q(out)} {q(query)}"
        if tool == "postgres":
            copy = f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)"
            return " ".join(q(x) for x in self.pg.psql(case.pg_db) + ["-c", copy]) + f" > {q(out)}"
        if tool == "duckdb":
            return " ".join(q(x) for x in ["node", os.path.join(HERE, "duckdb", "copy.mjs"), case.duck, out, query,
                                          "2"])
        if tool == "sqlite3-pigz":
            return f"sqlite3 -csv -header {db} {q(query)} | pigz -1 -p 2 > {q(out)}"
        if tool == "scan":
            return f"{q(os.path.join(self.bin, 'bench_sqlite_scan'))} {db} 1"
        if tool == "scan-value":
            return f"{q(os.path.join(self.bin, 'bench_sqlite_scan'))} {db} 1 value"
        if tool == "cat":
            return f"cat {q(case.ref)} > /dev/null"
        if tool == "gzip":
            return f"gzip -1 -c {q(case.ref)} > {q(out)}"
        if tool == "pigz":
            return f"pigz -1 -p 2 -c {q(case.ref)} > {q(out)}"
        raise ValueError(tool)

    # a case ---------------------------------------------------------------
    def sources(self, case):
        """What the case's tools read, to warm before each round."""
        paths = [case.db]
        if case.duck:
            paths.append(case.duck)
        if case.pg_db:
            paths.append(self.pg.db_dir(case.pg_db))
        return paths

    def prepare(self, ds, n, tools):
        db = self.seeded_db(n)
        out_dir = os.path.join(self.keep, "out", f"{ds.key}-{size_label(n)}")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        case = Case(ds, n, db, out_dir, tools=tools)
        # The reference: ours, one reader, untimed (it also warms the cache).
        case.ref = os.path.join(out_dir, "reference.csv")
        warm(db)
        subprocess.run(self.ours_cmd(case, case.ref), shell=True, check=True, stdout=subprocess.DEVNULL)
        case.ref_digest = csvcheck.digest(case.ref, ds.kinds(), spec_form=True)
        case.ref_sha = csvcheck.bytes_sha256(case.ref)
        case.ref_bytes = os.path.getsize(case.ref)
        if case.ref_digest.error or case.ref_digest.rows != n:
            self.fail(f"ours (reference, {ds.title}, {n:,}): {case.ref_digest.rows:,} data rows, expected {n:,} "
                      f"{case.ref_digest.error}")
        if case.ref_digest.header != [h for h, _, _ in ds.columns]:
            self.fail(f"ours (reference): header {case.ref_digest.header}")
        if "postgres" in tools:
            case.pg_db = "ee_" + self.fingerprint(n).replace("-", "_")
            self.pg.ensure_loaded(case.pg_db, ds, db, n)
            case.pg_plan = self.pg.sql(f"EXPLAIN (COSTS OFF) {ds.query()}", case.pg_db)
        if "duckdb" in tools:
            case.duck = os.path.join(self.keep, "duckdb", f"{self.fingerprint(n)}-{ds.table}.duckdb")
            os.makedirs(os.path.dirname(case.duck), exist_ok=True)
            ensure_duckdb(case.duck, ds, db, n)
        return case

    def timed(self, case, tool, rnd):
        out = self.out_path(case, tool)
        if os.path.exists(out):
            os.remove(out)
        os.sync()  # nothing of the last run is still being written back
        cmd = self.command(case, tool)
        case.commands[tool] = cmd
        capture = subprocess.PIPE if TOOL[tool].check == "scan" else subprocess.DEVNULL
        if tool == "postgres":
            cpu0 = self.pg.cpu()
            with ServerSampler(self.pg) as sampler:
                t = run_timed(cmd, stdout=capture)
            server_cpu = max(0.0, self.pg.cpu() - cpu0)
            t.cpu += server_cpu
            t.others = max(0.0, t.others - server_cpu)
            t.rss = max(t.rss, sampler.peak)
        else:
            t = run_timed(cmd, stdout=capture)
        out_bytes = os.path.getsize(out) if TOOL[tool].output != "none" and os.path.exists(out) else 0
        case.runs.append(Run(tool, rnd, t.wall, t.cpu, t.rss, t.others, out_bytes))
        return t

    def check(self, case, tool, t):
        spec = TOOL[tool]
        out = self.out_path(case, tool)
        if spec.check == "none":
            case.checks[tool] = (True, "reads our file", {})
            return
        if spec.check == "scan":
            m = re.match(rb"(\d+) rows", t.out)
            got = int(m.group(1)) if m else -1
            ok = got == case.rows
            case.checks[tool] = (ok, f"scanned {got:,} rows", {})
            if not ok:
                self.fail(f"{tool}: scanned {got:,} rows, expected {case.rows:,}")
            return
        if spec.check == "bytes":
            sha = csvcheck.bytes_sha256(out)
            ok = sha == case.ref_sha
            what = "decompresses to" if spec.output == "gzip" else "is"
            msg = f"{what} our reference file, byte for byte" if ok else \
                f"{tool}: {what} not our reference file (SHA-256 {sha[:16]}… vs {case.ref_sha[:16]}…)"
            if not ok and spec.group in ("ours", "baseline"):
                # Name the first differing row too.
                ok2, msg2, _ = csvcheck.compare(tool, case.ref, case.ref_digest, out, case.ds.kinds(), True)
                msg += "; " + msg2
            case.checks[tool] = (ok, msg, {})
            if not ok:
                self.fail(msg)
            return
        ok, msg, d = csvcheck.compare(tool, case.ref, case.ref_digest, out, case.ds.kinds(), spec_form=False)
        case.checks[tool] = (ok, msg, dict(d.changed))
        if not ok:
            self.fail(msg)

    def fail(self, msg):
        self.failures.append(msg)
        bar = "!" * 78
        print(f"\n{bar}\nCHECK FAILED: {msg}\n{bar}\n", file=sys.stderr, flush=True)

    def run_case(self, ds, n, tools):
        case = self.prepare(ds, n, tools)
        self.cases.append(case)
        log(f"{ds.title}, {n:,} rows: {', '.join(tools)} x {self.a.runs}")
        for rnd in range(self.a.runs):
            warm(*self.sources(case))
            last = rnd == self.a.runs - 1
            for tool in self.round_order(tools, rnd):
                t = self.timed(case, tool, rnd)
                log(f"  round {rnd + 1}: {tool:<13} {t.wall:7.2f} s  {n / t.wall / 1e6:6.2f} M rows/s  "
                    f"cpu {t.cpu:6.2f} s  rss {t.rss / 2**20:7.1f} MiB  others {t.others:4.1f} s")
                if last:
                    self.check(case, tool, t)
                out = self.out_path(case, tool)
                if os.path.exists(out) and TOOL[tool].output != "none":
                    os.remove(out)  # at 10 M rows each output is ~1 GB
        return case

    def with_baseline(self, tools):
        """The case's tools with, under --baseline, each ours variant's
        baseline variant right after it (so where ours runs, it runs)."""
        if not self.base_exe:
            return tools
        return [x for t in tools for x in ((t, BASELINE[t]) if t in BASELINE else (t,))]

    @staticmethod
    def round_order(tools, rnd):
        """The order of one round: as listed, except that in every second
        round each baseline variant runs before its ours variant instead of
        after it, so neither side always has the same neighbour."""
        order = list(tools)
        if rnd % 2:
            for i in range(len(order) - 1):
                if order[i] in BASELINE and order[i + 1] == BASELINE[order[i]]:
                    order[i], order[i + 1] = order[i + 1], order[i]
        return order

    def finish_case(self, case):
        shutil.rmtree(case.out_dir, ignore_errors=True)

    def run_profile(self, case):
        """perf record -g of ours, one reader, on the largest contacts case."""
        data = os.path.join(self.keep, "perf.data")
        out = os.path.join(case.out_dir, "profile.csv")
        log("perf record -g: ours, 1 reader")
        warm(case.db)
        r = subprocess.run(["perf", "record", "-g", "-o", data, "--", "sh", "-c", self.ours_cmd(case, out)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.profile = ("perf record failed", r.stderr.strip()[-1500:], "")
            return
        rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "sym", "--stdio", "-g",
                              "none", "--percent-limit", "0.3"], capture_output=True, text=True)
        rows = [short_symbol(ln) for ln in rep.stdout.splitlines() if re.match(r"\s*\d+\.\d+%", ln)]
        event = re.search(r"# Samples: (\S+)\s+of event '([^']+)'", rep.stdout)
        head = f"{event.group(1)} samples of `{event.group(2)}`" if event else ""
        by_dso = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso", "--stdio", "-g",
                                 "none", "--percent-limit", "1"], capture_output=True, text=True)
        dso_rows = [ln.strip() for ln in by_dso.stdout.splitlines() if re.match(r"\s*\d+\.\d+%", ln)]
        self.profile = (head, "\n".join(rows[:15]), "\n".join(dso_rows[:8]))
        if os.path.exists(out):
            os.remove(out)
        for f in (data, data + ".old"):
            if os.path.exists(f):
                os.remove(f)

    def run_extras(self):
        """--all: the engine and HTTP figures, same harness."""
        quick = self.a.quick
        eng = [os.path.join(self.bin, "bench_engine")]
        if quick:
            eng += ["--jobs", "500", "--list-jobs", "5000", "--rows", "100000"]
        log("bench_engine: " + " ".join(eng[1:] or ["(defaults)"]))
        t0 = time.time()
        r = subprocess.run(eng, capture_output=True, text=True)
        if r.returncode != 0:
            self.fail(f"bench_engine failed ({r.returncode}): {r.stderr[-1000:]}")
        self.extra_sections.append(("Engine: jobs/s, list latency, pipeline (`bench_engine`)",
                                    "`" + " ".join(["build/bin/bench_engine"] + eng[1:]) + "`",
                                    r.stdout.strip(), time.time() - t0))
        rows = 100_000 if quick else max(self.sizes_contacts())
        http = [sys.executable, os.path.join(HERE, "http_load.py"), "--bin", self.exe,
                "--dir", os.path.join(self.keep, f"http-{size_label(rows)}"), "--download-rows", str(rows),
                "--runs", str(self.a.runs)]
        if quick:
            http += ["--jobs", "300", "--duration", "2"]
        log("http_load.py: " + " ".join(http[2:]))
        t0 = time.time()
        r = subprocess.run(http, capture_output=True, text=True)
        if r.returncode != 0:
            self.fail(f"http_load.py failed ({r.returncode}): {r.stderr[-1000:]}")
        shown = ["python3", "benchmarks/http_load.py"] + [x for x in http[2:]]
        self.extra_sections.append(("HTTP server (`benchmarks/http_load.py`)",
                                    "`" + " ".join(shown) + "`", r.stdout.strip(), time.time() - t0))

    def sizes_contacts(self):
        return [c.rows for c in self.cases if c.ds.key == "contacts"] or self.a.sizes

    # the whole run -----------------------------------------------------------
    def run(self):
        a = self.a
        if "postgres" in a.tools:
            self.pg = Postgres(self.keep)
        top = max(a.sizes)
        for key in a.datasets:
            ds = DATASETS[key]
            for n in sorted(a.sizes):
                if n == top:
                    tools = [t for t in a.tools if key in TOOL[t].datasets
                             and (key == "contacts" or t in REPORT_TOOLS)]
                elif key == "contacts":
                    tools = [t for t in a.tools if TOOL[t].scaling]
                else:
                    continue
                if not tools:
                    continue
                case = self.run_case(ds, n, self.with_baseline(tools))
                if a.profile and key == "contacts" and n == top:
                    self.run_profile(case)
                self.finish_case(case)
        if self.pg:
            self.pg.close()
        if a.all:
            self.run_extras()


# -- the results page ------------------------------------------------------------

def cell(text):
    """Text for a Markdown table cell: a `|` (even inside code) would end it."""
    return str(text).replace("\n", " ").replace("|", "\\|")


def fmt_rate(v):
    return f"{v / 1e6:.2f}"


def fmt_ratio(v):
    return "—" if v is None else f"{v:.2f}×"


def tool_versions(h):
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "not found"
    pg = pg_bindir()
    return [
        ("exportengine", bin_revision(h.bin_src)),
        *([("exportengine, baseline (`--baseline`)", h.base_revision)] if h.base_exe else []),
        ("sqlite3", first_line(["sqlite3", "--version"]).split(" ")[0]),
        ("Python", platform.python_version() + f" (`{sys.executable}`)"),
        ("PostgreSQL", first_line([f"{pg}/postgres", "--version"]) if pg else "not installed"),
        ("DuckDB", f"@duckdb/node-api {duckdb_version()} on Node.js {first_line(['node', '--version'])}"),
        ("gzip / pigz", f"{first_line(['gzip', '--version'])} / {first_line(['pigz', '--version'])}"),
    ]


def bin_revision(bindir, outside_git=False):
    """Which build bindir's exportengine is: its git tree's HEAD. Outside a
    git tree: the directory (with outside_git, as --baseline's is shown:
    "not in a git tree" and the binary's mtime)."""
    try:
        top = subprocess.run(["git", "-C", bindir, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             check=True).stdout.strip()
        rev = subprocess.run(["git", "-C", top, "log", "-1", "--format=%h %s"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        built = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(os.path.join(bindir, "exportengine"))))
        return (f"`{bindir}/exportengine` (built {built}) in {top}, whose HEAD is {rev[:72]}"
                + (" with uncommitted changes" if dirty else ""))
    except (subprocess.CalledProcessError, OSError):
        if not outside_git:
            return f"`{bindir}`"
        try:
            built = time.strftime("%Y-%m-%d %H:%M:%S",
                                  time.localtime(os.path.getmtime(os.path.join(bindir, "exportengine"))))
        except OSError:
            built = "unknown"
        return f"`{bindir}/exportengine`: not in a git tree; the file's mtime is {built}"


def tool_table(case, lines):
    lines.append("| tool | M rows/s | seconds (median) | CSV MB/s | CPU s | peak RSS | ours (1 reader) × | "
                 "ours (2 readers) × | runs (s) | others' CPU s (max) | check |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for tool in case.tools:
        spec = TOOL[tool]
        m = case.median_run(tool)
        if m is None:
            continue
        rs = case.runs_of(tool)
        ratios = []
        for ref in spec.refs:
            if ref == tool or ref not in case.tools or spec.group == "ours":
                ratios.append("—")
            else:
                ratios.append(fmt_ratio(case.ratio(tool, ref)))
        # MB of CSV per second: the tool's own CSV, or (gzip, floors) the
        # uncompressed CSV it produced or read.
        csv_bytes = m.out_bytes if spec.output == "csv" else case.ref_bytes
        mbps = "—" if TOOL[tool].check == "scan" else f"{csv_bytes / m.wall / 1e6:,.0f}"
        ok, msg, changed = case.checks.get(tool, (None, "not checked", {}))
        check = ("✅ " if ok else "❌ **FAILED** ") + msg if ok is not None else msg
        if changed:
            check += " (normalised: " + ", ".join(f"{k} {v:,}" for k, v in sorted(changed.items())) + ")"
        lines.append(f"| {cell(spec.label)} | **{fmt_rate(case.rows / m.wall)}** | {m.wall:.2f} | {mbps} | {m.cpu:.2f} "
                     f"| {m.rss / 2**20:,.1f} MiB | {ratios[0]} | {ratios[1]} | "
                     f"{' / '.join(f'{r.wall:.2f}' for r in rs)} | {m.others:.1f} ({max(r.others for r in rs):.1f}) "
                     f"| {cell(check)} |")


def targets(h):
    """(target, measured, status) rows for the targets table."""
    top = [c for c in h.cases if c.ds.key == "contacts"]
    if not top:
        return []
    big = max(top, key=lambda c: c.rows)
    at = f"{big.rows:,} contacts"
    note = "" if big.rows >= 10_000_000 else f" (at {size_label(big.rows)}; the target is for 10 M)"
    rows = []

    def status(ok):
        if ok is None:
            return "not measured"
        s = "met" if ok else "**missed**"
        return s + (" — provisional" if note else "")

    def rate(tool):
        m = big.median_run(tool)
        return big.rows / m.wall if m else None

    def ratio_row(target, tool, ref, want, fmt=lambda v: f"{v:.2f}×"):
        r = big.ratio(tool, ref) if tool in big.tools and ref in big.tools else None
        measured = "—" if r is None else \
            f"{fmt(r)} ({fmt_rate(rate(ref))} vs {fmt_rate(rate(tool))} M rows/s){note}"
        rows.append((target, measured, status(None if r is None else r >= want)))

    ratio_row("one reader, CSV ≥ 2× `sqlite3 -csv`", "sqlite3", "ours", 2.0)
    ratio_row("one reader, CSV ≥ 95% of the bare cursor scan", "scan", "ours", 0.95, lambda v: f"{v:.0%}")
    ratio_row("(stricter) one reader ≥ 95% of the scan through sqlite3_column_value", "scan-value", "ours", 0.95,
              lambda v: f"{v:.0%}")
    r2 = rate("ours-2r")
    rows.append(("parallel ranges (`--readers 2`, 2 cores) ≥ 2.0 M rows/s",
                 "—" if r2 is None else f"{fmt_rate(r2)} M rows/s{note}",
                 status(None if r2 is None else r2 >= 2.0e6)))
    ratio_row("parallel ranges ahead of DuckDB `COPY` (2 threads)", "duckdb", "ours-2r", 1.0)
    ratio_row("≥ 2× PostgreSQL `COPY` via `psql` (ours, 1 reader)", "postgres", "ours", 2.0)
    ratio_row("≥ 10× Python `csv` (ours, 1 reader)", "python", "ours", 10.0)
    ratio_row("`--gzip` ≥ 1.4× `sqlite3 -csv | pigz -1 -p 2` (ours, 1 reader)", "sqlite3-pigz", "ours-gzip", 1.4)
    if "ours-gzip-2r" in big.tools:
        ratio_row("`--gzip --readers 2` ≥ 1.4× the same pipeline", "sqlite3-pigz", "ours-gzip-2r", 1.4)
    # memory: flat from the smallest to the largest size, and < 64 MiB
    for tool in ("ours", "ours-2r", "ours-gzip"):
        pts = sorted((c.rows, c.median_run(tool).rss) for c in top if c.median_run(tool))
        if len(pts) < 2:
            continue
        (n0, r0), (n1, r1) = pts[0], pts[-1]
        growth = r1 / r0 - 1
        span = f"{size_label(n0)} → {size_label(n1)}"
        scope = "" if (n0 <= 1_000_000 and n1 >= 10_000_000) else f" (sizes run: {span}; the target is 1 M → 10 M)"
        rows.append((f"peak RSS flat within 10% ({TOOL[tool].label.split(': ', 1)[1]})",
                     f"{r0 / 2**20:.1f} → {r1 / 2**20:.1f} MiB ({growth:+.1%}, {span}){scope}",
                     status(growth <= 0.10) if not scope else ("met — provisional" if growth <= 0.10 else
                                                              "**missed** — provisional")))
        peak = max(r for _, r in pts)
        rows.append((f"peak RSS < 64 MiB ({TOOL[tool].label.split(': ', 1)[1]})", f"{peak / 2**20:.1f} MiB",
                     status(peak < 64 * 2**20)))
    return rows


def plots(h, stem):
    """Two PNGs beside the page; returns their file names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(h.results_dir, name), dpi=90)
        plt.close(fig)
        made.append(name)

    top = [c for c in h.cases if c.ds.key == "contacts"]
    if not top:
        return made
    big = max(top, key=lambda c: c.rows)
    names = [t for t in big.tools if TOOL[t].output != "none" or TOOL[t].check == "scan"]
    names = [t for t in names if t not in ("cat", "gzip", "pigz")]  # those read our CSV, they export nothing
    data = [(t, big.rows / big.median_run(t).wall / 1e6, big.median_run(t).rss / 2**20) for t in names]
    data.sort(key=lambda x: x[1])
    colors = {"ours": "#1f77b4", "anchor": "#ff7f0e", "floor": "#9e9e9e", "baseline": "#9ecae1"}
    short = {"ours": "ours, 1 reader", "ours-2r": "ours, 2 readers", "ours-gzip": "ours --gzip",
             "ours-gzip-2r": "ours --gzip, 2 readers", "base": "baseline, 1 reader", "base-2r": "baseline, 2 readers",
             "base-gzip": "baseline --gzip", "base-gzip-2r": "baseline --gzip, 2 readers", "sqlite3": "sqlite3 -csv", "python": "Python csv",
             "postgres": "PostgreSQL COPY (psql)", "duckdb": "DuckDB COPY (2 threads)",
             "sqlite3-pigz": "sqlite3 -csv | pigz -p 2", "scan": "bare cursor scan (floor)",
             "scan-value": "bare scan, value API (floor)"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.42 * len(data) + 1.6), sharey=True,
                                   gridspec_kw={"width_ratios": [3, 2]})
    ys = range(len(data))
    cs = [colors[TOOL[t].group] for t, _, _ in data]
    ax1.barh(ys, [d[1] for d in data], color=cs)
    ax1.set_yticks(list(ys), [short.get(t, t) for t, _, _ in data])
    for y, (_, v, _) in zip(ys, data):
        ax1.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax1.set_xlabel("M rows/s (higher is better)")
    ax1.set_xlim(0, max(d[1] for d in data) * 1.18)
    runs = f"median of {h.a.runs} runs" if h.a.runs > 1 else "1 run"
    ax1.set_title(f"Exporting {big.rows:,} contacts to CSV, warm cache, {runs}", fontsize=10)
    from matplotlib.patches import Patch
    ax1.legend(handles=[Patch(color=colors["ours"], label="exportengine"),
                        *([Patch(color=colors["baseline"], label="exportengine, --baseline build")]
                          if any(TOOL[t].group == "baseline" for t in names) else []),
                        Patch(color=colors["anchor"], label="what people use instead"),
                        Patch(color=colors["floor"], label="floor (no CSV written)")],
               loc="lower right", fontsize=8)
    ax2.barh(ys, [d[2] for d in data], color=cs)
    ax2.set_xscale("log")
    for y, (_, _, v) in zip(ys, data):
        ax2.text(v, y, f" {v:,.0f}" if v >= 10 else f" {v:.1f}", va="center", fontsize=8)
    ax2.set_xlabel("peak RSS, MiB (log scale; lower is better)")
    ax2.set_xlim(1, max(d[2] for d in data) * 8)
    ax2.set_title("memory", fontsize=10)
    save(fig, f"{stem}-tools.png")

    variants = [t for t in ("ours", "ours-2r", "ours-gzip") if any(c.median_run(t) for c in top)]
    # --baseline: each baseline variant dashed, in its ours variant's colour.
    variants += [BASELINE[t] for t in variants if any(c.median_run(BASELINE[t]) for c in top)]
    if len(top) >= 2 and variants:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        line_color = {}
        for t in variants:
            pts = sorted((c.rows, c.rows / c.median_run(t).wall / 1e6, c.median_run(t).rss / 2**20)
                         for c in top if c.median_run(t))
            xs = [p[0] for p in pts]
            style = {"marker": "o", "label": short[t]}
            if t in OURS_OF:
                style.update(linestyle="--", marker="x", color=line_color.get(OURS_OF[t]))
            line = ax1.plot(xs, [p[1] for p in pts], **style)[0]
            line_color[t] = line.get_color()
            ax2.plot(xs, [p[2] for p in pts], **style)
        for ax in (ax1, ax2):
            ax.set_xscale("log")
            ax.set_xticks([c.rows for c in top], [size_label(c.rows) for c in top])
            ax.minorticks_off()
            ax.set_xlabel("contacts exported")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        ax1.set_ylabel("M rows/s")
        ax1.set_ylim(bottom=0)
        ax1.set_title("throughput against row count", fontsize=10)
        ax2.axhline(64, color="#d62728", linestyle="--", linewidth=1)
        ax2.text(top[0].rows, 64, " target: < 64 MiB", color="#d62728", va="bottom", fontsize=8)
        ax2.set_ylim(0, max(72, max(c.median_run(t).rss for c in top for t in variants if c.median_run(t))
                            / 2**20 * 1.15))
        ax2.set_ylabel("peak RSS, MiB")
        ax2.set_title("peak RSS against row count (flat is the target)", fontsize=10)
        save(fig, f"{stem}-scaling.png")
    return made


BASELINE_TOLERANCE = 0.05   # --baseline: a change in rows/s within ±5% is "within 5%"
RSS_LIMIT = 64 * 2**20


def before_and_after(h, L):
    """--baseline: each ours variant against the same variant of the
    baseline build, per dataset at the largest size."""
    a = h.a
    L.append("## Before and after (`--baseline`)\n")
    L.append(f"Before: `--baseline` — {cell(h.base_revision)}. After: `--bin` — {cell(bin_revision(h.bin_src))}. "
             "Both binaries were copied to `--keep` at the start (`bin-baseline/`, `bin/`). Each baseline variant "
             "runs the same command as its ours variant, right beside it in every round (ours first in odd rounds, "
             "the baseline first in even ones), with the same warm cache, and its output must be the same "
             "reference file, byte for byte.\n")
    L.append(f"**Change** is ours' rows/s over the baseline's, minus 1, taken in each round, then the median over "
             f"the rounds ({a.runs} here): the two ran back to back under the same conditions, so a per-round ratio "
             "cancels what drifts between rounds. The M rows/s columns are each side's median run. "
             f"Within ±{BASELINE_TOLERANCE:.0%}: \"within {BASELINE_TOLERANCE:.0%}\". Peak RSS: the largest of "
             "the rounds.\n")
    L.append("| dataset | variant | baseline M rows/s | ours M rows/s | change | per round | baseline peak RSS | "
             "ours peak RSS | verdict | ours peak RSS < 64 MiB | bytes |")
    L.append("|---|---|---:|---:|---:|---|---:|---:|---|---|---|")
    verdicts = []
    for case in h.cases:
        if case.rows != max(a.sizes):
            continue
        for ours in (t for t in case.tools if t in BASELINE):
            base = BASELINE[ours]
            mo, mb = case.median_run(ours), case.median_run(base)
            if mo is None or mb is None:
                continue
            by_round = {r.round: r.wall for r in case.runs_of(ours)}
            per_round = [r.wall / by_round[r.round] - 1 for r in case.runs_of(base) if r.round in by_round]
            change = median(per_round)
            if abs(change) <= BASELINE_TOLERANCE:
                verdict = f"within {BASELINE_TOLERANCE:.0%}"
            elif change > 0:
                verdict = "**faster**"
            else:
                verdict = f"**slower by {-change:.1%}**"
            rss_o = max(r.rss for r in case.runs_of(ours))
            rss_b = max(r.rss for r in case.runs_of(base))
            rss_ok = "met" if rss_o < RSS_LIMIT else "**missed**"
            ok_o = case.checks.get(ours, (None,))[0]
            ok_b = case.checks.get(base, (None,))[0]
            same = "✅ both identical to the reference" if ok_o and ok_b else \
                "not checked" if ok_o is None or ok_b is None else "❌ **FAILED** (see the check column above)"
            verdicts.append((verdict, rss_ok))
            L.append(f"| {case.ds.title} ({case.rows:,}) | {cell(TOOL[ours].label.split(': ', 1)[1])} | "
                     f"{fmt_rate(case.rows / mb.wall)} | {fmt_rate(case.rows / mo.wall)} | **{change:+.1%}** | "
                     f"{' / '.join(f'{v:+.1%}' for v in per_round)} | {rss_b / 2**20:.1f} MiB | "
                     f"{rss_o / 2**20:.1f} MiB | {verdict} | {rss_ok} | {same} |")
    L.append("")
    if not verdicts:
        L.append("Nothing to compare: no ours variant ran beside its baseline.\n")
        return
    slower = sum(1 for v, _ in verdicts if "slower" in v)
    faster = sum(1 for v, _ in verdicts if "faster" in v)
    rss_missed = sum(1 for _, r in verdicts if "missed" in r)
    note = "" if max(a.sizes) >= 10_000_000 else f" (at {size_label(max(a.sizes))} rows, not 10 M: provisional)"
    L.append(f"Of {len(verdicts)} comparison{'s' if len(verdicts) != 1 else ''}: "
             f"{len(verdicts) - slower - faster} within {BASELINE_TOLERANCE:.0%}, {faster} faster, {slower} slower; "
             f"ours' peak RSS under 64 MiB in {len(verdicts) - rss_missed} of {len(verdicts)}{note}."
             + (" **A check failed: these figures do not count.**" if h.failures else "") + "\n")


def write_page(h, path, argv):
    h.results_dir = os.path.dirname(os.path.abspath(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    pngs = plots(h, stem)
    a = h.a
    L = []
    L.append(f"# Comparison harness — {time.strftime('%Y-%m-%d')}, {platform.node()}\n")
    if h.failures:
        L.append("> ❌ **CHECK FAILED** — these figures do not count:\n>")
        for f in h.failures:
            L.append("> - " + f.replace("\n", " "))
        L.append("")
    L.append(f"`benchmarks/compare.sh {' '.join(argv)}`".replace("`benchmarks/compare.sh `", "`benchmarks/compare.sh`")
             + f" — {a.runs} run{'s' if a.runs != 1 else ''} of every tool, in rounds (each round runs every tool "
             "once, so a ratio compares runs taken minutes apart at most); median by wall time. Warm cache: the "
             "sources (SQLite file, PostgreSQL database directory, DuckDB file) are read once before each round; "
             "`sync` before every run, so no run pays for the last one's write-back. Outputs go to "
             f"`{h.keep}` (local disk). Whole harness: {(time.time() - h.t_start) / 60:.1f} min.\n")
    L.append(f"Machine: {benchlib.machine()}.\n")
    L.append("| software | version |\n|---|---|")
    for k, v in tool_versions(h):
        L.append(f"| {k} | {cell(v)} |")
    L.append("")
    L.append("Columns: **M rows/s** and **seconds** of the median run; **CSV MB/s** — bytes of CSV produced per "
             "second (the tool's own file; for gzip rows and floors, the uncompressed CSV they produce or read); "
             "**CPU s** — user + system of every process of the run (for PostgreSQL, `psql` plus the server's "
             "processes); **peak RSS** — the largest process (GNU time; for PostgreSQL the larger of `psql` and "
             "its backend, sampled every 20 ms, which counts the shared buffers it touched); **ours (1 / 2 readers) ×** — this tool's wall time over ours' in the same "
             "round, median over rounds (above 1: ours is faster; gzip rows are set against ours `--gzip`); **others' CPU** — CPU time the rest of the machine used "
             "during the median run (and the most in any run): well above 0, that run was disturbed.\n")
    for case in h.cases:
        if case.rows != max(a.sizes):
            continue  # the smaller sizes: the scaling table below
        L.append(f"## {case.ds.title.capitalize()}: {case.rows:,} rows, every tool\n")
        L.append(f"One account; `exportengine seed --accounts 1 --contacts {case.rows} --reports {case.rows} "
                 f"--lists {LISTS} --campaigns {CAMPAIGNS} --seed {SEED}`. Our CSV: {case.ref_bytes / 1e6:,.0f} MB. "
                 f"The query every other tool runs:\n")
        L.append(f"```sql\n{case.ds.query()}\n```\n")
        tool_table(case, L)
        L.append("")
        disturbed = [r for r in case.runs if r.others > max(0.5, 0.2 * r.wall)]
        if disturbed:
            L.append("Disturbed runs (the rest of the machine used CPU meanwhile): " + "; ".join(
                f"{r.tool} round {r.round + 1}, {r.others:.1f} s in {r.wall:.1f} s" for r in disturbed) + ".\n")
        if case.pg_plan:
            L.append("PostgreSQL's plan for it: `" + " → ".join(ln.strip() for ln in case.pg_plan.splitlines())
                     + "`.\n")
        L.append("<details><summary>The commands timed</summary>\n")
        for tool in case.tools:
            if tool in case.commands:
                L.append(f"- `{tool}`: `{case.commands[tool]}`")
        L.append("\n</details>\n")
    scaling = [c for c in h.cases if c.ds.key == "contacts"]
    if len(scaling) >= 2:
        L.append("## Ours against row count (contacts)\n")
        L.append("| rows | tool | M rows/s | seconds | CPU s | peak RSS |\n|---:|---|---:|---:|---:|---:|")
        for c in sorted(scaling, key=lambda c: c.rows):
            for t in (x for o in ("ours", "ours-2r", "ours-gzip") for x in (o, BASELINE[o])):
                m = c.median_run(t)
                if m:
                    what = ("baseline: " if t in OURS_OF else "") + TOOL[t].label.split(': ', 1)[1]
                    L.append(f"| {c.rows:,} | {cell(what)} | {fmt_rate(c.rows / m.wall)} | "
                             f"{m.wall:.2f} | {m.cpu:.2f} | {m.rss / 2**20:.1f} MiB |")
        L.append("")
    if h.base_exe:
        before_and_after(h, L)
    for p in pngs:
        L.append(f"![{p}]({p})\n")
    trs = targets(h)
    if trs:
        L.append("## Targets (10 M contacts, warm cache)\n")
        L.append("| target | measured | |\n|---|---|---|")
        for t, m, s in trs:
            L.append(f"| {cell(t)} | {cell(m)} | {s} |")
        L.append("")
        missed = [t for t, _, s in trs if "missed" in s]
        if all(s == "not measured" for _, _, s in trs):
            L.append("No target was measured in this run (its tools were not selected).\n")
        elif missed:
            L.append(f"**Missed in this run: {len(missed)} of {len(trs)}** — " + "; ".join(missed) + ". "
                     + ("The profile below shows where our time goes." if h.profile else
                        "Rerun with `--profile` for where our time goes.") + "\n")
        else:
            L.append("Every target measured in this run was met.\n")
    if h.profile:
        head, syms, dsos = h.profile
        L.append("## Profile: ours, 1 reader (`perf record -g`, `perf report --no-children --sort sym`)\n")
        L.append(f"{head}. Top symbols (self time):\n\n```\n{syms}\n```\n")
        if dsos:
            L.append(f"By shared object:\n\n```\n{dsos}\n```\n")
    for title, cmd, body, secs in h.extra_sections:
        body = re.sub(r"(?m)^#(#*) ", r"###\1 ", body)  # their headings go under ours
        L.append(f"## {title}\n\n{cmd} ({secs:.0f} s)\n\n{body}\n")
    L.append("## How the outputs were checked\n")
    L.append("Every tool's last-round output is read back with Python's `csv` module (`benchmarks/csvcheck.py`): "
             "ours (every variant, gzip decompressed) must be our reference file byte for byte; every other "
             "tool's rows must equal ours after its values are brought to contract §4's form — the formula guard "
             "applied to free-text columns (and to phone values that are not E.164), timestamps such as "
             "PostgreSQL's and DuckDB's `2024-11-27 09:35:25+00` written as `2024-11-27T09:35:25Z`, integers as "
             "digits. NULL and '' are both an empty field. The header must be the contract's names. The `check` column "
             "counts the values normalised per column. A difference fails the run and names the tool and the "
             "first differing row. "
             + ("Every baseline variant (`--baseline`) is held to the same: our reference file, byte for byte. "
                if h.base_exe else "")
             + "PostgreSQL and DuckDB hold the same rows as the SQLite file, loaded from "
             "`sqlite3 -csv` (untimed): PostgreSQL as `bigint`/`text`/`timestamptz` with a primary key and an "
             "index on the query's key, `VACUUM (FREEZE, ANALYZE)`ed; DuckDB as `BIGINT`/`VARCHAR`/`TIMESTAMPTZ`"
             " via `read_csv`.\n")
    with open(path, "w") as f:
        f.write("\n".join(L))
    return pngs


# -- main ----------------------------------------------------------------------

def default_bin():
    here = os.path.join(REPO, "build", "bin")
    if os.path.exists(os.path.join(here, "exportengine")):
        return here
    # A git worktree without a build: the main worktree's binaries.
    r = subprocess.run(["git", "-C", REPO, "worktree", "list", "--porcelain"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.startswith("worktree "):
            cand = os.path.join(line[len("worktree "):], "build", "bin")
            if os.path.exists(os.path.join(cand, "exportengine")):
                return cand
    return here


def main(argv):
    ap = argparse.ArgumentParser(
        prog="benchmarks/compare.sh",
        description="exportengine against sqlite3, Python csv, PostgreSQL COPY, DuckDB COPY and the floors, "
                    "on the same data; writes benchmarks/results/<date>-<host>.md and PNG plots.")
    ap.add_argument("--quick", action="store_true",
                    help="smoke check: sizes 100K,300K,1M and 1 run (unless given)")
    ap.add_argument("--runs", type=int, help="runs of every tool, median reported (default 3; --quick: 1)")
    ap.add_argument("--sizes", help="contacts (and as many delivery reports) per database, comma-separated; "
                                    "the largest runs every tool, the others ours only (default 1M,3M,10M)")
    ap.add_argument("--tools", help="a subset, comma-separated: " + ",".join(SELECTABLE))
    ap.add_argument("--datasets", default="contacts,reports", help="contacts,reports (default both)")
    ap.add_argument("--all", action="store_true", help="also bench_engine and http_load.py")
    ap.add_argument("--profile", action="store_true",
                    help="perf record -g of ours (1 reader) at the largest size; top symbols in the page")
    ap.add_argument("--keep", default=os.path.join(tempfile.gettempdir(), "exportengine-compare"),
                    help="seeded databases, the PostgreSQL cluster, DuckDB files, outputs (reused when the "
                         "parameters match; default %(default)s; never inside the repository)")
    ap.add_argument("--bin", default=None, help="exportengine, bench_sqlite_scan, bench_engine (default: build/bin)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="before and after on one machine in one run: DIR holds another build's exportengine (an "
                         "older commit's, say), copied to KEEP/bin-baseline; each selected ours variant gets a "
                         "baseline variant (base, base-2r, base-gzip, base-gzip-2r) run beside it in the same "
                         "rounds and datasets/sizes, whose output must be the same reference file byte for byte; "
                         "the page gets a 'Before and after' section: rows/s of both, change (median of per-round "
                         "ratios), verdict against ±5%%, peak RSS of both and ours < 64 MiB")
    ap.add_argument("--out", help="the results page (default benchmarks/results/<date>-<host>.md; "
                                  "--quick: …-quick.md); the PNGs go beside it")
    a = ap.parse_args(argv)
    a.runs = a.runs if a.runs is not None else (1 if a.quick else 3)
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    try:
        a.sizes = sorted({parse_size(s) for s in (a.sizes or ("100K,300K,1M" if a.quick else "1M,3M,10M"))
                          .split(",")})
    except argparse.ArgumentTypeError as e:
        ap.error(f"--sizes: {e}")
    if min(a.sizes) < 1:
        ap.error("--sizes: at least 1 row")
    a.tools = [t.strip() for t in (a.tools or ",".join(SELECTABLE)).split(",") if t.strip()]
    for t in a.tools:
        if t in OURS_OF:
            ap.error(f"--tools: {t} is a baseline variant: select {OURS_OF[t]} and pass --baseline DIR")
        if t not in SELECTABLE:
            ap.error(f"--tools: unknown tool {t!r} (known: {', '.join(SELECTABLE)})")
    a.datasets = [d.strip() for d in a.datasets.split(",") if d.strip()]
    for d in a.datasets:
        if d not in DATASETS:
            ap.error(f"--datasets: unknown {d!r} (contacts, reports)")
    a.bin = os.path.abspath(a.bin or default_bin())
    for b in ("exportengine", "bench_sqlite_scan") + (("bench_engine",) if a.all else ()):
        if not os.access(os.path.join(a.bin, b), os.X_OK):
            ap.error(f"--bin: no {b} in {a.bin} (build with scripts/test.sh, or pass --bin DIR)")
    if a.baseline is not None:
        a.baseline = os.path.abspath(a.baseline)
        if not os.access(os.path.join(a.baseline, "exportengine"), os.X_OK):
            ap.error(f"--baseline: no exportengine in {a.baseline} (pass the directory of another build's binary)")
        if not any(t in BASELINE for t in a.tools):
            ap.error("--baseline: --tools selects no ours variant to compare (" + ", ".join(BASELINE) + ")")
    a.keep = os.path.abspath(a.keep)
    if (a.keep + os.sep).startswith(REPO + os.sep):
        ap.error(f"--keep: {a.keep} is inside the repository; keep data outside it (default under /tmp)")
    os.makedirs(a.keep, exist_ok=True)
    os.chmod(a.keep, 0o755)  # the postgres user must reach its cluster below it
    host = platform.node().split(".")[0]
    out = a.out or os.path.join(HERE, "results", f"{time.strftime('%Y-%m-%d')}-{host}{'-quick' if a.quick else ''}.md")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    # Stop cleanly on SIGTERM/SIGHUP too: the finally below stops the server.
    def stop(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    h = Harness(a)
    try:
        h.run()
    except CommandFailed as e:
        h.fail(str(e))
    finally:
        if h.pg:
            h.pg.close()
        shutil.rmtree(os.path.join(a.keep, "out"), ignore_errors=True)
    pngs = write_page(h, out, argv)
    print(f"\nresults: {out}" + "".join(f"\n         {os.path.join(os.path.dirname(out), p)}" for p in pngs))
    with open(out) as f:
        print("\n" + f.read())
    if h.failures:
        print(f"\nCHECK FAILED ({len(h.failures)}):\n" + "\n".join("  " + m for m in h.failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
