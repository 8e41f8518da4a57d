#!/usr/bin/env bash
# The test command: installs what is missing, configures, builds and runs the
# whole suite with ctest. Ends with ctest's summary; exits non-zero on any
# failure.
#
#   scripts/test.sh            # the release preset (build/)
#   scripts/test.sh asan       # any preset: debug, asan (ASan+UBSan), tsan
#
# EXPORTENGINE_WERROR=ON turns warnings into errors (our CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

preset="${1:-release}"
scripts/setup.sh

cmake --preset "$preset" -DEXPORTENGINE_WERROR="${EXPORTENGINE_WERROR:-OFF}" >/dev/null
cmake --build --preset "$preset"
ctest --preset "$preset"
