#!/usr/bin/env python3
"""The SQLite source's figures: exporting 10 M SQLite contacts, against the floor and
the tools people use instead.

Runs, each RUNS times (median by wall time reported), on a warm cache:
  (a) build/bin/bench_sqlite_scan: step the cursor and read every column,
      nothing else (the single-reader floor);
  (b) `exportengine export contacts` with 1 reader, (c) with 2 readers, and
      with 2 readers and --mmap;
  (d) `sqlite3 -csv -header` on the same query, to a file;
  (e) gzip: ours --gzip (1 and 2 readers) against
      `sqlite3 -csv -header DB "SELECT ..." | pigz -1 -p 2 > FILE`;
  (f) peak RSS (GNU time) of ours at 1 M and at 10 M rows.
The last column is the CPU time the rest of the machine used during the
median run (from /proc/stat): well above 0, the run was disturbed.

usage: benchmarks/sqlite_export.py [--bin build/bin] [--runs 3]
          [--db10 /tmp/bench10m.db] [--db1 /tmp/bench1m.db] [--out-dir /tmp]
Seeds the databases with `exportengine seed` if they do not exist (10 M
contacts: ~40 s). The databases and the output files stay in /tmp (never in
the repository). Prints a Markdown report to stdout.
"""
import argparse
import os
import platform
import shlex
import subprocess
import sys
import time

from benchlib import CommandFailed, median_run, warm

QUERY = ("SELECT c.id, c.phone_number, c.email, c.first_name, c.last_name, c.created_at, c.updated_at "
         "FROM contacts AS c WHERE c.account_id = 1 ORDER BY c.id")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--db10", default="/tmp/bench10m.db")
    ap.add_argument("--db1", default="/tmp/bench1m.db")
    ap.add_argument("--out-dir", default="/tmp")
    a = ap.parse_args()
    exe = os.path.join(a.bin, "exportengine")
    scan = os.path.join(a.bin, "bench_sqlite_scan")
    for db, n in ((a.db10, "10000000"), (a.db1, "1000000")):
        if not os.path.exists(db):
            print(f"seeding {db} ({n} contacts)...", file=sys.stderr)
            subprocess.run([exe, "seed", "--db", db, "--accounts", "1", "--contacts", n, "--lists", "10",
                            "--campaigns", "1", "--reports", "0"], check=True, stdout=subprocess.DEVNULL)
    out_csv = os.path.join(a.out_dir, "exportengine-bench.csv")
    out_gz = out_csv + ".gz"
    q = shlex.quote

    def ours(db, readers, extra="", out=out_csv):
        return f"{q(exe)} export contacts --source {q(db)} --account 1 --readers {readers} {extra} --out {q(out)} --quiet"

    cases = [
        ("(a) bare cursor scan (bench_sqlite_scan)", a.db10, f"{q(scan)} {q(a.db10)} 1", 10_000_000),
        ("(b) ours, 1 reader", a.db10, ours(a.db10, 1), 10_000_000),
        ("(c) ours, 2 readers", a.db10, ours(a.db10, 2), 10_000_000),
        ("(c') ours, 2 readers, --mmap", a.db10, ours(a.db10, 2, "--mmap"), 10_000_000),
        ("(d) sqlite3 -csv -header", a.db10, f"sqlite3 -csv -header {q(a.db10)} {q(QUERY)} > {q(out_csv)}",
         10_000_000),
        ("(e) ours --gzip, 1 reader", a.db10, ours(a.db10, 1, "--gzip", out_gz), 10_000_000),
        ("(e) ours --gzip, 2 readers", a.db10, ours(a.db10, 2, "--gzip", out_gz), 10_000_000),
        ("(e) sqlite3 -csv -header | pigz -1 -p 2", a.db10,
         f"sqlite3 -csv -header {q(a.db10)} {q(QUERY)} | pigz -1 -p 2 > {q(out_gz)}", 10_000_000),
        ("(f) ours, 1 reader, 1 M rows", a.db1, ours(a.db1, 1), 1_000_000),
        ("(f) ours, 2 readers, 1 M rows", a.db1, ours(a.db1, 2), 1_000_000),
    ]
    print(f"# SQLite export, {time.strftime('%Y-%m-%d')}\n")
    print(f"{platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}; {a.runs} runs each, median by "
          "wall time; cache warmed by reading each database once.\n")
    print("| what | rows | seconds (median) | M rows/s | CPU s | peak RSS | runs (s) | others' CPU s |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for name, db, cmd, rows in cases:
        warm(db)
        try:
            m, runs = median_run(a.runs, cmd)
        except CommandFailed as e:
            sys.exit(str(e))
        print(f"| {name} | {rows:,} | {m.wall:.2f} | {rows / m.wall / 1e6:.2f} | {m.cpu:.2f} | "
              f"{m.rss / 2**20:.1f} MiB | {' / '.join(f'{r.wall:.2f}' for r in runs)} | {m.others:.1f} |",
              flush=True)
    for f in (out_csv, out_gz):
        if os.path.exists(f):
            os.remove(f)


if __name__ == "__main__":
    main()
