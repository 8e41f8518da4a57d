#!/usr/bin/env python3
"""The comparison harness's "typical service code" row: Python 3's sqlite3
module and csv.writer, the way an endpoint that exports a table is usually
written — one query, the cursor handed to writerows().

    python3 benchmarks/python_csv_export.py DB OUT_FILE QUERY [HEADER,NAMES]

The header is the query's column names (its aliases) unless given.
"""
import csv
import sqlite3
import sys


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    db, out, query = sys.argv[1:4]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    cur = con.execute(query)
    header = sys.argv[4].split(",") if len(sys.argv) > 4 else [d[0] for d in cur.description]
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(cur)
    con.close()


if __name__ == "__main__":
    main()
