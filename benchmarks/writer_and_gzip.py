#!/usr/bin/env python3
"""End-to-end figures for the CSV writer and the gzip stage.

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
import subprocess
import sys
import tempfile
import time

from benchlib import CommandFailed, machine, median_by_wall, run_timed, warm

def median_of_runs(runs, cmd, stdin_path=None, stdout_path=None):
    """Median-by-wall-time run. stdout goes to stdout_path when given (so a
    big output never fills a pipe), else it is captured (small JSON lines)."""
    results = []
    for _ in range(runs):
        stdin = open(stdin_path, "rb") if stdin_path else None
        stdout = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
        try:
            results.append(run_timed(cmd, stdin=stdin, stdout=stdout))
        except CommandFailed as e:
            sys.exit(str(e))
        finally:
            if stdin:
                stdin.close()
            if stdout_path:
                stdout.close()
    return median_by_wall(results)


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
                o = json.loads(median_of_runs(a.runs, cmd).out)
                print(f"| {rows:,} | {target} | {o['seconds']:.2f} | {o['rows_per_second']/1e6:.2f} "
                      f"| {o['csv_mb_per_second']:.0f} | {o['peak_rss_bytes']/2**20:.1f} |")
                if target == "file":
                    os.remove(os.path.join(tmp, "bench.csv"))

        # -- gzip on the same bytes ------------------------------------------
        csv_path = os.path.join(tmp, "contacts.csv")
        median_of_runs(1, [a.exe, "bench", "csv", "--rows", str(a.gzip_rows), "--out", csv_path])
        size = os.path.getsize(csv_path)
        gz_path = os.path.join(tmp, "contacts.csv.gz")
        warm(csv_path)
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
            m = median_of_runs(a.runs, cmd, csv_path if uses_stdin else None, gz_path if uses_stdin else None)
            wall, cpu, rss = m.wall, m.cpu, m.rss
            out_size = os.path.getsize(gz_path)
            check = subprocess.run(["gzip", "-t", gz_path])
            if check.returncode != 0:
                sys.exit(f"{name}: output is not valid gzip")
            os.remove(gz_path)
            print(f"| {name} | {wall:.2f} | {size/1e6/wall:.0f} | {out_size/1e6:.1f} "
                  f"| {out_size/size:.3f} | {cpu:.2f} | {rss/2**20:.1f} |")
    print("\nReproduce: `python3 benchmarks/writer_and_gzip.py` after `scripts/test.sh`.")


if __name__ == "__main__":
    main()
