#!/usr/bin/env bash
# Downloads the `openai` Python client and everything it needs as wheels for the GPU machine's Python 3.12
# (which cannot reach PyPI) into .whl/ (in .gitignore; carry it, then tests/test_server.sh installs from it with
# QLLM_WHEELS=.whl). Run here, where pip reaches PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .whl openai
du -sh .whl && ls .whl
