"""What the end-to-end tests do with an `exportengine serve` process they
started: read its first stdout line with a deadline, and kill it for good.
Imported by serve_test.py, crash_test.py and hostile_test.py."""
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
