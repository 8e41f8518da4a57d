#!/usr/bin/env bash
# The quickstart: the whole product in one command. Installs what is missing,
# builds, seeds a sample database in the reference schema, starts
# `exportengine serve` on loopback, and then does what an API user does, with
# curl: create a contacts export and a delivery-reports export, poll the list
# until they are ready, get signed URLs, download, look at the files. Stops
# the server at the end (and on any failure). Everything lands in out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release >/dev/null

exe=build/bin/exportengine
demo=out/demo
mkdir -p "$demo"
rm -rf "$demo/data"

echo "== seeding $demo/sample.db: 5 accounts, 1,000,000 contacts, 200,000 delivery reports"
"$exe" seed --db "$demo/sample.db" --accounts 5 --contacts 1000000 --lists 50 --campaigns 20 \
  --reports 200000 --force

echo
echo "== starting the server (API key demo-key -> account 1; logs in $demo/server.log)"
"$exe" serve --listen 127.0.0.1:0 --data-dir "$demo/data" --source "$demo/sample.db" \
  --api-key demo-key:1 >"$demo/server.out" 2>"$demo/server.log" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q '^listening on ' "$demo/server.out" 2>/dev/null && break
  sleep 0.1
done
base=$(sed -n 's/^listening on //p' "$demo/server.out")
[ -n "$base" ] || { echo "the server did not start:"; cat "$demo/server.log"; exit 1; }
echo "   $(cat "$demo/server.out")"

api() { curl -sS -H 'Authorization: Bearer demo-key' "$@"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo
echo "== POST /exports/contacts (every contact of account 1)"
contacts=$(api -X POST "$base/exports/contacts" -d '{}' | tee /dev/stderr | json '["exportId"]')
echo
echo "== POST /exports/delivery-reports (February 2026, gzip, semicolons)"
reports=$(api -X POST "$base/exports/delivery-reports" \
  -d '{"startDateTime":"2026-02-01T00:00:00Z","endDateTime":"2026-03-01T00:00:00+00:00","compression":"gzip","delimiter":";"}' \
  | tee /dev/stderr | json '["exportId"]')
echo

echo
echo "== GET /exports until both are available"
for _ in $(seq 600); do
  ready=$(api "$base/exports?limit=10" | python3 -c '
import json, sys
views = json.load(sys.stdin)["exports"]
print(" ".join("%s:%s:%s" % (v["type"], v["status"], v["rowCount"]) for v in views))
print(all(v["isAvailableForDownload"] for v in views))')
  echo "   $(echo "$ready" | head -1)"
  [ "$(echo "$ready" | tail -1)" = True ] && break
  sleep 0.2
done

download() { # id file
  local link url
  link=$(api "$base/exports/$1")
  echo "   GET /exports/$1 -> $(echo "$link" | json '["contentType"]'), $(echo "$link" | json '["rowCount"]') rows, URL valid until $(echo "$link" | json '["expiresAt"]')"
  url=$(echo "$link" | json '["url"]')
  curl -sS -D "$demo/headers.txt" -o "$2" "$url"
  grep -i '^content-disposition' "$demo/headers.txt" | sed 's/\r$//; s/^/   /'
}

echo
echo "== downloading through the signed URLs (no API key needed: the signature is the credential)"
download "$contacts" "$demo/contacts.csv"
download "$reports" "$demo/reports.csv.gz"

echo
echo "== $demo/contacts.csv, the first lines"
head -n 4 "$demo/contacts.csv" | sed 's/\r$/  [CRLF]/; s/^/   /'
echo "   values a spreadsheet would run as formulas, written with a leading ' (the guard):"
{ grep -m 3 ",'[=+@-]" "$demo/contacts.csv" || true; } | sed 's/\r$/  [CRLF]/; s/^/   /'
echo "== $demo/reports.csv.gz, the first lines (gunzip)"
{ gunzip -c "$demo/reports.csv.gz" || true; } | head -n 3 | sed 's/\r$/  [CRLF]/; s/^/   /'

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

echo
echo "== a tampered URL is refused"
url=$(api "$base/exports/$contacts" | json '["url"]')
echo "   $(curl -sS -o /dev/null -w '%{http_code}' "${url%?}x") $(curl -sS "${url%?}x")"

echo
echo "== stopping the server (SIGTERM)"
kill -TERM $server
wait $server && echo "   exited cleanly"
trap - EXIT
