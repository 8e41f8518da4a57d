#!/usr/bin/env python3
"""HTTP figures of `exportengine serve`, on loopback, rerunnable.

  python3 benchmarks/http_load.py [--bin build/bin/exportengine] [--jobs 10000]
      [--connections 64] [--threads 1] [--duration 10] [--download-rows 10000000]
      [--runs 3] [--dir /tmp/ee-http-bench] [--json]
      [--page benchmarks/results/DATE-http.md [--compare-to OLDER-PAGE]]
      [--before OTHER-BUILD/bin/exportengine]

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

With --page it writes the results page (machine, commit, command, every
run) that benchmarks/README.md quotes; with --compare-to, also each median
against an earlier page's, in percent. With --before OTHER-BIN it measures
two builds instead, their wrk runs interleaved in one session (steps 2-3
only), and the page gives both and the change of the medians.

Everything binds 127.0.0.1 and the server is stopped at the end (SIGTERM).
"""
import argparse
import datetime
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

import benchlib


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


ROUTES = (("list", "GET /exports?limit=10"), ("get", "GET /exports/{id}"))


def commit():
    """This tree's commit; a page written from uncommitted changes says so."""
    rev = benchlib.git_revision(os.path.dirname(os.path.abspath(__file__)))
    if rev is None:
        return "unknown (not in a git tree)"
    return rev.replace("(with uncommitted changes)", "(with uncommitted changes: these figures do not belong to a commit)")


def earlier_medians(page):
    """Each route's median run and the download median of an earlier page."""
    with open(page, encoding="utf-8") as f:
        text = f.read()
    out = {}
    for name, label in ROUTES:
        m = re.search(r"\| `" + re.escape(label) + r"` \|(.*)\|\s*$", text, re.M)
        if m:
            runs = sorted(float(cell.split("/")[0].replace(",", "")) for cell in m.group(1).split("|"))
            out[name] = runs[len(runs) // 2]
    m = re.search(r"median ([\d,]+) MB/s|\(median ([\d,]+)\)", text)
    if m:
        out["download"] = float((m.group(1) or m.group(2)).replace(",", ""))
    return out


def write_page(path, a, results, argv):
    today = datetime.date.today().isoformat()
    L = [f"# HTTP server figures, {today}\n",
         f"Machine: {benchlib.machine()}. Build: the release preset (`{a.bin}`). Commit: {commit()}.\n",
         "Command:\n", "    " + " ".join(["python3", "benchmarks/http_load.py"] + argv) + "\n",
         f"{results['jobs_in_store']:,} one-row exports queued through the API and processed before "
         f"the wrk runs; one account's {a.download_rows:,} seeded contacts for the download.\n",
         f"wrk -t{a.threads} -c{a.connections} -d{a.duration}s --latency, {a.runs} runs per route "
         "(req/s / p50 ms / p99 ms / non-2xx); the median run by req/s is the figure:\n",
         "| route | " + " | ".join(f"run {i + 1}" for i in range(a.runs)) + " | median req/s |",
         "|---|" + "---|" * a.runs + "---:|"]
    for name, label in ROUTES:
        runs = results[name]["runs_in_order"]
        cells = [f"{r['rps']:,.0f} / {r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['non_2xx']}" for r in runs]
        L.append(f"| `{label}` | " + " | ".join(cells) + f" | **{results[name]['median']['rps']:,.0f}** |")
    d = results["download"]
    L += ["", f"Download of the {d['bytes']:,}-byte export (every contact) through its signed URL, "
          f"`curl -o /dev/null`: " + " / ".join(f"{s:,.0f}" for s in d["MBps_runs"])
          + f" MB/s (median {d['MBps_median']:,.0f} MB/s).\n",
          f"Queueing {a.jobs:,} exports on one keep-alive connection: "
          f"{results['create_rps_one_connection']:,.0f} req/s; all available "
          f"{results['created_and_processed_s']:.1f} s after the first create.\n"]
    if a.compare_to:
        before = earlier_medians(a.compare_to)
        now = {"list": results["list"]["median"]["rps"], "get": results["get"]["median"]["rps"],
               "download": d["MBps_median"]}
        L += [f"Against `{os.path.relpath(a.compare_to, os.path.dirname(os.path.abspath(path)))}` "
              "(medians; a change within about ±5% is run-to-run noise on this VM):\n",
              "| figure | then | now | change |", "|---|---:|---:|---:|"]
        for key, label in (("list", "`GET /exports?limit=10` req/s"), ("get", "`GET /exports/{id}` req/s"),
                           ("download", "download MB/s")):
            if key in before:
                L.append(f"| {label} | {before[key]:,.0f} | {now[key]:,.0f} | "
                         f"{(now[key] / before[key] - 1) * 100:+.1f}% |")
        L.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(L))


def start_server(binary, db, data, key):
    shutil.rmtree(data, ignore_errors=True)
    server = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--source", db,
         "--api-key", f"{key}:1", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = server.stdout.readline().strip()
    if not line.startswith("listening on "):
        server.kill()
        raise RuntimeError("server did not start: " + server.stderr.read())
    return server, line[len("listening on "):]


def stop_server(server):
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()


def queue_jobs(api, jobs):
    """Queues `jobs` one-row exports and waits for them; returns the last id,
    creates/s on one connection and the seconds until all were available."""
    t0 = time.time()
    last = None
    for i in range(jobs):
        status, body = api.call("POST", "/exports/contacts", json.dumps({"contactIds": [1 + i % 10]}))
        assert status == 202, body
        last = body["exportId"]
    created_s = time.time() - t0
    wait_available(api, last)
    processed_s = time.time() - t0
    status, listing = api.call("GET", "/exports?limit=1")
    assert listing["total"] >= jobs, listing
    return last, listing["total"], jobs / created_s, processed_s


def download_speeds(api, runs):
    status, body = api.call("POST", "/exports/contacts", "{}")
    assert status == 202, body
    link = wait_available(api, body["exportId"], timeout=1800)
    speeds = []
    for _ in range(runs):
        link = api.call("GET", f"/exports/{body['exportId']}")[1]
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
                              link["url"]], check=True, capture_output=True, text=True).stdout.split()
        size, secs = int(out[0]), float(out[1])
        assert size == link["fileSize"], (size, link["fileSize"])
        speeds.append(size / secs / 1e6)
    return {"bytes": link["fileSize"], "MBps_median": statistics.median(speeds), "MBps_runs": speeds}


def write_ab_page(path, a, before, after, argv):
    """--before: both builds' wrk runs, interleaved, and the medians' change."""
    today = datetime.date.today().isoformat()
    L = [f"# HTTP server, two builds interleaved, {today}\n",
         f"Machine: {benchlib.machine()}. Commit of this tree: {commit()}.\n",
         "Command:\n", "    " + " ".join(["python3", "benchmarks/http_load.py"] + argv) + "\n",
         "| build | binary | revision |", "|---|---|---|",
         f"| before | `{a.before}` | {benchlib.git_revision(a.before) or 'not in a git tree'} |",
         f"| after | `{a.bin}` | {benchlib.git_revision(a.bin) or 'not in a git tree'} |", "",
         f"Each build serves the same seeded source ({a.download_rows:,} contacts of one account) from its own "
         f"data directory, with {a.jobs:,} one-row exports queued and processed; both servers run at once and "
         f"stay idle while the other is measured. wrk -t{a.threads} -c{a.connections} -d{a.duration}s "
         f"--latency; the builds alternate run by run, the first build of each round alternating too. "
         "Cells: req/s / p50 ms / p99 ms / non-2xx.\n"]
    for name, label in ROUTES:
        L += [f"`{label}`:\n", "| build | " + " | ".join(f"run {i + 1}" for i in range(a.runs))
              + " | median req/s | median p99 ms |", "|---|" + "---|" * a.runs + "---:|---:|"]
        for build, res in (("before", before), ("after", after)):
            runs = res[name]
            cells = [f"{r['rps']:,.0f} / {r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['non_2xx']}" for r in runs]
            L.append(f"| {build} | " + " | ".join(cells)
                     + f" | **{statistics.median(r['rps'] for r in runs):,.0f}** "
                     f"| {statistics.median(r['p99_ms'] for r in runs):.2f} |")
        b = statistics.median(r["rps"] for r in before[name])
        c = statistics.median(r["rps"] for r in after[name])
        ratios = [x["rps"] / y["rps"] for x, y in zip(after[name], before[name])]
        L += ["", "Each round's after / before (the two runs next to each other in time): "
              + ", ".join(f"{(q - 1) * 100:+.1f}%" for q in ratios) + ".\n",
              f"Change: **{(statistics.median(ratios) - 1) * 100:+.1f}%** as the median of the rounds' "
              f"ratios (the figure this page stands for: the machine's speed drifts between rounds, "
              f"and a round compares runs seconds apart); {(c / b - 1) * 100:+.1f}% between the two "
              f"builds' medians.\n"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/bin/exportengine")
    ap.add_argument("--before", help="another build's exportengine: measure both, interleaved "
                                     "(no download figures), and write a before/after page with --page")
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (each takes a core from the server)")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--download-rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a new temp dir, removed)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--page", help="write the results page here (markdown)")
    ap.add_argument("--compare-to", help="an earlier results page to compare the medians with")
    argv = sys.argv[1:]
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")

    scratch = a.dir or tempfile.mkdtemp(prefix="ee-http-bench-")
    os.makedirs(scratch, exist_ok=True)
    db = os.path.join(scratch, "source.db")
    servers = []
    key = "bench-key"
    try:
        rows = max(a.download_rows, 10)
        if not os.path.exists(db):
            print(f"seeding {rows:,} contacts ...", file=sys.stderr)
            subprocess.run([a.bin, "seed", "--db", db, "--accounts", "1", "--contacts", str(rows),
                            "--lists", "4", "--campaigns", "1", "--reports", "10", "--force"],
                           check=True, stdout=subprocess.DEVNULL)

        if a.before:
            builds = {}
            for name, binary in (("before", a.before), ("after", a.bin)):
                server, base = start_server(binary, db, os.path.join(scratch, f"data-{name}"), key)
                servers.append(server)
                api = Api(base, key)
                print(f"{name}: queueing {a.jobs:,} one-row exports ...", file=sys.stderr)
                last, _, _, _ = queue_jobs(api, a.jobs)
                builds[name] = (base, last)
            results = {"before": {"list": [], "get": []}, "after": {"list": [], "get": []}}
            for i in range(a.runs):
                order = ("before", "after") if i % 2 == 0 else ("after", "before")
                for route, _ in ROUTES:
                    for name in order:
                        base, last = builds[name]
                        path = "/exports?limit=10" if route == "list" else f"/exports/{last}"
                        r = run_wrk(base + path, key, a.connections, a.threads, a.duration)
                        results[name][route].append(r)
                        print(f"round {i + 1} {route} {name}: {r}", file=sys.stderr)
            if a.page:
                write_ab_page(a.page, a, results["before"], results["after"], argv)
                print(f"wrote {a.page}", file=sys.stderr)
            if a.json:
                print(json.dumps(results, indent=2))
            return

        server, base = start_server(a.bin, db, os.path.join(scratch, "data"), key)
        servers.append(server)
        api = Api(base, key)
        print(f"queueing {a.jobs:,} one-row exports ...", file=sys.stderr)
        last, total, create_rps, processed_s = queue_jobs(api, a.jobs)
        results = {"machine": os.uname().release, "jobs_in_store": total,
                   "create_rps_one_connection": create_rps, "created_and_processed_s": processed_s}
        for name, path in (("list", "/exports?limit=10"), ("get", f"/exports/{last}")):
            runs = [run_wrk(base + path, key, a.connections, a.threads, a.duration) for _ in range(a.runs)]
            ordered = sorted(runs, key=lambda r: r["rps"])
            results[name] = {"median": ordered[len(ordered) // 2], "runs": ordered, "runs_in_order": runs}
            print(f"{name}: {ordered[len(ordered) // 2]}", file=sys.stderr)

        print("exporting every contact for the download ...", file=sys.stderr)
        results["download"] = download_speeds(api, a.runs)

        if a.page:
            write_page(a.page, a, results, argv)
            print(f"wrote {a.page}", file=sys.stderr)
        if a.json:
            print(json.dumps(results, indent=2))
        else:
            print(f"| route | connections | req/s | p50 | p99 |\n|---|---:|---:|---:|---:|")
            for name, label in ROUTES:
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
        for server in servers:
            stop_server(server)
        if not a.dir:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
