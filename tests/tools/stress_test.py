#!/usr/bin/env python3
"""Several engine processes on one SQLite job store, at once, for a bounded time.

  stress_test.py STRESS_ENGINE_BINARY [--processes 3] [--seconds 12] [--seed S]

Each process (tests/stress/stress_engine.cpp) creates, claims, expires and
regenerates exports on the same job store file and files directory, with
short leases and retention; some of them die with _exit() mid-run (like
kill -9) and are started again under a new name. At the end a recovery pass
settles every job, and the checker proves contract §2's promises on what is left
and on what the processes logged:

- every acknowledged create is in the store (no job lost);
- no job is processing, and the store passes PRAGMA integrity_check;
- every completion was made by the worker that held that claim (its lease
  token is in the published file's key, and that owner logged the claim):
  a worker that lost its lease never published;
- no two completions of one claim;
- every available job's file exists with the recorded size and SHA-256;
- every file in the directory belongs to a job (or waits in stale_files for
  the sweep), and no temporary file is left.
"""
import argparse
import hashlib
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    print(f"stress_test: seed {seed} (replay with --seed {seed})", flush=True)
    rng = random.Random(seed)

    with tempfile.TemporaryDirectory(prefix="ee-stress-") as tmp:
        store = os.path.join(tmp, "jobs.db")
        files = os.path.join(tmp, "files")
        log = os.path.join(tmp, "events.log")
        started = time.monotonic()
        deadline = started + a.seconds
        generation = 0
        crashes = 0
        running = {}

        def launch(slot):
            nonlocal generation
            generation += 1
            owner = f"p{slot}-g{generation}"
            remaining = max(0.5, deadline - time.monotonic())
            crash_ms = rng.randrange(300, 3000) if rng.random() < 0.6 else 0
            p = subprocess.Popen([a.binary, store, files, f"{remaining:.2f}", owner,
                                  str(rng.randrange(1 << 31)), str(crash_ms), log])
            running[slot] = (p, owner, crash_ms)

        # The first start creates the store: let one process do it alone.
        launch(0)
        time.sleep(0.3)
        for slot in range(1, a.processes):
            launch(slot)
        while time.monotonic() < deadline:
            for slot, (p, owner, crash_ms) in list(running.items()):
                rc = p.poll()
                if rc is None:
                    continue
                if rc != 0:
                    sys.exit(f"stress_test: process {owner} exited with {rc} (seed {seed})")
                if crash_ms:
                    crashes += 1
                if time.monotonic() < deadline - 0.5:
                    launch(slot)
                else:
                    del running[slot]
            time.sleep(0.05)
        for p, owner, _ in running.values():
            if p.wait(timeout=30) != 0:
                sys.exit(f"stress_test: process {owner} exited with {p.returncode} (seed {seed})")

        # Recovery: leases of the dead run out, jobs settle, files are swept.
        time.sleep(2.2)  # past the 2 s stale-temporary age and the 600 ms leases
        subprocess.run([a.binary, store, files, "0", "recovery", "1", "0", log], check=True, timeout=120)

        problems = check(store, files, log)
        with open(log) as f:
            lines = f.read().splitlines()
        created = sum(1 for l in lines if l.startswith("created "))
        completions = sum(1 for l in lines if l.startswith("state ") and l.split()[2] == "available")
        print(f"stress_test: {a.processes} processes, {generation} starts, {crashes} crashes, "
              f"{created} exports created, {completions} completions, "
              f"{time.monotonic() - started:.1f} s", flush=True)
        if problems:
            for p in problems[:30]:
                print("  VIOLATION:", p)
            sys.exit(f"stress_test: {len(problems)} violations (seed {seed})")
        print("stress_test: every invariant holds")


def check(store, files, log):
    problems = []
    created, claims, completions = set(), {}, {}
    with open(log) as f:
        for line in f:
            parts = line.split()
            if parts[0] == "created":
                created.add(parts[1])
            elif parts[0] == "state":
                _, job, status, owner, token, key = parts
                if status == "processing":
                    claims[(job, token)] = owner
                elif status == "available":
                    # The key is <id>-<token>.csv[.gz]: the claim that wrote it.
                    file_token = key[len(job) + 1:].split(".")[0]
                    completions.setdefault((job, file_token), []).append(owner)

    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
        problems.append("the job store fails PRAGMA integrity_check")
    jobs = {row[0]: row for row in db.execute(
        "SELECT id, status, file_key, file_size, checksum, lease_owner FROM jobs")}
    stale = {row[0] for row in db.execute("SELECT stale_key FROM stale_files")}

    for job in created - jobs.keys():
        problems.append(f"acknowledged export {job} is not in the store")
    for job, status, *_ in jobs.values():
        if status in ("processing", "queued"):
            problems.append(f"export {job} is still {status} after recovery")
    for (job, token), owners in completions.items():
        if len(owners) > 1:
            problems.append(f"claim {token} of {job} was completed {len(owners)} times")
        if (job, token) not in claims:
            problems.append(f"{job} completed under token {token}, which no worker logged claiming")
        elif claims[(job, token)] not in owners:
            problems.append(f"{job} token {token}: claimed by {claims[(job, token)]}, completed by {owners}")

    on_disk = set(os.listdir(files)) if os.path.isdir(files) else set()
    temps = {n for n in on_disk if n.startswith(".tmp-")}
    for t in temps:
        problems.append(f"temporary file {t} left behind")
    keys = {row[2]: row for row in jobs.values() if row[2]}
    for key, (job, status, _, size, checksum, _) in keys.items():
        if status == "available":
            path = os.path.join(files, key)
            if not os.path.exists(path):
                problems.append(f"available export {job} has no file {key}")
                continue
            data = open(path, "rb").read()
            if len(data) != size:
                problems.append(f"{key}: {len(data)} bytes, the store says {size}")
            if hashlib.sha256(data).hexdigest() != checksum:
                problems.append(f"{key}: SHA-256 differs from the store's")
    for name in on_disk - temps:
        if name not in keys and name not in stale:
            problems.append(f"file {name} belongs to no job")
    return problems


if __name__ == "__main__":
    main()
