#!/usr/bin/env bash
# qllm serve end to end, with real clients: starts servers (port 0: any free port, loopback), talks to them
# with curl (every error status, SSE, /health, /v1/models, /metrics) and with the official `openai` Python
# package (tests/server/client_test.py: chat and completions streamed and not, greedy text equal to
# `qllm generate`'s, concurrent requests as alone, a load test and a fault test), then stops them.
# Usage: tests/test_server.sh
# Environment:
#   QLLM               the qllm binary (default build/cpu/bin/qllm, else build/release/bin/qllm)
#   QLLM_SERVE_MODEL   checkpoint folder or .gguf (default: the proxy model under $QLLM_SHARED or ../shared,
#                      else a tiny synthetic model written by `qllm synth`; QLLM_SERVE_TINY=1: that one)
#   QLLM_SERVE_DEVICE  cpu (default) or cuda;  QLLM_MODEL_ARGS: more model flags for serve and generate
#                      (e.g. "--quant int4-g128");  QLLM_SERVE_ARGS: more `qllm serve` flags
#   QLLM_LOAD_CLIENTS, QLLM_LOAD_REQUESTS, QLLM_LOAD_TOKENS   the load test (default 64, 256, 8)
#   QLLM_SERVE_TOLERANT=1  greedy texts that differ from their reference are counted, not failed (GPU)
#   QLLM_VENV          virtualenv for the openai client (default build/serve-venv, made when missing);
#   QLLM_WHEELS        a folder of wheels to install it from instead of PyPI (a machine without network).
#                      Without either, the client tests are skipped with a message (the curl tests still run).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "FAIL: $*" >&2; exit 1; }
say() { echo "[test_server $(date +%H:%M:%S)] $*"; }

QLLM=${QLLM:-}
if [[ -z $QLLM ]]; then
  for q in build/cpu/bin/qllm build/release/bin/qllm build/hopper/bin/qllm; do [[ -x $q ]] && QLLM=$q && break; done
fi
[[ -x ${QLLM:-} ]] || fail "no qllm binary (build it, or set QLLM)"
"$QLLM" serve --help > /dev/null 2>&1 || fail "$QLLM has no 'serve' (built without cpp-httplib?)"
DEVICE=${QLLM_SERVE_DEVICE:-cpu}
MODEL_ARGS=(${QLLM_MODEL_ARGS:-})
SERVE_ARGS=(${QLLM_SERVE_ARGS:-})
work=$(mktemp -d)
pids=()
cleanup() {
  local status=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # A sanitizer build (the sanitize preset) reports memory errors, undefined behaviour and leaks (at exit,
  # after SIGTERM) in the servers' logs.
  if grep -l -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$work"/*.log 2> /dev/null; then
    grep -h -A20 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$work"/*.log | head -60
    echo "FAIL: sanitizer reports in the servers' logs" >&2
    status=1
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT

proxy=
for shared in "${QLLM_SHARED:-}" ../shared; do
  [[ -n $shared && -f $shared/models/proxy-llama-22m/config.json ]] && proxy=$shared/models/proxy-llama-22m && break
done
MODEL=${QLLM_SERVE_MODEL:-}
[[ -z $MODEL && ${QLLM_SERVE_TINY:-0} != 1 ]] && MODEL=$proxy
if [[ -z $MODEL ]]; then
  MODEL=$work/tiny
  "$QLLM" synth --config tiny --out "$MODEL" > /dev/null
fi
say "model $MODEL on $DEVICE ($QLLM)"

# start_server NAME FLAGS...: sets $port; the server's log is $work/NAME.log.
start_server() {
  local name=$1 log=$work/$1.log
  shift
  : > "$log"  # exists before the background server opens it: the polling below reads it at once
  "$QLLM" serve --model "$MODEL" --device "$DEVICE" --port 0 "${MODEL_ARGS[@]}" "${SERVE_ARGS[@]}" "$@" > "$log" 2>&1 &
  pids+=($!)
  server_pid=$!
  local pid=$! i
  port=
  for i in $(seq 1 1200); do
    port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log" | head -1)
    [[ -n $port ]] && break
    kill -0 "$pid" 2> /dev/null || { cat "$log"; fail "$name: the server exited"; }
    sleep 0.1
  done
  [[ -n $port ]] || { cat "$log"; fail "$name: not listening after 120 s"; }
  say "$name: listening on port $port"
}

# request METHOD PATH [BODY [CURL ARGS...]]: prints the status; the body is in $work/body.
request() {
  local method=$1 path=$2 body=${3:-}
  shift 3 || shift $#
  if [[ -n $body ]]; then
    curl -s -o "$work/body" -w '%{http_code}' -X "$method" "http://127.0.0.1:$port$path" \
      -H 'Content-Type: application/json' --data-binary "$body" "$@"
  else
    curl -s -o "$work/body" -w '%{http_code}' -X "$method" "http://127.0.0.1:$port$path" "$@"
  fi
}
KEY=test-key-123
AUTH=(-H "Authorization: Bearer $KEY")
expect_status() {  # expect_status STATUS WHAT METHOD PATH [BODY [CURL ARGS...]]
  local want=$1 what=$2
  shift 2
  local got
  got=$(request "$@")
  [[ $got == "$want" ]] || fail "$what: status $got, expected $want: $(head -c 300 "$work/body")"
  if [[ $want != 200 ]]; then
    python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["message"] and e["type"]' \
      "$work/body" || fail "$what: not an OpenAI error object: $(head -c 300 "$work/body")"
  fi
}

CTX=256
start_server main --ctx $CTX --max-batch 8 --max-queue 1024 --max-body 65536 --api-key "$KEY"
MODEL_ID=$(basename "$MODEL" .gguf)

have_curl=1
command -v curl > /dev/null || { have_curl=0; say "SKIPPED the curl tests and the limits: no curl on this machine"; }
if ((have_curl)); then
say "curl: routes, authentication and bad input"
expect_status 200 "health" GET /health
expect_status 200 "metrics" GET /metrics
grep -q '^qllm_kv_pages_total ' "$work/body" || fail "metrics lack qllm_kv_pages_total"
expect_status 401 "no API key" GET /v1/models
expect_status 401 "wrong API key" GET /v1/models "" -H "Authorization: Bearer nope"
expect_status 200 "models" GET /v1/models "" "${AUTH[@]}"
grep -q "\"id\":\"$MODEL_ID\"" "$work/body" || fail "models: $(cat "$work/body")"
expect_status 404 "unknown route" GET /v1/nothing "" "${AUTH[@]}"
expect_status 400 "malformed JSON" POST /v1/completions '{"prompt": "a",' "${AUTH[@]}"
expect_status 400 "deep JSON" POST /v1/completions "$(printf '[%.0s' $(seq 1 200))" "${AUTH[@]}"
expect_status 400 "wrong type" POST /v1/completions '{"prompt": "a", "max_tokens": "ten"}' "${AUTH[@]}"
expect_status 400 "max_tokens 0" POST /v1/completions '{"prompt": "a", "max_tokens": 0}' "${AUTH[@]}"
expect_status 400 "absurd max_tokens" POST /v1/completions '{"prompt": "a", "max_tokens": 1000000000}' "${AUTH[@]}"
expect_status 400 "n = 2" POST /v1/chat/completions '{"messages": [{"role": "user", "content": "a"}], "n": 2}' "${AUTH[@]}"
expect_status 404 "unknown model" POST /v1/completions '{"model": "gpt-9", "prompt": "a"}' "${AUTH[@]}"
long=$(python3 -c "print([1] * $CTX)")
expect_status 400 "prompt longer than the context" POST /v1/completions "{\"prompt\": $long}" "${AUTH[@]}"
grep -q context_length_exceeded "$work/body" || fail "context error code: $(cat "$work/body")"
big=$(python3 -c 'import json; print(json.dumps({"prompt": "x" * 100000}))')
expect_status 413 "body over --max-body" POST /v1/completions "$big" "${AUTH[@]}"
expect_status 200 "completion" POST /v1/completions '{"prompt": "Hello", "max_tokens": 4, "temperature": 0}' "${AUTH[@]}"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["usage"]["completion_tokens"] >= 1 and r["choices"][0]["finish_reason"] in ("stop", "length"), r' \
  "$work/body" || fail "completion: $(cat "$work/body")"
curl -sN "http://127.0.0.1:$port/v1/completions" "${AUTH[@]}" -H 'Content-Type: application/json' \
  -d '{"prompt": "Hello", "max_tokens": 4, "temperature": 0, "stream": true}' > "$work/sse"
grep -q '^data: {' "$work/sse" && [[ $(tail -2 "$work/sse" | head -1) == "data: [DONE]" ]] ||
  fail "stream does not end in data: [DONE]: $(cat "$work/sse")"
say "curl: ok"
fi

say "expected outputs: qllm generate (greedy)"
gen_json() {  # gen_json PROMPT MAX_TOKENS [--chat]
  "$QLLM" generate --model "$MODEL" --device "$DEVICE" "${MODEL_ARGS[@]}" --prompt "$1" --max-tokens "$2" \
    --temperature 0 --json ${3:-} 2> "$work/gen.err"
}
chat_ok=1
gen_json "Hi" 2 --chat > /dev/null || { chat_ok=0; say "the model has no chat template: chat cases skipped"; }
{
  echo '{"completions": ['
  sep=
  for p in "The capital of France is" "1, 2, 3, 4," "Once upon a time"; do
    echo "$sep"; gen_json "$p" 24 | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"prompt": sys.argv[1], "max_tokens": 24, "text": r["text"], "tokens": len(r["tokens"]), "prompt_tokens": r["prompt_tokens"]}))' "$p"
    sep=,
  done
  echo '], "chat": ['
  sep=
  if ((chat_ok)); then
    for p in "What is the capital of France?" "Write a haiku."; do
      echo "$sep"; gen_json "$p" 24 --chat | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"prompt": sys.argv[1], "max_tokens": 24, "text": r["text"], "tokens": len(r["tokens"]), "prompt_tokens": r["prompt_tokens"]}))' "$p"
      sep=,
    done
  fi
  echo ']}'
} > "$work/expect.json"

# The openai client: in a virtualenv from PyPI, or (QLLM_WHEELS, no network) installed from wheels into a
# folder on PYTHONPATH, as the GPU machine's notes advise (its python3 may lack ensurepip).
venv=${QLLM_VENV:-build/serve-venv}
client_ok=0
client_py=("$venv/bin/python")
if [[ -n ${QLLM_WHEELS:-} ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$venv/site" "$QLLM_WHEELS"/*.whl \
    > "$work/pip.log" 2>&1 && client_ok=1
  client_py=(env PYTHONPATH="$venv/site" python3)
elif [[ -x $venv/bin/python ]] && "$venv/bin/python" -c 'import openai' 2> /dev/null; then
  client_ok=1
elif python3 -m venv "$venv" > "$work/pip.log" 2>&1; then
  timeout 120 "$venv/bin/python" -m pip install -q openai > "$work/pip.log" 2>&1 && client_ok=1
fi
tolerant=
[[ ${QLLM_SERVE_TOLERANT:-0} == 1 ]] && tolerant=--tolerant
if ((client_ok)); then
  say "openai client: $("${client_py[@]}" -c 'import openai; print(openai.__version__)')"
  "${client_py[@]}" tests/server/client_test.py --base "http://127.0.0.1:$port/v1" --key "$KEY" --model "$MODEL_ID" \
    --expect "$work/expect.json" --clients "${QLLM_LOAD_CLIENTS:-64}" --requests "${QLLM_LOAD_REQUESTS:-256}" \
    --load-tokens "${QLLM_LOAD_TOKENS:-8}" ${tolerant} || { tail -20 "$work/main.log"; fail "client tests"; }
else
  say "SKIPPED the openai client tests: pip could not install 'openai' ($(tail -1 "$work/pip.log" 2> /dev/null || echo no venv))"
fi
((have_curl)) || { say "all server tests passed (curl parts skipped)"; exit 0; }
expect_status 200 "health after the load" GET /health

say "limits: a full queue (503 + Retry-After), too many requests in flight (429)"
long_request() {  # a streaming request that runs until the context is full
  curl -sN "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt": "Long", "temperature": 0, "stream": true, "ignore_eos": true}' > /dev/null 2>&1 &
  pids+=($!)
}
wait_metric() {  # wait_metric NAME VALUE
  local i
  for i in $(seq 1 300); do
    curl -s "http://127.0.0.1:$port/metrics" | grep -q "^$1 $2\$" && return 0
    sleep 0.1
  done
  fail "metric $1 never reached $2"
}
# A request must still be running while the next ones arrive: the tiny model is too quick for that, so these
# servers run the proxy model when there is one (else QLLM_SERVE_MODEL), and skip when only the tiny one is.
[[ -n $proxy && -z ${QLLM_SERVE_MODEL:-} ]] && MODEL=$proxy
if [[ $MODEL == "$work/tiny" ]]; then
  say "SKIPPED the limits: they need a model slower than the tiny synthetic one (the proxy model)"
  say "all server tests passed"
  exit 0
fi
start_server queue --ctx 4096 --max-batch 1 --max-queue 1
long_request; wait_metric qllm_running_requests 1
long_request; wait_metric qllm_queue_length 1
got=$(curl -s -D "$work/headers" -o "$work/body" -w '%{http_code}' "http://127.0.0.1:$port/v1/completions" \
  -H 'Content-Type: application/json' -d '{"prompt": "x", "max_tokens": 2}')
[[ $got == 503 ]] && grep -qi '^retry-after:' "$work/headers" || fail "full queue: status $got, $(cat "$work/headers")"
kill "${pids[-1]}" "${pids[-2]}" 2> /dev/null || true
wait_metric qllm_running_requests 0
expect_status 200 "answers after the clients left" POST /v1/completions '{"prompt": "x", "max_tokens": 2}'
start_server inflight --ctx 4096 --max-batch 1 --max-in-flight 1
long_request; wait_metric qllm_running_requests 1
expect_status 429 "too many in flight" POST /v1/completions '{"prompt": "x", "max_tokens": 2}'
say "limits: ok"
# SIGTERM with a request running: the server ends it and exits cleanly, promptly.
kill -TERM "$server_pid"
for i in $(seq 1 100); do kill -0 "$server_pid" 2> /dev/null || break; sleep 0.1; done
kill -0 "$server_pid" 2> /dev/null && fail "still running 10 s after SIGTERM"
wait "$server_pid" || fail "exit status $? after SIGTERM: $(tail -5 "$work/inflight.log")"
say "shutdown: ok (SIGTERM with a request running)"
say "all server tests passed"
