#!/usr/bin/env bash
# The main job: installs what is missing, builds the qllm CLI, and runs the demo: the INT4 quantization error
# table (CPU reference); with a GPU also the CUDA kernels and the GEMM benchmark; then text generation with a
# model (QLLM_MODEL, default the proxy model in ../shared).
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

model=${QLLM_MODEL:-../shared/models/proxy-llama-22m}
if [[ -f $model/config.json ]]; then
  echo; echo "== Text generation with $model =="
  if [[ $model == *proxy-llama-22m* ]]; then
    echo "   (a 22M-parameter stand-in trained on 4M tokens: expect grammatical-looking nonsense, not answers)"
  fi
  $qllm generate --model "$model" --prompt "The capital of France is" --max-tokens 32 --temperature 0
  summary+=("generation: $model")
else
  echo; echo "(no model at $model: set QLLM_MODEL to a Hugging Face Llama checkpoint directory to generate text)"
fi
echo; echo "== Done =="
printf '  - %s\n' "${summary[@]}"
echo "  Tests: scripts/test.sh. Every subcommand: $qllm --help"
