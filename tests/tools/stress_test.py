#!/usr/bin/env python3
"""Several engine processes on one job store, at once, for a bounded time.

  stress_test.py STRESS_ENGINE_BINARY [--processes 3] [--seconds 12] [--seed S] [--postgres]
                 [--keep-log PATH]

The store is a SQLite file, or with --postgres the PostgreSQL job store
(schema `stress`) on a throwaway cluster (tests/tools/pg_cluster.py; exit 77,
skipped, when none can start, except under CI=true, where that fails).

Each process (tests/stress/stress_engine.cpp) creates, claims, expires and
regenerates exports on the same job store and files directory, with short
leases and retention; some of them die with _exit() mid-run (like kill -9)
and are started again under a new name. At the end a recovery pass settles
every job, and the checker proves contract §2's promises on what is left and
on what the processes logged:

- every acknowledged create is in the store (no job lost);
- no job is queued or processing after recovery; the SQLite store passes
  PRAGMA integrity_check, the PostgreSQL store's per-account counters
  (account_queue, kept by triggers) agree with its jobs;
- every completion was made by the worker that held that claim (its lease
  token is in the published file's key, and that owner logged the claim):
  a worker that lost its lease never published;
- no two completions of one claim;
- every available job's file exists with the recorded size and SHA-256;
- every file in the directory belongs to a job (or waits in stale_files for
  the sweep), and no temporary file is left;
- leases, from the `call` lines (every lease-holding store call with the
  wall-clock interval [begin, end] it ran in; see stress_engine.cpp):
  * a (job, lease token) is claimed once, and every successful complete,
    fail or release under a token was made by the owner that claimed it;
  * fencing: no call under token t succeeded that began after a claim of a
    later token of the job had returned (that claim had committed, so the
    store must refuse the stale token);
  * no overlap of live leases: for consecutive logged claims t1 < t2 of a
    job, unless t1's holder ended its claim itself (complete, fail or
    release), the claim of t2 returned no earlier than the latest lease end
    the logs prove t1 had — the lease end its claim returned, and for each
    successful heartbeat of t1 the end it renewed to: `lease_until` as given
    on a store of the caller's clock (SQLite), begin + lease on one of its
    own (PostgreSQL: that call's now() was at or after its begin — the
    processes and the database run on one machine, one clock). A store may only requeue a lease that ended before
    its now(), so a claim of t2 returning earlier took the job from a holder
    whose lease was live.
  What the logs cannot prove: that no holder *worked* after its lease ran
  out (it does, until its next heartbeat tells it; that it can then change
  nothing is the fencing above), or anything about calls a dying process
  did not get to log. A missing line only weakens a bound, so every overlap
  reported is real; a real overlap whose evidence died unlogged is missed.
- with --postgres, the per-account limit (the engines'
  max_jobs_per_account, 2) is never exceeded, sampled every ~75 ms while
  the processes run with `SELECT account_id, count(*) FROM stress.jobs
  WHERE status='processing' GROUP BY 1` on one long-lived psql.
"""
import argparse
import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg_cluster  # noqa: E402

PER_ACCOUNT_LIMIT = 2  # stress_engine.cpp: opt.max_jobs_per_account
SCHEMA = "stress"      # stress_engine.cpp: the PostgreSQL store's schema
# The store's now() is in milliseconds and the logs' begin/end too; either
# may round where the other truncates.
SLACK_MS = 2
# Figures the checker gathers for the summary line.
STATS = {"handovers": 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--keep-log", metavar="PATH", help="copy the processes' log there")
    a = ap.parse_args()
    if not a.postgres:
        return run(a, None)
    pg = pg_cluster.cluster_or_skip()
    if pg is None:
        return 77
    with pg:
        return run(a, pg)


psql_args = pg_cluster.psql_args
psql_rows = pg_cluster.psql_rows


class LimitSampler:
    """Samples the processing jobs per account every ~75 ms on one psql
    process fed over stdin, until stop()."""

    QUERY = (f"SELECT account_id, count(*) FROM {SCHEMA}.jobs WHERE status='processing' GROUP BY 1;\n"
             "\\echo __end__ :ERROR\n")  # psql's ERROR: whether the query failed

    def __init__(self, uri, errors_path):
        self.errors = open(errors_path, "w")
        self.proc = subprocess.Popen(psql_args(uri), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errors, text=True, bufsize=1)
        self.samples = 0
        self.failures = 0
        self.busiest = 0
        self.over = []  # (seconds into the run, account, count)
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        try:
            while not self._stop.is_set():
                self.proc.stdin.write(self.QUERY)
                self.proc.stdin.flush()
                rows, failed = [], None
                for line in self.proc.stdout:
                    if line.startswith("__end__ "):
                        failed = line.split()[1] == "true"
                        break
                    rows.append(line.rstrip("\n").split("\t"))
                else:
                    return  # psql went away
                if failed:  # no schema yet, say: not a sample
                    self.failures += 1
                    self._stop.wait(0.075)
                    continue
                self.samples += 1
                for account, count in rows:
                    self.busiest = max(self.busiest, int(count))
                    if int(count) > PER_ACCOUNT_LIMIT:
                        self.over.append((time.monotonic() - self._started, account, int(count)))
                self._stop.wait(0.075)
        except (OSError, ValueError):
            return

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.errors.close()


def run(a, pg):
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    store_kind = "PostgreSQL" if pg else "SQLite"
    print(f"stress_test: {store_kind} store, seed {seed} (replay with --seed {seed})", flush=True)
    rng = random.Random(seed)

    with tempfile.TemporaryDirectory(prefix="ee-stress-") as tmp:
        store = pg.uri if pg else os.path.join(tmp, "jobs.db")
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

        sampler = None
        try:
            # The first start creates the store: let one process do it alone.
            launch(0)
            time.sleep(0.3)
            if pg:
                sampler = LimitSampler(pg.uri, os.path.join(tmp, "sampler.err"))
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
            for slot, (p, owner, _) in list(running.items()):
                if p.wait(timeout=30) != 0:
                    sys.exit(f"stress_test: process {owner} exited with {p.returncode} (seed {seed})")
                del running[slot]
        finally:
            if sampler:
                sampler.stop()
            for p, _, _ in running.values():  # only on the way out of a failure
                if p.poll() is None:
                    p.kill()
                    p.wait()

        # Recovery: leases of the dead run out, jobs settle, files are swept.
        time.sleep(2.2)  # past the 2 s stale-temporary age and the 600 ms leases
        subprocess.run([a.binary, store, files, "0", "recovery", "1", "0", log], check=True, timeout=120)

        if a.keep_log:
            shutil.copyfile(log, a.keep_log)
        state = read_postgres(pg.uri) if pg else read_sqlite(store)
        problems = state["problems"] + check(state, files, log)
        if sampler:
            for at, account, count in sampler.over[:10]:
                problems.append(f"{count} jobs of account {account} processing at once "
                                f"({at:.2f} s into the run; the limit is {PER_ACCOUNT_LIMIT})")
            if sampler.samples < 10:
                problems.append(f"only {sampler.samples} samples of the per-account limit were taken")
        with open(log) as f:
            lines = f.read().splitlines()
        created = sum(1 for l in lines if l.startswith("created "))
        completions = sum(1 for l in lines if l.startswith("state ") and l.split()[2] == "available")
        calls = [l.split() for l in lines if l.startswith("call ")]
        claims = sum(1 for c in calls if c[1] == "claim")
        lost = sum(1 for c in calls if c[4] == "lost")
        print(f"stress_test: {store_kind}, {a.processes} processes, {generation} starts, {crashes} crashes, "
              f"{created} exports created, {claims} claims, {completions} completions, "
              f"{lost} calls refused for a lost lease, {STATS['handovers']} claims of a job whose "
              f"previous claim was not ended by its holder (checked against that lease's proven end), "
              f"{time.monotonic() - started:.1f} s", flush=True)
        if sampler:
            print(f"stress_test: per-account limit sampled {sampler.samples} times ({sampler.failures} queries "
                  "failed), "
                  f"at most {sampler.busiest} processing jobs of one account (limit {PER_ACCOUNT_LIMIT})",
                  flush=True)
        if problems:
            for p in problems[:30]:
                print("  VIOLATION:", p)
            sys.exit(f"stress_test: {len(problems)} violations (seed {seed})")
        print("stress_test: every invariant holds")
        return 0


def read_sqlite(store):
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    problems = []
    if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
        problems.append("the job store fails PRAGMA integrity_check")
    jobs = {row[0]: row for row in db.execute(
        "SELECT id, status, file_key, file_size, checksum, lease_owner FROM jobs")}
    stale = {row[0] for row in db.execute("SELECT stale_key FROM stale_files")}
    return {"jobs": jobs, "stale": stale, "problems": problems}


def read_postgres(uri):
    jobs = {}
    for job, status, key, size, checksum, owner in psql_rows(
            uri, f"SELECT id, status, file_key, coalesce(file_size, -1), checksum, lease_owner FROM {SCHEMA}.jobs"):
        jobs[job] = (job, status, key, int(size), checksum, owner)
    stale = {row[0] for row in psql_rows(uri, f"SELECT stale_key FROM {SCHEMA}.stale_files")}
    problems = []
    for account, queued, running, total, q, r, t in psql_rows(uri, f"""
            SELECT a.account_id, a.queued, a.running, a.total,
                   count(j.id) FILTER (WHERE j.status = 'queued'),
                   count(j.id) FILTER (WHERE j.status = 'processing'),
                   count(j.id)
            FROM {SCHEMA}.account_queue a LEFT JOIN {SCHEMA}.jobs j ON j.account_id = a.account_id
            GROUP BY a.account_id, a.queued, a.running, a.total"""):
        if (queued, running, total) != (q, r, t):
            problems.append(f"account {account}: account_queue says queued/running/total "
                            f"{queued}/{running}/{total}, the jobs {q}/{r}/{t}")
    return {"jobs": jobs, "stale": stale, "problems": problems}


def check(state, files, log):
    problems = []
    created, claims, completions = set(), {}, {}
    lease_claims = {}   # (job, token) -> [(owner, begin, end, lease_end)]
    lease_calls = []    # (op, job, token, result, begin, end, owner)
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
            elif parts[0] == "call":
                op, job, token, result, begin, end, owner = parts[1:8]
                if op == "claim":
                    if parts[9] == "-":
                        problems.append(f"the claim of {job} token {token} returned no lease end")
                    lease_end = int(parts[9]) if parts[9] != "-" else 0
                    lease_claims.setdefault((job, int(token)), []).append((owner, int(begin), int(end), lease_end))
                else:
                    # A heartbeat's lease end proven (see stress_engine.cpp).
                    renewed_to = int(parts[8]) if op == "heartbeat" else None
                    lease_calls.append((op, job, int(token), result, int(begin), int(end), owner, renewed_to))

    jobs, stale = state["jobs"], state["stale"]
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
    problems += check_leases(lease_claims, lease_calls)

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


def check_leases(lease_claims, lease_calls):
    """The lease invariants of the docstring, over the `call` lines."""
    problems = []
    by_job = {}
    for (job, token), entries in lease_claims.items():
        if len(entries) > 1:
            problems.append(f"token {token} of {job} was claimed {len(entries)} times: {entries}")
        by_job.setdefault(job, []).append((token, entries[0]))
    renewed, ended = {}, {}
    for op, job, token, result, begin, end, owner, renewed_to in lease_calls:
        if result != "ok":
            continue
        claim = lease_claims.get((job, token))
        if claim and claim[0][0] != owner:
            problems.append(f"{op} of {job} under token {token} by {owner}, which {claim[0][0]} claimed")
        if op == "heartbeat":
            renewed[(job, token)] = max(renewed.get((job, token), 0), renewed_to)
        else:
            ended[(job, token)] = min(ended.get((job, token), begin), begin)
    calls_by_job = {}
    for call in lease_calls:
        calls_by_job.setdefault(call[1], []).append(call)
    for job, tokens in by_job.items():
        tokens.sort()
        for (t1, (o1, _, _, lease_end1)), (t2, (o2, b2, e2, _)) in zip(tokens, tokens[1:]):
            if (job, t1) in ended:
                if e2 + SLACK_MS < ended[(job, t1)]:
                    problems.append(f"{job}: token {t2} claimed by {o2} (returned at {e2}) before "
                                    f"{o1} ended token {t1} (at {ended[(job, t1)]})")
                continue
            STATS["handovers"] += 1
            live_until = max(lease_end1, renewed.get((job, t1), 0))
            if e2 + SLACK_MS < live_until:
                problems.append(f"{job}: token {t2} claimed by {o2} (returned at {e2}) while {o1}'s lease "
                                f"{t1} was live until at least {live_until}")
        # Fencing: nothing under an older token succeeds once a newer claim returned.
        for op, _, token, result, begin, _, owner, _ in calls_by_job.get(job, []):
            if result != "ok":
                continue
            newer = [(t, e) for t, (_, _, e, _) in tokens if t > token and e + SLACK_MS < begin]
            if newer:
                problems.append(f"{job}: {op} by {owner} under token {token} succeeded, begun at {begin}, "
                                f"after token {newer[0][0]} had been claimed (returned at {newer[0][1]})")
    return problems


if __name__ == "__main__":
    sys.exit(main())
