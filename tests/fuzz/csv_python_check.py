#!/usr/bin/env python3
"""Reads every CSV that fuzz_csv_writer dumped (EXPORTENGINE_FUZZ_CSV_DUMP=DIR)
back with Python's csv module and compares each value, byte for byte, with
what the fuzzer meant to write (guard included).

usage: csv_python_check.py DIR

DIR holds <n>.csv, <n>.expected (tests/tools/csv_roundtrip.py's format: per
row a u32 field count, per field a u32 length and the raw bytes, little
endian) and <n>.delim (',', ';' or 'tab'). Invalid UTF-8 is carried through
with surrogateescape. Two readings are Python's, not the file's: a UTF-8 BOM
is removed before reading, and a record holding one empty field (a bare
CRLF, which RFC 4180 leaves ambiguous) comes back from csv as [] and is
compared as [b""]. Exit 0 when every file matches; 1 with the first
difference otherwise. The last line printed is the count of files checked.
"""
import csv
import io
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from csv_roundtrip import parse_expected  # noqa: E402  (the EXPECTED format's one reader)


def check(stem):
    with open(stem + ".delim", "rb") as f:
        delim = f.read().decode()
    delim = "\t" if delim == "tab" else delim
    with open(stem + ".csv", "rb") as f:
        raw = f.read()
    with open(stem + ".expected", "rb") as f:
        want = list(parse_expected(f.read()))
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    text = raw.decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=True)
    got = [[v.encode("utf-8", errors="surrogateescape") for v in row] or [b""] for row in reader]
    if got != want:
        for i, (w, g) in enumerate(zip(want, got)):
            if w != g:
                return f"{stem}.csv: row {i} differs:\n  want {w!r}\n  got  {g!r}"
        return f"{stem}.csv: {len(want)} rows expected, {len(got)} read"
    return None


def main():
    directory = sys.argv[1]
    csv.field_size_limit(1 << 30)
    stems = sorted(os.path.join(directory, n[:-4]) for n in os.listdir(directory) if n.endswith(".csv"))
    for stem in stems:
        try:
            problem = check(stem)
        except csv.Error as e:
            problem = f"{stem}.csv: Python's csv refused it: {e}"
        if problem:
            print(problem, file=sys.stderr)
            return 1
    if not stems:
        print("no CSV files to check", file=sys.stderr)
        return 1
    print(f"{len(stems)} files read back identically")
    return 0


if __name__ == "__main__":
    sys.exit(main())
