"""Unit checks of the comparison harness's row checker (csvcheck.py):
other tools' representations are accepted, anything that writes less or
different is caught and named.

    python3 -m unittest discover -s benchmarks -p 'test_*.py'     (or ctest -R bench_csvcheck)
"""
import gzip
import os
import tempfile
import unittest

import csvcheck
from csvcheck import CONTACTS, DELIVERY_REPORTS

HEADER = "id,phoneNumber,email,firstName,lastName,createdAt,updatedAt"
# Ours: contract §4 (CRLF, formula guard, minimal quoting).
OURS = [
    HEADER,
    '1,+4915112345678,a@example.com,Anna,"Smith, Jr.",2024-11-27T09:35:25Z,2024-12-01T00:00:00Z',
    "2,+4915112345679,,'=1+2,'-2+3,2023-01-01T00:00:00Z,2023-01-02T00:00:00Z",
    '3,+4915112345670,"\'@SUM(A1)",Zoë,"Anne\r\nMarie",2025-06-30T23:59:59Z,2025-07-01T00:00:00Z',
    "4,'=HYPERLINK(1),'+x@example.com,\"'\tTabbed\",\"\"\"Ace\"\" Miller\",2022-02-02T02:02:02Z,2022-02-02T02:02:03Z",
]
# sqlite3 -csv -header: stored values, LF line ends, no guard.
SQLITE3 = [
    HEADER,
    '1,+4915112345678,a@example.com,Anna,"Smith, Jr.",2024-11-27T09:35:25Z,2024-12-01T00:00:00Z',
    "2,+4915112345679,,=1+2,-2+3,2023-01-01T00:00:00Z,2023-01-02T00:00:00Z",
    '3,+4915112345670,@SUM(A1),Zoë,"Anne\r\nMarie",2025-06-30T23:59:59Z,2025-07-01T00:00:00Z',
    "4,=HYPERLINK(1),+x@example.com,\"\tTabbed\",\"\"\"Ace\"\" Miller\",2022-02-02T02:02:02Z,2022-02-02T02:02:03Z",
]
# PostgreSQL COPY of timestamptz columns (TimeZone UTC), an empty string quoted.
POSTGRES = [
    HEADER,
    '1,+4915112345678,a@example.com,Anna,"Smith, Jr.",2024-11-27 09:35:25+00,2024-12-01 00:00:00+00',
    "2,+4915112345679,,=1+2,-2+3,2023-01-01 00:00:00+00,2023-01-02 00:00:00+00",
    '3,+4915112345670,@SUM(A1),Zoë,"Anne\r\nMarie",2025-07-01 01:59:59+02,2025-07-01 00:00:00+00',
    "4,=HYPERLINK(1),+x@example.com,\"\tTabbed\",\"\"\"Ace\"\" Miller\",2022-02-02 02:02:02,2022-02-02 02:02:03.000+00:00",
]


class CsvCheckTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.ref = self.write("ours.csv", OURS, "\r\n")
        self.ref_digest = csvcheck.digest(self.ref, CONTACTS, spec_form=True)

    def tearDown(self):
        self.dir.cleanup()

    def write(self, name, lines, eol="\n", gz=False):
        path = os.path.join(self.dir.name, name)
        data = (eol.join(lines) + eol).encode()
        with (gzip.open if gz else open)(path, "wb") as f:
            f.write(data)
        return path

    def check(self, name, lines, eol="\n", gz=False):
        path = self.write(name, lines, eol, gz)
        return csvcheck.compare(name, self.ref, self.ref_digest, path, CONTACTS, spec_form=False)

    def test_reference(self):
        self.assertEqual(self.ref_digest.rows, 4)
        self.assertEqual(self.ref_digest.header, HEADER.split(","))
        self.assertEqual(self.ref_digest.error, "")

    def test_sqlite3_form_matches_after_the_guard(self):
        ok, msg, d = self.check("sqlite3", SQLITE3)
        self.assertTrue(ok, msg)
        # =1+2, -2+3, @SUM, =HYPERLINK (a phone column, not E.164), +x@, TAB
        self.assertEqual(sum(d.changed.values()), 6)
        self.assertEqual(d.changed["phoneNumber"], 1)

    def test_postgres_timestamps_and_offsets(self):
        ok, msg, d = self.check("postgres", POSTGRES)
        self.assertTrue(ok, msg)
        self.assertEqual(d.changed["createdAt"], 4)

    def test_gzip_input(self):
        ok, msg, _ = self.check("pipeline.csv.gz", SQLITE3, gz=True)
        self.assertTrue(ok, msg)

    def test_truncated_output_is_caught(self):
        ok, msg, d = self.check("truncated", SQLITE3[:-1])
        self.assertFalse(ok)
        self.assertEqual(d.rows, 3)
        self.assertIn("truncated: output ends after 3 data rows; ours has 4", msg)
        self.assertIn("HYPERLINK", msg)  # the first missing row is shown

    def test_cut_mid_row_is_caught(self):
        path = self.write("cut", SQLITE3)
        with open(path, "rb+") as f:
            f.truncate(os.path.getsize(path) - 30)
        ok, msg, _ = csvcheck.compare("cut", self.ref, self.ref_digest, path, CONTACTS, spec_form=False)
        self.assertFalse(ok)
        self.assertIn("data row 4", msg)

    def test_changed_value_names_the_row(self):
        bad = list(SQLITE3)
        bad[3] = bad[3].replace("Zoë", "Zoe")
        ok, msg, _ = self.check("wrong", bad)
        self.assertFalse(ok)
        self.assertIn("wrong: first differing row is data row 3", msg)
        self.assertIn("'Zoe'", msg)

    def test_missing_column_and_extra_rows(self):
        ok, msg, _ = self.check("narrow", [",".join(HEADER.split(",")[:-1])] + SQLITE3[1:])
        self.assertFalse(ok)
        self.assertIn("the header", msg)
        ok, msg, _ = self.check("longer", SQLITE3 + [SQLITE3[1]])
        self.assertFalse(ok)
        self.assertIn("more rows than ours", msg)

    def test_unguarded_value_in_our_own_form_differs(self):
        # A tool that already guarded (spec_form) is not guarded twice, and
        # our file is never normalised: an unguarded value there differs.
        path = self.write("ours-unguarded.csv", SQLITE3, "\r\n")
        ok, msg, _ = csvcheck.compare("ours-unguarded", self.ref, self.ref_digest, path, CONTACTS,
                                      spec_form=True)
        self.assertFalse(ok)
        self.assertIn("data row 2", msg)

    def test_malformed_quoting_is_caught(self):
        bad = list(SQLITE3)
        bad[2] = '2,+4915112345679,,"=1+2"x,-2+3,2023-01-01T00:00:00Z,2023-01-02T00:00:00Z'
        ok, msg, d = self.check("badquote", bad)
        self.assertFalse(ok)
        self.assertTrue(d.error)
        self.assertIn("not valid CSV", msg)

    def test_normalisers(self):
        self.assertEqual(csvcheck.guard_phone("+4915112345678"), "+4915112345678")
        self.assertEqual(csvcheck.guard_phone("+1+2"), "'+1+2")
        self.assertEqual(csvcheck.guard_phone("+"), "'+")
        self.assertEqual(csvcheck.guard_phone("4915"), "4915")
        self.assertEqual(csvcheck.guard_free_text("\rx"), "'\rx")
        self.assertEqual(csvcheck.guard_free_text("O'Brien"), "O'Brien")
        self.assertEqual(csvcheck.utc_timestamp("2026-01-01 00:30:00-01:30"), "2026-01-01T02:00:00Z")
        self.assertEqual(csvcheck.utc_timestamp("2026-01-01 00:30:00.5"), "2026-01-01 00:30:00.5")
        self.assertEqual(csvcheck.utc_timestamp(""), "")
        self.assertEqual(csvcheck.canonical_integer("007"), "7")
        self.assertEqual(len(DELIVERY_REPORTS), 10)


if __name__ == "__main__":
    unittest.main()
