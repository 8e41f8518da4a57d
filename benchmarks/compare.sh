#!/usr/bin/env bash
# The comparison harness, one command:
#
#   benchmarks/compare.sh [--quick] [--runs N] [--sizes 1M,3M,10M] [--tools LIST]
#                         [--datasets contacts,reports] [--all] [--profile]
#                         [--keep DIR] [--bin DIR] [--out FILE]
#
# Installs what it measures against (scripts/setup.sh --bench: PostgreSQL 15,
# matplotlib, perf; DuckDB's npm package pinned in benchmarks/duckdb/), then
# runs benchmarks/compare.py with Debian's Python (the one matplotlib is
# installed for). Everything binds 127.0.0.1 or a unix socket in a temporary
# directory, and the PostgreSQL cluster it starts is stopped on every way out.
# `--help` lists the options; benchmarks/README.md explains the results.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

"$repo/scripts/setup.sh" --bench

# DuckDB's npm package, exactly as package-lock.json pins it (idempotent).
want="$(sed -n 's/.*"@duckdb\/node-api": "\([^"]*\)".*/\1/p' "$here/duckdb/package.json")"
have="$(sed -n 's/^  "version": "\([^"]*\)".*/\1/p' \
  "$here/duckdb/node_modules/@duckdb/node-api/package.json" 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
  echo "compare.sh: installing @duckdb/node-api $want into benchmarks/duckdb/node_modules" >&2
  (cd "$here/duckdb" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

exec /usr/bin/python3 "$here/compare.py" "$@"
