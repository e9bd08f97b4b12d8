#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, AddressSanitizer, UBSan) in build/fuzz, writes a seed corpus
# of small valid files (scripts/gen_fuzz_seeds.py), and runs each fuzzer for SECONDS (default 30: the CI
# smoke mode). Fails on any crash, sanitizer report or unexpected exception; the input that caused it is
# left in build/fuzz/artifacts/. Extra arguments go to libFuzzer (e.g. -runs=1000000 -jobs=1; with -jobs,
# each job's output is in build/fuzz/logs/fuzz-<job>.log).
#
# Usage: scripts/fuzz.sh [SECONDS] [libFuzzer flags...]
#   QLLM_FUZZ_TARGETS="gguf safetensors jinja"  which fuzzers to run      QLLM_JOBS=2  build parallelism
set -euo pipefail

seconds=${1:-30}
(($# > 0)) && shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$root/build/fuzz
targets=${QLLM_FUZZ_TARGETS:-gguf safetensors jinja}

"$root/scripts/setup.sh" --fuzz
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DQLLM_CUDA=OFF -DQLLM_FUZZ=ON \
  -DQLLM_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"${QLLM_JOBS:-2}" --target $(printf 'fuzz_%s ' $targets)

python3 "$root/scripts/gen_fuzz_seeds.py" "$build/seeds"
mkdir -p "$build/artifacts" "$build/logs"
cd "$build/logs"  # with -jobs=N, libFuzzer writes fuzz-<job>.log into the current folder
for target in $targets; do
  # New interesting inputs go to the first folder (kept between runs); the seeds are read only.
  mkdir -p "$build/corpus/$target"
  seeds=$build/seeds/$target
  [[ $target == jinja ]] && seeds=$root/tests/fixtures/chat_templates  # the real templates
  echo "fuzz: fuzz_$target for ${seconds} s"
  "$build/fuzz/fuzz_$target" "$build/corpus/$target" "$seeds" -max_total_time="$seconds" \
    -artifact_prefix="$build/artifacts/$target-" -print_final_stats=1 "$@"
done
echo "fuzz: no crash"
