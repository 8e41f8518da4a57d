#!/usr/bin/env python3
"""End-to-end figures for the CSV writer and the gzip stage (issue 2).

Runs, each RUNS times (median reported):
  * `exportengine bench csv` at 1 M and 10 M rows, to a file and to nowhere:
    rows/s, MB/s and peak RSS (memory must not grow with the row count);
  * gzip of one generated CSV file by `gzip -1`, `pigz -1 -p 2` and our gzip
    stage (`exportengine bench gzip`) at 0/1/2 threads and levels 1, 3, 6:
    input MB/s, output size and peak RSS.

usage: benchmarks/writer_and_gzip.py [--exe build/bin/exportengine] [--runs 3]
                                     [--rows 10000000] [--gzip-rows 3000000]
Prints a Markdown report to stdout. Needs a release build (scripts/test.sh)
and the Debian packages gzip and pigz (scripts/setup.sh installs them).
Everything runs locally; scratch files go to a temporary directory that is
removed at the end.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

TIME_FILE = os.path.join(tempfile.gettempdir(), f"exportengine-bench-time-{os.getpid()}")


def run_timed(cmd, stdin=None, stdout=subprocess.DEVNULL):
    """Runs cmd; returns (wall seconds, cpu seconds, peak RSS bytes, stdout).

    Peak RSS comes from GNU time: a child forked from this Python process
    would inherit Python's high-water mark in its own ru_maxrss."""
    t0 = time.perf_counter()
    p = subprocess.Popen(["/usr/bin/time", "-f", "%M %U %S", "-o", TIME_FILE, *cmd],
                         stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL)
    # Read stdout before waiting: a child must never block on a full pipe.
    out = p.stdout.read() if p.stdout else b""
    p.wait()
    wall = time.perf_counter() - t0
    with open(TIME_FILE) as f:
        maxrss_kib, user, system = f.read().split()[-3:]
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}")
    return wall, float(user) + float(system), int(maxrss_kib) * 1024, out


def median_run(runs, cmd, stdin_path=None, stdout_path=None):
    """Median-by-wall-time run. stdout goes to stdout_path when given (so a
    big output never fills a pipe), else it is captured (small JSON lines)."""
    results = []
    for _ in range(runs):
        stdin = open(stdin_path, "rb") if stdin_path else None
        stdout = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
        try:
            results.append(run_timed(cmd, stdin=stdin, stdout=stdout))
        finally:
            if stdin:
                stdin.close()
            if stdout_path:
                stdout.close()
    results.sort(key=lambda r: r[0])
    return results[len(results) // 2]


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", default="build/bin/exportengine")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--gzip-rows", type=int, default=3_000_000)
    a = ap.parse_args()

    print(f"# CSV writer and gzip stage — {time.strftime('%Y-%m-%d')}\n")
    print(f"Machine: {machine()}. Median of {a.runs} runs.\n")

    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        # -- the writer end to end -------------------------------------------
        print("## `exportengine bench csv` (generated contacts -> CSV)\n")
        print("| rows | target | seconds | M rows/s | MB/s | peak RSS MiB |")
        print("|---:|---|---:|---:|---:|---:|")
        for rows in sorted({1_000_000, a.rows}):
            for target in ("file", "nowhere"):
                cmd = [a.exe, "bench", "csv", "--rows", str(rows), "--json"]
                if target == "file":
                    cmd += ["--out", os.path.join(tmp, "bench.csv")]
                _, _, _, out = median_run(a.runs, cmd)
                o = json.loads(out)
                print(f"| {rows:,} | {target} | {o['seconds']:.2f} | {o['rows_per_second']/1e6:.2f} "
                      f"| {o['csv_mb_per_second']:.0f} | {o['peak_rss_bytes']/2**20:.1f} |")
                if target == "file":
                    os.remove(os.path.join(tmp, "bench.csv"))

        # -- gzip on the same bytes ------------------------------------------
        csv_path = os.path.join(tmp, "contacts.csv")
        run_timed([a.exe, "bench", "csv", "--rows", str(a.gzip_rows), "--out", csv_path])
        size = os.path.getsize(csv_path)
        gz_path = os.path.join(tmp, "contacts.csv.gz")
        with open(csv_path, "rb") as f:  # warm the page cache
            while f.read(1 << 24):
                pass
        print(f"\n## gzip of one {size/1e6:.0f} MB contacts CSV ({a.gzip_rows:,} rows), output discarded\n")
        print("| compressor | seconds | input MB/s | output MB | ratio | CPU s | peak RSS MiB |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        rows = [
            ("gzip -1", ["gzip", "-1", "-c"], True),
            ("pigz -1 -p 2", ["pigz", "-1", "-p", "2", "-c"], True),
        ]
        for level in (1, 3, 6):
            for threads in ((0, 1, 2) if level == 1 else (2,)):
                rows.append((f"ours level {level}, {threads} thread{'s' if threads != 1 else ''}"
                             + (" (inline)" if threads == 0 else ""),
                             [a.exe, "bench", "gzip", "--in", csv_path, "--gzip-level", str(level),
                              "--gzip-threads", str(threads), "--out", gz_path], False))
        for name, cmd, uses_stdin in rows:
            # Every compressor writes a real file of the same name.
            wall, cpu, rss, _ = median_run(a.runs, cmd, csv_path if uses_stdin else None,
                                           gz_path if uses_stdin else None)
            out_size = os.path.getsize(gz_path)
            check = subprocess.run(["gzip", "-t", gz_path])
            if check.returncode != 0:
                sys.exit(f"{name}: output is not valid gzip")
            os.remove(gz_path)
            print(f"| {name} | {wall:.2f} | {size/1e6/wall:.0f} | {out_size/1e6:.1f} "
                  f"| {out_size/size:.3f} | {cpu:.2f} | {rss/2**20:.1f} |")
    os.remove(TIME_FILE)
    print("\nReproduce: `python3 benchmarks/writer_and_gzip.py` after `scripts/test.sh`.")


if __name__ == "__main__":
    main()
