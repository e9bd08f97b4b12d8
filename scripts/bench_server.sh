#!/usr/bin/env bash
# The serving benchmark of issue 22 on the GPU machine: qllm serve and llama.cpp's llama-server
# (`-np 64 -fa`) on the same synthetic Llama-3.2-1B weights, one after the other in the same call, each
# measured by scripts/bench_server.py (64 concurrent streaming clients, 128-token prompts, 256-token outputs,
# time to first token, one stream alone), plus `qllm bench`'s batch-1 decode for the single-stream target.
# Writes bench_server_*.json and a summary table into $OUT_DIR.
# Usage (repository root, after the build; scripts/gpu_check.sh serve-bench calls it):
#   scripts/bench_server.sh
# Environment:
#   QLLM           qllm binary (default build/hopper/bin/qllm)
#   SYNTH          the synthetic checkpoint folder (default build/synth-llama-3.2-1b; written by `qllm synth`
#                  when absent). llama.cpp's GGUFs of the same weights are made beside it as gpu_check.sh's
#                  llama1b does: scripts/synth_to_gguf.py -> f16.gguf, llama-quantize -> q4_0.gguf.
#   QUANT          qllm's weight format (default int4-g128);  PEER_TYPES: GGUF types for llama-server
#                  (default "q4_0 f16")
#   LLAMA_BUILD    llama.cpp build folder with bin/llama-server, bin/llama-quantize (default build/lcb) and
#                  LLAMA_SRC its source (default build/llama.cpp, for gguf-py)
#   CLIENTS, REQUESTS, PROMPT_TOKENS, MAX_TOKENS   (default 64, 128, 128, 256);  OUT_DIR (default out)
#   DEVICE (default cuda; cpu for a smoke test), ID_HIGH (prompt ids below it, default 30000)
set -uo pipefail
cd "$(dirname "$0")/.."
QLLM=${QLLM:-build/hopper/bin/qllm}
SYNTH=${SYNTH:-build/synth-llama-3.2-1b}
QUANT=${QUANT:-int4-g128}
PEER_TYPES=${PEER_TYPES:-q4_0 f16}
LLAMA_BUILD=${LLAMA_BUILD:-build/lcb}
LLAMA_SRC=${LLAMA_SRC:-build/llama.cpp}
CLIENTS=${CLIENTS:-64}
REQUESTS=${REQUESTS:-128}
PROMPT_TOKENS=${PROMPT_TOKENS:-128}
MAX_TOKENS=${MAX_TOKENS:-256}
OUT_DIR=${OUT_DIR:-out}
DEVICE=${DEVICE:-cuda}      # cpu: a smoke test of this script without a GPU
ID_HIGH=${ID_HIGH:-30000}  # prompt token ids are drawn below this (inside every vocabulary measured)
mkdir -p "$OUT_DIR"
log() { echo "[bench_server $(date +%H:%M:%S)] $*"; }
server_pid=
stop_server() { [[ -n $server_pid ]] && kill "$server_pid" 2> /dev/null && wait "$server_pid" 2> /dev/null; server_pid=; }
trap stop_server EXIT

# wait_ready URL LOG: until URL answers 200 (python, not curl: the GPU machine's image may lack curl) (a model load takes a while), or the server exits.
wait_ready() {
  local i
  for i in $(seq 1 1800); do
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2> /dev/null && return 0
    kill -0 "$server_pid" 2> /dev/null || { tail -20 "$2"; return 1; }
    sleep 0.1
  done
  tail -20 "$2"
  return 1
}

bench() {  # bench LABEL PORT MODEL_ID JSON
  python3 scripts/bench_server.py --base "http://127.0.0.1:$2" --model "$3" --label "$1" --clients "$CLIENTS" \
    --requests "$REQUESTS" --prompt-tokens "$PROMPT_TOKENS" --max-tokens "$MAX_TOKENS" --id-high "$ID_HIGH" --out "$4" > "$4.log" 2>&1 ||
    { log "$1: bench failed or had errors"; tail -20 "$4.log"; }
}

[[ -f $SYNTH/config.json ]] || "$QLLM" synth --config llama-3.2-1b --out "$SYNTH" --force > "$OUT_DIR/synth.log" 2>&1

ctx=$((PROMPT_TOKENS + MAX_TOKENS + 64))
log "qllm serve: $SYNTH $QUANT, $CLIENTS sequences x $ctx positions"
port=18480
"$QLLM" serve --model "$SYNTH" --device "$DEVICE" --quant "$QUANT" --port $port --max-batch "$CLIENTS" --ctx $ctx \
  --batch-tokens 2048 --max-queue 4096 > "$OUT_DIR/qllm_serve.log" 2>&1 &
server_pid=$!
if wait_ready "http://127.0.0.1:$port/health" "$OUT_DIR/qllm_serve.log"; then
  bench "qllm $QUANT" $port "$(basename "$SYNTH")" "$OUT_DIR/bench_server_qllm.json"
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' \
    "http://127.0.0.1:$port/metrics" > "$OUT_DIR/qllm_serve_metrics.txt"
fi
stop_server
log "qllm bench: batch-1 decode (the single-stream reference)"
timeout 300 "$QLLM" bench --model "$SYNTH" --device "$DEVICE" --quant "$QUANT" -p "$PROMPT_TOKENS" -n "$MAX_TOKENS" \
  --batch 1 --reps 3 --json > "$OUT_DIR/bench_qllm_b1.json" 2> "$OUT_DIR/bench_qllm_b1.err"

if [[ -x $LLAMA_BUILD/bin/llama-server ]]; then
  [[ -f $SYNTH/f16.gguf ]] || python3 scripts/synth_to_gguf.py "$SYNTH" "$SYNTH/f16.gguf" --gguf-py "$LLAMA_SRC/gguf-py" \
    > "$OUT_DIR/synth_to_gguf.log" 2>&1 || tail -5 "$OUT_DIR/synth_to_gguf.log"
  [[ -f $SYNTH/q4_0.gguf ]] || "$LLAMA_BUILD/bin/llama-quantize" "$SYNTH/f16.gguf" "$SYNTH/q4_0.gguf" Q4_0 \
    > "$OUT_DIR/llama_quantize.log" 2>&1 || tail -5 "$OUT_DIR/llama_quantize.log"
  for t in $PEER_TYPES; do
    [[ -f $SYNTH/$t.gguf ]] || { log "no $SYNTH/$t.gguf"; continue; }
    log "llama-server: $t.gguf -np $CLIENTS -fa"
    port=$((port + 1))
    "$LLAMA_BUILD/bin/llama-server" -m "$SYNTH/$t.gguf" -np "$CLIENTS" -fa -c $((ctx * CLIENTS)) -ngl 99 \
      --host 127.0.0.1 --port $port > "$OUT_DIR/llama_server_$t.log" 2>&1 &
    server_pid=$!
    wait_ready "http://127.0.0.1:$port/health" "$OUT_DIR/llama_server_$t.log" &&
      bench "llama-server $t" $port "$t" "$OUT_DIR/bench_server_llamacpp_$t.json"
    stop_server
  done
else
  log "no $LLAMA_BUILD/bin/llama-server: the peer is not measured (gpu_check.sh builds it)"
fi

python3 - "$OUT_DIR" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
rows = []
for f in sorted(glob.glob(os.path.join(out, "bench_server_*.json"))):
    if f.endswith("_summary.json"):
        continue
    rows.append(json.load(open(f)))
b1 = None
try:
    for r in json.load(open(os.path.join(out, "bench_qllm_b1.json")))["table"]:
        if str(r.get("test", "")).startswith("tg"):  # tg<N>: decode tokens/s
            b1 = r
except Exception as e:
    print("qllm bench b1:", e)
print(f"{'server':<24} {'out tok/s':>10} {'TTFT p50':>9} {'TTFT p99':>9} {'1-stream tok/s':>15} {'errors':>6}")
for r in rows:
    print(f"{r['label']:<24} {r['output_tokens_per_s']:>10.1f} {r['ttft_p50_s'] or 0:>9.3f} {r['ttft_p99_s'] or 0:>9.3f} "
          f"{r['single_stream_decode_tokens_per_s'] or 0:>15.1f} {r['errors']:>6}")
qllm = [r for r in rows if r["label"].startswith("qllm")]
for peer in (r for r in rows if r["label"].startswith("llama-server")):
    if qllm:
        print(f"qllm / {peer['label']}: {qllm[0]['output_tokens_per_s'] / max(peer['output_tokens_per_s'], 1e-9):.2f}x output tok/s")
if b1 is not None:
    print("qllm bench batch 1:", json.dumps(b1))
# The same as a markdown table for docs/RESULTS.md.
print("\n| server | output tok/s | TTFT p50 s | TTFT p99 s | 1-stream decode tok/s | errors |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    print(f"| {r['label']} | {r['output_tokens_per_s']:,.0f} | {r['ttft_p50_s'] or 0:.3f} | {r['ttft_p99_s'] or 0:.3f} | "
          f"{r['single_stream_decode_tokens_per_s'] or 0:,.0f} | {r['errors']} |")
if b1 is not None:
    print(f"\nqllm bench {b1['test']} batch 1: {b1['tokens_per_s']:,.1f} tok/s")
json.dump({"servers": rows, "qllm_bench_b1": b1}, open(os.path.join(out, "bench_server_summary.json"), "w"), indent=2)
PY
