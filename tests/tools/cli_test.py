#!/usr/bin/env python3
"""Black-box tests of the exportengine command line: exit codes, one-line
errors, and files that real readers (csv, gzip) accept.

usage: cli_test.py PATH_TO_EXPORTENGINE
"""
import csv
import gzip
import os
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

    def test_unwritable_out(self):
        self.assert_usage_error(["bench", "csv", "--rows", "5", "--out", "/nonexistent/x.csv"], "--out")

    def test_help(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("bench csv", r.stdout)


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


if __name__ == "__main__":
    EXE = sys.argv.pop(1)
    unittest.main(verbosity=2)
