#!/usr/bin/env bash
# The tests: installs what is missing, builds, runs ctest (GPU tests report "skipped" without a device), then
# runs the CPU tests again in a Debug build with AddressSanitizer + UndefinedBehaviorSanitizer (build/sanitize),
# so that memory errors and undefined behaviour fail the run (less the two INT4 table tests, 80 s there: their
# code is covered by the other INT4 tests; CMakePresets.json's sanitize test preset), then the fuzz targets
# (GGUF, safetensors, Jinja) in their smoke mode, 20 s each (scripts/fuzz.sh).
# QLLM_SANITIZE_TESTS=0 and QLLM_FUZZ_SMOKE=0 skip those.
# Arguments go to the first ctest (e.g. -R Tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
(cd build/release && ctest --output-on-failure -j "$(nproc)" "$@")
if [[ "${QLLM_SANITIZE_TESTS:-1}" != 0 ]]; then
  echo "== CPU tests under AddressSanitizer + UndefinedBehaviorSanitizer (Debug, build/sanitize) =="
  cmake --preset sanitize >/dev/null
  cmake --build --preset sanitize -j "$(nproc)"
  ctest --preset sanitize -j "$(nproc)"
fi
if [[ "${QLLM_FUZZ_SMOKE:-1}" != 0 ]]; then
  echo "== Fuzz smoke: every parser of files and templates for 20 s (scripts/fuzz.sh) =="
  scripts/fuzz.sh 20
fi
