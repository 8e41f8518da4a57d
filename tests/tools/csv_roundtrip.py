#!/usr/bin/env python3
"""Reads a CSV file written by exportengine with Python's own csv module and
compares every value, byte for byte, with the values the test meant to write.

usage: csv_roundtrip.py FILE EXPECTED DELIMITER

FILE may be gzip-compressed (name ends in .gz). EXPECTED is binary: for each
row a u32 field count, then for each field a u32 length and the raw bytes
(little endian). Invalid UTF-8 is carried through with surrogateescape, so
bytes that are not UTF-8 are compared exactly too. Exit 0 when every row and
value matches; otherwise 1 with the first difference on stderr.
"""
import csv
import gzip
import struct
import sys


def parse_expected(data):
    """The rows of an EXPECTED file's bytes, each a list of bytes values."""
    pos = 0
    while pos < len(data):
        (count,) = struct.unpack_from("<I", data, pos)
        pos += 4
        row = []
        for _ in range(count):
            (n,) = struct.unpack_from("<I", data, pos)
            pos += 4
            row.append(data[pos:pos + n])
            pos += n
        yield row


def expected_rows(path):
    with open(path, "rb") as f:
        yield from parse_expected(f.read())


def main():
    path, expected_path, delim = sys.argv[1], sys.argv[2], sys.argv[3]
    delim = "\t" if delim == "tab" else delim
    opener = gzip.open if path.endswith(".gz") else open
    csv.field_size_limit(1 << 30)
    with opener(path, "rt", encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f, delimiter=delim, strict=True)
        n = 0
        for want, got in zip(expected_rows(expected_path), reader, strict=True):
            got = [v.encode("utf-8", errors="surrogateescape") for v in got]
            if want != got:
                print(f"row {n} differs:\n  want {want!r}\n  got  {got!r}", file=sys.stderr)
                return 1
            n += 1
    print(f"{n} rows match")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as e:  # zip(strict=True): different row counts
        print(f"row count differs: {e}", file=sys.stderr)
        sys.exit(1)
