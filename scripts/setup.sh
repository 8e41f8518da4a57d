#!/usr/bin/env bash
# Installs exactly the Debian packages exportengine needs to build, test and
# benchmark. Idempotent: when everything is present it prints nothing and
# touches nothing. Needs root (or sudo) only when something is missing.
#
#   scripts/setup.sh           build, tests, the micro- and end-to-end benchmarks
#   scripts/setup.sh --bench   also what the comparison harness
#                              (benchmarks/compare.sh) runs against:
#                              PostgreSQL's client, Node.js + npm (for DuckDB's npm
#                              package), matplotlib for the plots, perf
#                              for --profile. CI does not pay for these.
set -euo pipefail

bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) bench=1 ;;
    *) echo "setup: unknown option '$arg' (use --bench)" >&2; exit 2 ;;
  esac
done

packages=(
  # toolchain
  g++ cmake ninja-build pkg-config
  # libraries (contract §1)
  libboost1.81-dev libboost-json1.81-dev
  libsqlitecpp-dev libsqlite3-dev
  libssl-dev libdeflate-dev zlib1g-dev
  # the PostgreSQL job store: libpq to build it, a server for its tests
  # (each test binary starts a throwaway cluster of its own)
  libpq-dev postgresql-15
  # the pooler the store's transaction-pooling mode is tested behind
  pgbouncer
  # tests and benchmarks
  catch2 libbenchmark-dev python3 python3-yaml
  # the oracle the S3 sink's SigV4 signer is compared with, byte for byte
  # (ctest sigv4_oracle): the AWS SDK for Python's signing core
  python3-botocore
  # real tools the tests and benchmarks read our output with / compare against
  gzip pigz sqlite3 curl time wrk
)
if [ "$bench" -eq 1 ]; then
  # the comparison harness: the tools it measures against, its plots, --profile
  # (python3-munkres: fonttools, which matplotlib needs, wants scipy *or*
  # munkres; apt would pick scipy, whose pythran drags in libboost1.74-dev,
  # which conflicts with the libboost1.81-dev we build with.)
  packages+=(postgresql-client-15 python3-matplotlib python3-munkres linux-perf)
  # Node.js for DuckDB's npm package: Debian's, unless a node is already there
  # (a newer one from elsewhere is fine; the package needs Node >= 18).
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    packages+=(nodejs npm)
  fi
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done" >&2
