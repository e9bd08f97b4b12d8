#!/usr/bin/env python3
"""Reference outputs of Hugging Face transformers for qllm's CPU forward-pass tests.

Runs the model in float32 on the CPU (on any machine: the GPU is not used, so the numbers do not depend
on GPU kernels) and writes small JSON files into --out (tests/fixtures/hf by default):

  proxy_logits.json       logits of a few prompts: HF token ids (BOS added as HF adds it), the last
                          position's full logits, the top-5 ids and values at every position, max |logit|
  proxy_greedy.json       greedy continuations (32 new tokens, argmax at every step, no stop tokens)
  proxy_wikitext_nll.json per-token NLL of the first 1024 tokens of WikiText-2 test (tokenized without
                          special tokens) and their perplexity (gptq-hf protocol, one window of 1024)
  tiny_synth_logits.json  with --tiny DIR: HF's logits for a `qllm synth --config tiny` checkpoint
                          (proves that transformers loads what qllm writes)

Usage (from the repository root):
  qllm synth --config tiny --seed 1234 --out /tmp/qllm-tiny       # optional, for tiny_synth_logits.json
  python3 scripts/gen_hf_fixtures.py --model ../shared/models/proxy-llama-22m \
      --wikitext ../shared/data/wikitext-2-raw-test.txt --tiny /tmp/qllm-tiny --out tests/fixtures/hf
"""

import argparse
import hashlib
import json
import math
import os
import sys

import torch
import transformers
from safetensors import safe_open
from transformers import AutoTokenizer, LlamaForCausalLM

PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a little girl who",
    "In 1865, the American Civil War ended and",
]
GREEDY_PROMPTS = PROMPTS
GREEDY_NEW_TOKENS = 32
LONG_PROMPT_TOKENS = 300  # a WikiText excerpt: exercises RoPE at farther positions
NLL_TOKENS = 1024
TINY_PROMPT = "Hello, world! The quick brown fox."


def rounded(values, digits):
    return [round(float(v), digits) for v in values]


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__, "device": "cpu",
            "dtype": "float32", "generator": "scripts/gen_hf_fixtures.py"}


def load_model(path):
    model = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model


@torch.no_grad()
def logits_of(model, ids):
    return model(torch.tensor([ids])).logits[0].float()  # [positions, vocab]


def logits_entry(model, text, ids):
    logits = logits_of(model, ids)
    top = torch.topk(logits, 5, dim=-1)
    return {
        "text": text,
        "ids": ids,
        "last_logits": rounded(logits[-1].tolist(), 4),
        "top5_ids": top.indices.tolist(),
        "top5_values": [rounded(row, 4) for row in top.values.tolist()],
        "max_abs_logit": float(logits.abs().max()),
        "max_abs_last_logit": float(logits[-1].abs().max()),
    }


@torch.no_grad()
def greedy(model, ids, new_tokens):
    ids = list(ids)
    out = []
    past = None
    step_input = torch.tensor([ids])
    for _ in range(new_tokens):
        result = model(step_input, past_key_values=past, use_cache=True)
        past = result.past_key_values
        token = int(torch.argmax(result.logits[0, -1]))
        out.append(token)
        step_input = torch.tensor([[token]])
    return out


@torch.no_grad()
def token_nll(model, ids):
    logits = logits_of(model, ids).double()
    logprobs = torch.log_softmax(logits[:-1], dim=-1)
    targets = torch.tensor(ids[1:])
    return (-logprobs.gather(1, targets[:, None])[:, 0]).tolist()


def write(out_dir, name, payload):
    path = os.path.join(out_dir, name)
    with open(path, "w") as f:
        json.dump(payload, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KB)", file=sys.stderr)


def proxy_fixtures(args):
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = load_model(args.model)
    with open(args.wikitext, encoding="utf-8") as f:
        wikitext = f.read()
    # The whole text once, without special tokens (GUIDE section 5), then its first tokens.
    wiki_ids = tokenizer(wikitext, add_special_tokens=False)["input_ids"]
    base = {"model": os.path.basename(os.path.normpath(args.model)), **versions()}

    entries = []
    for text in PROMPTS:
        entries.append(logits_entry(model, text, tokenizer(text)["input_ids"]))
    long_ids = [tokenizer.bos_token_id] + wiki_ids[:LONG_PROMPT_TOKENS - 1]
    long_entry = logits_entry(model, "", long_ids)
    long_entry["text"] = "<|begin_of_text|> + WikiText-2 test tokens[0:299]"
    entries.append(long_entry)
    write(args.out, "proxy_logits.json", {**base, "add_special_tokens": True, "prompts": entries})

    continuations = []
    for text in GREEDY_PROMPTS:
        ids = tokenizer(text)["input_ids"]
        continuations.append({"text": text, "ids": ids, "new_ids": greedy(model, ids, GREEDY_NEW_TOKENS)})
    write(args.out, "proxy_greedy.json", {**base, "new_tokens": GREEDY_NEW_TOKENS, "prompts": continuations})

    ids = wiki_ids[:NLL_TOKENS]
    nll = token_nll(model, ids)
    mean = sum(nll) / len(nll)
    write(args.out, "proxy_wikitext_nll.json", {
        **base, "protocol": "gptq-hf", "ctx": NLL_TOKENS, "text": os.path.basename(args.wikitext),
        "ids": ids, "nll": rounded(nll, 6), "mean_nll": mean, "perplexity": math.exp(mean),
        "wikitext_total_tokens": len(wiki_ids)})


def tiny_fixture(args):
    weights = os.path.join(args.tiny, "model.safetensors")
    with safe_open(weights, framework="pt") as f:
        metadata = f.metadata() or {}
    with open(weights, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    tokenizer = AutoTokenizer.from_pretrained(args.tiny)
    model = load_model(args.tiny)
    ids = tokenizer(TINY_PROMPT)["input_ids"]
    logits = logits_of(model, ids)
    with open(os.path.join(args.tiny, "config.json")) as f:
        config = json.load(f)
    write(args.out, "tiny_synth_logits.json", {
        **versions(), "synth_metadata": metadata, "model_safetensors_sha256": sha256, "config": config,
        "text": TINY_PROMPT, "ids": ids, "logits": [rounded(row, 5) for row in logits.tolist()],
        "max_abs_logit": float(logits.abs().max())})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the proxy model directory (proxy-llama-22m)")
    parser.add_argument("--wikitext", required=True, help="wikitext-2-raw-test.txt")
    parser.add_argument("--tiny", help="a `qllm synth --config tiny` directory (optional)")
    parser.add_argument("--out", default="tests/fixtures/hf", help="output directory")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)
    proxy_fixtures(args)
    if args.tiny:
        tiny_fixture(args)


if __name__ == "__main__":
    main()
