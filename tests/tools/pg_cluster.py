"""A throwaway PostgreSQL 15 cluster for end-to-end tests (the Python twin of
tests/support/pg_cluster.hpp).

    with PgCluster() as pg:      # raises PgUnavailable when it cannot start
        run_something(pg.uri)    # postgresql://postgres@127.0.0.1:PORT/exportengine_test

initdb into a fresh temporary directory (as the `postgres` user when run as
root), postgres on 127.0.0.1 only, on a free port, its socket inside that
directory, fsync off. `PgCluster(durable=True)` is for benchmarks: fsync,
full_page_writes and synchronous_commit on (the server's defaults), initdb
syncing its files; `settings={"name": "value"}` adds `-c name=value` server
settings (e.g. shared_preload_libraries). Leaving the block stops it
(`pg_ctl stop -m immediate`) and removes the directory; so does a watchdog
process (`sh` in a session of its own, reading a pipe from us) when this
process dies any other way, SIGKILL included.

`cluster_or_skip()` is for test scripts: the cluster, or None after a
warning on stderr when it cannot start — except under CI=true, where it
raises (the test fails).
"""

import os
import pwd
import shlex
import socket
import subprocess
import sys
import tempfile

PG_BIN = os.environ.get("EXPORTENGINE_PG_BIN", "/usr/lib/postgresql/15/bin")


class PgUnavailable(RuntimeError):
    """The cluster could not start; the message says why."""


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, n=1500):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    return text[-n:]


def psql_args(uri):
    """psql on `uri`: no psqlrc, unaligned, tuples only, quiet, tab-separated
    (for a long-lived session fed over stdin, or with -c for one query)."""
    return [os.path.join(PG_BIN, "psql"), "-X", "-A", "-t", "-q", "-F", "\t", "-d", uri]


def psql(uri, sql, timeout=60):
    """What `sql` prints through psql_args(uri), stopping at the first error
    (subprocess.CalledProcessError)."""
    return subprocess.run(psql_args(uri) + ["-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, check=True, timeout=timeout).stdout


def psql_rows(uri, sql, timeout=60):
    """The rows `sql` returns, each a list of its values as text."""
    return [line.split("\t") for line in psql(uri, sql, timeout).splitlines() if line]


class PgCluster:
    def __init__(self, database="exportengine_test", durable=False, settings=None):
        self.database = database
        self.durable = durable
        self.settings = dict(settings or {})
        self.dir = None
        self.port = None
        self.uri = None
        self._watchdog = None
        self._as_postgres = []
        self._options = None

    def uri_of(self, database):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _start(self):
        for tool in ("initdb", "pg_ctl", "psql"):
            if not os.access(os.path.join(PG_BIN, tool), os.X_OK):
                raise PgUnavailable(f"PostgreSQL 15 is not installed (no {tool} in {PG_BIN}; "
                                    "scripts/setup.sh installs it)")
        as_postgres = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable("running as root and there is no 'postgres' user") from None
            as_postgres = ["runuser", "-u", "postgres", "--"]
        self.dir = tempfile.mkdtemp(prefix="exportengine-pg-")
        if as_postgres:
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        data = os.path.join(self.dir, "data")
        pg_ctl = os.path.join(PG_BIN, "pg_ctl")

        cleanup = ("cat >/dev/null; "
                   + " ".join(shlex.quote(a) for a in as_postgres + [pg_ctl, "stop", "-D", data, "-m", "immediate"])
                   + " >/dev/null 2>&1; rm -rf " + shlex.quote(self.dir))
        self._watchdog = subprocess.Popen(["sh", "-c", cleanup], stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True)

        log = os.path.join(self.dir, "setup.log")
        with open(log, "ab") as out:
            r = subprocess.run(as_postgres + [os.path.join(PG_BIN, "initdb"), "-D", data, "-A", "trust",
                                              "-U", "postgres", "-E", "UTF8", "--locale=C"]
                               + ([] if self.durable else ["--no-sync"]),
                               stdout=out, stderr=subprocess.STDOUT, check=False)
        if r.returncode != 0:
            raise PgUnavailable("initdb failed: " + _tail(log))
        self._as_postgres = as_postgres
        error = None
        for _ in range(3):
            self.port = _free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir} "
            if self.durable:
                options += "-c fsync=on -c full_page_writes=on -c synchronous_commit=on"
            else:
                options += "-c fsync=off -c full_page_writes=off"
            for name, value in self.settings.items():
                options += f" -c {name}={shlex.quote(str(value))}"
            with open(log, "ab") as out:
                r = subprocess.run(as_postgres + [pg_ctl, "start", "-w", "-t", "60", "-D", data,
                                                  "-l", os.path.join(self.dir, "server.log"), "-o", options],
                                   stdout=out, stderr=subprocess.STDOUT, check=False)
            if r.returncode == 0:
                error = None
                self._options = options
                break
            error = "pg_ctl start failed: " + _tail(os.path.join(self.dir, "server.log"))
        if error:
            raise PgUnavailable(error)
        r = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                            "-d", self.uri_of("postgres"), "-c", f'CREATE DATABASE "{self.database}"'],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise PgUnavailable("CREATE DATABASE failed: " + r.stderr[-1500:])
        self.uri = self.uri_of(self.database)

    def restart(self, mode="fast"):
        """`pg_ctl restart -m MODE`: the server shuts down (fast: every
        session is terminated) and starts again on the same port, directory
        and options; returns when it accepts connections again. Raises
        PgUnavailable when it did not come back."""
        data = os.path.join(self.dir, "data")
        with open(os.path.join(self.dir, "setup.log"), "ab") as out:
            r = subprocess.run(self._as_postgres + [os.path.join(PG_BIN, "pg_ctl"), "restart", "-w", "-t", "60",
                                                    "-m", mode, "-D", data,
                                                    "-l", os.path.join(self.dir, "server.log"),
                                                    "-o", self._options],
                               stdout=out, stderr=subprocess.STDOUT, check=False)
        if r.returncode != 0:
            raise PgUnavailable("pg_ctl restart failed: " + _tail(os.path.join(self.dir, "server.log")))

    def stop(self):
        """Stops the cluster and removes its directory (idempotent)."""
        if self._watchdog is not None:
            self._watchdog.stdin.close()  # EOF: the watchdog cleans up
            self._watchdog.wait(timeout=120)
            self._watchdog = None
        elif self.dir is not None:
            subprocess.run(["rm", "-rf", self.dir], check=False)
        self.dir = None


def cluster_or_skip():
    """A started PgCluster (the caller stops it: use it in a with-block), or
    None after a warning; under CI=true a cluster that cannot start raises."""
    cluster = PgCluster()
    try:
        return cluster.__enter__()
    except PgUnavailable as e:
        if os.environ.get("CI") == "true":
            raise
        print(f"WARN: skipped: no PostgreSQL test cluster: {e}", file=sys.stderr)
        return None


if __name__ == "__main__":
    # The smoke test ctest runs (postgres_cluster_py): start, query, stop,
    # nothing left behind. Exit 77 (skipped) where the cluster cannot start,
    # except under CI=true.
    pg = cluster_or_skip()
    if pg is None:
        sys.exit(77)
    with pg:
        out = psql(pg.uri, "SELECT version()")
        print(pg.uri, out.strip())
        d = pg.dir
    assert not os.path.exists(d), f"{d} is still there"
    print("stopped and removed")
