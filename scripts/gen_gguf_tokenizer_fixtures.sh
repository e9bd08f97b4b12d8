#!/usr/bin/env bash
# Regenerates tests/fixtures/gguf_tokenizer/*.json: the token ids that llama.cpp's llama-tokenize gives for
# GGUF vocabularies (SmolLM2's, the same with the gpt-2 pre-tokenizer, Llama 3's as llama-bpe, and a tiny
# SentencePiece model trained here), on tricky strings and on the whole WikiText-2 test text
# (scripts/gen_gguf_tokenizer_fixtures.py says what each fixture holds).
#
#   scripts/gen_gguf_tokenizer_fixtures.sh [SHARED_DIR] [--compare-random N --qllm build/cpu/bin/qllm]
#
# SHARED_DIR defaults to ../shared beside the checkout. --compare-random also compares `qllm tokenize` with
# llama-tokenize on N random texts per vocabulary (see the .py).
#
# Builds llama-tokenize (CPU only) from ../shared/peers/llama.cpp.tar.xz in /tmp/lcb (never in the repo),
# unpacking the source to /tmp/peers/llama.cpp when it is not there; needs Python with numpy and
# sentencepiece (installed with pip when missing). Takes a few minutes, most of it building llama.cpp.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
shared_arg="$repo/../shared"
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then shared_arg="$1"; shift; fi
shared="$(cd "$shared_arg" && pwd)"
llama_src=/tmp/peers/llama.cpp
build=/tmp/lcb

if [ ! -f "$llama_src/CMakeLists.txt" ]; then
  mkdir -p /tmp/peers
  tar -xJf "$shared/peers/llama.cpp.tar.xz" -C /tmp/peers
fi
if [ ! -x "$build/bin/llama-tokenize" ]; then
  cmake -S "$llama_src" -B "$build" -DGGML_CUDA=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF
  nice cmake --build "$build" -j2 --target llama-tokenize
fi
python3 -c "import numpy, sentencepiece" 2>/dev/null || pip install numpy sentencepiece

PYTHONPATH="$llama_src/gguf-py" python3 "$repo/scripts/gen_gguf_tokenizer_fixtures.py" \
  --llama-tokenize "$build/bin/llama-tokenize" --shared "$shared" "$@"
