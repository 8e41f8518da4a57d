#!/usr/bin/env python3
"""`exportengine serve`, two builds, the same HTTP conversation: does a client
see the same bytes from both?

    python3 benchmarks/http_ab.py --before EXE --after EXE [--page PATH] [--keep]

One small SQLite source is seeded once with the after build (`exportengine
seed`); each server gets its own copy (in rollback-journal mode, so that the
script can hold it under an exclusive lock), its own fresh data directory,
the same two API keys (two accounts) and the same signing key file, and
listens on 127.0.0.1:0. The same fixed sequence of raw HTTP/1.1 requests
(raw sockets: the exact bytes of the status line, every header in order and
the body) goes to both, one connection per step; the script half-closes its
side after sending, and reads until the server closes.

Only what must differ between two runs is normalised, the same way in both:
export ids (each named after the step that created it), RFC 3339 timestamps
with milliseconds, the port of the bound address, `expires` and `signature`
in download links, a Date header and a version in the Server header if
there were any. Everything else — status line, header names, values and
order, body — is compared byte for byte; downloaded files (CSV, gzip) are
compared unnormalised.

Every create is followed by a wait until both accounts' exports are
finished (polling GET /exports; not compared), so that the state each step
sees does not depend on timing. The not-ready answers are made
deterministic by holding the server's source copy under an exclusive SQLite
lock while the export is created and asked for; a failed export (and its
regeneration) by renaming the copy's contacts table away for a moment. The
script knows the signing key, so it also signs links of its own (expired,
far in the future, for an export that is not ready or has failed).

A build against itself gives 0 differences (the check of the
normalisation). --keep leaves the temporary directory: server logs, data,
and each step's raw response bytes (responses/before|after/NNN.http).

The page (--page) lists every step with both statuses and whether the
responses are identical, and a unified diff of the normalised responses for
each difference. Exit status 0 when everything is identical, 1 otherwise,
2 when the run itself failed. Python 3 standard library only.
"""
import argparse
import base64
import datetime
import difflib
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # leave no __pycache__ in tests/tools
sys.path.insert(0, os.path.join(HERE, "..", "tests", "tools"))
import server_process  # noqa: E402  (tests/tools: first stdout line with a deadline, kill for good)

import benchlib  # noqa: E402  (this directory: the machine and a build's commit)

KEYS = {"key-alpha": 1, "key-beta": 2}
A, B = "key-alpha", "key-beta"
# A fixed link-signing key (64 hex digits), so that the script can sign a
# link of its own (an expired one with a valid signature).
SIGNING_KEY_HEX = hashlib.sha256(b"benchmarks/http_ab.py fixed signing key").hexdigest()
SEED_ARGS = ["--accounts", "3", "--contacts", "3000", "--lists", "10", "--campaigns", "5",
             "--reports", "3000", "--seed", "7"]
STEP_TIMEOUT = 15.0


class RunError(RuntimeError):
    """The comparison could not be made (a server did not start, a wait
    timed out): not a difference."""


# --------------------------------------------------------------------------
# Raw HTTP
# --------------------------------------------------------------------------

def request(method, target, key=None, body=None, headers=(), version="HTTP/1.1", content_length=True):
    """The bytes of one request: Host, then Authorization (when `key`), then
    `headers` in order, then Content-Length when there is a body."""
    lines = [f"{method} {target} {version}", "Host: 127.0.0.1"]
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    lines += list(headers)
    data = b""
    if body is not None:
        data = body if isinstance(body, bytes) else (
            body.encode("utf-8") if isinstance(body, str) else json.dumps(body, separators=(",", ":")).encode())
        if content_length:
            lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def exchange(port, data, expect_continue=False, timeout=STEP_TIMEOUT):
    """Sends `data` on a new connection, half-closes, and returns every byte
    the server sends until it closes. With `expect_continue` the head goes
    first and the body only after the interim response (or 2 s)."""
    deadline = time.monotonic() + timeout
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if expect_continue:
            head, _, body = data.partition(b"\r\n\r\n")
            s.sendall(head + b"\r\n\r\n")
            s.settimeout(2.0)
            try:
                while b"\r\n\r\n" not in out:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
            except socket.timeout:
                pass
            s.sendall(body)
        else:
            s.sendall(data)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                out += b"\n[http_ab: the server did not close the connection in time]"
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                out += b"\n[http_ab: connection reset]"
                break
            except socket.timeout:
                continue
            if not chunk:
                break
            out += chunk
    return out


class Response:
    def __init__(self, status_line, headers, body):
        self.status_line = status_line      # str
        self.headers = headers              # [(name, value)] in order, as sent
        self.body = body                    # bytes

    @property
    def status(self):
        parts = self.status_line.split(" ")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def is_file(self):
        ct = (self.header("Content-Type") or "").lower()
        return ct.startswith("text/csv") or ct.startswith("application/gzip")


def split_responses(raw, head_request):
    """The responses in `raw` (interim 1xx ones included), and whatever
    bytes could not be read as a response."""
    out = []
    rest = raw
    while rest:
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            break
        head = rest[:end].decode("latin-1").split("\r\n")
        if not head[0].startswith("HTTP/"):
            break
        headers = []
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip(" \t")))
        r = Response(head[0], headers, b"")
        rest = rest[end + 4:]
        if 100 <= r.status < 200:
            out.append(r)
            continue
        if head_request(len(out)) or r.status in (204, 304):
            n = 0
        elif (r.header("Content-Length") or "").isdigit():
            n = int(r.header("Content-Length"))
        else:
            n = len(rest)
        r.body, rest = rest[:n], rest[n:]
        out.append(r)
    return out, rest


# --------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------

TIME_RE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
PORT_RE = re.compile(rb"127\.0\.0\.1:\d+")
EXPIRES_RE = re.compile(rb"expires=\d+")
SIG_RE = re.compile(rb"signature=[A-Za-z0-9_-]+")
EXPORT_ID_RE = re.compile(rb'"exportId":"([^"]*)"')


def normalise(data, ids):
    """Text of a response's head or JSON body with run-specific values
    replaced: `ids` maps each export id of this run to its step's name."""
    data = SIG_RE.sub(b"signature=<signature>", data)
    data = EXPIRES_RE.sub(b"expires=<expires>", data)
    data = PORT_RE.sub(b"127.0.0.1:<port>", data)
    data = TIME_RE.sub(b"<time>", data)
    for real, name in sorted(ids.items(), key=lambda kv: -len(kv[0])):
        data = data.replace(real.encode(), f"<id:{name}>".encode())
    # An export id no step registered (should not happen): numbered in order.
    for m in EXPORT_ID_RE.finditer(data):
        real = m.group(1).decode()
        if not real.startswith("<id:"):
            ids.setdefault(real, f"unregistered-{len(ids) + 1}")
    for real, name in ids.items():
        data = data.replace(real.encode(), f"<id:{name}>".encode())
    return data


def normalised_head(r, ids):
    lines = [r.status_line]
    for name, value in r.headers:
        if name.lower() == "date":
            value = "<date>"
        elif name.lower() == "server":
            value = re.sub(r"/\S+", "/<version>", value)
        lines.append(f"{name}: {value}")
    return normalise("\r\n".join(lines).encode("latin-1"), ids)


def normalised(raw, head_request, ids):
    """(bytes to compare, lines to show) for one step's raw bytes."""
    responses, rest = split_responses(raw, head_request)
    cmp, show = b"", []
    for r in responses:
        head = normalised_head(r, ids)
        cmp += head + b"\r\n\r\n"
        show += head.decode("latin-1").split("\r\n") + [""]
        if r.is_file():
            # Downloaded bytes: compared as they are.
            cmp += r.body
            digest = hashlib.sha256(r.body).hexdigest()
            show.append(f"<{len(r.body)} bytes of file, sha256 {digest}>")
            if r.body:
                text = r.body.decode("utf-8", "replace") if not r.body.startswith(b"\x1f\x8b") else None
                if text is not None:
                    show += [ln for ln in text.splitlines()[:20]]
        else:
            body = normalise(r.body, ids)
            cmp += body
            if body:
                show.append(body.decode("utf-8", "replace"))
                try:
                    pretty = json.dumps(json.loads(body.decode("utf-8")),
                                        indent=2, ensure_ascii=False)
                    show += ["(pretty-printed:)"] + pretty.splitlines()
                except ValueError:
                    pass
        show.append("")
    if rest:
        extra = normalise(rest, ids)
        cmp += b"<unparsed>" + extra
        show.append("<bytes that are not an HTTP response>: " + repr(extra))
    return cmp, show, responses


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------

class Server:
    """One `exportengine serve` on 127.0.0.1:0 over its own source copy and
    data directory."""

    def __init__(self, name, exe, seeded, tmp, key_file):
        self.name = name
        self.exe = exe
        self.source = os.path.join(tmp, f"source-{name}.db")
        src, dst = sqlite3.connect(seeded), sqlite3.connect(self.source)
        src.backup(dst)
        src.close()
        dst.execute("PRAGMA journal_mode=DELETE")   # so an exclusive lock keeps readers out
        dst.close()
        self.data_dir = os.path.join(tmp, f"data-{name}")
        self.log_path = os.path.join(tmp, f"stderr-{name}.log")
        self.log = open(self.log_path, "wb")
        args = [exe, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir, "--source", self.source,
                "--signing-key", key_file]
        for k, account in KEYS.items():
            args += ["--api-key", f"{k}:{account}"]
        self.args = args
        self.lock = None
        try:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        except BaseException:
            self.log.close()
            raise
        try:
            line = server_process.read_line(self.proc, 15.0)
            m = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)\n", line)
            if not m:
                raise RunError(f"{name}: unexpected first stdout line {line!r}; stderr: {self.stderr_tail()}")
            self.port = int(m.group(1))
        except BaseException:
            self.stop()
            raise

    def stderr_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def lock_source(self):
        self.lock = sqlite3.connect(self.source, isolation_level=None, timeout=5)
        self.lock.execute("BEGIN EXCLUSIVE")

    def unlock_source(self):
        if self.lock is not None:
            try:
                self.lock.execute("ROLLBACK")
            finally:
                self.lock.close()
                self.lock = None

    def hide_table(self, table, hidden=True):
        """Renames `table` of the source copy away (an export that reads it
        fails at once) or back."""
        old, new = (table, table + "_hidden") if hidden else (table + "_hidden", table)
        db = sqlite3.connect(self.source, isolation_level=None, timeout=5)
        try:
            db.execute(f"ALTER TABLE {old} RENAME TO {new}")
        finally:
            db.close()

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s; idempotent."""
        try:
            self.unlock_source()
        except sqlite3.Error:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        server_process.kill(self.proc, self.log)

    def call(self, method, target, key=None, body=None):
        raw = exchange(self.port, request(method, target, key, body))
        rs, _ = split_responses(raw, lambda i: method == "HEAD")
        if not rs:
            raise RunError(f"{self.name}: no response to {method} {target}: {raw[:200]!r}")
        return rs[-1]

    def wait_settled(self, timeout=60.0):
        """Until neither account has a queued or processing export."""
        deadline = time.monotonic() + timeout
        while True:
            busy = []
            for key in KEYS:
                page, seen = 0, 0
                while True:
                    r = self.call("GET", f"/exports?page={page}&limit=100", key)
                    if r.status != 200:
                        raise RunError(f"{self.name}: GET /exports while waiting: {r.status_line} {r.body[:200]!r}")
                    listing = r.json()
                    busy += [e["exportId"] for e in listing["exports"] if e["status"] in ("queued", "processing")]
                    seen += len(listing["exports"])
                    if not listing["exports"] or seen >= listing["total"]:
                        break
                    page += 1
            if not busy:
                break
            if time.monotonic() > deadline:
                raise RunError(f"{self.name}: exports still unfinished after {timeout:.0f} s: {busy}; "
                               f"stderr: {self.stderr_tail()}")
            time.sleep(0.05)
        time.sleep(0.02)  # the next export's createdAt is a later millisecond


# --------------------------------------------------------------------------
# The conversation
# --------------------------------------------------------------------------

class Ctx:
    """One server's run: its port and the ids, links and views its steps
    have seen so far."""

    def __init__(self, server):
        self.server = server
        self.port = server.port
        self.ids = {}      # step name -> export id
        self.names = {}    # export id -> step name (for normalising)
        self.urls = {}     # step name -> download path and query

    def id(self, name):
        return self.ids[name]

    def link(self, name):
        return self.urls[name]


def signed(export_id, expires):
    """The signature of a download link (the HMAC-SHA256 of the method, path
    and expiry in milliseconds, as hmac_url_signer computes it)."""
    msg = f"GET\n/downloads/{export_id}\n{expires}".encode()
    mac = hmac.new(bytes.fromhex(SIGNING_KEY_HEX), msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def resign(export_id, link):
    """The link with its signature computed here from its own expires."""
    expires = int(re.search(r"expires=(\d+)", link).group(1))
    return f"/downloads/{export_id}?expires={expires}&signature={signed(export_id, expires)}"


def tamper(link):
    """The link with the signature's first character changed."""
    head, _, sig = link.rpartition("signature=")
    return head + "signature=" + ("B" if sig[0] == "A" else "A") + sig[1:]


def without(link, name):
    path, _, query = link.partition("?")
    return path + "?" + "&".join(p for p in query.split("&") if not p.startswith(name + "="))


class Step:
    """A request (`make(ctx)` gives its bytes) or an action (`act(ctx)`)."""

    def head_request(self, k):
        return self.head[k] if isinstance(self.head, list) and k < len(self.head) else self.head is True

    def __init__(self, label, make=None, *, head=False, register=None, link=None, wait=False, act=None,
                 expect_continue=False, note=""):
        self.label = label
        self.make = make
        self.head = head                    # HEAD: no body; a list: per response, for pipelined requests
        self.register = register            # name for the exportId of a 202
        self.link = link                    # name for the url of a 200 from GET /exports/{id}
        self.wait = wait                    # wait until every export is finished afterwards
        self.act = act
        self.expect_continue = expect_continue
        self.note = note


def R(label, method, target, key=A, body=None, headers=(), **kw):
    """A step of one ordinary request; `target` and `body` may be callables
    of the ctx."""
    def make(ctx):
        t = target(ctx) if callable(target) else target
        b = body(ctx) if callable(body) else body
        return request(method, t, key, b, headers)
    return Step(label, make, head=(method == "HEAD"), **kw)


def Raw(label, data, **kw):
    """A step of raw bytes; `data` may be a callable of the ctx."""
    return Step(label, data if callable(data) else (lambda ctx: data), **kw)


def Act(label, fn):
    return Step(label, act=fn)


def create(label, route, body, key=A, name=None, headers=(), wait=True):
    return R(label, "POST", route, key, body, headers, register=name, wait=wait and name is not None)


C, D = "/exports/contacts", "/exports/delivery-reports"
RANGE = {"startDateTime": "2020-01-01T00:00:00Z", "endDateTime": "2030-01-01T00:00:00+01:00"}


def steps():
    s = []
    add = s.append

    # -- routing and authentication, before any export exists ---------------------
    add(R("list, no Authorization", "GET", "/exports", key=None))
    add(R("list, unknown key", "GET", "/exports", key="not-a-key"))
    add(R("list, Basic scheme", "GET", "/exports", key=None, headers=["Authorization: Basic a2V5LWFscGhhOg=="]))
    add(R("list, 'bearer' lower case, spaces", "GET", "/exports", key=None,
          headers=["Authorization: bearer   key-alpha  "]))
    add(R("list, empty", "GET", "/exports"))
    add(R("HEAD list", "HEAD", "/exports"))
    add(R("DELETE /exports (405)", "DELETE", "/exports"))
    add(R("POST /exports (405)", "POST", "/exports", body={}))
    add(R("DELETE /exports, no auth (405 before 401)", "DELETE", "/exports", key=None))
    add(R("OPTIONS /exports (405)", "OPTIONS", "/exports"))
    add(R("GET /exports/contacts (405)", "GET", C))
    add(R("PUT /exports/delivery-reports (405)", "PUT", D, body={}))
    add(R("GET / (404)", "GET", "/"))
    add(R("GET /nope, no auth (404)", "GET", "/nope", key=None))
    add(R("GET /exports/ (404)", "GET", "/exports/"))
    add(R("GET /exports/bad!id (404)", "GET", "/exports/bad!id"))
    add(R("GET /exports/{65 chars} (404)", "GET", "/exports/" + "a" * 65))
    add(R("GET unknown id (404)", "GET", "/exports/AAAAAAAAAAAAAAAAAAAAAA"))
    add(R("POST unknown id (404)", "POST", "/exports/AAAAAAAAAAAAAAAAAAAAAA"))
    add(R("DELETE unknown id (405)", "DELETE", "/exports/AAAAAAAAAAAAAAAAAAAAAA"))
    add(R("GET /downloads/ (404)", "GET", "/downloads/", key=None))
    add(R("GET /downloads/x, no query (403)", "GET", "/downloads/AAAAAAAAAAAAAAAAAAAAAA", key=None))
    add(R("lower-case method 'get'", "get", "/exports"))

    # -- list queries ---------------------------------------------------------------
    for q in ["page=0&limit=1", "limit=100", "limit=101", "limit=0", "limit=", "limt=5", "page=-1", "page=abc",
              "page=1&page=2", "limit=5&limit=5", "page=1e3", "page=999999999999999999", "page=1000000000000000000",
              "", "&&page=0&", "limit=5%30", "page=0;limit=1"]:
        add(R(f"list ?{q}", "GET", f"/exports?{q}"))

    # -- creates: valid ones (each waited for) -------------------------------------------
    add(create("create contacts {}", C, {}, name="c-all"))
    add(create("create contacts listIds [3,1,3]", C, {"listIds": [3, 1, 3]}, name="c-lists"))
    add(create("create contacts ids, gzip ; bom", C,
               {"contactIds": [1, 4, 7, 10], "compression": "gzip", "delimiter": ";", "bom": True},
               name="c-gzip"))
    add(create("create contacts ids, tab, none, no bom", C,
               {"contactIds": [4, 1], "delimiter": "\t", "compression": "none", "bom": False}, name="c-tab"))
    add(create("create contacts, empty body (no Content-Length)", C, None, name="c-nobody"))
    add(create("create contacts, body '  ' (Content-Type text/plain)", C, "  ", name="c-blank",
               headers=["Content-Type: text/plain"]))
    add(create("create reports campaignId", D, {"campaignId": 1}, name="r-campaign"))
    add(create("create reports range", D, RANGE, name="r-range"))
    add(create("create reports campaign+range", D, {"campaignId": 2, **RANGE}, name="r-both"))
    add(create("create contacts {} as account 2", C, {}, key=B, name="c-beta"))

    # -- creates: invalid bodies ----------------------------------------------------------
    bad_contacts = [
        ("unknown key", '{"listIDs":[1]}'),
        ("duplicate key", '{"listIds":[1],"listIds":[2]}'),
        ("bad JSON '{'", "{"),
        ("bad JSON single quotes", "{'listIds':[1]}"),
        ("JSON array", "[]"),
        ("JSON null", "null"),
        ("trailing garbage", "{} x"),
        ("comment", "/* c */ {}"),
        ("invalid UTF-8", b'{"listIds":"\xff"}'),
        ("listIds string", '{"listIds":"1"}'),
        ("listIds null", '{"listIds":null}'),
        ("listIds [1.0]", '{"listIds":[1.0]}'),
        ("contactIds [0]", '{"contactIds":[0]}'),
        ("contactIds [-1]", '{"contactIds":[-1]}'),
        ("contactIds [2^63]", '{"contactIds":[9223372036854775808]}'),
        ("contactIds [\"1\"]", '{"contactIds":["1"]}'),
        ("contactIds []", '{"contactIds":[]}'),
        ("listIds + contactIds", '{"listIds":[1],"contactIds":[2]}'),
        ("10,001 listIds", json.dumps({"listIds": list(range(1, 10002))})),
        ("100,001 contactIds", json.dumps({"contactIds": list(range(1, 100002))})),
        ("delimiter '|'", '{"delimiter":"|"}'),
        ("delimiter ',,'", '{"delimiter":",,"}'),
        ("compression 'zip'", '{"compression":"zip"}'),
        ("compression null", '{"compression":null}'),
        ("bom 'true'", '{"bom":"true"}'),
        ("long unknown key", '{"' + "k" * 100 + '":1}'),
        ("unknown key with a long value", '{"listIds":[' + "1," * 30 + '"x"]}'),
    ]
    for label, body in bad_contacts:
        add(R(f"contacts: {label}", "POST", C, body=body))
    bad_reports = [
        ("{}", "{}"),
        ("unknown key", '{"campaignId":1,"foo":1}'),
        ("duplicate key", '{"campaignId":1,"campaignId":1}'),
        ("campaignId \"1\"", '{"campaignId":"1"}'),
        ("campaignId 0", '{"campaignId":0}'),
        ("campaignId 1.5", '{"campaignId":1.5}'),
        ("listIds (a contacts field)", '{"listIds":[1]}'),
        ("month 13", '{"startDateTime":"2026-13-01T00:00:00Z","endDateTime":"2027-01-01T00:00:00Z"}'),
        ("space for T", '{"startDateTime":"2026-01-01 00:00:00Z","endDateTime":"2027-01-01T00:00:00Z"}'),
        ("no offset", '{"startDateTime":"2026-01-01T00:00:00","endDateTime":"2027-01-01T00:00:00Z"}'),
        ("date only", '{"startDateTime":"2026-01-01","endDateTime":"2027-01-01T00:00:00Z"}'),
        ("number", '{"startDateTime":1700000000,"endDateTime":"2027-01-01T00:00:00Z"}'),
        ("only startDateTime", '{"startDateTime":"2026-01-01T00:00:00Z"}'),
        ("start == end", '{"startDateTime":"2026-01-01T00:00:00Z","endDateTime":"2026-01-01T00:00:00Z"}'),
        ("start > end", '{"startDateTime":"2026-01-02T00:00:00Z","endDateTime":"2026-01-01T00:00:00+01:00"}'),
        ("bad compression", '{"campaignId":1,"compression":"br"}'),
        ("bad JSON", '{"campaignId":'),
    ]
    for label, body in bad_reports:
        add(R(f"reports: {label}", "POST", D, body=body))
    add(R("contacts: bad body, no auth (401 first)", "POST", C, key=None, body="{"))
    add(R("contacts: wrong key", "POST", C, key="wrong", body={}))

    # -- Idempotency-Key ------------------------------------------------------------------------
    k = ["Idempotency-Key: idem-1"]
    add(create("idem: first request", C, {"contactIds": [1, 7, 13]}, name="c-idem", headers=k))
    add(R("idem: replay", "POST", C, body={"contactIds": [1, 7, 13]}, headers=k))
    add(R("idem: replay, other spacing", "POST", C, body='{ "contactIds" : [2, 5, 8] }', headers=k))
    add(R("idem: replay, default spelled out", "POST", C,
          body={"contactIds": [1, 7, 13], "compression": "none"}, headers=k))
    add(R("idem: reuse, other body", "POST", C, body={"contactIds": [2]}, headers=k))
    add(R("idem: reuse on the reports route", "POST", D, body={"campaignId": 1}, headers=k))
    add(R("idem: reuse, invalid body (400 body first)", "POST", C, body={"contactIds": []}, headers=k))
    add(create("idem: same key, account 2", C, {"contactIds": [1, 7, 13]}, key=B, name="c-idem-beta",
               headers=k))
    k2 = ["Idempotency-Key: idem-2"]
    add(create("idem: reports, +01:00 offset", D,
               {"startDateTime": "2026-01-31T01:00:00+01:00", "endDateTime": "2026-02-01T00:00:00Z"},
               name="r-idem", headers=k2))
    add(R("idem: replay, same instant in Z", "POST", D,
          body={"startDateTime": "2026-01-31T00:00:00Z", "endDateTime": "2026-02-01T00:00:00Z"}, headers=k2))
    add(R("idem: replay, keys in another order", "POST", D,
          body={"endDateTime": "2026-02-01T00:00:00Z", "startDateTime": "2026-01-31T01:00:00+01:00"},
          headers=k2))
    for label, value in [("empty", ""), ("256 chars", "x" * 256), ("tab inside", "a\tb"),
                         ("non-ASCII", "caf\xc3\xa9")]:
        add(R(f"idem: invalid key ({label})", "POST", C, body={}, headers=[f"Idempotency-Key: {value}"]))
    add(R("idem: 255 chars, invalid body", "POST", C, body="{", headers=["Idempotency-Key: " + "y" * 255]))
    add(R("idem: invalid key on GET (ignored)", "GET", "/exports?limit=1", headers=["Idempotency-Key: "]))
    add(R("idem: invalid key, no auth (401 first)", "POST", C, key=None, body={},
          headers=["Idempotency-Key: "]))

    # -- one export: links, other accounts, regenerate ----------------------------------------------
    add(R("get link c-all", "GET", lambda c: f"/exports/{c.id('c-all')}", link="c-all"))
    add(R("HEAD link c-all", "HEAD", lambda c: f"/exports/{c.id('c-all')}"))
    add(R("get link c-gzip", "GET", lambda c: f"/exports/{c.id('c-gzip')}", link="c-gzip"))
    add(R("get link c-tab", "GET", lambda c: f"/exports/{c.id('c-tab')}", link="c-tab"))
    add(R("get link r-range", "GET", lambda c: f"/exports/{c.id('r-range')}", link="r-range"))
    add(R("get link r-both", "GET", lambda c: f"/exports/{c.id('r-both')}", link="r-both"))
    add(R("get link c-idem", "GET", lambda c: f"/exports/{c.id('c-idem')}", link="c-idem"))
    add(R("get link, trailing slash (404)", "GET", lambda c: f"/exports/{c.id('c-all')}/"))
    add(R("get link, no auth (401)", "GET", lambda c: f"/exports/{c.id('c-all')}", key=None))
    add(R("get account 2's export as 1 (404)", "GET", lambda c: f"/exports/{c.id('c-beta')}"))
    add(R("regenerate account 2's export as 1 (404)", "POST", lambda c: f"/exports/{c.id('c-beta')}"))
    add(R("get account 1's export as 2 (404)", "GET", lambda c: f"/exports/{c.id('c-all')}", key=B))
    add(R("get link c-beta as 2", "GET", lambda c: f"/exports/{c.id('c-beta')}", key=B, link="c-beta"))
    add(R("get link c-idem-beta as 2", "GET", lambda c: f"/exports/{c.id('c-idem-beta')}", key=B,
          link="c-idem-beta"))
    add(R("regenerate available (EXPORT_NOT_EXPIRED)", "POST", lambda c: f"/exports/{c.id('c-all')}"))
    add(R("regenerate available, body {}", "POST", lambda c: f"/exports/{c.id('c-all')}", body={}))
    add(R("regenerate, Idempotency-Key", "POST", lambda c: f"/exports/{c.id('c-all')}", body="",
          headers=["Idempotency-Key: regen-1"]))
    add(R("regenerate, a field (400)", "POST", lambda c: f"/exports/{c.id('c-all')}", body={"bom": True}))
    add(R("regenerate, bad JSON", "POST", lambda c: f"/exports/{c.id('c-all')}", body="{"))
    add(R("regenerate, invalid Idempotency-Key", "POST", lambda c: f"/exports/{c.id('c-all')}",
          headers=["Idempotency-Key: "]))
    add(R("PUT /exports/{id} (405)", "PUT", lambda c: f"/exports/{c.id('c-all')}", body={}))

    # -- not ready: the source held under an exclusive lock ---------------------------------------
    add(Act("lock the source", lambda c: c.server.lock_source()))
    add(create("create while the source is locked", C, {"listIds": [1]}, name="c-locked", wait=False))
    add(R("get link, not ready (EXPORT_NOT_READY)", "GET", lambda c: f"/exports/{c.id('c-locked')}"))
    add(R("HEAD link, not ready", "HEAD", lambda c: f"/exports/{c.id('c-locked')}"))
    add(R("regenerate, not ready (EXPORT_NOT_EXPIRED)", "POST", lambda c: f"/exports/{c.id('c-locked')}"))
    add(R("get not-ready export as 2 (404)", "GET", lambda c: f"/exports/{c.id('c-locked')}", key=B))
    add(R("download, valid signature, export not ready (403)", "GET",
          lambda c: f"/downloads/{c.id('c-locked')}?expires=99999999999999&"
                    f"signature={signed(c.id('c-locked'), 99999999999999)}", key=None))
    add(Act("unlock the source; wait", lambda c: (c.server.unlock_source(), c.server.wait_settled())))
    add(R("get link, ready now", "GET", lambda c: f"/exports/{c.id('c-locked')}", link="c-locked"))

    # -- failed: the source's contacts table renamed away ----------------------------------------------
    add(Act("rename the source's contacts table away", lambda c: c.server.hide_table("contacts")))
    add(create("create while contacts is missing (fails)", C, {"contactIds": [1, 4]}, name="c-failed"))
    add(R("list ?limit=1: the failed export and its error", "GET", "/exports?limit=1"))
    add(R("get link, failed (EXPORT_FAILED)", "GET", lambda c: f"/exports/{c.id('c-failed')}"))
    add(R("download, valid signature, export failed (403)", "GET",
          lambda c: f"/downloads/{c.id('c-failed')}?expires=99999999999999&"
                    f"signature={signed(c.id('c-failed'), 99999999999999)}", key=None))
    add(Act("rename the contacts table back", lambda c: c.server.hide_table("contacts", hidden=False)))
    add(R("regenerate failed, invalid body (400)", "POST", lambda c: f"/exports/{c.id('c-failed')}", body="[]"))
    add(R("regenerate failed, as account 2 (404)", "POST", lambda c: f"/exports/{c.id('c-failed')}", key=B))
    add(R("regenerate failed (202), Idempotency-Key", "POST", lambda c: f"/exports/{c.id('c-failed')}",
          headers=["Idempotency-Key: regen-f"], wait=True))
    add(R("regenerate replay, same key (202, as it is now)", "POST", lambda c: f"/exports/{c.id('c-failed')}",
          headers=["Idempotency-Key: regen-f"]))
    add(R("regenerate again, no key (EXPORT_NOT_EXPIRED)", "POST", lambda c: f"/exports/{c.id('c-failed')}"))
    add(R("regenerate with a create's key (IDEMPOTENCY_KEY_REUSED)", "POST",
          lambda c: f"/exports/{c.id('c-failed')}", headers=["Idempotency-Key: idem-1"]))
    add(R("get link, regenerated", "GET", lambda c: f"/exports/{c.id('c-failed')}", link="c-failed"))

    # -- downloads ------------------------------------------------------------------------------------------
    link = lambda name: (lambda c: c.link(name))  # noqa: E731
    add(R("download c-all", "GET", link("c-all"), key=None))
    add(R("download c-all with an API key", "GET", link("c-all")))
    add(R("HEAD download c-all", "HEAD", link("c-all"), key=None))
    add(R("download c-gzip", "GET", link("c-gzip"), key=None))
    add(R("download c-tab", "GET", link("c-tab"), key=None))
    add(R("download r-range", "GET", link("r-range"), key=None))
    add(R("download r-both", "GET", link("r-both"), key=None))
    add(R("download c-idem", "GET", link("c-idem"), key=None))
    add(R("download c-locked", "GET", link("c-locked"), key=None))
    add(R("download c-failed (regenerated)", "GET", link("c-failed"), key=None))
    add(R("download c-beta (account 2)", "GET", link("c-beta"), key=None))
    add(R("download c-idem-beta (account 2)", "GET", link("c-idem-beta"), key=None))
    for rng in ["bytes=0-9", "bytes=-5", "bytes=999999999-", "bytes=0-1,5-6", "bytes=5-2", "bytes=0-",
                "bytes=10-19999999", "bytes=-0", "items=0-5", "bytes=abc"]:
        add(R(f"download c-all Range {rng}", "GET", link("c-all"), key=None, headers=[f"Range: {rng}"]))
    add(R("HEAD download c-all Range bytes=0-9", "HEAD", link("c-all"), key=None, headers=["Range: bytes=0-9"]))
    add(R("download c-gzip Range bytes=0-9", "GET", link("c-gzip"), key=None, headers=["Range: bytes=0-9"]))
    add(R("download Range + If-Range (whole)", "GET", link("c-all"), key=None,
          headers=["Range: bytes=0-9", 'If-Range: "x"']))
    add(R("download, tampered signature", "GET", lambda c: tamper(c.link("c-all")), key=None))
    add(R("download, missing signature", "GET", lambda c: without(c.link("c-all"), "signature"), key=None))
    add(R("download, missing expires", "GET", lambda c: without(c.link("c-all"), "expires"), key=None))
    add(R("download, expired expires (old signature)", "GET",
          lambda c: re.sub(r"expires=\d+", "expires=1000000000", c.link("c-all")), key=None))
    add(R("download, expired expires (valid signature)", "GET",
          lambda c: f"/downloads/{c.id('c-all')}?expires=1000000000&signature={signed(c.id('c-all'), 1000000000)}",
          key=None))
    add(R("download, the link re-signed by this script (checks its signing)", "GET",
          lambda c: resign(c.id("c-all"), c.link("c-all")), key=None))
    add(R("download, far-future expires (valid signature)", "GET",
          lambda c: f"/downloads/{c.id('c-all')}?expires=99999999999999&"
                    f"signature={signed(c.id('c-all'), 99999999999999)}", key=None))
    add(R("download, expires twice", "GET", lambda c: c.link("c-all") + "&expires=99999999999999", key=None))
    add(R("download, extra parameter", "GET", lambda c: c.link("c-all") + "&x=1", key=None))
    add(R("download, another export's signature", "GET",
          lambda c: c.link("c-all").replace(c.id("c-all"), c.id("c-gzip")), key=None))
    add(R("download, unknown id, forged signature", "GET",
          lambda c: f"/downloads/AAAAAAAAAAAAAAAAAAAAAA?expires=99999999999&"
                    f"signature={signed('AAAAAAAAAAAAAAAAAAAAAA', 99999999999)}", key=None))
    add(R("POST download (405)", "POST", link("c-all"), key=None, body={}))
    add(R("DELETE download (405)", "DELETE", link("c-all"), key=None))

    # -- HTTP framing ---------------------------------------------------------------------------------
    auth = f"Authorization: Bearer {A}\r\n"
    add(Raw("malformed request line", b"GARBAGE\r\n\r\n"))
    add(Raw("request line without version", b"GET /exports\r\n\r\n"))
    add(Raw("HTTP/9.9", b"GET /exports HTTP/9.9\r\nHost: x\r\n\r\n"))
    add(Raw("header without colon", ("GET /exports HTTP/1.1\r\nHost: x\r\n" + auth + "Bad header\r\n\r\n").encode()))
    add(Raw("bare LF line ends", ("GET /exports HTTP/1.1\nHost: x\n" + auth.replace("\r", "") + "\n").encode()))
    add(Raw("HTTP/1.0 list", ("GET /exports?limit=1 HTTP/1.0\r\n" + auth + "\r\n").encode()))
    add(Raw("HTTP/1.0 keep-alive list", ("GET /exports?limit=1 HTTP/1.0\r\nConnection: keep-alive\r\n" + auth
                                         + "\r\n").encode()))
    add(Raw("Connection: close", ("GET /exports?limit=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth
                                  + "\r\n").encode()))
    add(Raw("absolute-form target", lambda c: (f"GET http://127.0.0.1:{c.port}/exports?limit=2 HTTP/1.1\r\n"
                                               f"Host: 127.0.0.1:{c.port}\r\n" + auth + "\r\n").encode()))
    add(Raw("absolute-form, other authority, https", ("GET https://example.com/exports?limit=1 HTTP/1.1\r\n"
                                                      "Host: example.com\r\n" + auth + "\r\n").encode()))
    add(Raw("absolute-form, no path", ("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n" + auth
                                       + "\r\n").encode()))
    add(Raw("asterisk-form", ("OPTIONS * HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n").encode()))
    add(Raw("pipelined: list, unknown id, HEAD list",
            (("GET /exports?limit=1 HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n")
             + ("GET /exports/AAAAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n")
             + ("HEAD /exports?limit=1 HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n")).encode(),
            head=[False, False, True]))
    add(Raw("Transfer-Encoding + Content-Length",
            ("POST /exports/contacts HTTP/1.1\r\nHost: x\r\n" + auth
             + "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n").encode(), wait=True,
            register="c-te-cl"))
    add(Raw("Transfer-Encoding: gzip, chunked",
            ("POST /exports/contacts HTTP/1.1\r\nHost: x\r\n" + auth
             + "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n").encode()))
    add(Raw("Transfer-Encoding twice",
            ("POST /exports/contacts HTTP/1.1\r\nHost: x\r\n" + auth
             + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n").encode()))
    add(Raw("HTTP/1.0 + Transfer-Encoding: chunked",
            ("POST /exports/contacts HTTP/1.0\r\n" + auth
             + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n").encode()))
    add(Raw("chunked body, bad chunk size",
            ("POST /exports/contacts HTTP/1.1\r\nHost: x\r\n" + auth
             + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n").encode()))
    add(Raw("chunked body (valid)",
            ("POST /exports/contacts HTTP/1.1\r\nHost: x\r\n" + auth
             + "Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\n\r\n").encode(), wait=True,
            register="c-chunked"))
    add(Raw("Content-Length twice, different",
            ("POST /exports/contacts HTTP/1.1\r\nHost: x\r\n" + auth
             + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{} ").encode()))
    add(Raw("Content-Length not a number",
            ("POST /exports/contacts HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: abc\r\n\r\n{}").encode()))
    add(Raw("body shorter than Content-Length",
            ("POST /exports/contacts HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 10\r\n\r\n{}").encode()))
    add(Raw("oversize body (Content-Length 9 MiB, 413)",
            ("POST /exports/contacts HTTP/1.1\r\nHost: x\r\n" + auth
             + f"Content-Length: {9 * 1024 * 1024}\r\n\r\n{{").encode()))
    add(Raw("oversize chunked body (413)",
            ("POST /exports/contacts HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n"
             + f"{9 * 1024 * 1024:x}\r\n").encode() + b"{" + b" " * 200000))
    add(Raw("headers too large (431)",
            ("GET /exports HTTP/1.1\r\nHost: x\r\n" + auth + "X-Filler: " + "a" * 20000 + "\r\n\r\n").encode()))
    add(Step("Expect: 100-continue create",
             lambda c: request("POST", C, A, {"contactIds": [4, 10]}, ["Expect: 100-continue"]),
             expect_continue=True, register="c-expect", wait=True))

    # -- listings, now that there are exports ------------------------------------------------------------
    for q in ["", "limit=1", "page=0&limit=3", "page=1&limit=3", "page=5&limit=3", "page=1000&limit=100",
              "limit=100"]:
        add(R(f"list ?{q} (with exports)", "GET", f"/exports?{q}"))
    add(R("list as account 2", "GET", "/exports", key=B))
    add(R("HEAD list (with exports)", "HEAD", "/exports?limit=2"))

    # -- last, as they change what later listings show ------------------------------------------------------
    add(create("reports range, keys end/start/campaign", D,
               {"endDateTime": "2030-01-01T00:00:00+01:00", "startDateTime": "2020-01-01T00:00:00Z",
                "campaignId": 3}, name="r-order"))
    add(create("contacts contactIds + listIds order: contactIds first", C, {"contactIds": [10, 1]},
               name="c-order"))
    add(R("list ?limit=3 (the last ones)", "GET", "/exports?limit=3"))
    add(create("contacts with metadata", C, {"listIds": [2], "metadata": {"requestedBy": "alice"}},
               name="c-meta"))
    return s


# --------------------------------------------------------------------------
# Running and comparing
# --------------------------------------------------------------------------

def run(server, plan, log):
    """Every step against `server`: a list of (raw bytes or None, ctx)."""
    ctx = Ctx(server)
    out = []
    for i, st in enumerate(plan):
        if st.act is not None:
            st.act(ctx)
            out.append(None)
            continue
        try:
            data = st.make(ctx)
        except KeyError as e:
            # An earlier step did not give what this one needs (no 202, no link).
            raw = f"[http_ab: not sent: no {e} from an earlier step on this side]".encode()
            out.append(raw)
            log(f"[http_ab] {server.name} {i + 1:3d} not sent (no {e}) — {st.label}")
            continue
        try:
            raw = exchange(server.port, data, expect_continue=st.expect_continue)
        except OSError as e:
            raise RunError(f"{server.name}: step {i + 1} ({st.label}): {e}; the server's exit status: "
                           f"{server.proc.poll()}") from e
        out.append(raw)
        responses, _ = split_responses(raw, st.head_request)
        final = responses[-1] if responses else None
        if st.register and final is not None and final.status == 202:
            eid = final.json()["exportId"]
            ctx.ids[st.register] = eid
            ctx.names[eid] = st.register
        if st.link and final is not None and final.status == 200:
            url = final.json()["url"]
            ctx.urls[st.link] = url[url.index("/downloads/"):]
        if st.wait:
            server.wait_settled()
        log(f"[http_ab] {server.name} {i + 1:3d} {final.status_line if final else '(no response)'} — {st.label}")
    return out, ctx


def revision(exe):
    rev = benchlib.git_revision(exe, width=110) or "not in a git tree"
    mtime = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(exe)))
    try:
        v = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
        version = v.stdout.strip() if v.returncode == 0 and v.stdout.strip() else "(no --version)"
    except (OSError, subprocess.TimeoutExpired):
        version = "(no --version)"
    return rev, mtime, version


def md_cell(s):
    return s.replace("|", "\\|").replace("`", "'")


def write_page(path, argv, builds, rows, diffs, elapsed, server_args, notes):
    same = sum(1 for r in rows if r[3])
    L = [f"# `exportengine serve`, before and after: the HTTP conversation byte for byte — "
         f"{datetime.date.today().isoformat()}", "",
         f"Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M:%S %z')}. "
         f"Machine: {benchlib.machine()}.", "",
         "Command:", "", "    " + " ".join(["python3", "benchmarks/http_ab.py"] + argv), "",
         "| build | binary | built | `--version` | tree (`git describe`) and commit |", "|---|---|---|---|---|"]
    for name, (exe, (rev, mtime, version)) in builds.items():
        L.append(f"| {name} | `{exe}` | {mtime} | {md_cell(version)} | {md_cell(rev)} |")
    L += ["",
          f"Each server: `{' '.join(server_args)}` (its own copy of the source and data directory; "
          f"the source seeded once with the after build: `exportengine seed {' '.join(SEED_ARGS)}`).", "",
          "Normalised (the same way on both sides): export ids (`<id:STEP>`, the step that created it), "
          "RFC 3339 timestamps with milliseconds (`<time>`), the bound port, `expires` and `signature` in "
          "links, a `Date` header and a version in `Server` if there were any. Everything else — status line, "
          "header names, values and order, body — is compared byte for byte; downloaded files unnormalised.", "",
          *(note + "\n" for note in notes),
          f"**{len(rows)} requests compared, {same} identical, {len(rows) - same} different** "
          f"({elapsed:.0f} s).", "",
          "| # | request | before | after | identical |", "|---:|---|---|---|---|"]
    for n, label, (b, a), ident in rows:
        L.append(f"| {n} | {md_cell(label)} | {b} | {a} | {'yes' if ident else '**no**'} |")
    L.append("")
    if diffs:
        L += ["## Differences", ""]
        for n, label, diff in diffs:
            L += [f"### {n}. {md_cell(label)}", "", "```diff", *diff, "```", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the exportengine binary before the change")
    ap.add_argument("--after", required=True, help="the exportengine binary after it (also seeds the source)")
    ap.add_argument("--page", help="write the markdown page here")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (server logs, data, each step's raw response bytes)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    a = ap.parse_args()
    exes = {"before": os.path.abspath(a.before), "after": os.path.abspath(a.after)}
    for name, exe in exes.items():
        if not os.access(exe, os.X_OK):
            ap.error(f"--{name}: {exe} is not an executable")
    log = (lambda s: None) if a.quiet else (lambda s: print(s, file=sys.stderr, flush=True))

    # SIGTERM (and Ctrl-C) unwind through the finally below: the servers
    # are stopped and the temporary directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="http-ab-")
    servers = []
    try:
        seeded = os.path.join(tmp, "seed.db")
        subprocess.run([exes["after"], "seed", "--db", seeded] + SEED_ARGS, check=True, capture_output=True)
        key_file = os.path.join(tmp, "signing.key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(SIGNING_KEY_HEX + "\n")

        plan = steps()
        results = {}
        server_args = None
        for name in ("before", "after"):
            srv = Server(name, exes[name], seeded, tmp, key_file)
            servers.append(srv)
            server_args = ["serve", "--listen", "127.0.0.1:0", "--data-dir", "DIR", "--source", "COPY",
                           "--signing-key", "FILE"] + [x for k, v in KEYS.items() for x in ("--api-key", f"{k}:{v}")]
            log(f"[http_ab] {name}: {exes[name]} on port {srv.port}")
            results[name] = run(srv, plan, log)
            srv.stop()

        if a.keep:
            # Each step's raw bytes, as received, for a look at what the table summarises.
            for name in ("before", "after"):
                d = os.path.join(tmp, "responses", name)
                os.makedirs(d)
                k = 0
                for st, raw in zip(plan, results[name][0]):
                    if raw is None:
                        continue
                    k += 1
                    with open(os.path.join(d, f"{k:03d}.http"), "wb") as f:
                        f.write(raw)
        notes = []
        if len(str(servers[0].port)) != len(str(servers[1].port)):
            notes.append(f"The ports ({servers[0].port}, {servers[1].port}) have different numbers of digits: "
                         "the Content-Length of answers holding a download link differs by that.")
        rows, diffs = [], []
        n = 0
        for i, st in enumerate(plan):
            if st.act is not None:
                continue
            n += 1
            sides = {}
            for name in ("before", "after"):
                raw = results[name][0][i]
                ids = dict(results[name][1].names)
                sides[name] = normalised(raw, st.head_request, ids)
            (cb, sb, rb), (ca, sa, ra) = sides["before"], sides["after"]
            status = tuple(" ".join(str(r.status) for r in rs) or "—" for rs in (rb, ra))
            ident = cb == ca
            rows.append((n, st.label, status, ident))
            if not ident:
                diff = list(difflib.unified_diff(sb, sa, "before", "after", lineterm="", n=3))
                if not diff:  # the shown forms agree: the difference is in bytes the display hides
                    diff = list(difflib.unified_diff([repr(cb)], [repr(ca)], "before", "after", lineterm=""))
                diffs.append((n, st.label, diff))
        elapsed = time.time() - t0
        same = sum(1 for r in rows if r[3])
        print(f"http_ab: {len(rows)} requests compared, {same} identical, {len(rows) - same} different")
        for n, label, _ in diffs:
            print(f"  differs: {n}. {label}")
        for note in notes:
            print("http_ab: " + note)
        if a.page:
            builds = {k: (exes[k], revision(exes[k])) for k in exes}
            write_page(a.page, sys.argv[1:], builds, rows, diffs, elapsed, server_args, notes)
            print(f"http_ab: page written to {a.page}")
        return 0 if not diffs else 1
    except (RunError, subprocess.CalledProcessError, OSError, KeyError, ValueError) as e:
        print(f"http_ab: the run failed: {e}", file=sys.stderr)
        for srv in servers:
            print(f"--- {srv.name} stderr (tail):\n{srv.stderr_tail()}", file=sys.stderr)
        return 2
    finally:
        for srv in servers:
            srv.stop()
        if a.keep:
            print(f"http_ab: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
