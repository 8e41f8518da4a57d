"""What the end-to-end tests do with an `exportengine serve` process they
started: read its first stdout line with a deadline, and kill it for good.
Imported by the end-to-end tests; ServeNode, download and wait_available
are the multi-node tests' (serve_postgres, pg_restart, pgbouncer)."""
import os
import select
import subprocess
import time


def read_line(proc, timeout):
    """One line of `proc`'s stdout (read a byte at a time, so nothing after
    it is consumed), or what came before `timeout` seconds ran out."""
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf.decode("utf-8", "replace")


def kill(proc, log):
    """SIGKILL if still running, reap it, and close its stdout pipe and its
    stderr log file."""
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    if proc.stdout and not proc.stdout.closed:
        proc.stdout.close()
    if not log.closed:
        log.close()


class ServeNode:
    """One `exportengine serve` process listening on 127.0.0.1:0: `args` are
    what follows `serve` (without --listen), its stderr goes to
    LOG_DIR/NAME.log, and requests carry `Authorization: Bearer KEY`.
    Raises AssertionError when it does not print 'listening on URL' within
    30 s (unless require_start is False: then `started` says)."""

    def __init__(self, exe, log_dir, name, args, key, require_start=True):
        import urllib.parse
        self.name = name
        self.key = key
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([exe, "serve", "--listen", "127.0.0.1:0", *args],
                                     stdout=subprocess.PIPE, stderr=self.log)
        line = read_line(self.proc, 30).strip()
        self.started = line.startswith("listening on ")
        self.url = urllib.parse.urlparse(line[len("listening on "):]) if self.started else None
        if not self.started and require_start:
            kill(self.proc, self.log)
            raise AssertionError(f"{name} did not start: {line!r}; see {self.log_path}")

    def call(self, method, path, body=None, timeout=30):
        import http.client
        conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={"Authorization": f"Bearer {self.key}"})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def json(self, method, path, body=None, timeout=30):
        import json
        status, data = self.call(method, path, body, timeout)
        return status, json.loads(data) if data else None

    def stop(self):
        """SIGTERM, then SIGKILL if it lingers; the exit status (None if killed)."""
        import signal
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        rc = self.proc.poll()
        kill(self.proc, self.log)
        return rc

    def log_text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def download(link, timeout=30):
    """GET a signed download URL: (status, body)."""
    import http.client
    import urllib.parse
    url = urllib.parse.urlparse(link["url"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request("GET", url.path + "?" + url.query)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_available(node, export_id, timeout=60):
    """Polls GET /exports/{id} on `node` until it answers 200 (the link),
    asserting every other answer is EXPORT_NOT_READY; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = node.json("GET", f"/exports/{export_id}")
        if status == 200:
            return body
        assert body["error"]["code"] == "EXPORT_NOT_READY", body
        time.sleep(0.05)
    raise AssertionError(f"{export_id} was not available after {timeout} s")
