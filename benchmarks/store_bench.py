#!/usr/bin/env python3
"""The job stores side by side: bench_engine's tiny jobs/s with 1, 2 and 4
engine processes and its list p50/p99 with 100,000 jobs, on the SQLite
store and on the PostgreSQL store, in one run, with the targets and, where
one is missed, a profile.

    python3 benchmarks/store_bench.py [--bin build/bin] [--jobs 10000] [--list-jobs 100000]
        [--processes 1,2,4] [--reps 3] [--list-reps 1] [--pause 10] [--page PATH] [--allow-dirty]

Starts a durable throwaway PostgreSQL 15 cluster (tests/tools/pg_cluster.py,
PgCluster(durable=True): fsync, full_page_writes and synchronous_commit on;
pg_stat_statements preloaded), its data directory on the same disk as the
SQLite store's files (both under the temporary directory). Then:

  jobs   `bench_engine --only jobs --jobs N --processes P --store S` for each
         repetition, each process count and both stores, interleaved (the
         stores' order alternates between repetitions), --pause seconds
         between runs; the median jobs/s per store and process count;
  list   `bench_engine --only list --list-jobs M --store S` for both stores;
         p50/p99 of the page-0 limit-20 calls (the target's shape) and of
         limit 10 over pages 0-49.

Targets (PostgreSQL store): jobs/s at least the SQLite store's at each
process count; list p99 under 2 ms. Where one is missed, the page shows a
profile taken in one extra run of that part (not one of the measured runs:
the sampling costs CPU on a small machine): the top statements of
pg_stat_statements by total time and by calls, the wait events sampled from
pg_stat_activity every 50 ms, the WAL fsyncs per commit (pg_stat_wal,
pg_stat_database), the CPU the bench and the rest of the machine used, and
`pg_test_fsync -s 1` on the cluster's disk; and, where perf is installed (and
may record the whole machine; --no-perf: not at all), `perf record -a -g`
over that run: the CPU by process, and the backends' time by phase (parse,
analyze, plan, execute, commit, waiting for the client).

Writes the Markdown page to --page (default: benchmarks/results/DATE-stores.md)
and prints it. Refuses a tree with uncommitted changes unless --allow-dirty
(the page then says so).
"""
import argparse
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

import benchlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "tools"))
from pg_cluster import PG_BIN, PgCluster, psql  # noqa: E402

JOBS_ROW = re.compile(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \| \*\*(\d+)\*\* \| (\d+) \| ([\d.]+) \| (\d+) \| (\w+) \|", re.M)
JOBS_HEAD = re.compile(r"engine process(?:es)? x (\d+) concurrent jobs")
LIST_ROW = re.compile(r"^\| \d+ \| ([\d.]+) \| \*\*([\d.]+)\*\* \| ([\d.]+) \| (.+?) \|", re.M)
TARGET_SHAPE = "limit 20, page 0"
LIST_P99_TARGET_MS = 2.0


class WaitSampler:
    """Samples pg_stat_activity every `interval` s through one psql session:
    each client backend of the database as 'state / wait event'."""

    QUERY = ("SELECT state || ' / ' || coalesce(wait_event_type || ':' || wait_event, 'on CPU') "
             "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
             "AND backend_type = 'client backend';\n\\echo __end__\n")

    def __init__(self, uri, interval=0.05):
        self.uri, self.interval = uri, interval
        self.counts, self.samples = Counter(), 0
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self._p = subprocess.Popen([os.path.join(PG_BIN, "psql"), "-X", "-At", "-q", "-d", self.uri],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self._p.stdin.write(self.QUERY)
            self._p.stdin.flush()
            for line in self._p.stdout:
                line = line.strip()
                if line == "__end__":
                    break
                if line:
                    self.counts[line] += 1
            self.samples += 1
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._p.stdin.close()
        self._p.wait()
        return False


def server_cpu_seconds(pg):
    """CPU seconds the cluster's processes have used so far: the postmaster's
    own and its reaped children's (backends that exited), plus its live
    children's (/proc/PID/stat)."""
    try:
        with open(os.path.join(pg.dir, "data", "postmaster.pid")) as f:
            postmaster = int(f.readline())
    except (OSError, ValueError):
        return 0.0
    ticks = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on
        if int(d) == postmaster:
            ticks += sum(int(x) for x in rest[11:15])  # utime stime cutime cstime
        elif int(rest[1]) == postmaster:
            ticks += int(rest[11]) + int(rest[12])
    return ticks / os.sysconf("SC_CLK_TCK")


PG = None  # the cluster, for server_cpu_seconds


def run_bench(bench, args):
    """One bench_engine run: (its Timed, its stdout); Timed.server: the CPU
    seconds the PostgreSQL cluster used meanwhile."""
    s0 = server_cpu_seconds(PG) if PG else 0.0
    t = benchlib.run_timed([bench, *args], stdout=subprocess.PIPE)
    t.server = (server_cpu_seconds(PG) if PG else 0.0) - s0
    return t, t.out.decode()


def cpu_note(r):
    """Where the CPU went during a run, of the machine's capacity."""
    cap = r["wall"] * os.cpu_count() / 100
    return (f"bench_engine {r['cpu'] / cap:.0f}%, PostgreSQL server {r['server'] / cap:.0f}%, "
            f"anything else {max(0.0, r['others'] - r['server']) / cap:.0f}%")


def jobs_run(bench, store, processes, n):
    t, out = run_bench(bench, ["--only", "jobs", "--jobs", str(n), "--processes", str(processes), "--store", store])
    m = JOBS_ROW.search(out)
    h = JOBS_HEAD.search(out)
    if not m or not h:
        sys.exit(f"store_bench: could not read bench_engine's jobs table:\n{out}")
    return {"jobs_s": float(m.group(4)), "created_s": float(m.group(2)), "published_s": float(m.group(3)),
            "failed": int(m.group(5)), "rss": float(m.group(6)), "concurrent": int(h.group(1)),
            "wall": t.wall, "cpu": t.cpu, "others": t.others, "server": t.server}


def list_run(bench, store, n):
    t, out = run_bench(bench, ["--only", "list", "--list-jobs", str(n), "--store", store])
    rows = {m.group(4): (float(m.group(1)), float(m.group(2)), float(m.group(3))) for m in LIST_ROW.finditer(out)}
    fill = re.search(r"list: \d+ jobs created in ([\d.]+) s", t.err.decode())
    if TARGET_SHAPE not in rows:
        sys.exit(f"store_bench: could not read bench_engine's list table:\n{out}")
    return {"shapes": rows, "fill_s": float(fill.group(1)) if fill else float("nan"), "wall": t.wall}


def fmt(x, digits=0):
    return f"{x:,.{digits}f}"


def statements_table(uri, order, limit=10):
    rows = psql(uri, "SELECT calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 3), rows, "
                     "left(regexp_replace(query, '\\s+', ' ', 'g'), 150) FROM pg_stat_statements "
                     "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                     f"ORDER BY {order} DESC LIMIT {limit}")
    out = ["| calls | total ms | mean ms | rows | statement |", "|---:|---:|---:|---:|---|"]
    for line in rows.splitlines():
        calls, total, mean, nrows, query = line.split("\t", 4)
        out.append(f"| {int(calls):,} | {float(total):,.1f} | {mean} | {int(nrows):,} | "
                   f"`{query.replace('|', '¦').replace('`', '')}` |")
    return out


def reset_stats(uri):
    psql(uri, "SELECT pg_stat_statements_reset(); SELECT pg_stat_reset_shared('wal'); SELECT pg_stat_reset();")


def wal_line(uri, jobs):
    wal = psql(uri, "SELECT wal_records, wal_bytes, wal_write, wal_sync FROM pg_stat_wal").split("\t")
    commits = psql(uri, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").strip()
    records, nbytes, writes, syncs = (int(x) for x in wal)
    commits = int(commits)
    return (f"WAL: {syncs:,} fsyncs (pg_stat_wal.wal_sync) and {writes:,} writes for {commits:,} committed "
            f"transactions (pg_stat_database.xact_commit, the sampler's and psql's included): "
            f"**{syncs / max(jobs, 1):.2f} WAL fsyncs per job**, {commits / max(jobs, 1):.1f} transactions per job, "
            f"{nbytes / max(jobs, 1) / 1024:.1f} KiB of WAL per job.")


class PerfRecorder:
    """`perf record -a -g` over the whole machine while the block runs (when
    perf is there and may record), then where the CPU went: by process name,
    and the PostgreSQL backends' time by phase (inclusive, % of all
    samples)."""

    PHASES = [("PostgresMain", "the backends' query loop (PostgresMain), all of it"),
              ("pg_parse_query", "parse"), ("pg_analyze_and_rewrite_varparams", "analyze (with $-params)"),
              ("pg_analyze_and_rewrite_fixedparams", "analyze (no params)"), ("pg_plan_queries", "plan"),
              ("PortalRun", "execute (PortalRun)"), ("plpgsql_exec_trigger", "  of which the PL/pgSQL triggers"),
              ("CommitTransactionCommand", "commit"), ("XLogFlush", "  of which the WAL flush (XLogFlush)"),
              ("pq_getbyte", "reading the client's next message (pq_getbyte)"),
              ("__schedule", "in the scheduler (kernel __schedule: sleeping, waking)")]

    def __init__(self, enabled):
        self.perf = shutil.which("perf") if enabled else None
        self.data = None
        self._p = None

    def __enter__(self):
        if self.perf:
            fd, self.data = tempfile.mkstemp(prefix="exportengine-perf-", suffix=".data")
            os.close(fd)
            self._p = subprocess.Popen([self.perf, "record", "-a", "-g", "-F", "499", "-o", self.data],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc):
        if self._p:
            self._p.send_signal(signal.SIGINT)
            self._p.wait()
        return False

    def _report(self, *args):
        out = subprocess.run([self.perf, "report", "-i", self.data, "--stdio", "-g", "none", *args],
                             capture_output=True, text=True, check=False).stdout
        return [line.split() for line in out.splitlines() if line.strip() and not line.startswith("#")]

    def lines(self):
        if not self.data:
            return []
        try:
            comms = self._report("--no-children", "--sort", "comm")
            syms = self._report("--children", "--comm", "postgres", "--sort", "sym")
            selfs = self._report("--no-children", "--comm", "postgres", "--sort", "dso,sym")
        finally:
            os.remove(self.data)
        if not comms:
            return ["(perf recorded nothing: perf_event_paranoid, or no permission)", ""]
        out = ["`perf record -a -g -F 499` over the whole machine during that run; % of all samples "
               "(both cores, every process).", "", "| process | share |", "|---|---:|"]
        out += [f"| {c[1]} | {c[0]} |" for c in comms[:6] if len(c) >= 2]
        inclusive = {c[-1]: c[0] for c in syms if len(c) >= 4}
        out += ["", "The PostgreSQL backends by phase (inclusive: a phase's callees count in it; stacks "
                "unwound through frame pointers, which the server may not keep, so read these as lower bounds):",
                "", "| phase | share of all samples |", "|---|---:|"]
        out += [f"| {name} | {inclusive.get(sym, '—')} |" for sym, name in self.PHASES]
        out += ["", "The PostgreSQL processes' own hottest functions (self time):", "",
                "| share | where | function |", "|---:|---|---|"]
        out += [f"| {c[0]} | {c[1]} | `{' '.join(c[3:])}` |" for c in selfs[:12] if len(c) >= 4]
        return out + [""]


def wait_table(sampler):
    out = [f"{sampler.samples:,} samples, every {sampler.interval * 1000:.0f} ms; each row: how many "
           "client backends were seen in that state, summed over the samples, and the share of all.", "",
           "| backend state / wait event | seen | share |", "|---|---:|---:|"]
    total = sum(sampler.counts.values()) or 1
    for what, n in sampler.counts.most_common(14):
        out.append(f"| {what} | {n:,} | {100 * n / total:.1f}% |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin"))
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--list-jobs", type=int, default=100_000)
    ap.add_argument("--processes", default="1,2,4")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--list-reps", type=int, default=1)
    ap.add_argument("--pause", type=float, default=10)
    ap.add_argument("--profile-jobs", type=int, default=3000, help="jobs in the profiled run")
    ap.add_argument("--page", default=os.path.join(HERE, "results", time.strftime("%Y-%m-%d") + "-stores.md"))
    ap.add_argument("--allow-dirty", action="store_true")
    ap.add_argument("--no-perf", action="store_true", help="no perf record in the profiled run")
    a = ap.parse_args()
    command = "python3 benchmarks/store_bench.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    bench = os.path.abspath(os.path.join(a.bin, "bench_engine"))
    if not os.access(bench, os.X_OK):
        ap.error(f"no bench_engine in {a.bin} (cmake --build build --target bench_engine)")
    processes = [int(p) for p in a.processes.split(",")]
    revision = benchlib.git_revision(HERE) or "not in a git tree"
    if "uncommitted" in revision:
        if not a.allow_dirty:
            sys.exit(f"store_bench: the tree has uncommitted changes ({revision}); commit, or --allow-dirty")
        revision += ": these figures do not belong to a commit"
    log = lambda msg: print(f"[store_bench] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    t_start = time.time()

    global PG
    with PgCluster(durable=True, settings={"shared_preload_libraries": "pg_stat_statements"}) as pg:
        PG = pg
        psql(pg.uri, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        settings = psql(pg.uri, "SELECT name || '=' || setting FROM pg_settings WHERE name IN ('fsync', "
                                "'full_page_writes', 'synchronous_commit', 'wal_sync_method', 'shared_buffers', "
                                "'max_connections', 'commit_delay') ORDER BY name").split()
        version = psql(pg.uri, "SHOW server_version").strip()
        stores = {"sqlite": "sqlite", "postgresql": pg.uri}

        # -- jobs: interleaved repetitions --------------------------------
        jobs = {(s, p): [] for s in stores for p in processes}
        for rep in range(a.reps):
            order = list(stores) if rep % 2 == 0 else list(reversed(stores))
            for p in processes:
                for s in order:
                    r = jobs_run(bench, stores[s], p, a.jobs)
                    jobs[(s, p)].append(r)
                    log(f"rep {rep + 1}: {s} {p} process(es): {r['jobs_s']:.0f} jobs/s ({cpu_note(r)})")
                    time.sleep(a.pause)

        # -- list ----------------------------------------------------------
        lists = {s: [] for s in stores}
        for rep in range(a.list_reps):
            for s in stores:
                r = list_run(bench, stores[s], a.list_jobs)
                lists[s].append(r)
                log(f"list {s}: p99 {r['shapes'][TARGET_SHAPE][1]:.3f} ms (fill {r['fill_s']:.0f} s)")
                time.sleep(a.pause)

        med_jobs = {k: statistics.median(x["jobs_s"] for x in v) for k, v in jobs.items()}
        med_list = {s: {shape: tuple(statistics.median(r["shapes"][shape][i] for r in v) for i in range(3))
                        for shape in v[0]["shapes"]} for s, v in lists.items()}
        jobs_missed = [p for p in processes if med_jobs[("postgresql", p)] < med_jobs[("sqlite", p)]]
        list_missed = med_list["postgresql"][TARGET_SHAPE][1] >= LIST_P99_TARGET_MS

        # -- the profile, where a target is missed ---------------------------
        profile = []
        if jobs_missed:
            p = max(jobs_missed)
            reset_stats(pg.uri)
            log(f"profile: jobs, {p} process(es), {a.profile_jobs} jobs")
            with WaitSampler(pg.uri) as sampler, PerfRecorder(not a.no_perf) as perf:
                r = jobs_run(bench, pg.uri, p, a.profile_jobs)
            profile += [
                f"### Profile: jobs on PostgreSQL, {p} engine process{'es' if p > 1 else ''}",
                "",
                f"One extra run, `bench_engine --only jobs --jobs {a.profile_jobs} --processes {p} --store "
                f"postgresql://…`, with pg_stat_statements reset before it and pg_stat_activity sampled during it: "
                f"{r['jobs_s']:,.0f} jobs/s (the sampling's own cost included). CPU, of the machine's "
                f"{os.cpu_count()} cores over the run's {r['wall']:.1f} s (its start and stop included): "
                f"{cpu_note(r)} (the sampler, other users); **"
                f"{100 * (r['cpu'] + r['others']) / r['wall'] / os.cpu_count():.0f}% busy** in all. Server CPU per "
                f"job: {1e6 * r['server'] / a.profile_jobs:.0f} µs; bench_engine CPU per job: "
                f"{1e6 * r['cpu'] / a.profile_jobs:.0f} µs.",
                "",
                wal_line(pg.uri, a.profile_jobs),
                "",
                "Top statements by total execution time (pg_stat_statements; server-side execution only, "
                "not the round trip):",
                "",
                *statements_table(pg.uri, "total_exec_time"),
                "",
                "Top statements by calls:",
                "",
                *statements_table(pg.uri, "calls"),
                "",
                "Wait events of the bench's backends (pg_stat_activity; `idle` = waiting for the client's next "
                "transaction, `idle in transaction` = waiting for the client's next statement inside one — "
                "round trips; `IO:WALSync` / `LWLock:WALWrite` = waiting for the WAL fsync):",
                "",
                *wait_table(sampler),
                "",
                *perf.lines(),
            ]
        if list_missed:
            reset_stats(pg.uri)
            log("profile: list")
            r = list_run(bench, pg.uri, a.list_jobs)
            profile += [
                "### Profile: list on PostgreSQL",
                "",
                f"One extra `bench_engine --only list --list-jobs {a.list_jobs}` run (p99 "
                f"{r['shapes'][TARGET_SHAPE][1]:.3f} ms); its fill's creates are in the statements too.",
                "",
                *statements_table(pg.uri, "total_exec_time"),
                "",
            ]
        if profile:
            fsync_dir = tempfile.mkdtemp(prefix="exportengine-fsync-", dir=os.path.dirname(pg.dir))
            try:
                fs = subprocess.run([os.path.join(PG_BIN, "pg_test_fsync"), "-s", "1", "-f",
                                     os.path.join(fsync_dir, "pg_test_fsync.out")],
                                    capture_output=True, text=True, check=False).stdout
            finally:
                subprocess.run(["rm", "-rf", fsync_dir], check=False)
            profile += [
                f"### fsync on this disk: `pg_test_fsync -s 1` (a file next to the cluster's data directory, "
                f"`{os.path.dirname(pg.dir)}`)",
                "",
                "```",
                fs.strip(),
                "```",
                "",
            ]

    # -- the page -------------------------------------------------------------
    ok = lambda b: "✅" if b else "❌"  # noqa: E731
    lines = [
        f"# Job stores side by side: SQLite and PostgreSQL — {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"`{command}` — {time.time() - t_start:.0f} s.",
        "",
        f"- Machine: {benchlib.machine()}",
        f"- Commit: {revision}",
        f"- PostgreSQL {version}, a throwaway cluster on 127.0.0.1 (TCP), data directory on the same disk as the "
        f"SQLite files; {', '.join(settings)}; shared_preload_libraries=pg_stat_statements.",
        "- SQLite store: WAL, synchronous=FULL, one file per run.",
        f"- Each engine process: the engine's defaults ({jobs[('sqlite', processes[0])][0]['concurrent']} "
        "concurrent jobs = the hardware threads, 4 I/O threads, poll_interval 1 s for work other processes "
        "queue, max 2 jobs per account across engines), its own sink directory (files fsynced, renamed, "
        "directory fsynced), the PostgreSQL store's default pool (8 connections).",
        "",
        f"## Tiny jobs/s ({a.jobs:,} ten-row exports; median of {a.reps}, runs interleaved)",
        "",
        f"Each process creates {a.jobs:,}/P jobs from 4 client threads and runs whatever it can claim; jobs/s = "
        f"{a.jobs:,} / the time from the first create to the parent having heard of the last job available.",
        "",
        "| processes | SQLite jobs/s | PostgreSQL jobs/s | PG / SQLite | target: PG ≥ SQLite | SQLite runs | PG runs |",
        "|---:|---:|---:|---:|:---:|---|---|",
    ]
    for p in processes:
        s, g = med_jobs[("sqlite", p)], med_jobs[("postgresql", p)]
        lines.append(f"| {p} | **{fmt(s)}** | **{fmt(g)}** | {g / s:.2f}× | {ok(g >= s)} | "
                     f"{' / '.join(fmt(x['jobs_s']) for x in jobs[('sqlite', p)])} | "
                     f"{' / '.join(fmt(x['jobs_s']) for x in jobs[('postgresql', p)])} |")
    lines += [
        "",
        f"Where the CPU went in each store's median run (of the machine's {os.cpu_count()} cores over the whole "
        "run, the processes' start and stop included; \"anything else\" is other users of the machine):",
        "",
        *(f"- {s}, {p} process{'es' if p > 1 else ''}: " + cpu_note(sorted(jobs[(s, p)], key=lambda x: x['jobs_s'])[len(jobs[(s, p)]) // 2])
          for p in processes for s in stores),
        "",
        f"## list with {a.list_jobs:,} jobs in the store ({a.list_jobs // 10:,} per account, 10 accounts; "
        f"5,000 calls per shape; median of {a.list_reps})",
        "",
        "| shape | SQLite p50 ms | SQLite p99 ms | PostgreSQL p50 ms | PostgreSQL p99 ms | target: p99 < 2 ms |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for shape in med_list["sqlite"]:
        sq, pgv = med_list["sqlite"][shape], med_list["postgresql"][shape]
        target = f"PG {ok(pgv[1] < LIST_P99_TARGET_MS)}, SQLite {ok(sq[1] < LIST_P99_TARGET_MS)}" \
            if shape == TARGET_SHAPE else "(not the target's shape)"
        lines.append(f"| {shape} | {sq[0]:.3f} | **{sq[1]:.3f}** | {pgv[0]:.3f} | **{pgv[1]:.3f}** | {target} |")
    lines += [
        "",
        "The store is filled through its create() from 8 threads (each a durable commit): "
        + ", ".join(f"{s} {statistics.median(r['fill_s'] for r in v):.0f} s" for s, v in lists.items()) + ".",
        "",
        "## Targets",
        "",
        *(f"- PostgreSQL jobs/s ≥ SQLite's with {p} process{'es' if p > 1 else ''}: "
          f"{fmt(med_jobs[('postgresql', p)])} vs {fmt(med_jobs[('sqlite', p)])} "
          f"{ok(med_jobs[('postgresql', p)] >= med_jobs[('sqlite', p)])}" for p in processes),
        f"- PostgreSQL list p99 < 2 ms ({TARGET_SHAPE}): {med_list['postgresql'][TARGET_SHAPE][1]:.3f} ms "
        f"{ok(not list_missed)}",
        "",
    ]
    if profile:
        lines += ["## Why a target is missed: the profile", "", *profile]
    page = "\n".join(lines)
    os.makedirs(os.path.dirname(os.path.abspath(a.page)), exist_ok=True)
    with open(a.page, "w") as f:
        f.write(page)
    print(page)


if __name__ == "__main__":
    main()
