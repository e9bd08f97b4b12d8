#!/usr/bin/env bash
# The tests: installs what is missing, builds, runs ctest. GPU tests report "skipped" without a device.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd build/release
ctest --output-on-failure -j "$(nproc)" "$@"
