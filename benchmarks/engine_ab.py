#!/usr/bin/env python3
"""bench_engine, two builds alternated: the engine's jobs/s and list p99
before and after a change, on the same machine, in one run.

    python3 benchmarks/engine_ab.py --before DIR --after DIR [--pairs 5] [--pause 25] [--out PAGE]

DIR holds a build's bench_engine. Each pair runs `bench_engine --only jobs
--jobs 10000` for both builds (the order alternates between pairs), then
`--only list` for both; --pause seconds separate runs (on ext4 a run started
right after another's mass delete is slower). The page lists every run and
the medians, and the change of the after median against the before one.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import benchlib

HERE = os.path.dirname(os.path.abspath(__file__))


def revision(bindir):
    rev = benchlib.git_revision(bindir, width=80)
    if rev is not None:
        return rev
    mtime = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(os.path.join(bindir, "bench_engine"))))
    return f"not in a git tree (bench_engine built {mtime})"


def run(bindir, what):
    out = subprocess.run([os.path.join(bindir, "bench_engine"), "--only", what] + (["--jobs", "10000"] if what == "jobs" else []),
                         capture_output=True, text=True, check=True).stdout
    if what == "jobs":
        m = re.search(r"^\| 10000 \| [\d.]+ \| [\d.]+ \| \*\*(\d+)\*\*", out, re.M)
    else:
        m = re.search(r"^\| 5000 \| [\d.]+ \| \*\*([\d.]+)\*\*", out, re.M)
    if not m:
        sys.exit(f"engine_ab: could not read bench_engine --only {what}'s table:\n{out}")
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--pause", type=float, default=25)
    ap.add_argument("--out", default=os.path.join(HERE, "results", time.strftime("%Y-%m-%d") + "-engine-ab.md"))
    a = ap.parse_args()
    builds = {"before": os.path.abspath(a.before), "after": os.path.abspath(a.after)}
    for name, d in builds.items():
        if not os.access(os.path.join(d, "bench_engine"), os.X_OK):
            ap.error(f"--{name}: no bench_engine in {d}")
    jobs = {"before": [], "after": []}
    lists = {"before": [], "after": []}
    t0 = time.time()
    for i in range(a.pairs):
        order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
        for name in order:
            jobs[name].append(run(builds[name], "jobs"))
            print(f"[engine_ab] pair {i + 1}: {name} {jobs[name][-1]:.0f} jobs/s", file=sys.stderr, flush=True)
            time.sleep(a.pause)
        for name in order:
            lists[name].append(run(builds[name], "list"))
    med = {k: statistics.median(v) for k, v in jobs.items()}
    lmed = {k: statistics.median(v) for k, v in lists.items()}
    jchange = med["after"] / med["before"] - 1
    lchange = lmed["after"] / lmed["before"] - 1
    lines = [
        f"# bench_engine, before and after — {time.strftime('%Y-%m-%d')}",
        "",
        f"`python3 benchmarks/engine_ab.py --before {a.before} --after {a.after} --pairs {a.pairs} --pause {a.pause:g}`"
        f" — {time.time() - t0:.0f} s. Machine: {os.uname().nodename}, {os.cpu_count()} cores.",
        "",
        "| build | directory | revision |",
        "|---|---|---|",
        *(f"| {k} | `{d}` | {revision(d)} |" for k, d in builds.items()),
        "",
        "`bench_engine --only jobs --jobs 10000` (10,000 ten-row exports; SQLite store, FULL sync, files on this disk):",
        "",
        "| build | runs (jobs/s, in order) | median |",
        "|---|---|---:|",
        *(f"| {k} | {', '.join(f'{x:.0f}' for x in v)} | **{med[k]:.0f}** |" for k, v in jobs.items()),
        "",
        f"Change of the medians: **{jchange:+.1%}** ({'within 10%' if abs(jchange) <= 0.10 or jchange > 0 else 'a miss against within 10%'}).",
        "",
        "`bench_engine --only list` (100,000 jobs; p99 of 5,000 calls, ms):",
        "",
        "| build | runs (p99 ms) | median |",
        "|---|---|---:|",
        *(f"| {k} | {', '.join(f'{x:.3f}' for x in v)} | **{lmed[k]:.3f}** |" for k, v in lists.items()),
        "",
        f"Change of the medians: **{lchange:+.1%}** ({'within 10%' if lchange <= 0.10 else 'a miss against within 10%'}).",
        "",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
