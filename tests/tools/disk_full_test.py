#!/usr/bin/env python3
"""A full disk while `exportengine serve` runs (fault injection).

  disk_full_test.py EXPORTENGINE_BINARY

The server's --data-dir (job store, files, signing key) is a small tmpfs
mounted for the test, so the disk really fills: ENOSPC from write(2), and
SQLITE_FULL from the job store. Checked:

- an export whose file no longer fits is retried, not failed, and not
  published half-written; meanwhile the API keeps answering (reads 200,
  a create that cannot be stored a clean 500 without internals, never a hang);
- once space returns, the export completes with every row, and new exports
  work again;
- nothing stored before is lost or corrupted (the store passes
  integrity_check), no temporary file is left.

Needs root to mount a tmpfs (CI and the dev machines run as root); anywhere
else it prints why and exits 77, which ctest reports as skipped.
"""
import csv
import http.client
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

SKIP = 77


def main():
    exe = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="ee-diskfull-")
    mnt = os.path.join(tmp, "data")
    os.makedirs(mnt)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", mnt],
                      capture_output=True).returncode != 0:
        print("disk_full_test: skipped: cannot mount a tmpfs (needs root)")
        sys.exit(SKIP)
    server = None
    try:
        db = os.path.join(tmp, "source.db")
        subprocess.run([exe, "seed", "--db", db, "--accounts", "1", "--contacts", "30000", "--lists", "2",
                        "--campaigns", "1", "--reports", "10"], check=True, stdout=subprocess.DEVNULL)
        want = sqlite3.connect(db).execute("SELECT COUNT(*) FROM contacts WHERE account_id = 1").fetchone()[0]

        log = open(os.path.join(tmp, "server.log"), "w")  # outside the tmpfs
        server = subprocess.Popen([exe, "serve", "--listen", "127.0.0.1:0", "--data-dir", mnt, "--source", db,
                                   "--api-key", "k:1", "--quiet"], stdout=subprocess.PIPE, stderr=log, text=True)
        line = server.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])

        def call(method, path, body=None, timeout=10):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            t0 = time.monotonic()
            c.request(method, path, body=body, headers={"Authorization": "Bearer k"})
            r = c.getresponse()
            data = r.read()
            c.close()
            return r.status, data, time.monotonic() - t0

        def view(export_id):
            status, data, _ = call("GET", "/exports?limit=100")
            assert status == 200, (status, data)
            return next(v for v in json.loads(data)["exports"] if v["exportId"] == export_id)

        def fill(name, leave_bytes):
            """Fills the tmpfs with `name`, then frees `leave_bytes` of it."""
            path = os.path.join(mnt, name)
            with open(path, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            os.truncate(path, max(0, os.path.getsize(path) - leave_bytes))
            return path

        # One export before anything goes wrong: it must survive all of it.
        status, data, _ = call("POST", "/exports/contacts", '{"listIds":[1]}')
        assert status == 202, data
        before = json.loads(data)["exportId"]
        deadline = time.monotonic() + 30
        while not view(before)["isAvailableForDownload"]:
            assert time.monotonic() < deadline, view(before)
            time.sleep(0.05)
        before_view = view(before)

        # Leave room for the store's small writes, not for a ~3 MB file.
        filler = fill("filler", 256 * 1024)
        status, data, _ = call("POST", "/exports/contacts", "{}")
        assert status == 202, (status, data)
        big = json.loads(data)["exportId"]
        # It hits ENOSPC and is retried: never failed, never available, while
        # reads answer promptly.
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:
            v = view(big)
            assert v["status"] in ("queued", "processing"), v
            status, _, secs = call("GET", f"/exports/{before}")
            assert status == 200 and secs < 2, (status, secs)
            time.sleep(0.1)
        published = [n for n in os.listdir(os.path.join(mnt, "files")) if n.startswith(big)]
        assert not published, f"a half-written file was published: {published}"

        # Completely full: a create cannot be stored -> a clean 500, fast.
        filler2 = fill("filler2", 0)
        status, data, secs = call("POST", "/exports/contacts", '{"contactIds":[1]}')
        assert secs < 5, f"a create on a full disk took {secs:.1f} s"
        if status == 500:
            err = json.loads(data)["error"]
            assert err["code"] == "INTERNAL_ERROR", err
            for leak in ("SQL", "sqlite", "/tmp", "disk", "ENOSPC", mnt):
                assert leak not in err["message"], err
        else:
            assert status == 202, (status, data)  # SQLite found room in its WAL
        status, _, secs = call("GET", "/exports")
        assert status == 200 and secs < 2, (status, secs)

        # Space returns: the retried export completes, with every row.
        os.unlink(filler2)
        os.unlink(filler)
        deadline = time.monotonic() + 40
        while True:
            v = view(big)
            if v["isAvailableForDownload"]:
                break
            assert v["status"] != "failed", v
            assert time.monotonic() < deadline, v
            time.sleep(0.1)
        status, data, _ = call("GET", f"/exports/{big}")
        url = json.loads(data)["url"]
        path = url[url.index("/downloads/"):]
        status, body, _ = call("GET", path)
        assert status == 200
        rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
        assert len(rows) - 1 == want, (len(rows) - 1, want)

        # And new work goes through again; the first export is untouched.
        status, data, _ = call("POST", "/exports/contacts", '{"contactIds":[1,2,3]}')
        assert status == 202, data
        after = json.loads(data)["exportId"]
        deadline = time.monotonic() + 30
        while not view(after)["isAvailableForDownload"]:
            assert time.monotonic() < deadline, view(after)
            time.sleep(0.05)
        v = view(before)
        assert v["status"] == "available" and v["fileSize"] == before_view["fileSize"], v

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0
        server = None
        temps = [n for n in os.listdir(os.path.join(mnt, "files")) if n.startswith(".tmp-")]
        assert not temps, temps
        store = sqlite3.connect(os.path.join(mnt, "jobs.db"))
        check = store.execute("PRAGMA integrity_check").fetchone()[0]
        store.close()  # or the tmpfs stays busy
        assert check == "ok", check
        print("disk_full_test: retried through ENOSPC, a clean 500 when the store could not write, "
              "every row once space returned, nothing lost")
    except AssertionError:
        log_path = os.path.join(tmp, "server.log")
        if os.path.exists(log_path):
            sys.stderr.write("".join(open(log_path).readlines()[-20:]))
        raise
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["umount", mnt], capture_output=True)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
