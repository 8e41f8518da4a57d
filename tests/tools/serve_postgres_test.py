#!/usr/bin/env python3
"""`exportengine serve --store postgresql://…` end to end: two server
processes on one throwaway PostgreSQL 15 job store (tests/tools/pg_cluster.py)
and one shared --data-dir, on 127.0.0.1.

- an export created on node A is listed, finished and downloaded through
  node B, byte for byte the same file from either node;
- every JSON log line names its node (`--node`), and the job's start is
  logged by the node that claimed it; B runs poll-only
  (`--store-poll-only`: no LISTEN, no prepared statements) beside A;
- a poll-only node alone runs exports, and holds no LISTEN connection;
  a bad `--node`, or `--store-poll-only` without `--store`, is exit 2;
- both nodes list the same exports; after both stop (SIGTERM) and one starts
  again, the export is still there;
- a --store that is not a PostgreSQL URI is a usage error (exit 2, one line);
  a store that cannot be reached is exit 1 with a reason that never shows
  the URI's password.

    serve_postgres_test.py path/to/exportengine

Exit 77 (skipped) when no PostgreSQL cluster can start, except under
CI=true, where that fails.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg_cluster  # noqa: E402
import server_process  # noqa: E402

EXE = None
PG = None
TMP = None
SOURCE = None
KEY = "pg-key"


def Node(name, *extra):
    """One `serve` process on the shared store and data directory."""
    return server_process.ServeNode(EXE, TMP, name, ["--data-dir", os.path.join(TMP, "data"), "--source", SOURCE,
                                                     "--store", PG.uri, "--api-key", f"{KEY}:1", *extra], KEY)


def log_lines(node):
    with open(node.log_path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


wait_available = server_process.wait_available
download = server_process.download


class ServeOnPostgres(unittest.TestCase):
    def test_1_two_nodes_one_store(self):
        a, b = Node("a", "--node", "api-a"), Node("b", "--node", "api-b", "--store-poll-only")
        try:
            status, created = a.json("POST", "/exports/contacts", json.dumps({"listIds": [1]}))
            self.assertEqual(status, 202, created)
            export_id = created["exportId"]

            link_b = wait_available(b, export_id)
            status, from_b = download(link_b)
            self.assertEqual(status, 200)
            self.assertTrue(from_b.startswith(b"id,phoneNumber,"), from_b[:80])
            self.assertEqual(len(from_b), link_b["fileSize"])
            status, link_a = a.json("GET", f"/exports/{export_id}")
            self.assertEqual(status, 200)
            self.assertEqual(download(link_a), (200, from_b))

            _, list_a = a.json("GET", "/exports?limit=100")
            _, list_b = b.json("GET", "/exports?limit=100")
            self.assertEqual([e["exportId"] for e in list_a["exports"]],
                             [e["exportId"] for e in list_b["exports"]])
            self.assertIn(export_id, [e["exportId"] for e in list_a["exports"]])
        finally:
            self.assertEqual(a.stop(), 0)
            self.assertEqual(b.stop(), 0)

        # Every line names its node; exactly one node logged the job's start.
        started = []
        for node, name in ((a, "api-a"), (b, "api-b")):
            lines = log_lines(node)
            self.assertTrue(lines)
            self.assertEqual({line.get("node") for line in lines}, {name})
            started += [name for line in lines if line.get("message", "").startswith(f"job {export_id} started")]
        self.assertEqual(len(started), 1, started)

        again = Node("a-again", "--quiet")
        try:
            _, listing = again.json("GET", "/exports?limit=100")
            found = [e for e in listing["exports"] if e["exportId"] == export_id]
            self.assertEqual(len(found), 1)
            self.assertEqual(found[0]["status"], "available")
        finally:
            self.assertEqual(again.stop(), 0)

    def test_2_a_poll_only_node_runs_exports_without_listening(self):
        node = Node("poll", "--node", "poll-1", "--store-poll-only", "--quiet")
        try:
            ids = []
            for _ in range(3):
                status, created = node.json("POST", "/exports/contacts", json.dumps({"listIds": [2]}))
                self.assertEqual(status, 202, created)
                ids.append(created["exportId"])
            for export_id in ids:
                link = wait_available(node, export_id)
                self.assertEqual(download(link)[0], 200)
            listening = pg_cluster.psql(PG.uri, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
            self.assertEqual(listening.strip(), "0")
        finally:
            self.assertEqual(node.stop(), 0)

    def test_2_bad_node_names_and_a_lonely_poll_only_are_usage_errors(self):
        for extra in (["--node", "has space"], ["--node", ""], ["--node", "x" * 129]):
            r = subprocess.run([EXE, "serve", "--data-dir", os.path.join(TMP, "data"), "--source", SOURCE,
                                "--api-key", f"{KEY}:1", "--store", PG.uri, *extra],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, (extra, r.stderr))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn("--node", r.stderr)
        r = subprocess.run([EXE, "serve", "--data-dir", os.path.join(TMP, "data"), "--source", SOURCE,
                            "--api-key", f"{KEY}:1", "--store-poll-only"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--store-poll-only", r.stderr)

    def test_2_a_store_that_is_not_postgres_is_a_usage_error(self):
        r = subprocess.run([EXE, "serve", "--data-dir", os.path.join(TMP, "data"), "--source", SOURCE,
                            "--api-key", f"{KEY}:1", "--store", "mysql://root@127.0.0.1/x"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("--store", r.stderr)

    def test_3_an_unreachable_store_never_shows_its_password(self):
        r = subprocess.run([EXE, "serve", "--data-dir", os.path.join(TMP, "data"), "--source", SOURCE,
                            "--api-key", f"{KEY}:1", "--listen", "127.0.0.1:0",
                            "--store", "postgresql://someone:hunter2secret@127.0.0.1:1/nothing"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("job store", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertNotIn("hunter2secret", r.stderr + r.stdout)


def main():
    global EXE, PG, TMP, SOURCE
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    EXE = os.path.abspath(sys.argv.pop(1))
    PG = pg_cluster.cluster_or_skip()
    if PG is None:
        return 77
    TMP = tempfile.mkdtemp(prefix="exportengine-serve-pg-")
    try:
        SOURCE = os.path.join(TMP, "source.db")
        subprocess.run([EXE, "seed", "--db", SOURCE, "--accounts", "2", "--contacts", "3000", "--lists", "2",
                        "--campaigns", "1", "--reports", "100", "--force"], check=True, stdout=subprocess.DEVNULL)
        result = unittest.main(exit=False, verbosity=2).result
        return 0 if result.wasSuccessful() else 1
    finally:
        PG.stop()
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
