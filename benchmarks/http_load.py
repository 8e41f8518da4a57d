#!/usr/bin/env python3
"""HTTP figures of `exportengine serve`, on loopback, rerunnable.

  python3 benchmarks/http_load.py [--bin build/bin/exportengine] [--jobs 10000]
      [--connections 64] [--threads 1] [--duration 10] [--download-rows 10000000]
      [--runs 3] [--dir /tmp/ee-http-bench]

1. Seeds one account's contacts (`--download-rows` of them; 10 M make a
   ~1.07 GB CSV) into a SQLite file and starts the server on 127.0.0.1:0.
2. Queues `--jobs` tiny exports (one contact each) through the API and waits
   until all are available: the store then holds that many jobs.
3. `wrk` (Debian package) with `--connections` connections for `--duration`
   seconds, `--runs` times each: `GET /exports?limit=10` and
   `GET /exports/{id}` (which signs a URL on every call). Reports requests/s
   and the p50/p99 latency wrk measured; the median run is the figure.
4. Exports every contact (the big file), then downloads it through its signed
   URL with curl to /dev/null, `--runs` times: MB/s.

Everything binds 127.0.0.1 and the server is stopped at the end (SIGTERM).
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse


def run_wrk(url, key, connections, threads, duration):
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
         "-H", f"Authorization: Bearer {key}", url],
        check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": pct(50), "p99_ms": pct(99),
            "non_2xx": int(errors.group(1)) if errors else 0}


class Api:
    def __init__(self, base, key):
        self.url = urllib.parse.urlparse(base)
        self.conn = None
        self.key = key

    def call(self, method, path, body=None):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers={"Authorization": f"Bearer {self.key}"})
                r = self.conn.getresponse()
                data = r.read()
                return r.status, json.loads(data) if data else None
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # The server closes a keep-alive connection idle for 60 s
                # (while wrk ran): reconnect once.
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise


def wait_available(api, export_id, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, body = api.call("GET", f"/exports/{export_id}")
        if status == 200:
            return body
        if body and body["error"]["code"] not in ("EXPORT_NOT_READY",):
            raise RuntimeError(f"export {export_id}: {body}")
        time.sleep(0.05)
    raise RuntimeError(f"export {export_id} not ready after {timeout} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/bin/exportengine")
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (each takes a core from the server)")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--download-rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a new temp dir, removed)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")

    scratch = a.dir or tempfile.mkdtemp(prefix="ee-http-bench-")
    os.makedirs(scratch, exist_ok=True)
    db = os.path.join(scratch, "source.db")
    data = os.path.join(scratch, "data")
    shutil.rmtree(data, ignore_errors=True)
    server = None
    try:
        rows = max(a.download_rows, 10)
        if not os.path.exists(db):
            print(f"seeding {rows:,} contacts ...", file=sys.stderr)
            subprocess.run([a.bin, "seed", "--db", db, "--accounts", "1", "--contacts", str(rows),
                            "--lists", "4", "--campaigns", "1", "--reports", "10", "--force"],
                           check=True, stdout=subprocess.DEVNULL)
        key = "bench-key"
        server = subprocess.Popen(
            [a.bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--source", db,
             "--api-key", f"{key}:1", "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = server.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError("server did not start: " + server.stderr.read())
        base = line[len("listening on "):]
        api = Api(base, key)

        print(f"queueing {a.jobs:,} one-row exports ...", file=sys.stderr)
        t0 = time.time()
        last = None
        for i in range(a.jobs):
            status, body = api.call("POST", "/exports/contacts", json.dumps({"contactIds": [1 + i % 10]}))
            assert status == 202, body
            last = body["exportId"]
        created_s = time.time() - t0
        wait_available(api, last)
        processed_s = time.time() - t0
        status, listing = api.call("GET", "/exports?limit=1")
        assert listing["total"] >= a.jobs, listing

        results = {"machine": os.uname().release, "jobs_in_store": listing["total"],
                   "create_rps_one_connection": a.jobs / created_s,
                   "created_and_processed_s": processed_s}
        for name, path in (("list", "/exports?limit=10"), ("get", f"/exports/{last}")):
            runs = [run_wrk(base + path, key, a.connections, a.threads, a.duration) for _ in range(a.runs)]
            runs.sort(key=lambda r: r["rps"])
            results[name] = {"median": runs[len(runs) // 2], "runs": runs}
            print(f"{name}: {runs[len(runs) // 2]}", file=sys.stderr)

        print("exporting every contact for the download ...", file=sys.stderr)
        status, body = api.call("POST", "/exports/contacts", "{}")
        assert status == 202, body
        link = wait_available(api, body["exportId"], timeout=1800)
        speeds = []
        for _ in range(a.runs):
            link = api.call("GET", f"/exports/{body['exportId']}")[1]
            out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
                                  link["url"]], check=True, capture_output=True, text=True).stdout.split()
            size, secs = int(out[0]), float(out[1])
            assert size == link["fileSize"], (size, link["fileSize"])
            speeds.append(size / secs / 1e6)
        results["download"] = {"bytes": link["fileSize"], "MBps_median": statistics.median(speeds),
                               "MBps_runs": speeds}

        if a.json:
            print(json.dumps(results, indent=2))
        else:
            print(f"| route | connections | req/s | p50 | p99 |\n|---|---:|---:|---:|---:|")
            for name, label in (("list", "GET /exports?limit=10"), ("get", "GET /exports/{id}")):
                m = results[name]["median"]
                print(f"| `{label}` ({results['jobs_in_store']:,} jobs) | {a.connections} | {m['rps']:,.0f} "
                      f"| {m['p50_ms']:.2f} ms | {m['p99_ms']:.2f} ms |")
            d = results["download"]
            print(f"\ndownload of a {d['bytes'] / 1e9:.2f} GB file over loopback (curl to /dev/null): "
                  f"median {d['MBps_median']:,.0f} MB/s (runs: {', '.join(f'{s:,.0f}' for s in d['MBps_runs'])})")
            print(f"queueing {a.jobs:,} exports on one keep-alive connection: "
                  f"{results['create_rps_one_connection']:,.0f} req/s; all processed after "
                  f"{results['created_and_processed_s']:.1f} s")
    finally:
        if server:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        if not a.dir:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
