#!/usr/bin/env bash
# The quickstart: installs what is missing, builds, seeds a sample database
# in the reference schema and runs exports through the real engine (SQLite
# job store, filesystem sink, SQLite data source), with real tools reading
# the results back. Everything lands in out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release >/dev/null

exe=build/bin/exportengine
demo=out/demo
mkdir -p "$demo"

echo "== seeding $demo/sample.db: 5 accounts, 1,000,000 contacts, 200,000 delivery reports"
"$exe" seed --db "$demo/sample.db" --accounts 5 --contacts 1000000 --lists 50 --campaigns 20 \
  --reports 200000 --force

echo
echo "== every contact of account 1 -> $demo/contacts.csv"
"$exe" export contacts --source "$demo/sample.db" --account 1 --out "$demo/contacts.csv"
echo "   the first lines:"
head -n 4 "$demo/contacts.csv" | sed 's/\r$/  [CRLF]/; s/^/   /'
echo "   values a spreadsheet would run as formulas, written with a leading ' (the guard):"
{ grep -m 3 ",'[=+@-]" "$demo/contacts.csv" || true; } | sed 's/\r$/  [CRLF]/; s/^/   /'

echo
echo "== account 1's delivery reports of February 2026, gzip, semicolons -> $demo/reports.csv.gz"
"$exe" export delivery-reports --source "$demo/sample.db" --account 1 \
  --start 2026-02-01T00:00:00Z --end 2026-03-01T00:00:00+00:00 \
  --gzip --delimiter ';' --out "$demo/reports.csv.gz"
gunzip -t "$demo/reports.csv.gz" && echo "   gunzip: the file is valid gzip"

python3 - "$demo" <<'PY'
import csv, gzip, sqlite3, sys
demo = sys.argv[1]
with open(f"{demo}/contacts.csv", newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
with sqlite3.connect(f"{demo}/sample.db") as db:
    want = db.execute("SELECT COUNT(*) FROM contacts WHERE account_id = 1").fetchone()[0]
print(f"   Python csv reads {len(rows) - 1:,} contacts; the database has {want:,} for account 1")
with gzip.open(f"{demo}/reports.csv.gz", "rt", newline="", encoding="utf-8") as f:
    reports = list(csv.reader(f, delimiter=";"))
print(f"   Python gzip+csv reads {len(reports) - 1:,} delivery reports, columns: {', '.join(reports[0])}")
PY
