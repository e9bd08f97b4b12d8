#!/usr/bin/env bash
# Packs a CUDA build of this machine (qllm and qllm_gpu_tests, stripped) with the shared libraries they need
# beyond CUDA's and glibc's into one archive for scripts/gpu_check.sh's QLLM_PREBUILT, so that a device call
# spends no time building. Usage: scripts/pack_prebuilt.sh [BUILD_DIR (build/cuda)] [ARCHIVE (.gpubin/qllm.tar.xz)]
# Build first: cmake -S . -B build/cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 &&
#              cmake --build build/cuda -j2 --target qllm qllm_gpu_tests
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/cuda}
archive=${2:-.gpubin/qllm.tar.xz}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/lib" "$(dirname "$archive")"
cp "$build/bin/qllm" "$build/tests/qllm_gpu_tests" "$stage/"
strip "$stage/qllm" "$stage/qllm_gpu_tests"
# The libraries the device image may lack: everything ldd resolves outside CUDA's folder and glibc's own.
ldd "$build/bin/qllm" "$build/tests/qllm_gpu_tests" | awk '/=> \// {print $3}' | sort -u |
  grep -v -E '/cuda|lib(c|m|dl|rt|pthread|gcc_s|stdc\+\+)\.so' | xargs -r -I{} cp -L {} "$stage/lib/"
tar -cJf "$archive" -C "$stage" .
echo "$archive: $(du -h "$archive" | cut -f1) ($(ls "$stage/lib" | tr '\n' ' '))"
