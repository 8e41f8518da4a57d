#!/usr/bin/env python3
"""Loopback load test of `exportengine serve` (RELIABILITY.md, "Load"): bounded in
time, stops by itself.

  python3 benchmarks/load_test.py [--bin build/bin/exportengine] [--duration 180]
      [--clients 64] [--accounts 8] [--retention 20s] [--sweep-interval 5s]
      [--create-interval 4] [--drain 120] [--seed 1] [--dir DIR] [--json]

1. Seeds a source (`--accounts` accounts x 10,000 contacts, 2 lists and 2
   campaigns each, 20,000 delivery reports each) and starts the server on
   127.0.0.1:0 with a short `--retention` (and `--sweep-interval` when the
   binary has it), so the sweep expires exports while the clients run.
2. `--clients` threads (raw http.client, one keep-alive connection each;
   client i uses account i mod --accounts) for `--duration` seconds. Each:
   - creates an export every ~`--create-interval` s (jittered): contacts of the
     whole account, of 1-2 lists or of 20-200 contact ids; delivery reports of
     a campaign or of a 1-14 day window; ~30 % gzip, some `;`/tab, some BOM;
   - polls `GET /exports?limit=100` every second, and for each of its own
     exports that the list shows available (or that has left page 0) asks
     `GET /exports/{id}` for a signed URL and downloads it through the URL,
     checking Content-Length against the body and the URL's fileSize, and
     the CSV header line (gunzipping the first bytes when compressed);
   - revisits most downloaded exports 10-40 s later: still available -> the
     URL is fetched and downloaded again; expired (the sweep took it) ->
     `POST /exports/{id}` regenerates it, and it is downloaded again when
     ready. A link whose file was swept between signing and downloading is a
     403 and counts as such (not an error).
3. When the time is up the clients stop; the test waits (at most `--drain`
   s) for queued/processing exports to finish, then lists every account
   page by page: every exportId a client created must be listed (lost jobs)
   and none may still be queued/processing (stuck jobs).

Reports: requests in all and per route (count, p50/p99/max latency as the
clients saw it and inside the server (its access log), 2xx /
4xx / 5xx), exports created / completed / downloaded / regenerated, bytes
downloaded, the server's peak RSS (VmHWM from /proc/PID/status) and RSS
samples, its CPU time, and the load generator's own CPU (the clients share
the machine with the server). Markdown by default, `--json` for JSON.

Exit status 1 on any 5xx, lost or stuck job, failed export, failed download
check, transport error or unexpected status; 0 otherwise.
"""
import argparse
import collections
import datetime
import http.client
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib

CONTACT_COLUMNS = ["id", "phoneNumber", "email", "firstName", "lastName", "createdAt", "updatedAt"]
REPORT_COLUMNS = ["id", "messageId", "campaignId", "recipient", "sender", "status", "errorCode", "parts",
                  "submittedAt", "statusAt"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# Measurements shared by the clients
# --------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency = collections.defaultdict(list)        # route -> [seconds]
        self.statuses = collections.defaultdict(collections.Counter)   # route -> status -> n
        self.counters = collections.Counter()
        self.problems = []                                   # first few, for the report

    def record(self, route, status, seconds):
        with self.lock:
            self.latency[route].append(seconds)
            self.statuses[route][status] += 1

    def count(self, name, n=1):
        with self.lock:
            self.counters[name] += n

    def problem(self, name, detail):
        with self.lock:
            self.counters[name] += 1
            if len(self.problems) < 30:
                self.problems.append(f"{name}: {detail}")


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


# --------------------------------------------------------------------------
# One client
# --------------------------------------------------------------------------

class Export:
    __slots__ = ("id", "kind", "header", "gzip", "state", "generation", "downloads", "revisits", "revisit_at",
                 "checked_at")

    def __init__(self, export_id, kind, header, gz):
        self.id = export_id
        self.kind = kind
        self.header = header          # the CSV's first line, bytes, with CRLF (and BOM)
        self.gzip = gz
        self.state = "pending"        # pending (waiting to download) | done | revisit
        self.generation = 0
        self.downloads = 0
        self.revisits = 0
        self.revisit_at = None
        self.checked_at = 0.0


class Client(threading.Thread):
    def __init__(self, index, port, key, account, source, stats, t_end, a):
        super().__init__(daemon=True)
        self.index = index
        self.port = port
        self.key = key
        self.account = account
        self.source = source          # lists, campaigns, contact id range of the account
        self.stats = stats
        self.t_end = t_end
        self.a = a
        self.rng = random.Random(a.seed * 1000 + index)
        self.conn = None
        self.exports = {}             # id -> Export
        self.created = []             # every id created, in order

    # -- HTTP ---------------------------------------------------------------
    def call(self, method, target, route, body=None, auth=True):
        headers = {}
        if auth:
            headers["Authorization"] = "Bearer " + self.key
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            t0 = time.monotonic()
            try:
                self.conn.request(method, target, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.conn.close()
                self.conn = None
                # A kept-alive connection closed by the server between two
                # requests is retried once (only GETs: a POST may have landed).
                if attempt == 1 and method == "GET":
                    self.stats.count("reconnects")
                    continue
                self.stats.problem("transport_errors", f"{method} {route}: {e!r}")
                return None, None, None
            except (OSError, http.client.HTTPException) as e:
                self.conn.close()
                self.conn = None
                self.stats.problem("transport_errors", f"{method} {route}: {e!r}")
                return None, None, None
            secs = time.monotonic() - t0
            self.stats.record(route, r.status, secs)
            if r.status >= 500:
                self.stats.problem("status_5xx", f"{method} {route} -> {r.status} {data[:200]!r}")
            return r.status, r.headers, data
        return None, None, None

    def error_code(self, data):
        try:
            return json.loads(data)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None

    # -- what a client asks for -----------------------------------------------
    def new_request(self):
        rng, src = self.rng, self.source
        r = rng.random()
        body = {}
        if r < 0.6:
            kind, columns = "contacts", CONTACT_COLUMNS
            r2 = rng.random()
            if r2 < 0.33:
                pass                                         # the whole account
            elif r2 < 0.75:
                body["listIds"] = rng.sample(src["lists"], k=min(len(src["lists"]), rng.choice((1, 2))))
            else:
                lo, hi = src["contacts"]
                body["contactIds"] = rng.sample(range(lo, hi + 1), k=min(hi - lo + 1, rng.randint(20, 200)))
        else:
            kind, columns = "delivery-reports", REPORT_COLUMNS
            if rng.random() < 0.5:
                body["campaignId"] = rng.choice(src["campaigns"])
            else:
                # The seeded reports are submitted in 2026-01 .. 2026-06.
                start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
                    days=rng.randint(0, 170), hours=rng.randint(0, 23))
                end = start + datetime.timedelta(days=rng.randint(1, 14))
                body["startDateTime"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
                body["endDateTime"] = end.strftime("%Y-%m-%dT%H:%M:%S") + rng.choice(("Z", "+00:00"))
        gz = rng.random() < 0.3
        if gz:
            body["compression"] = "gzip"
        delimiter = ","
        if rng.random() < 0.1:
            delimiter = rng.choice((";", "\t"))
            body["delimiter"] = delimiter
        bom = rng.random() < 0.1
        if bom:
            body["bom"] = True
        header = (b"\xef\xbb\xbf" if bom else b"") + delimiter.join(columns).encode() + b"\r\n"
        return kind, body, header, gz

    def create(self):
        kind, body, header, gz = self.new_request()
        status, _, data = self.call("POST", "/exports/" + kind, "POST /exports/" + kind, json.dumps(body))
        if status is None:
            return
        if status != 202:
            self.stats.problem("unexpected_status", f"create {kind} {body} -> {status} {data[:200]!r}")
            return
        eid = json.loads(data)["exportId"]
        self.exports[eid] = Export(eid, kind, header, gz)
        self.created.append(eid)
        self.stats.count("exports_created")

    def regenerate(self, e):
        status, _, data = self.call("POST", "/exports/" + e.id, "POST /exports/{id}")
        if status == 202:
            e.state = "pending"
            e.generation += 1
            self.stats.count("exports_regenerated")
        elif status is not None:
            self.stats.problem("unexpected_status", f"regenerate {e.id} -> {status} {data[:200]!r}")

    def fetch(self, e, replay=False):
        """GET /exports/{id}; downloads when it answers a URL. Returns the
        error code (EXPORT_NOT_READY, ...) or None."""
        e.checked_at = time.monotonic()
        status, _, data = self.call("GET", "/exports/" + e.id, "GET /exports/{id}")
        if status is None:
            return "transport"
        if status == 200:
            self.download(e, json.loads(data), replay)
            return None
        code = self.error_code(data)
        if status == 400 and code == "EXPORT_NOT_READY":
            return code
        if status == 400 and code == "EXPORT_EXPIRED":
            self.stats.count("found_expired")
            self.regenerate(e)
            return code
        if status == 400 and code == "EXPORT_FAILED":
            self.stats.problem("exports_failed", f"{e.id}: {data[:200]!r}")
            e.state = "done"
            return code
        if status == 404:
            self.stats.problem("lost_jobs_404", f"{e.id}: GET /exports/{{id}} -> 404")
            e.state = "done"
            return code
        self.stats.problem("unexpected_status", f"GET /exports/{e.id} -> {status} {data[:200]!r}")
        return code

    def download(self, e, link, replay):
        u = urllib.parse.urlsplit(link["url"])
        status, headers, data = self.call("GET", u.path + "?" + u.query, "GET /downloads/{id}", auth=False)
        if status is None:
            return
        if status == 403:
            # Swept between signing and downloading: the sweep is doing its
            # job. The next look finds it expired and regenerates it.
            self.stats.count("download_403_swept")
            e.state = "pending"
            return
        if status != 200:
            self.stats.problem("unexpected_status", f"download {e.id} -> {status} {data[:200]!r}")
            return
        length = headers.get("Content-Length")
        if length is None or int(length) != len(data) or len(data) != link["fileSize"]:
            self.stats.problem("download_check_failed",
                               f"{e.id}: Content-Length {length}, body {len(data)}, fileSize {link['fileSize']}")
            return
        head = data[:4096]
        if e.gzip:
            try:
                head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[:65536], 4096)
            except zlib.error as x:
                self.stats.problem("download_check_failed", f"{e.id}: not gzip ({x})")
                return
        if not head.startswith(e.header):
            self.stats.problem("download_check_failed", f"{e.id}: header {head[:120]!r}, want {e.header!r}")
            return
        self.stats.count("bytes_downloaded", len(data))
        self.stats.count("downloads")
        # A replay is a revisit's second download of the same file; else
        # this is the first download of this generation of the export.
        self.stats.count("downloads_replayed" if replay else "exports_completed_and_downloaded")
        e.downloads += 1
        e.state = "done"
        if e.revisits < 2 and self.rng.random() < 0.7:
            e.state = "revisit"
            e.revisit_at = time.monotonic() + self.rng.uniform(10, 40)

    def poll(self):
        status, _, data = self.call("GET", "/exports?limit=100", "GET /exports")
        if status != 200:
            if status is not None:
                self.stats.problem("unexpected_status", f"GET /exports -> {status} {data[:200]!r}")
            return
        listed = {v["exportId"]: v for v in json.loads(data)["exports"]}
        now = time.monotonic()
        for e in list(self.exports.values()):
            if e.state != "pending":
                continue
            v = listed.get(e.id)
            if v is None:
                # Older than page 0: ask for it directly, every 2 s at most.
                if now - e.checked_at >= 2.0:
                    self.fetch(e)
            elif v["status"] == "available":
                self.fetch(e)
            elif v["status"] == "expired":
                self.stats.count("found_expired")
                self.regenerate(e)
            elif v["status"] == "failed":
                self.stats.problem("exports_failed", f"{e.id}: {v.get('error')}")
                e.state = "done"

    def revisit(self, e):
        e.revisits += 1
        e.state = "done"
        code = self.fetch(e, replay=True)
        if code == "EXPORT_NOT_READY":
            e.state = "pending"

    def run(self):
        rng = self.rng
        now = time.monotonic()
        next_poll = now + rng.uniform(0, 1.0)
        next_create = now + rng.uniform(0, self.a.create_interval)
        try:
            while True:
                now = time.monotonic()
                if now >= self.t_end:
                    break
                if now >= next_create:
                    self.create()
                    next_create = now + self.a.create_interval * rng.uniform(0.5, 1.5)
                if now >= next_poll:
                    self.poll()
                    next_poll = max(next_poll + 1.0, time.monotonic() + 0.2)
                for e in list(self.exports.values()):
                    if e.state == "revisit" and time.monotonic() >= e.revisit_at and time.monotonic() < self.t_end:
                        self.revisit(e)
                wake = min(next_poll, next_create, self.t_end)
                time.sleep(max(0.0, min(0.25, wake - time.monotonic())))
        except Exception as x:   # noqa: BLE001 - a crashed client is a finding
            self.stats.problem("client_crashed", f"client {self.index}: {x!r}")
        finally:
            if self.conn is not None:
                self.conn.close()


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------

def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0]) * (1024 if k != "Threads" else 1)
    return out


def proc_cpu(pid):
    """(user, system) CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def server_route(method, path):
    """The load test's route name for an access-log line."""
    parts = path.split("/")
    if path == "/exports" or path in ("/exports/contacts", "/exports/delivery-reports"):
        return f"{method} {path}"
    if len(parts) == 3 and parts[1] == "exports":
        return f"{method} /exports/{{id}}"
    if len(parts) == 3 and parts[1] == "downloads":
        return f"{method} /downloads/{{id}}"
    return f"{method} {path}"


def machine_busy_s():
    """CPU seconds the whole machine spent busy (all CPUs, /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / CLK_TCK


def list_all(port, key):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    views, page = [], 0
    try:
        while True:
            conn.request("GET", f"/exports?page={page}&limit=100", headers={"Authorization": "Bearer " + key})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError(f"GET /exports page {page}: {r.status} {data[:200]!r}")
            o = json.loads(data)
            views += o["exports"]
            if not o["exports"] or len(views) >= o["total"]:
                return views
            page += 1
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/bin/exportengine")
    ap.add_argument("--duration", type=float, default=180.0, help="seconds the clients run (default 180)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--accounts", type=int, default=8)
    ap.add_argument("--retention", default="20s", help="the server's --retention (default 20s)")
    ap.add_argument("--sweep-interval", default="5s",
                    help="the server's --sweep-interval, if the binary has the flag (default 5s)")
    ap.add_argument("--workers", type=int, default=None, help="the server's --workers (default: its own)")
    ap.add_argument("--create-interval", type=float, default=4.0,
                    help="mean seconds between one client's exports (default 4)")
    ap.add_argument("--drain", type=float, default=120.0,
                    help="seconds to wait for queued/processing exports after the run (default 120)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir, removed)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    scratch = a.dir or tempfile.mkdtemp(prefix="ee-load-")
    os.makedirs(scratch, exist_ok=True)
    db = os.path.join(scratch, "source.db")
    data_dir = os.path.join(scratch, "data")
    shutil.rmtree(data_dir, ignore_errors=True)
    server = None
    log = None
    try:
        subprocess.run([a.bin, "seed", "--db", db, "--accounts", str(a.accounts),
                        "--contacts", str(10_000 * a.accounts), "--lists", str(2 * a.accounts),
                        "--campaigns", str(2 * a.accounts), "--reports", str(20_000 * a.accounts),
                        "--seed", str(a.seed), "--force"], check=True, stdout=subprocess.DEVNULL)
        src = sqlite3.connect(db)
        sources = {}
        for acc in range(1, a.accounts + 1):
            lists = [r[0] for r in src.execute("SELECT id FROM contact_lists WHERE account_id = ?", (acc,))]
            camps = [r[0] for r in src.execute("SELECT id FROM campaigns WHERE account_id = ?", (acc,))]
            lo, hi = src.execute("SELECT min(id), max(id) FROM contacts WHERE account_id = ?", (acc,)).fetchone()
            sources[acc] = {"lists": lists, "campaigns": camps, "contacts": (lo, hi)}
        src.close()

        u = subprocess.run([a.bin], capture_output=True, text=True)
        usage = u.stdout + u.stderr
        # The access log stays on: its per-request `ms` (header read to
        # response written) is the server's side of each latency, apart from
        # the clients' own scheduling on a shared machine.
        args = [a.bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--source", db,
                "--retention", a.retention]
        if "--sweep-interval" in usage and a.sweep_interval:
            args += ["--sweep-interval", a.sweep_interval]
        if a.workers is not None:
            args += ["--workers", str(a.workers)]
        keys = {acc: f"load-key-{acc}" for acc in range(1, a.accounts + 1)}
        for acc, k in keys.items():
            args += ["--api-key", f"{k}:{acc}"]
        log_path = os.path.join(scratch, "server-stderr.log")
        log = open(log_path, "wb")
        server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True)
        line = server.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError("the server did not start; see " + log_path)
        port = int(line.rsplit(":", 1)[1])
        pid = server.pid

        stats = Stats()
        cpu0 = proc_cpu(pid)
        self0 = os.times()
        busy0 = machine_busy_s()
        rss_samples = []
        stop_sampling = threading.Event()

        def sample():
            while not stop_sampling.wait(1.0):
                try:
                    rss_samples.append(proc_status(pid)["VmRSS"])
                except OSError:
                    return
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        print(f"{a.clients} clients for {a.duration:.0f} s against {' '.join(args[1:4])} "
              f"(retention {a.retention}) ...", file=sys.stderr)
        t_start = time.monotonic()
        t_end = t_start + a.duration
        clients = [Client(i, port, keys[1 + i % a.accounts], 1 + i % a.accounts, sources[1 + i % a.accounts],
                          stats, t_end, a) for i in range(a.clients)]
        for c in clients:
            c.start()
        while any(c.is_alive() for c in clients):
            time.sleep(1.0)
            left = t_end - time.monotonic()
            if left > 0 and int(left) % 30 == 0:
                with stats.lock:
                    n = sum(len(v) for v in stats.latency.values())
                print(f"  {a.duration - left:5.0f} s: {n:,} requests, {stats.counters['exports_created']:,} "
                      f"exports created, 5xx {stats.counters['status_5xx']}", file=sys.stderr)
            if time.monotonic() > t_end + 120:
                stats.problem("client_crashed", "clients still running 120 s after the end")
                break
        t_run = time.monotonic() - t_start
        cpu_run = proc_cpu(pid)
        self_run = os.times()
        busy_run = machine_busy_s() - busy0

        if server.poll() is not None:
            for p in stats.problems:
                print("  " + p, file=sys.stderr)
            print(f"FAILED: the server exited ({server.returncode}) during the run; see {log_path}",
                  file=sys.stderr)
            a.dir = a.dir or scratch      # keep the log
            return 1

        # -- drain, then every created export must be listed ----------------
        created = {}
        for c in clients:
            for eid in c.created:
                created[eid] = c.account
        drain_start = time.monotonic()
        while True:
            pending = 0
            for acc, k in keys.items():
                pending += sum(1 for v in list_all(port, k) if v["status"] in ("queued", "processing"))
            if pending == 0 or time.monotonic() - drain_start > a.drain:
                break
            time.sleep(1.0)
        drain_s = time.monotonic() - drain_start
        listed = {}
        for acc, k in keys.items():
            for v in list_all(port, k):
                listed[v["exportId"]] = (acc, v["status"])
        lost = [eid for eid, acc in created.items() if eid not in listed or listed[eid][0] != acc]
        stuck = [eid for eid, (acc, st) in listed.items() if st in ("queued", "processing")]
        end_states = collections.Counter(st for _, st in listed.values())
        stop_sampling.set()
        status = proc_status(pid)
        cpu_end = proc_cpu(pid)

        # -- the report --------------------------------------------------------
        routes = {}
        total_requests = 0
        for route in sorted(stats.latency):
            lat = sorted(stats.latency[route])
            st = stats.statuses[route]
            total_requests += len(lat)
            routes[route] = {
                "requests": len(lat),
                "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
                "max_ms": lat[-1] * 1000 if lat else 0.0,
                "2xx": sum(n for s, n in st.items() if 200 <= s < 300),
                "4xx": sum(n for s, n in st.items() if 400 <= s < 500),
                "5xx": sum(n for s, n in st.items() if s >= 500),
                "statuses": {str(s): n for s, n in sorted(st.items())},
            }
        errors_logged = 0
        server_ms = collections.defaultdict(list)
        with open(log_path, "rb") as f:
            for raw in f:
                if b'"level":"error"' in raw or b'"kind":"error"' in raw:
                    errors_logged += 1
                if b'"kind":"access"' in raw:
                    o = json.loads(raw)
                    server_ms[server_route(o["method"], o["path"])].append(o["ms"])
        for route, r in routes.items():
            ms = sorted(server_ms.get(route, []))
            r["server_requests"] = len(ms)
            r["server_p50_ms"] = percentile(ms, 50)
            r["server_p99_ms"] = percentile(ms, 99)
            r["server_max_ms"] = ms[-1] if ms else 0.0
        k = stats.counters
        results = {
            "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release},
            "config": {"clients": a.clients, "accounts": a.accounts, "duration_s": a.duration,
                       "retention": a.retention, "sweep_interval": a.sweep_interval if "--sweep-interval" in args
                       else None, "create_interval_s": a.create_interval, "seed": a.seed},
            "run_s": t_run, "drain_s": drain_s,
            "requests": total_requests, "requests_per_s": total_requests / t_run if t_run else 0.0,
            "routes": routes,
            "status_5xx": k["status_5xx"],
            "transport_errors": k["transport_errors"], "reconnects": k["reconnects"],
            "unexpected_status": k["unexpected_status"],
            "exports_created": k["exports_created"], "exports_regenerated": k["exports_regenerated"],
            "exports_completed_and_downloaded": k["exports_completed_and_downloaded"],
            "downloads": k["downloads"], "downloads_replayed": k["downloads_replayed"],
            "download_403_swept": k["download_403_swept"], "found_expired": k["found_expired"],
            "download_check_failed": k["download_check_failed"], "exports_failed": k["exports_failed"],
            "bytes_downloaded": k["bytes_downloaded"],
            "jobs_listed_at_end": len(listed), "end_states": dict(end_states),
            "lost_jobs": len(lost) + k["lost_jobs_404"], "stuck_jobs": len(stuck),
            "client_crashed": k["client_crashed"],
            "server": {
                "peak_rss_mib": status["VmHWM"] / 2**20, "rss_end_mib": status["VmRSS"] / 2**20,
                "rss_max_sampled_mib": max(rss_samples, default=0) / 2**20,
                "rss_median_sampled_mib": (sorted(rss_samples)[len(rss_samples) // 2] / 2**20) if rss_samples
                else 0.0,
                "threads": status["Threads"],
                "cpu_s_during_run": sum(cpu_run) - sum(cpu0),
                "cpu_user_s": cpu_run[0] - cpu0[0], "cpu_system_s": cpu_run[1] - cpu0[1],
                "cpu_cores_avg_during_run": (sum(cpu_run) - sum(cpu0)) / t_run if t_run else 0.0,
                "cpu_s_total": sum(cpu_end) - sum(cpu0),
                "error_lines_logged": errors_logged,
            },
            "load_generator_cpu_s": (self_run.user + self_run.system) - (self0.user + self0.system),
            # What else ran: the machine's busy CPU time minus server and clients.
            "other_processes_cpu_s": busy_run - (sum(cpu_run) - sum(cpu0))
            - ((self_run.user + self_run.system) - (self0.user + self0.system)),
            "machine_cpu_capacity_s": t_run * (os.cpu_count() or 1),
            "problems": stats.problems,
        }
        ok = (results["status_5xx"] == 0 and results["lost_jobs"] == 0 and results["stuck_jobs"] == 0
              and results["transport_errors"] == 0 and results["unexpected_status"] == 0
              and results["download_check_failed"] == 0 and results["exports_failed"] == 0
              and results["client_crashed"] == 0)
        results["ok"] = ok

        if a.json:
            print(json.dumps(results, indent=2))
        else:
            s = results["server"]
            print(f"\n{a.clients} clients, {a.accounts} accounts, {t_run:.0f} s, retention {a.retention}"
                  f"{', sweep every ' + a.sweep_interval if results['config']['sweep_interval'] else ''}; "
                  f"{os.cpu_count()} CPUs shared by server and clients\n")
            print("Latency as the clients saw it (p50 / p99 / max), and inside the server (its access "
                  "log: header read to response written):\n")
            print("| route | requests | p50 | p99 | max | server p50 | server p99 | server max "
                  "| 2xx | 4xx | 5xx |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for route, r in routes.items():
                print(f"| `{route}` | {r['requests']:,} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms "
                      f"| {r['max_ms']:.0f} ms | {r['server_p50_ms']:.2f} ms | {r['server_p99_ms']:.1f} ms "
                      f"| {r['server_max_ms']:.0f} ms | {r['2xx']:,} | {r['4xx']:,} | {r['5xx']:,} |")
            print(f"| **all** | **{total_requests:,}** ({results['requests_per_s']:,.0f}/s) | | | | | | | | | "
                  f"**{results['status_5xx']}** |")
            print()
            print("| | |\n|---|---:|")
            for label, value in (
                    ("exports created", f"{results['exports_created']:,}"),
                    ("completed and downloaded (first time)", f"{results['exports_completed_and_downloaded']:,}"),
                    ("downloads in all (replays)", f"{results['downloads']:,} ({results['downloads_replayed']:,})"),
                    ("found expired by the sweep / regenerated", f"{results['found_expired']:,} / "
                                                                 f"{results['exports_regenerated']:,}"),
                    ("links swept before their download (403)", f"{results['download_403_swept']:,}"),
                    ("bytes downloaded", f"{results['bytes_downloaded'] / 1e6:,.1f} MB"),
                    ("jobs listed at the end", f"{results['jobs_listed_at_end']:,} {dict(end_states)}"),
                    ("lost jobs / stuck jobs", f"{results['lost_jobs']} / {results['stuck_jobs']}"),
                    ("failed exports / failed download checks",
                     f"{results['exports_failed']} / {results['download_check_failed']}"),
                    ("transport errors / unexpected statuses",
                     f"{results['transport_errors']} / {results['unexpected_status']}"),
                    ("server peak RSS (VmHWM)", f"{s['peak_rss_mib']:.1f} MiB"),
                    ("server RSS sampled each second: median / max / at the end",
                     f"{s['rss_median_sampled_mib']:.1f} / {s['rss_max_sampled_mib']:.1f} / "
                     f"{s['rss_end_mib']:.1f} MiB"),
                    ("server CPU during the run (user + system)",
                     f"{s['cpu_s_during_run']:.1f} s = {s['cpu_cores_avg_during_run']:.2f} cores"),
                    ("load generator CPU during the run", f"{results['load_generator_cpu_s']:.1f} s"),
                    ("other processes' CPU during the run (contention)",
                     f"{results['other_processes_cpu_s']:.1f} s of {results['machine_cpu_capacity_s']:.0f} s"),
                    ("drain after the run", f"{drain_s:.1f} s"),
                    ("error lines in the server log", f"{s['error_lines_logged']}")):
                print(f"| {label} | {value} |")
            print(f"\n{'OK' if ok else 'FAILED'}")
            for p in stats.problems:
                print("  " + p)
        return 0 if ok else 1
    finally:
        if server:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if log:
            log.close()
        if not a.dir:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
