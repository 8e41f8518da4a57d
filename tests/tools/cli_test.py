#!/usr/bin/env python3
"""Black-box tests of the exportengine command line: exit codes, one-line
errors, and files that real readers (csv, gzip) accept.

usage: cli_test.py PATH_TO_EXPORTENGINE
"""
import csv
import gzip
import os
import re
import subprocess
import sys
import tempfile
import unittest

EXE = None


def run(*args):
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)


class BadArguments(unittest.TestCase):
    def assert_usage_error(self, args, mentions):
        r = run(*args)
        self.assertEqual(r.returncode, 2, f"{args}: {r.stderr}")
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, f"{args}: want one line, got {r.stderr!r}")
        self.assertIn(mentions, lines[0])
        self.assertEqual(r.stdout, "")

    def test_no_command(self):
        self.assertEqual(run().returncode, 2)

    def test_unknown_command(self):
        self.assertEqual(run("frobnicate").returncode, 2)
        self.assert_usage_error(["frobnicate"], "frobnicate")

    def test_bad_values(self):
        self.assert_usage_error(["bench", "csv", "--rows", "abc"], "--rows")
        self.assert_usage_error(["bench", "csv", "--rows", "-5"], "--rows")
        self.assert_usage_error(["bench", "csv", "--rows"], "--rows")
        self.assert_usage_error(["bench", "csv", "--delimiter", "|"], "--delimiter")
        self.assert_usage_error(["bench", "csv", "--gzip", "--gzip-level", "12"], "--gzip-level")
        self.assert_usage_error(["bench", "csv", "--gzip-level", "3"], "--gzip")
        self.assert_usage_error(["bench", "csv", "--colour"], "--colour")
        self.assert_usage_error(["bench", "csv", "--rows", "1", "--rows", "2"], "--rows")
        self.assert_usage_error(["bench", "nope"], "nope")

    def test_serve_recovery_timing(self):
        # --lease, --sweep-interval, --stale-temp-age: checked before
        # anything starts (the data dir is not even created).
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "src.db")
            open(src, "wb").close()
            data = os.path.join(d, "data")
            base = ["serve", "--data-dir", data, "--source", src, "--api-key", "k:1"]
            self.assert_usage_error(base + ["--lease", "100ms"], "--lease")
            self.assert_usage_error(base + ["--lease", "3"], "--lease")
            self.assert_usage_error(base + ["--sweep-interval", "0s"], "--sweep-interval")
            self.assert_usage_error(base + ["--stale-temp-age", "soon"], "--stale-temp-age")
            self.assertFalse(os.path.exists(data))

    def test_unwritable_out(self):
        self.assert_usage_error(["bench", "csv", "--rows", "5", "--out", "/nonexistent/x.csv"], "--out")

    def test_help(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("bench csv", r.stdout)


class HelpAndVersion(unittest.TestCase):
    COMMANDS = ("serve", "seed", "export", "bench")

    def assert_help(self, args, first_line):
        r = run(*args)
        self.assertEqual(r.returncode, 0, f"{args}: {r.stderr}")
        self.assertEqual(r.stderr, "", args)
        self.assertTrue(r.stdout.startswith(first_line), f"{args}: {r.stdout[:200]!r}")
        self.assertNotIn("SPEC", r.stdout)
        return r.stdout

    def test_overview(self):
        for flag in ("--help", "-h", "help"):
            out = self.assert_help([flag], "usage: exportengine <command>")
            for command in self.COMMANDS:
                self.assertIn(f"  {command} ", out)
            self.assertIn("--version", out)
            self.assertIn("<command> --help", out)

    def test_each_command_explains_its_options(self):
        expected = {
            "serve": ["--data-dir", "--source", "--api-key", "--listen", "--public-url", "--retention",
                      "--record-retention", "--url-ttl", "--workers", "--readers", "--max-body",
                      "--signing-key", "--previous-signing-key", "--quiet", "--lease",
                      "--sweep-interval", "--stale-temp-age"],
            "seed": ["--db", "--accounts", "--contacts", "--lists", "--campaigns", "--reports", "--seed",
                     "--force"],
            "export": ["--source", "--account", "--out", "--list-ids", "--contact-ids", "--campaign-id",
                       "--start", "--end", "--gzip", "--delimiter", "--bom", "--readers", "--mmap",
                       "--data-dir", "--quiet"],
            "bench": ["bench csv", "bench gzip", "--rows", "--out", "--gzip-level", "--gzip-threads",
                      "--seed", "--json", "--in"],
        }
        for command in self.COMMANDS:
            for flag in ("--help", "-h"):
                out = self.assert_help([command, flag], f"usage: exportengine {command}")
                for option in expected[command]:
                    self.assertIn(option, out, f"{command} {flag}")
            # The same text from `help <command>`.
            self.assertEqual(run("help", command).stdout, run(command, "--help").stdout)

    def test_help_wins_over_other_arguments_and_does_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            data = os.path.join(d, "data")
            db = os.path.join(d, "x.db")
            self.assert_help(["serve", "--data-dir", data, "--bogus", "--help"], "usage: exportengine serve")
            self.assert_help(["seed", "--db", db, "-h"], "usage: exportengine seed")
            self.assert_help(["export", "contacts", "--help"], "usage: exportengine export")
            self.assert_help(["bench", "csv", "--rows", "5", "--help"], "usage: exportengine bench")
            self.assertFalse(os.path.exists(data))
            self.assertFalse(os.path.exists(db))

    def test_unknown_command_with_help_is_still_an_error(self):
        r = run("frobnicate", "--help")
        self.assertEqual(r.returncode, 2)
        self.assertIn("frobnicate", r.stderr)

    def test_version(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(os.path.join(root, "CMakeLists.txt"), encoding="utf-8") as f:
            version = re.search(r"project\(exportengine\s+VERSION\s+([0-9.]+)", f.read()).group(1)
        for flag in ("--version", "version"):
            r = run(flag)
            self.assertEqual(r.returncode, 0)
            self.assertEqual(r.stdout, f"exportengine {version}\n")
            self.assertEqual(r.stderr, "")


class BenchCsv(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def test_writes_a_csv_python_reads(self):
        out = self.path("c.csv")
        r = run("bench", "csv", "--rows", "3000", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.strip().splitlines()), 1)
        with open(out, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[0], ["id", "phoneNumber", "email", "firstName", "lastName",
                                   "createdAt", "updatedAt"])
        self.assertEqual(len(rows), 3001)
        self.assertEqual([int(r[0]) for r in rows[1:]], list(range(1, 3001)))
        with open(out, "rb") as f:
            data = f.read()
        self.assertFalse(data.startswith(b"\xef\xbb\xbf"))
        # Every line ends with CRLF; the sample data holds embedded newlines too.
        self.assertTrue(data.endswith(b"\r\n"))
        # The guard is applied to free text (the sample has formula-like values).
        guarded = [v for r in rows[1:] for v in r[2:5] if v.startswith("'")]
        self.assertTrue(guarded, "expected some guarded values in 3000 sample rows")
        for v in (v for r in rows[1:] for v in r[2:5]):
            self.assertFalse(v[:1] in ("=", "+", "-", "@", "\t", "\r"), v)

    def test_same_seed_same_bytes(self):
        a, b = self.path("a.csv"), self.path("b.csv")
        self.assertEqual(run("bench", "csv", "--rows", "2000", "--seed", "7", "--out", a).returncode, 0)
        self.assertEqual(run("bench", "csv", "--rows", "2000", "--seed", "7", "--out", b).returncode, 0)
        with open(a, "rb") as fa, open(b, "rb") as fb:
            self.assertEqual(fa.read(), fb.read())

    def test_gzip_matches_plain(self):
        plain, gz = self.path("c.csv"), self.path("c.csv.gz")
        self.assertEqual(run("bench", "csv", "--rows", "50000", "--out", plain).returncode, 0)
        r = run("bench", "csv", "--rows", "50000", "--gzip", "--out", gz)
        self.assertEqual(r.returncode, 0, r.stderr)
        with gzip.open(gz, "rb") as f, open(plain, "rb") as p:
            self.assertEqual(f.read(), p.read())
        r = subprocess.run(["gunzip", "-t", gz])
        self.assertEqual(r.returncode, 0)

    def test_semicolon_and_bom(self):
        out = self.path("c.csv")
        r = run("bench", "csv", "--rows", "100", "--delimiter", ";", "--bom", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, delimiter=";"))
        self.assertEqual(rows[0][1], "phoneNumber")
        self.assertEqual(len(rows), 101)

    def test_json_summary(self):
        import json
        r = run("bench", "csv", "--rows", "1000", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        o = json.loads(r.stdout)
        self.assertEqual(o["rows"], 1000)
        self.assertGreater(o["csv_bytes"], 50_000)
        self.assertGreater(o["peak_rss_bytes"], 0)


class Seed(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def seed(self, db, *extra):
        return run("seed", "--db", db, "--accounts", "3", "--contacts", "600", "--lists", "9",
                   "--campaigns", "6", "--reports", "900", *extra)

    def query(self, db, sql):
        import sqlite3
        with sqlite3.connect(db) as c:
            return c.execute(sql).fetchall()

    def test_creates_the_reference_schema_with_realistic_rows(self):
        db = self.path("s.db")
        r = self.seed(db)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.strip().splitlines()), 1)
        self.assertEqual(self.query(db, "SELECT COUNT(*) FROM contacts"), [(600,)])
        self.assertEqual(self.query(db, "SELECT COUNT(*) FROM contact_lists"), [(9,)])
        self.assertEqual(self.query(db, "SELECT COUNT(*) FROM campaigns"), [(6,)])
        self.assertEqual(self.query(db, "SELECT COUNT(*) FROM delivery_reports"), [(900,)])
        self.assertEqual(self.query(db, "SELECT COUNT(DISTINCT account_id) FROM contacts"), [(3,)])
        self.assertEqual(self.query(db, "PRAGMA journal_mode"), [("wal",)])
        # Lists belong to the contact's own account and overlap.
        self.assertEqual(self.query(db, """SELECT COUNT(*) FROM list_members m
            JOIN contact_lists l ON l.id = m.list_id JOIN contacts c ON c.id = m.contact_id
            WHERE l.account_id <> c.account_id"""), [(0,)])
        multi = self.query(db, "SELECT COUNT(*) FROM (SELECT contact_id FROM list_members GROUP BY contact_id HAVING COUNT(*) > 1)")
        self.assertGreater(multi[0][0], 0)
        # E.164 phones; timestamps in the stored format.
        bad_phone = self.query(db, "SELECT COUNT(*) FROM contacts WHERE phone_number NOT GLOB '+[0-9]*'")
        self.assertEqual(bad_phone, [(0,)])
        bad_ts = self.query(db, """SELECT COUNT(*) FROM contacts WHERE created_at NOT GLOB
            '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z'""")
        self.assertEqual(bad_ts, [(0,)])
        # Oddities: formula-looking values, commas/quotes/newlines, NULLs, non-ASCII.
        free = self.query(db, "SELECT first_name, last_name, email FROM contacts")
        values = [v for row in free for v in row if v is not None]
        self.assertTrue(any(v[:1] in "=+-@" for v in values))
        self.assertTrue(any("," in v or '"' in v for v in values))
        self.assertTrue(any("\n" in v for v in values))
        self.assertTrue(any(ord(ch) > 127 for v in values for ch in v))
        self.assertTrue(self.query(db, "SELECT COUNT(*) FROM contacts WHERE email IS NULL")[0][0] > 0)
        statuses = {s for (s,) in self.query(db, "SELECT DISTINCT status FROM delivery_reports")}
        self.assertTrue({"delivered", "failed", "pending", "expired"} <= statuses)
        # The export queries' indexes exist.
        names = {n for (n,) in self.query(db, "SELECT name FROM sqlite_master WHERE type = 'index'")}
        self.assertIn("contacts_account_id", names)
        self.assertIn("delivery_reports_account_submitted", names)

    def test_same_seed_same_data(self):
        a, b, c = self.path("a.db"), self.path("b.db"), self.path("c.db")
        for db, seed in ((a, "7"), (b, "7"), (c, "8")):
            self.assertEqual(self.seed(db, "--seed", seed).returncode, 0)
        dump = lambda db: self.query(db, "SELECT * FROM contacts ORDER BY id") + \
            self.query(db, "SELECT * FROM delivery_reports ORDER BY id") + \
            self.query(db, "SELECT * FROM list_members ORDER BY list_id, contact_id")
        self.assertEqual(dump(a), dump(b))
        self.assertNotEqual(dump(a), dump(c))

    def test_refuses_to_overwrite_without_force(self):
        db = self.path("s.db")
        with open(db, "wb") as f:
            f.write(b"precious")
        r = self.seed(db)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--force", r.stderr)
        with open(db, "rb") as f:
            self.assertEqual(f.read(), b"precious")
        r = self.seed(db, "--force")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.query(db, "SELECT COUNT(*) FROM contacts"), [(600,)])

    def test_bad_arguments(self):
        for args, mentions in ((["seed"], "--db"),
                               (["seed", "--db", self.path("x.db"), "--contacts", "-1"], "--contacts"),
                               (["seed", "--db", self.path("x.db"), "--accounts", "0"], "--accounts"),
                               (["seed", "--db", "/nonexistent/dir/x.db"], "--db")):
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1)
            self.assertIn(mentions, r.stderr)
            self.assertFalse(os.path.exists(self.path("x.db")))


class Export(unittest.TestCase):
    """`exportengine export` through the real engine, checked against the
    database with Python's sqlite3 and csv modules."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.db = os.path.join(cls.dir.name, "src.db")
        r = run("seed", "--db", cls.db, "--accounts", "3", "--contacts", "3000", "--lists", "9",
                "--campaigns", "6", "--reports", "3000")
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def query(self, sql, *params):
        import sqlite3
        with sqlite3.connect(self.db) as c:
            return c.execute(sql, params).fetchall()

    @staticmethod
    def guarded(v):
        return "'" + v if v and v[0] in "=+-@\t\r" else v

    def expected_contacts(self, where="1=1", *params):
        rows = self.query("SELECT id, phone_number, email, first_name, last_name, created_at, updated_at "
                          "FROM contacts WHERE account_id = 2 AND " + where + " ORDER BY id", *params)
        return [[str(r[0]), r[1], self.guarded(r[2] or ""), self.guarded(r[3] or ""),
                 self.guarded(r[4] or ""), r[5], r[6]] for r in rows]

    def read_csv(self, path, delimiter=","):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", newline="", encoding="utf-8") as f:
            return list(csv.reader(f, delimiter=delimiter))

    def test_all_contacts_of_an_account(self):
        out = self.path("all.csv")
        r = run("export", "contacts", "--source", self.db, "--account", "2", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("rows", r.stdout)
        rows = self.read_csv(out)
        self.assertEqual(rows[0], ["id", "phoneNumber", "email", "firstName", "lastName", "createdAt", "updatedAt"])
        self.assertEqual(rows[1:], self.expected_contacts())
        self.assertEqual(len(rows) - 1, 1000)
        # Nothing left beside the output: no scratch directory, no temp file.
        self.assertEqual([n for n in os.listdir(self.dir.name) if n.startswith(".")], [])

    def test_list_filter_gzip_semicolon(self):
        out = self.path("lists.csv.gz")
        lists = [l for (l,) in self.query("SELECT id FROM contact_lists WHERE account_id = 2 LIMIT 2")]
        other = [l for (l,) in self.query("SELECT id FROM contact_lists WHERE account_id = 1 LIMIT 1")]
        r = run("export", "contacts", "--source", self.db, "--account", "2", "--gzip", "--delimiter", ";",
                "--list-ids", ",".join(str(x) for x in lists + other + lists), "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        want = self.expected_contacts(
            "id IN (SELECT contact_id FROM list_members WHERE list_id IN (%s))" % ",".join("?" * len(lists)), *lists)
        self.assertGreater(len(want), 0)
        self.assertEqual(self.read_csv(out, ";")[1:], want)

    def test_delivery_reports_by_range(self):
        out = self.path("reports.csv")
        r = run("export", "delivery-reports", "--source", self.db, "--account", "2",
                "--start", "2026-02-01T01:00:00+01:00", "--end", "2026-03-01T00:00:00Z", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = self.read_csv(out)
        want = self.query("SELECT id FROM delivery_reports WHERE account_id = 2 AND submitted_at >= "
                          "'2026-02-01T00:00:00Z' AND submitted_at < '2026-03-01T00:00:00Z' "
                          "ORDER BY submitted_at, id")
        self.assertEqual([int(x[0]) for x in rows[1:]], [w[0] for w in want])
        self.assertGreater(len(want), 0)

    def read_bytes(self, path):
        with open(path, "rb") as f:
            return f.read()

    def test_readers_write_the_same_bytes(self):
        # --readers K: the same file as one reader, plain and gzip (the gzip
        # members are cut at the same input offsets, so even the compressed
        # bytes match), for every filter shape and an account with nothing.
        # A database of its own, large enough for many 4096-row slices and
        # several 1 MiB gzip members.
        db = self.path("readers.db")
        r = run("seed", "--db", db, "--accounts", "2", "--contacts", "60000", "--lists", "6",
                "--campaigns", "4", "--reports", "60000")
        self.assertEqual(r.returncode, 0, r.stderr)
        import sqlite3
        with sqlite3.connect(db) as c:
            lists = ",".join(str(l) for (l,) in c.execute("SELECT id FROM contact_lists WHERE account_id = 2"))
            campaign = c.execute("SELECT id FROM campaigns WHERE account_id = 1 LIMIT 1").fetchone()[0]
        shapes = [
            ["contacts", "--account", "2"],
            ["contacts", "--account", "2", "--list-ids", lists, "--gzip"],
            ["contacts", "--account", "2", "--contact-ids", "3000,2,5,8,11,2000,2"],
            ["contacts", "--account", "99", "--bom"],
            ["delivery-reports", "--account", "2", "--start", "2026-01-01T00:00:00Z",
             "--end", "2027-01-01T00:00:00Z", "--delimiter", ";"],
            ["delivery-reports", "--account", "1", "--campaign-id", str(campaign), "--gzip"],
        ]
        sizes = []
        for shape in shapes:
            outs = {}
            for readers in ("1", "2", "3", "4"):
                out = self.path("readers-%s.out" % readers)
                r = run("export", *shape, "--source", db, "--readers", readers, "--out", out)
                self.assertEqual(r.returncode, 0, (shape, readers, r.stderr))
                outs[readers] = self.read_bytes(out)
            for readers in ("2", "3", "4"):
                self.assertEqual(outs[readers], outs["1"], (shape, readers))
            sizes.append(len(gzip.decompress(outs["1"]) if "--gzip" in shape else outs["1"]))
        # Many slices and gzip members where it matters; the id list and the
        # empty account are small on purpose.
        self.assertGreater(sizes[0], 2_000_000)
        self.assertGreater(sizes[1], 1_100_000)  # gzip: 2 or more 1 MiB members
        self.assertGreater(sizes[4], 2_000_000)
        self.assertGreater(sizes[2], 100)

    def test_bad_readers(self):
        out = self.path("never.csv")
        for value in ("0", "-1", "x", "65"):
            r = run("export", "contacts", "--source", self.db, "--account", "2", "--readers", value, "--out", out)
            self.assertEqual(r.returncode, 2, (value, r.stderr))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1)
            self.assertIn("--readers", r.stderr)
            self.assertFalse(os.path.exists(out))

    def test_bad_flags_write_nothing(self):
        out = self.path("never.csv")
        cases = [
            (["export"], "contacts"),
            (["export", "people", "--source", self.db], "contacts"),
            (["export", "contacts", "--account", "2", "--out", out], "--source"),
            (["export", "contacts", "--source", self.path("missing.db"), "--account", "2", "--out", out], "--source"),
            (["export", "contacts", "--source", self.db, "--out", out], "--account"),
            (["export", "contacts", "--source", self.db, "--account", "0", "--out", out], "--account"),
            (["export", "contacts", "--source", self.db, "--account", "2"], "--out"),
            (["export", "contacts", "--source", self.db, "--account", "2", "--list-ids", "1,x", "--out", out], "--list-ids"),
            (["export", "contacts", "--source", self.db, "--account", "2", "--list-ids", "1",
              "--contact-ids", "2", "--out", out], "not both"),
            (["export", "contacts", "--source", self.db, "--account", "2", "--campaign-id", "1", "--out", out], "--campaign-id"),
            (["export", "delivery-reports", "--source", self.db, "--account", "2", "--out", out], "campaignId"),
            (["export", "delivery-reports", "--source", self.db, "--account", "2",
              "--start", "2026-01-01", "--end", "2026-02-01T00:00:00Z", "--out", out], "--start"),
            (["export", "delivery-reports", "--source", self.db, "--account", "2",
              "--start", "2026-02-01T00:00:00Z", "--end", "2026-01-01T00:00:00Z", "--out", out], "before"),
            (["export", "contacts", "--source", self.db, "--account", "2", "--out", "/nonexistent/x.csv"], "--out"),
        ]
        for args, mentions in cases:
            r = run(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            lines = r.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, (args, r.stderr))
            self.assertIn(mentions, lines[0], args)
            self.assertFalse(os.path.exists(out), args)
        self.assertEqual([n for n in os.listdir(self.dir.name) if n.startswith(".")], [])


if __name__ == "__main__":
    EXE = sys.argv.pop(1)
    unittest.main(verbosity=2)
