#!/usr/bin/env python3
"""`exportengine serve --store … --store-poll-only` behind a real PgBouncer in
transaction mode: two nodes on one throwaway PostgreSQL 15 cluster
(tests/tools/pg_cluster.py), through a PgBouncer (Debian's `pgbouncer`,
`pool_mode = transaction`) whose pool has fewer server connections than the
nodes have clients, so consecutive transactions of one client land on
different server connections.

- exports created round-robin on both nodes all end available, both nodes
  list the same ones, and their files download through either node;
- the transactions really were multiplexed: PgBouncer's SHOW STATS counts
  more transactions than its pool has server connections, and the server
  saw at most `default_pool_size` connections from it.

(No negative control: without --store-poll-only a node may still get lucky
while PgBouncer happens to hand a client the same server connection again,
so a failure there is not guaranteed; the mode is for the cases it is not.)

    pgbouncer_test.py path/to/exportengine

Exit 77 (skipped) when PostgreSQL or PgBouncer cannot start, except under
CI=true, where that fails.
"""
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg_cluster  # noqa: E402
import server_process  # noqa: E402

KEY = "bouncer-key"
POOL = 2  # server connections PgBouncer keeps per database and user
PGBOUNCER = os.environ.get("EXPORTENGINE_PGBOUNCER", "/usr/sbin/pgbouncer")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bouncer:
    """PgBouncer on 127.0.0.1 in front of the cluster, transaction pooling,
    stopped by a watchdog however this process ends."""

    def __init__(self, pg, tmp):
        if not os.access(PGBOUNCER, os.X_OK):
            raise pg_cluster.PgUnavailable(f"PgBouncer is not installed ({PGBOUNCER}; scripts/setup.sh installs it)")
        # Its own directory (it runs as postgres, who cannot enter ours).
        self.dir = tempfile.mkdtemp(prefix="exportengine-pgbouncer-")
        self.port = free_port()
        db = pg.database
        ini = os.path.join(self.dir, "pgbouncer.ini")
        with open(ini, "w") as f:
            f.write(f"""[databases]
{db} = host=127.0.0.1 port={pg.port} dbname={db} user=postgres
admin_target = host=127.0.0.1 port={pg.port} dbname=postgres user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir = {self.dir}
auth_type = any
pool_mode = transaction
default_pool_size = {POOL}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
admin_users = postgres
stats_users = postgres
ignore_startup_parameters = extra_float_digits
logfile = {self.dir}/pgbouncer.log
""")
        args = [PGBOUNCER, ini]
        if os.geteuid() == 0:  # PgBouncer will not run as root: it drops to postgres
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            with open(ini, "a") as f:
                f.write("user = postgres\n")
        self.out = open(os.path.join(tmp, "pgbouncer.out"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT)
        self.watchdog = subprocess.Popen(["sh", "-c", f"cat >/dev/null; kill -9 {self.proc.pid} 2>/dev/null; "
                                          f"rm -rf '{self.dir}'"],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise pg_cluster.PgUnavailable("pgbouncer exited: " + self.tail())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise pg_cluster.PgUnavailable("pgbouncer did not listen: " + self.tail())
                time.sleep(0.05)
        self.uri = f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def tail(self):
        text = ""
        for name in (os.path.join(self.dir, "pgbouncer.log"), self.out.name):
            try:
                with open(name, errors="replace") as f:
                    text += f.read()[-1500:]
            except OSError:
                pass
        return text

    def admin(self, command):
        """Rows of an admin console command (SHOW STATS ...), as dicts."""
        r = subprocess.run([os.path.join(pg_cluster.PG_BIN, "psql"), "-X", "-A", "-F", "\t", "-P", "footer=off",
                            "-d", f"postgresql://postgres@127.0.0.1:{self.port}/pgbouncer", "-c", command],
                           capture_output=True, text=True, timeout=30, check=True)
        lines = r.stdout.strip().splitlines()
        head = lines[0].split("\t")
        return [dict(zip(head, line.split("\t"))) for line in lines[1:]]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.watchdog.stdin.close()
        self.watchdog.wait(timeout=30)


def Node(exe, tmp, name, source, store, *extra):
    return server_process.ServeNode(exe, tmp, name, ["--data-dir", os.path.join(tmp, "data"), "--source", source,
                                                     "--store", store, "--api-key", f"{KEY}:1", "--quiet",
                                                     "--node", name, *extra], KEY)


download = server_process.download
wait_available = server_process.wait_available


def server_connections(pg):
    """Connections the server has from PgBouncer (to the test database)."""
    return int(pg_cluster.psql(pg.uri_of("postgres"), f"SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                                      f"'{pg.database}' AND backend_type = 'client backend'"))


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    exe = os.path.abspath(sys.argv[1])
    pg = pg_cluster.cluster_or_skip()
    if pg is None:
        return 77
    tmp = tempfile.mkdtemp(prefix="exportengine-pgbouncer-")
    bouncer = None
    nodes = []
    try:
        try:
            bouncer = Bouncer(pg, tmp)
        except pg_cluster.PgUnavailable as e:
            if os.environ.get("CI") == "true":
                raise
            print(f"WARN: skipped: {e}", file=sys.stderr)
            return 77
        source = os.path.join(tmp, "source.db")
        subprocess.run([exe, "seed", "--db", source, "--accounts", "1", "--contacts", "2000", "--lists", "2",
                        "--campaigns", "1", "--reports", "100", "--force"], check=True, stdout=subprocess.DEVNULL)

        nodes = [Node(exe, tmp, f"bounced-{i}", source, bouncer.uri, "--store-poll-only") for i in range(2)]
        ids = []
        for i in range(20):
            status, created = nodes[i % 2].json("POST", "/exports/contacts", json.dumps({"listIds": [1 + i % 2]}))
            assert status == 202, (status, created)
            ids.append(created["exportId"])
        peak = server_connections(pg)
        for i, export_id in enumerate(ids):
            link = wait_available(nodes[(i + 1) % 2], export_id)
            status, body = download(link)
            assert status == 200 and body.startswith(b"id,phoneNumber,"), (status, body[:80])
            assert len(body) == link["fileSize"]
            peak = max(peak, server_connections(pg))
        lists = [sorted(e["exportId"] for e in n.json("GET", "/exports?limit=100")[1]["exports"]) for n in nodes]
        assert lists[0] == lists[1] == sorted(ids), lists

        stats = {row["database"]: row for row in bouncer.admin("SHOW STATS")}
        transactions = int(stats[pg.database]["total_xact_count"])
        print(f"{len(ids)} exports through PgBouncer (transaction mode, pool {POOL}): "
              f"{transactions} transactions over at most {peak} server connections")
        assert peak <= POOL, f"the server saw {peak} connections from a pool of {POOL}"
        assert transactions > 10 * POOL, transactions
        for n in nodes:
            assert n.stop() == 0
            assert '"kind":"store"' not in n.log_text(), n.log_text()[-2000:]  # no store call failed
        nodes = []
        print("pgbouncer_test: passed")
        return 0
    finally:
        for n in nodes:
            n.stop()
        if bouncer is not None:
            bouncer.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
