#!/usr/bin/env python3
"""Crash test of `exportengine serve` (contract §2): real processes, SIGKILL at
random moments, and the promises checked after every restart.

usage: crash_test.py PATH_TO_EXPORTENGINE [--kills N] [--seed S] [--contacts N]
                     [--retention 15s] [--long] [--cache-dir DIR] [--keep] [--verbose]

  ctest (`crash`, label reliability): --kills 20 over 300 k contacts, ~30 s.
  RELIABILITY figures: --long (50 kills over 2 M contacts, ~4 min).
  A failure prints the seed; `--seed S` with the same flags replays the
  same choices (the server's timing still varies).

A source database (2 accounts; as many delivery reports as contacts) is
seeded once (`exportengine seed`) into a cache directory
($EXPORTENGINE_CRASH_CACHE or /tmp/exportengine-crash-cache: ~100 MB for
300 k contacts, ~700 MB for 2 M) and reused. The driver starts `exportengine serve` on 127.0.0.1:0 with short
crash-recovery timing (--lease, --sweep-interval, --stale-temp-age), creates
exports of every shape through the HTTP API (all contacts, listIds,
contactIds, delivery reports by range and/or campaign; plain and gzip; three
delimiters; with and without BOM), and SIGKILLs the server at moments chosen
by a seeded RNG, restarting it on the same data directory each time:

  ack      right after a create (or regenerate) is answered 202 — the claim
  burst    during a burst of concurrent creates from several threads — the
           job store's write (SQLite WAL) under load
  mid      while an export is being written (a .tmp- file exists)
  publish  the instant a published file appears or a job turns available
  idle     with nothing queued, while the sweep runs (expiry, file deletion)
  startup  within the first few hundred ms after a restart (recovery)

What is checked (any violation exits 1 with the seed to replay it):
  - every export acknowledged with a 202 (create or regenerate) is listed
    after every restart, with the filters it was created with; a create
    retried with its Idempotency-Key after a kill returns the same export
    if the first one was stored, so in the end the store holds exactly the
    acknowledged exports — nothing lost, nothing doubled;
  - the job store opens after every kill, `PRAGMA integrity_check` and
    `foreign_key_check` are clean;
  - no job stays `processing` under a dead owner (or an expired lease)
    beyond its lease plus a sweep interval (plus slack); likewise expiry is
    recorded, and expired, failed and superseded files are deleted, within
    a sweep interval (plus slack) of being due;
  - attempts count only real losses: a job's attempt never exceeds the
    number of its claims lost to a kill (distinct lease tokens seen
    processing at a kill) + 1, a job that used max attempts is failed with
    ATTEMPTS_EXHAUSTED, and an available file was written by the last claim;
  - every export eventually becomes available, and its file, downloaded
    through its signed URL, has the recorded size and SHA-256 and parses
    (csv, gzip) to exactly the rows a Python reference query returns for its
    filter, compared row by row;
  - queued/processing exports answer EXPORT_NOT_READY, and a validly
    signed download link (signed with DATA/signing.key, as an old link
    would be) to any export that is not available is refused with 403 —
    also while its file is being written: no partial file is reachable;
  - no `.tmp-*` file outlives stale-temp-age + a sweep interval (plus
    slack); when nothing runs, every file in DATA/files is named by a job
    (or a superseded file awaiting deletion), and every available job's
    file exists with its recorded size and SHA-256.

The summary line gives kills survived (by moment), exports and files
checked, rows compared and seconds, then what the kills interrupted (claims
lost, temporaries left, files published but not yet recorded, ...).

Python 3 standard library only (sqlite3 included). Only 127.0.0.1, port 0.
Every server is killed (also if the driver dies: PR_SET_PDEATHSIG) and the
temporary directory removed at exit.
"""
import argparse
import atexit
import base64
import csv
import gzip
import hashlib
import hmac
import http.client
import io
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone

import server_process  # tests/tools: read the first line, kill for good

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

LEASE_S = 3.0           # --lease (heartbeat every lease/6)
SWEEP_S = 1.0           # --sweep-interval
STALE_TEMP_S = 4        # --stale-temp-age (a live writer's temporary is locked,
                        # so it is spared however long its writer pauses)
MAX_ATTEMPTS = 3        # the engine's default
SLACK_S = 6.0           # scheduling slack on a loaded 2-core machine
MAX_PENDING = 6         # queued + processing jobs the driver lets pile up

KEYS = {"crash-key-one": 1, "crash-key-two": 2}
CONTACT_COLUMNS = ["id", "phoneNumber", "email", "firstName", "lastName", "createdAt", "updatedAt"]
REPORT_COLUMNS = ["id", "messageId", "campaignId", "recipient", "sender", "status", "errorCode", "parts",
                  "submittedAt", "statusAt"]
BOM = b"\xef\xbb\xbf"
E164 = re.compile(r"^\+[0-9]+$")


class Violation(Exception):
    pass


def log(msg):
    print(f"[{time.monotonic() - T0:7.2f}s] {msg}", flush=True)


T0 = time.monotonic()
ARGS = None
RNG = None
TMP = None
SERVERS = []
LOST_TOKENS = {}        # export id -> lease tokens processing at a kill


# --------------------------------------------------------------------------
# The source database (seeded once, cached)
# --------------------------------------------------------------------------

def seeded_source(exe, cache_dir, contacts, reports):
    """Returns the path of a seeded source database, seeding it on first use
    (under a lock, so concurrent runs do not seed twice)."""
    import fcntl
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"source-a2-c{contacts}-r{reports}-l8-s7.db")
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path):
            try:
                c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                n = c.execute("SELECT COUNT(*) FROM contacts").fetchone()[0]
                c.close()
                if n == contacts:
                    return path
            except sqlite3.Error:
                pass
            os.remove(path)
        t = time.monotonic()
        r = subprocess.run([exe, "seed", "--db", path, "--accounts", "2", "--contacts", str(contacts),
                            "--lists", "8", "--campaigns", "8", "--reports", str(reports), "--seed", "7",
                            "--force"], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise SystemExit(f"crash_test: seeding failed: {r.stderr.strip()}")
        log(f"seeded {path} ({contacts} contacts, {reports} reports) in {time.monotonic() - t:.1f} s")
    return path


class Source:
    """The database as Python reads it: the reference for every file."""

    def __init__(self, path):
        self.path = path
        c = self.connect()
        self.lists = {a: [r[0] for r in c.execute("SELECT id FROM contact_lists WHERE account_id = ? ORDER BY id",
                                                  (a,))] for a in (1, 2)}
        self.campaigns = {a: [r[0] for r in c.execute("SELECT id FROM campaigns WHERE account_id = ? ORDER BY id",
                                                      (a,))] for a in (1, 2)}
        self.max_contact = c.execute("SELECT MAX(id) FROM contacts").fetchone()[0]
        c.close()

    def connect(self):
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)

    def rows(self, spec):
        """The rows a job's file must hold, in order, as lists of strings."""
        c = self.connect()
        try:
            account = spec["account"]
            f = spec["filters"]
            if spec["type"] == "contacts":
                sql = ("SELECT id, phone_number, email, first_name, last_name, created_at, updated_at "
                       "FROM contacts WHERE account_id = ?")
                params = [account]
                if "listIds" in f:
                    sql += (" AND id IN (SELECT m.contact_id FROM list_members m JOIN contact_lists l "
                            "ON l.id = m.list_id WHERE l.account_id = ? "
                            "AND m.list_id IN (SELECT value FROM json_each(?)))")
                    params += [account, json.dumps(f["listIds"])]
                elif "contactIds" in f:
                    sql += " AND id IN (SELECT value FROM json_each(?))"
                    params.append(json.dumps(f["contactIds"]))
                sql += " ORDER BY id"
                for r in c.execute(sql, params):
                    yield [str(r[0]), phone(r[1]), guarded(text(r[2])), guarded(text(r[3])), guarded(text(r[4])),
                           r[5], r[6]]
            else:
                sql = ("SELECT id, message_id, campaign_id, recipient, sender, status, error_code, parts, "
                       "submitted_at, status_at FROM delivery_reports WHERE account_id = ?")
                params = [account]
                if "campaignId" in f:
                    sql += " AND campaign_id = ?"
                    params.append(f["campaignId"])
                if "startDateTime" in f:
                    sql += " AND submitted_at >= ? AND submitted_at < ?"
                    params += [utc_text(f["startDateTime"]), utc_text(f["endDateTime"])]
                sql += " ORDER BY submitted_at, id"
                for r in c.execute(sql, params):
                    yield [str(r[0]), r[1], text(r[2]), phone(r[3]), guarded(text(r[4])), r[5], text(r[6]),
                           str(r[7]), r[8], text(r[9])]
        finally:
            c.close()


def text(v):
    return "" if v is None else str(v)


def guarded(v):
    return "'" + v if v and v[0] in "=+-@\t\r" else v


def phone(v):
    return v if E164.match(v or "") else guarded(text(v))


def utc_text(rfc3339):
    """An RFC 3339 date-time with whole seconds, as the database's UTC text."""
    t = datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).astimezone(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------

def die_with_parent():
    """In the child before exec: SIGKILL it if the driver dies (a ctest
    timeout), so no server outlives the test (Linux prctl)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Server:
    """One `exportengine serve` process on 127.0.0.1:0."""

    def __init__(self, exe, data_dir, source, n, retention, readers):
        self.log_path = os.path.join(TMP, f"server-{n:03d}.log")
        args = [exe, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--source", source,
                "--lease", f"{int(LEASE_S * 1000)}ms", "--sweep-interval", f"{int(SWEEP_S * 1000)}ms",
                "--stale-temp-age", f"{STALE_TEMP_S}s", "--retention", retention, "--workers", "2",
                "--readers", str(readers), "--quiet"]
        for k, a in KEYS.items():
            args += ["--api-key", f"{k}:{a}"]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)
        SERVERS.append(self)
        self.pid = self.proc.pid
        line = self._read_line(20.0)
        m = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)\n", line)
        if not m:
            self.kill()
            raise Violation(f"server did not start: first stdout line {line!r}; stderr:\n{self.tail()}")
        self.port = int(m.group(1))
        self.started = time.time()

    def _read_line(self, timeout):
        return server_process.read_line(self.proc, timeout)

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        server_process.kill(self.proc, self.log)

    def terminate(self, timeout=15.0):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Violation(f"server still running {timeout} s after SIGTERM")
        code = self.proc.returncode
        self.kill()
        return code

    def tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def owns(self, owner):
        parts = owner.rsplit(":", 2)
        return len(parts) == 3 and parts[1] == str(self.pid)

    # -- HTTP ---------------------------------------------------------------
    def request(self, method, target, body=None, key=None, headers=None, timeout=30):
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = "Bearer " + key
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body, separators=(",", ":"))
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, target, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, r.headers, data
        finally:
            conn.close()

    def api(self, method, target, body=None, key=None, headers=None):
        """An API call that must be answered (the server is not being
        killed): returns (status, JSON body)."""
        try:
            status, _, data = self.request(method, target, body, key, headers)
        except (OSError, http.client.HTTPException) as e:
            raise Violation(f"{method} {target}: no answer from a live server ({e!r}); "
                            f"alive={self.alive()}; stderr:\n{self.tail()}")
        try:
            return status, json.loads(data.decode("utf-8")) if data else None
        except ValueError:
            raise Violation(f"{method} {target}: {status} with a body that is not JSON: {data[:200]!r}")


# --------------------------------------------------------------------------
# The job store, read-only
# --------------------------------------------------------------------------

def store_rows(data_dir, sql, params=()):
    path = os.path.join(data_dir, "jobs.db")
    if not os.path.exists(path):
        return []
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        c.row_factory = sqlite3.Row
        return c.execute(sql, params).fetchall()
    finally:
        c.close()


def server_log_lines(needle, n=6):
    """The last lines of every server's log that mention `needle`."""
    out = []
    for s in SERVERS:
        try:
            with open(s.log_path, "rb") as f:
                out += [f"[server {s.pid}] " + l for l in f.read().decode("utf-8", "replace").splitlines()
                        if needle in l]
        except OSError:
            pass
    return "\n".join(out[-n:])


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------

class Job:
    """An acknowledged export and what the driver knows about it."""

    def __init__(self, export_id, key, kind, body):
        self.id = export_id
        self.key = key
        self.account = KEYS[key]
        self.kind = kind                      # "contacts" | "delivery-reports"
        self.body = body
        self.filters = {k: v for k, v in body.items() if k not in ("compression", "delimiter", "bom")}
        self.compression = body.get("compression", "none")
        self.delimiter = body.get("delimiter", ",")
        self.bom = body.get("bom", False)
        self.gen_token = 0                    # lease_token when its generation began
        self.verified_keys = set()            # files verified (file_key)
        self.verified_ever = False
        self.regenerations = 0

    def spec(self):
        return {"type": "contacts" if self.kind == "contacts" else "deliveryReports",
                "account": self.account, "filters": self.filters}

    def lost_tokens(self):
        """Its claims seen processing at a kill (lease tokens)."""
        return LOST_TOKENS.get(self.id, set())

    def gen_losses(self):
        return len([t for t in self.lost_tokens() if t > self.gen_token])


class Driver:
    def __init__(self, exe, source, kills, retention):
        self.exe = exe
        self.src = source
        self.kills_wanted = kills
        self.retention = retention
        self.data_dir = os.path.join(TMP, "data")
        self.files_dir = os.path.join(self.data_dir, "files")
        self.dl_dir = os.path.join(TMP, "downloads")
        os.makedirs(self.dl_dir)
        self.server = None
        self.n_servers = 0
        self.jobs = {}                        # id -> Job (acknowledged)
        self.unanswered = []                  # (idempotency key, api key, kind, body) not answered
        self.kills = 0
        self.kill_kinds = {}
        self.exports_checked = 0
        self.files_checked = 0
        self.rows_compared = 0
        self.regenerates = 0
        self.creates = 0
        self.sha_cache = {}                   # (name, size, mtime_ns) -> sha256
        self.failed_seen = set()
        self.seen_at_kill = set()
        self.forgery_checked = False
        self.stats = {"claims lost": 0, "temporaries left by kills": 0,
                      "files published, not yet recorded, at a kill": 0, "failed (attempts exhausted)": 0,
                      "links to unavailable exports refused": 0, "creates stored but unanswered at a kill": 0}

    # -- servers -------------------------------------------------------------
    def start(self):
        self.n_servers += 1
        # One reader or two per export (the parallel readers' path too).
        self.server = Server(self.exe, self.data_dir, self.src.path, self.n_servers, self.retention,
                             RNG.choice([1, 2]))
        return self.server

    def kill(self, kind):
        s = self.server
        if not s.alive():
            raise Violation(f"the server died by itself before kill #{self.kills + 1}; stderr:\n{s.tail()}")
        s.kill()
        self.server = None
        self.kills += 1
        self.kill_kinds[kind] = self.kill_kinds.get(kind, 0) + 1
        if ARGS.verbose:
            log(f"kill #{self.kills} ({kind})")
        self.after_kill()

    def after_kill(self):
        """With the server dead: the store opens and is intact, and every
        claim processing now is a real loss."""
        path = os.path.join(self.data_dir, "jobs.db")
        if not os.path.exists(path):
            return
        try:
            c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                ic = c.execute("PRAGMA integrity_check").fetchall()
                fk = c.execute("PRAGMA foreign_key_check").fetchall()
                processing = c.execute("SELECT id, lease_token FROM jobs WHERE status = 'processing'").fetchall()
            finally:
                c.close()
        except sqlite3.Error as e:
            raise Violation(f"the job store does not open after kill #{self.kills}: {e}")
        if ic != [("ok",)]:
            raise Violation(f"PRAGMA integrity_check after kill #{self.kills}: {ic[:5]}")
        if fk:
            raise Violation(f"PRAGMA foreign_key_check after kill #{self.kills}: {fk[:5]}")
        # (Not only acknowledged jobs: a burst's answers are read after the kill.)
        for export_id, token in processing:
            tokens = LOST_TOKENS.setdefault(export_id, set())
            if token not in tokens:
                tokens.add(token)
                self.stats["claims lost"] += 1
        # What the kill interrupted on disk: files being written, and files
        # published but not yet recorded (the rename done, the complete not).
        named = {r["file_key"] for r in self.rows() if r["file_key"]}
        named |= {r["stale_key"] for r in store_rows(self.data_dir, "SELECT stale_key FROM stale_files")}
        if os.path.isdir(self.files_dir):
            for n in os.listdir(self.files_dir):
                if n in self.seen_at_kill:
                    continue
                if n.startswith(".tmp-"):
                    self.seen_at_kill.add(n)
                    self.stats["temporaries left by kills"] += 1
                elif n not in named:
                    self.seen_at_kill.add(n)
                    self.stats["files published, not yet recorded, at a kill"] += 1

    # -- API helpers -----------------------------------------------------------
    def post_create(self, key, kind, body, idem=None, timeout=30):
        """POSTs a create (with an Idempotency-Key); returns the Job. Any
        answer but 202 is a violation."""
        idem = idem or uuid.uuid4().hex
        s = self.server
        try:
            status, _, data = s.request("POST", "/exports/" + kind, body, key, {"Idempotency-Key": idem},
                                        timeout=timeout)
        except (OSError, http.client.HTTPException) as e:
            # Only bursts race a kill (see mode_burst); here the server
            # must answer.
            raise Violation(f"create {kind}: no answer ({e!r}); alive={s.alive()}; stderr:\n{s.tail()}")
        if status != 202:
            raise Violation(f"create {kind} {json.dumps(body)[:200]}: {status} {data[:300]!r}")
        v = json.loads(data)
        self.creates += 1
        return self.acknowledge(v["exportId"], key, kind, body)

    def acknowledge(self, export_id, key, kind, body):
        if export_id in self.jobs:
            j = self.jobs[export_id]
            if (j.key, j.kind, j.body) != (key, kind, body):
                raise Violation(f"export {export_id} acknowledged for two different requests")
            return j
        j = Job(export_id, key, kind, body)
        self.jobs[export_id] = j
        return j

    def regenerate(self, job):
        """POSTs a regenerate (with an Idempotency-Key); it must be answered 202."""
        row = self.row(job.id)
        token_before = row["lease_token"]
        s = self.server
        try:
            status, _, data = s.request("POST", "/exports/" + job.id, None, job.key,
                                        {"Idempotency-Key": uuid.uuid4().hex})
        except (OSError, http.client.HTTPException) as e:
            raise Violation(f"regenerate {job.id}: no answer ({e!r}); alive={s.alive()}; stderr:\n{s.tail()}")
        if status != 202:
            raise Violation(f"regenerate {job.id} (was {row['status'] if row else '?'}): {status} {data[:300]!r}")
        job.gen_token = token_before  # attempt restarts at 0; claims from here on count
        job.regenerations += 1
        self.regenerates += 1

    def retry_unanswered(self):
        """Creates whose answer a kill swallowed, retried with their
        Idempotency-Key: the same export if the first one was stored."""
        pending, self.unanswered = self.unanswered, []
        stored = {r["id"] for r in self.rows()}
        for idem, key, kind, body in pending:
            j = self.post_create(key, kind, body, idem)
            if j.id in stored:
                self.stats["creates stored but unanswered at a kill"] += 1

    def random_request(self):
        """An export of a random shape and format: (api key, route, body)."""
        key = RNG.choice(list(KEYS))
        account = KEYS[key]
        body = {}
        kind = RNG.choice(["contacts"] * 5 + ["delivery-reports"] * 4)
        if kind == "contacts":
            shape = RNG.choice(["all", "all", "lists", "ids"])
            if shape == "lists":
                ids = RNG.sample(self.src.lists[account], RNG.randint(1, 2))
                if RNG.random() < 0.3:  # another account's list exports nothing
                    ids.append(RNG.choice(self.src.lists[3 - account]))
                body["listIds"] = ids
            elif shape == "ids":
                # Both accounts' ids and some that do not exist; repeats
                # are exported once.
                ids = [RNG.randint(1, self.src.max_contact + 100) for _ in range(RNG.randint(1, 3000))]
                body["contactIds"] = ids + ids[:5]
        else:
            shape = RNG.choice(["range", "range", "campaign", "both"])
            if shape in ("campaign", "both"):
                body["campaignId"] = RNG.choice(self.src.campaigns[account])
            if shape in ("range", "both"):
                # Whole seconds (the reference compares UTC text), written
                # with an offset.
                start = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=RNG.randint(0, 150 * 86400))
                end = start + timedelta(seconds=RNG.randint(3600, 60 * 86400))
                tz = timezone(timedelta(minutes=RNG.choice([0, 120, -330, 60])))
                body["startDateTime"] = start.astimezone(tz).isoformat().replace("+00:00", "Z")
                body["endDateTime"] = end.astimezone(tz).isoformat().replace("+00:00", "Z")
        if RNG.random() < 0.5:
            body["compression"] = "gzip"
        if RNG.random() < 0.3:
            body["delimiter"] = RNG.choice([";", "\t"])
        if RNG.random() < 0.2:
            body["bom"] = True
        return key, kind, body

    def create_some(self, n):
        for _ in range(n):
            self.post_create(*self.random_request())

    # -- the store, read-only ----------------------------------------------------
    def rows(self):
        return store_rows(self.data_dir, "SELECT * FROM jobs")

    def row(self, export_id):
        r = store_rows(self.data_dir, "SELECT * FROM jobs WHERE id = ?", (export_id,))
        return r[0] if r else None

    def pending(self):
        r = store_rows(self.data_dir, "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'processing')")
        return r[0][0] if r else 0

    # -- invariants --------------------------------------------------------------
    def check_store(self):
        """What must hold at any moment with a server running."""
        now = time.time()
        s = self.server
        rows = self.rows()
        by_id = {r["id"]: r for r in rows}
        for j in self.jobs.values():
            r = by_id.get(j.id)
            if r is None:
                raise Violation(f"acknowledged export {j.id} ({j.kind} {json.dumps(j.body)[:120]}) is not in the "
                                f"job store")
        # What the sweep must have done by now: a sweep runs at start-up and
        # every SWEEP_S, so anything due before max(due, server start) +
        # SWEEP_S (+ slack) is late.
        def overdue(due_ms):
            return now > max(due_ms / 1000.0, s.started if s else now) + SWEEP_S + SLACK_S

        for r in store_rows(self.data_dir, "SELECT job_id, stale_key, retired_at FROM stale_files"):
            if overdue(r["retired_at"]):
                raise Violation(f"superseded file {r['stale_key']} of job {r['job_id']} (retired "
                                f"{now - r['retired_at'] / 1000:.1f} s ago) was never deleted")
        for r in rows:
            j = self.jobs.get(r["id"])
            status = r["status"]
            if status == "processing" and overdue(r["lease_expires_at"]):
                owner = "the live server" if s and s.owns(r["lease_owner"]) else "a dead server"
                raise Violation(f"job {r['id']} is processing under {owner} ({r['lease_owner']}) with a lease "
                                f"that ran out {now - r['lease_expires_at'] / 1000:.1f} s ago (server up "
                                f"{now - s.started:.1f} s)")
            if status == "available" and overdue(r["expires_at"]):
                raise Violation(f"job {r['id']} expired {now - r['expires_at'] / 1000:.1f} s ago and is still "
                                f"recorded available (the sweep records expiry)")
            if status in ("expired", "failed") and r["file_key"] and overdue(r["updated_at"]):
                raise Violation(f"job {r['id']} is {status} since {now - r['updated_at'] / 1000:.1f} s and its file "
                                f"{r['file_key']} was never deleted")
            if j is None:
                continue
            claims = r["lease_token"] - j.gen_token
            if r["attempt"] != claims:
                raise Violation(f"job {j.id}: attempt {r['attempt']} but {claims} claims in this generation "
                                f"(no graceful stop happened)")
            losses = j.gen_losses()
            if r["attempt"] > losses + 1:
                raise Violation(f"job {j.id}: attempt {r['attempt']} with only {losses} claims lost to kills "
                                f"(tokens {sorted(j.lost_tokens())}, generation from token {j.gen_token}): an attempt "
                                f"was counted without a real loss; the servers' logs say: "
                                f"{server_log_lines(j.id) or 'nothing'}")
            if r["attempt"] > MAX_ATTEMPTS:
                raise Violation(f"job {j.id}: attempt {r['attempt']} > max attempts {MAX_ATTEMPTS}")
            if status == "failed":
                if (j.id, r["lease_token"]) not in self.failed_seen:
                    self.failed_seen.add((j.id, r["lease_token"]))
                    self.stats["failed (attempts exhausted)"] += 1
                if r["error_code"] != "ATTEMPTS_EXHAUSTED" or losses < MAX_ATTEMPTS:
                    raise Violation(f"job {j.id} failed with {r['error_code']}: {r['error_message']} "
                                    f"(claims lost to kills: {losses}); the servers' logs say: "
                                    f"{server_log_lines(j.id) or 'nothing'}")
            if status == "available":
                want = f"{j.id}-{r['lease_token']}.csv" + (".gz" if j.compression == "gzip" else "")
                if r["file_key"] != want:
                    raise Violation(f"job {j.id} is available with file {r['file_key']!r}, not the last claim's "
                                    f"{want!r}")
        self.check_temporaries(now, rows)
        return rows

    def check_temporaries(self, now, rows):
        """A temporary that is not the live server's current writer's is a
        dead writer's: gone within stale-temp-age + a sweep."""
        s = self.server
        if not os.path.isdir(self.files_dir):
            return
        live = {f".tmp-{r['id']}-{r['lease_token']}." for r in rows
                if r["status"] == "processing" and s and s.owns(r["lease_owner"])}
        for e in os.scandir(self.files_dir):
            if not e.name.startswith(".tmp-") or any(e.name.startswith(p) for p in live):
                continue
            try:
                age = now - e.stat().st_mtime
            except FileNotFoundError:
                continue
            if age > STALE_TEMP_S + SWEEP_S + SLACK_S and s and now - s.started > SWEEP_S + SLACK_S:
                raise Violation(f"temporary file {e.name} untouched for {age:.1f} s is still there "
                                f"(stale-temp-age {STALE_TEMP_S} s, sweep every {SWEEP_S} s)")

    def check_listed(self):
        """Every acknowledged export is listed by the API, with its filters."""
        for key in KEYS:
            views, page = {}, 0
            while True:
                status, o = self.server.api("GET", f"/exports?page={page}&limit=100", key=key)
                if status != 200:
                    raise Violation(f"GET /exports: {status} {o}")
                for v in o["exports"]:
                    views[v["exportId"]] = v
                if len(views) >= o["total"] or not o["exports"]:
                    break
                page += 1
            for j in self.jobs.values():
                if j.key != key:
                    continue
                v = views.get(j.id)
                if v is None:
                    raise Violation(f"acknowledged export {j.id} is not listed after restart #{self.n_servers - 1}")
                if v["filters"] != j.filters or v["compression"] != j.compression:
                    raise Violation(f"export {j.id} lists filters {v['filters']} / {v['compression']}, "
                                    f"created with {j.filters} / {j.compression}")
                if v["status"] != "available" and RNG.random() < 0.1:
                    self.check_unreachable(j)
                if v["status"] in ("queued", "processing") and RNG.random() < 0.2:
                    st, e = self.server.api("GET", "/exports/" + j.id, key=key)
                    if st == 200:
                        # It may have finished meanwhile; then the store says so.
                        r = self.row(j.id)
                        if r["status"] != "available":
                            raise Violation(f"export {j.id} is {r['status']} but GET answered a URL: {e}")
                    elif st != 400 or e["error"]["code"] != "EXPORT_NOT_READY":
                        raise Violation(f"GET /exports/{j.id} while {v['status']}: {st} {e}")

    def check_quiescent(self):
        """Nothing queued or running: every file is accounted for."""
        rows = self.check_store()
        if any(r["status"] in ("queued", "processing") for r in rows):
            return False
        named = {r["file_key"] for r in rows if r["file_key"]}
        named |= {r["stale_key"] for r in store_rows(self.data_dir, "SELECT stale_key FROM stale_files")}
        present = {}
        for e in os.scandir(self.files_dir):
            if e.name.startswith(".tmp-"):
                continue
            st = e.stat()
            present[e.name] = st
            if e.name not in named:
                raise Violation(f"file {e.name} in DATA/files is named by no job (a leaked file; "
                                f"{len(present)} files, {len(named)} named)")
        now_ms = time.time() * 1000
        for r in rows:
            if r["status"] != "available":
                continue
            st = present.get(r["file_key"])
            if st is None:
                if r["expires_at"] <= now_ms:
                    continue  # the sweep may just have expired and deleted it
                raise Violation(f"available job {r['id']}: its file {r['file_key']} is missing")
            if st.st_size != r["file_size"]:
                raise Violation(f"available job {r['id']}: file {r['file_key']} has {st.st_size} bytes, the store "
                                f"says {r['file_size']}")
            ck = (r["file_key"], st.st_size, st.st_mtime_ns)
            if ck not in self.sha_cache:
                self.sha_cache[ck] = sha256_file(os.path.join(self.files_dir, r["file_key"]))
            if self.sha_cache[ck] != r["checksum"]:
                raise Violation(f"available job {r['id']}: file {r['file_key']} SHA-256 {self.sha_cache[ck]} != "
                                f"recorded {r['checksum']}")
        return True

    # -- verification of files ----------------------------------------------------
    def verify_available(self, limit_s=None):
        """Downloads and checks every available export not yet checked (its
        current file). Returns the number checked."""
        started = time.monotonic()
        n = 0
        for r in self.rows():
            j = self.jobs.get(r["id"])
            if j is None or r["status"] != "available" or r["file_key"] in j.verified_keys:
                continue
            if r["expires_at"] <= time.time() * 1000 + 2000:
                continue
            if self.verify(j, r):
                n += 1
            if limit_s is not None and time.monotonic() - started > limit_s:
                break
        return n

    def verify(self, j, r):
        s = self.server
        status, u = s.api("GET", "/exports/" + j.id, key=j.key)
        if status == 400 and u["error"]["code"] == "EXPORT_EXPIRED":
            return False
        if status != 200:
            raise Violation(f"GET /exports/{j.id} (available in the store): {status} {u}")
        if u["fileSize"] != r["file_size"] or u["rowCount"] != r["row_count"]:
            raise Violation(f"GET /exports/{j.id}: {u} disagrees with the store ({r['file_size']} bytes, "
                            f"{r['row_count']} rows)")
        path = os.path.join(self.dl_dir, "file")
        status, ctype, size, sha = self.download(u["url"], path)
        if status == 403 and r["expires_at"] <= time.time() * 1000 + 1000:
            return False
        if status != 200:
            raise Violation(f"download of {j.id}: {status}")
        want_type = "application/gzip" if j.compression == "gzip" else "text/csv; charset=utf-8"
        if ctype != want_type:
            raise Violation(f"download of {j.id}: Content-Type {ctype}, want {want_type}")
        if size != r["file_size"] or sha != r["checksum"]:
            raise Violation(f"download of {j.id}: {size} bytes, SHA-256 {sha}; the store recorded "
                            f"{r['file_size']} bytes, {r['checksum']} (a partial or foreign file)")
        rows = self.compare(j, path)
        if rows != r["row_count"]:
            raise Violation(f"export {j.id}: {rows} rows in the file, rowCount {r['row_count']}")
        os.remove(path)
        j.verified_keys.add(r["file_key"])
        j.verified_ever = True
        if not self.forgery_checked:
            # The driver's own signing must match the server's, or the
            # refusals counted by check_unreachable would prove nothing.
            st, _, sz, sh = self.download(self.signed_url(j.id))
            if (st, sz, sh) != (200, size, sha):
                raise Violation(f"the driver's signed link for available export {j.id} answered {st} (test bug)")
            self.forgery_checked = True
        self.files_checked += 1
        return True

    def download(self, url, path=None):
        """GETs a signed URL from the live server, streaming the body (to
        `path` if given). Returns (status, Content-Type, size, SHA-256)."""
        parts = urllib.parse.urlsplit(url)
        h = hashlib.sha256()
        size = 0
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        out = open(path, "wb") if path else None
        try:
            conn.request("GET", parts.path + "?" + parts.query)
            resp = conn.getresponse()
            while True:
                b = resp.read(1 << 20)
                if not b:
                    break
                if resp.status == 200:
                    h.update(b)
                    size += len(b)
                    if out:
                        out.write(b)
            return resp.status, resp.getheader("Content-Type"), size, h.hexdigest()
        except (OSError, http.client.HTTPException) as e:
            raise Violation(f"download {parts.path} from a live server failed: {e!r}")
        finally:
            conn.close()
            if out:
                out.close()

    def signed_url(self, export_id):
        """A valid download link for any export, signed with the server's
        key (DATA/signing.key) as the API would sign it: what an old link,
        or one signed the instant before a regeneration, looks like."""
        with open(os.path.join(self.data_dir, "signing.key")) as f:
            key = bytes.fromhex(f.read().strip())
        path = "/downloads/" + export_id
        expires = str(int(time.time() * 1000) + 600_000)
        mac = hmac.new(key, f"GET\n{path}\n{expires}".encode(), hashlib.sha256).digest()
        sig = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        return f"http://127.0.0.1{path}?expires={expires}&signature={sig}"

    def check_unreachable(self, j):
        """A validly signed link to an export that is not available is
        refused (403): no partial, superseded or unrecorded file is ever
        reachable."""
        status, _, size, sha = self.download(self.signed_url(j.id))
        self.stats["links to unavailable exports refused"] += status == 403
        if status == 403:
            return
        r = self.row(j.id)
        if status == 200 and r["status"] == "available" and (size, sha) == (r["file_size"], r["checksum"]):
            return  # it finished meanwhile: the complete new file
        raise Violation(f"export {j.id} ({r['status']}): a validly signed link answered {status} with {size} bytes "
                        f"(SHA-256 {sha}); the store has {r['file_size']} bytes, {r['checksum']}")

    def compare(self, j, path):
        """Parses the file and compares it row by row with the reference."""
        raw = gzip.open(path, "rb") if j.compression == "gzip" else open(path, "rb")
        try:
            head = raw.peek(3)[:3] if hasattr(raw, "peek") else b""
            if (head == BOM) != j.bom:
                raise Violation(f"export {j.id}: BOM {'missing' if j.bom else 'unexpected'}")
            if j.bom:
                raw.read(3)
            f = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            reader = csv.reader(f, delimiter=j.delimiter)
            header = next(reader, None)
            want_header = CONTACT_COLUMNS if j.kind == "contacts" else REPORT_COLUMNS
            if header != want_header:
                raise Violation(f"export {j.id}: header {header}")
            n = 0
            ref = self.src.rows(j.spec())
            sentinel = object()
            while True:
                got = next(reader, sentinel)
                want = next(ref, sentinel)
                if got is sentinel and want is sentinel:
                    break
                if got != want:
                    raise Violation(f"export {j.id} ({j.kind} {json.dumps(j.body)[:200]}): row {n + 1} is "
                                    f"{got if got is not sentinel else 'missing'}, the database says "
                                    f"{want if want is not sentinel else 'no more rows'}")
                n += 1
            self.rows_compared += n
            return n
        finally:
            raw.close()

    # -- maintenance between kills ----------------------------------------------
    def maintain(self):
        """After a restart: the invariants, retried creates, regenerations,
        and files checked."""
        self.retry_unanswered()
        self.check_store()
        self.check_listed()
        self.verify_available(limit_s=20.0)
        # Failed exports (three claims lost) and expired ones never checked
        # are regenerated; some checked ones too, to exercise regenerate.
        for r in self.rows():
            j = self.jobs.get(r["id"])
            if j is None:
                continue
            expired = r["status"] == "expired" or (r["status"] == "available"
                                                   and r["expires_at"] <= time.time() * 1000)
            if r["status"] == "failed" or (expired and (not j.verified_ever or
                                                        (RNG.random() < 0.15 and self.pending() < MAX_PENDING))):
                self.regenerate(j)

    # -- kill modes ------------------------------------------------------------
    def wait_until(self, cond, timeout, step=0.01):
        """Polls `cond` (the store's invariants every half second too)."""
        deadline = time.monotonic() + timeout
        next_check = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if not self.server.alive():
                raise Violation(f"the server died by itself; stderr:\n{self.server.tail()}")
            v = cond()
            if v:
                return v
            if time.monotonic() > next_check:
                self.check_store()
                next_check = time.monotonic() + 0.5
            time.sleep(step)
        return None

    def ensure_work(self):
        """Something to kill in the middle of: a few exports, one of them
        a whole account's contacts (the longest)."""
        if self.pending() == 0:
            self.create_some(RNG.randint(1, 2))
        if self.pending() < MAX_PENDING:
            key = RNG.choice(list(KEYS))
            self.post_create(key, "contacts", RNG.choice([{}, {"compression": "gzip"}]))

    def mode_ack(self):
        regen = [self.jobs[r["id"]] for r in self.rows()
                 if r["id"] in self.jobs and r["status"] in ("expired", "failed")]
        if regen and RNG.random() < 0.4:
            self.regenerate(RNG.choice(regen))
            self.kill("ack-regenerate")
        else:
            self.create_some(RNG.randint(1, 3) if self.pending() < MAX_PENDING else 1)
            self.kill("ack-create")

    def mode_burst(self):
        stop = threading.Event()
        results = []
        lock = threading.Lock()
        s = self.server

        per_thread = RNG.randint(2, 10)

        def poster():
            rng = random.Random(RNG.random())
            for _ in range(per_thread):
                if stop.is_set():
                    return
                key = rng.choice(list(KEYS))
                body = {"contactIds": sorted(rng.sample(range(1, self.src.max_contact + 50), rng.randint(1, 40)))}
                if rng.random() < 0.5:
                    body["compression"] = "gzip"
                idem = uuid.uuid4().hex
                try:
                    status, _, data = s.request("POST", "/exports/contacts", body, key, {"Idempotency-Key": idem},
                                                timeout=10)
                except (OSError, http.client.HTTPException):
                    with lock:
                        results.append((None, idem, key, body))
                    return
                with lock:
                    results.append(((status, data), idem, key, body))

        threads = [threading.Thread(target=poster, daemon=True) for _ in range(RNG.randint(3, 5))]
        for t in threads:
            t.start()
        time.sleep(RNG.uniform(0.0, 0.25))
        self.kill("burst")
        stop.set()
        for t in threads:
            t.join(timeout=15)
        for answer, idem, key, body in results:
            if answer is None:
                self.unanswered.append((idem, key, "contacts", body))
                continue
            status, data = answer
            if status != 202:
                raise Violation(f"burst create: {status} {data[:300]!r}")
            self.creates += 1
            self.acknowledge(json.loads(data)["exportId"], key, "contacts", body)

    def mode_mid(self):
        self.ensure_work()
        s = self.server

        def writing():
            for r in store_rows(self.data_dir, "SELECT id, lease_owner FROM jobs WHERE status = 'processing'"):
                if s.owns(r["lease_owner"]) and any(n.startswith(".tmp-" + r["id"])
                                                    for n in os.listdir(self.files_dir)):
                    return r["id"]
            return None

        being_written = self.wait_until(writing, 20.0, 0.005)
        if being_written:
            if being_written in self.jobs and RNG.random() < 0.5:
                self.check_unreachable(self.jobs[being_written])
            time.sleep(RNG.uniform(0, 0.4))
            self.kill("mid-export")
        else:
            self.kill("mid-export-missed")

    def mode_publish(self):
        self.ensure_work()
        before = set(n for n in os.listdir(self.files_dir) if not n.startswith(".tmp-"))
        avail = {r["id"] for r in store_rows(self.data_dir, "SELECT id FROM jobs WHERE status = 'available'")}
        state = {"n": 0}

        def published():
            names = set(n for n in os.listdir(self.files_dir) if not n.startswith(".tmp-"))
            if names - before:
                return "file"
            state["n"] += 1
            if state["n"] % 5 == 0:
                now_avail = {r["id"] for r in store_rows(self.data_dir,
                                                         "SELECT id FROM jobs WHERE status = 'available'")}
                if now_avail - avail:
                    return "available"
            return None

        how = self.wait_until(published, 30.0, 0.001)
        self.kill("publish-" + how if how else "publish-missed")

    def mode_idle(self):
        if not self.wait_until(lambda: self.pending() == 0, 60.0, 0.05):
            self.kill("idle-missed")
            return
        self.check_quiescent()
        time.sleep(RNG.uniform(0, 2.0 * SWEEP_S))
        self.kill("idle-sweep")

    def run(self):
        log(f"crash test: seed {ARGS.seed}, {self.kills_wanted} kills, source {self.src.path}")
        self.start()
        modes = [("ack", 3), ("burst", 2), ("mid", 4), ("publish", 3), ("idle", 2)]
        names = [m for m, w in modes for _ in range(w)]
        while self.kills < self.kills_wanted:
            mode = RNG.choice(names)
            if mode == "ack":
                self.mode_ack()
            elif mode == "burst":
                self.mode_burst()
            elif mode == "mid":
                self.mode_mid()
            elif mode == "publish":
                self.mode_publish()
            elif mode == "idle":
                self.mode_idle()
            self.start()
            if self.kills < self.kills_wanted and RNG.random() < 0.12:
                # Killed again while recovering (the start-up sweep).
                time.sleep(RNG.uniform(0, 0.3))
                self.kill("startup")
                self.start()
            self.maintain()
            if self.kills % 5 == 0:
                log(f"{self.kills} kills, {len(self.jobs)} exports, {self.files_checked} files checked, "
                    f"{self.rows_compared} rows compared")
        self.finish()

    def finish(self):
        """No more kills: everything must settle, and be right."""
        log("final phase: waiting for every export to be available and checked")
        deadline = time.monotonic() + ARGS.settle_timeout
        self.maintain()
        while True:
            self.verify_available()
            rows = self.check_store()
            by_id = {r["id"]: r for r in rows}
            waiting = []
            for j in self.jobs.values():
                r = by_id[j.id]
                if r["status"] in ("failed",) or (r["status"] == "expired" and not j.verified_ever):
                    self.regenerate(j)
                    waiting.append(j.id)
                elif not j.verified_ever:
                    waiting.append(j.id)
            if not waiting and self.check_quiescent():
                break
            if time.monotonic() > deadline:
                states = {i: by_id[i]["status"] for i in waiting[:10]}
                raise Violation(f"{len(waiting)} exports never became available and checked within "
                                f"{ARGS.settle_timeout} s: {states}")
            if not self.server.alive():
                raise Violation(f"the server died by itself; stderr:\n{self.server.tail()}")
            time.sleep(0.2)
        # Temporaries of the last kills: gone within stale-temp-age + sweep.
        deadline = time.monotonic() + STALE_TEMP_S + SWEEP_S + SLACK_S
        while any(n.startswith(".tmp-") for n in os.listdir(self.files_dir)):
            if time.monotonic() > deadline:
                left = [n for n in os.listdir(self.files_dir) if n.startswith(".tmp-")]
                raise Violation(f"temporary files left after recovery: {left}")
            time.sleep(0.2)
        self.check_quiescent()
        ids = {r["id"] for r in self.rows()}
        unknown = ids - set(self.jobs)
        if unknown:
            raise Violation(f"{len(unknown)} jobs in the store were never acknowledged, even after retrying "
                            f"their creates with the same Idempotency-Key (a create stored twice?): "
                            f"{sorted(unknown)[:5]}")
        for j in self.jobs.values():
            if not j.verified_ever:
                raise Violation(f"export {j.id} was never checked")
        self.exports_checked = len(self.jobs)
        spurious = 0
        for s in SERVERS:
            try:
                with open(s.log_path, "rb") as f:
                    spurious += f.read().count(b"abandoning this attempt")
            except OSError:
                pass
        if spurious:
            log(f"note: {spurious} leases were lost by a live server (heartbeat starved)")
        code = self.server.terminate()
        if code != 0:
            raise Violation(f"SIGTERM: the server exited with {code}")
        self.server = None


# --------------------------------------------------------------------------

def cleanup():
    for s in SERVERS:
        try:
            s.kill()
        except Exception:
            pass
    if TMP and os.path.isdir(TMP) and not (ARGS and ARGS.keep):
        shutil.rmtree(TMP, ignore_errors=True)


def main():
    global ARGS, RNG, TMP, T0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("exe", help="path to the exportengine program")
    p.add_argument("--kills", type=int, default=None, help="SIGKILLs per run (default 20; 50 with --long)")
    p.add_argument("--seed", type=int, default=None, help="RNG seed (default: random, printed)")
    p.add_argument("--contacts", type=int, default=None,
                   help="contacts (and delivery reports) seeded, over 2 accounts (default 300000; 2 M with --long)")
    p.add_argument("--retention", default=None,
                   help="serve --retention: exports expire, are swept and regenerated (default 15s; 60s with --long)")
    p.add_argument("--long", action="store_true", help="the reliability figures: 2 M contacts, 50 kills")
    p.add_argument("--cache-dir", default=os.environ.get("EXPORTENGINE_CRASH_CACHE",
                                                         os.path.join(tempfile.gettempdir(),
                                                                      "exportengine-crash-cache")),
                   help="where the seeded source is kept between runs")
    p.add_argument("--settle-timeout", type=float, default=None, help="final phase limit in seconds")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data dir)")
    p.add_argument("--verbose", action="store_true", help="log every kill")
    ARGS = p.parse_args()
    if ARGS.kills is None:
        ARGS.kills = 50 if ARGS.long else 20
    if ARGS.contacts is None:
        ARGS.contacts = 2_000_000 if ARGS.long else 300_000
    if ARGS.retention is None:
        ARGS.retention = "60s" if ARGS.long else "15s"
    if ARGS.settle_timeout is None:
        ARGS.settle_timeout = 120.0 if ARGS.long else 90.0
    if ARGS.seed is None:
        ARGS.seed = random.SystemRandom().randrange(1, 2 ** 31)
    RNG = random.Random(ARGS.seed)
    exe = os.path.abspath(ARGS.exe)
    T0 = time.monotonic()
    print(f"crash_test: --seed {ARGS.seed} (replay with: crash_test.py EXE --seed {ARGS.seed} --kills {ARGS.kills} "
          f"--contacts {ARGS.contacts}{' --long' if ARGS.long else ''})", flush=True)
    src = Source(seeded_source(exe, ARGS.cache_dir, ARGS.contacts, ARGS.contacts))
    TMP = tempfile.mkdtemp(prefix="exportengine-crash-test-")
    atexit.register(cleanup)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(130))
    d = Driver(exe, src, ARGS.kills, ARGS.retention)
    try:
        d.run()
    except Exception as e:
        what = str(e) if isinstance(e, Violation) else "unexpected error:\n" + traceback.format_exc()
        print(f"\nFAILED (seed {ARGS.seed}, after {d.kills} kills): {what}", flush=True)
        if d.server is not None:
            print("server stderr (tail):\n" + d.server.tail(), flush=True)
        if ARGS.keep:
            print(f"kept {TMP}", flush=True)
        return 1
    elapsed = time.monotonic() - T0
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(d.kill_kinds.items()))
    print(f"crash test passed: {d.kills} kills survived ({kinds}); {d.exports_checked} exports checked "
          f"({d.files_checked} files, {d.regenerates} regenerations, {d.creates} creates acknowledged); "
          f"{d.rows_compared} rows compared; {elapsed:.1f} s (seed {ARGS.seed})", flush=True)
    print("  " + "; ".join(f"{k}: {v}" for k, v in d.stats.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
