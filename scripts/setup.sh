#!/usr/bin/env bash
# Installs exactly the Debian packages exportengine needs to build, test and
# benchmark. Idempotent: when everything is present it prints nothing and
# touches nothing. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build pkg-config
  # libraries (SPEC §1)
  libboost1.81-dev libboost-json1.81-dev
  libsqlitecpp-dev libsqlite3-dev
  libssl-dev zlib1g-dev
  # tests and benchmarks
  catch2 libbenchmark-dev python3 python3-yaml
  # real tools the tests and benchmarks read our output with / compare against
  gzip pigz sqlite3 curl time wrk
)

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
