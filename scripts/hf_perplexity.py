#!/usr/bin/env python3
"""The reference for `qllm perplexity --protocol hf`: transformers' perplexity of a Hugging Face checkpoint
on a text file, GPTQ/Hugging Face protocol (../shared/GUIDE.md §5): the whole text tokenized once without
special tokens, floor(n / ctx) non-overlapping windows of ctx tokens, every position of a window scored but
the first, PPL = exp(mean NLL). Runs on the device (torch + transformers); never part of qllm.

Usage: hf_perplexity.py --model DIR --file TEXT --ctx 2048 [--dtype bf16|f32] [--chunks N] [--json OUT]
"""
import argparse
import json
import math
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--chunks", type=int, default=0, help="windows to score (0: all)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", help="write the result here as JSON")
    a = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dtype).to(device).eval()
    text = open(a.file, encoding="utf-8").read()
    ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids[0]
    windows = len(ids) // a.ctx
    if a.chunks:
        windows = min(windows, a.chunks)
    if windows == 0:
        sys.exit(f"{a.file}: {len(ids)} tokens, fewer than one window of {a.ctx}")
    data = ids[: windows * a.ctx].view(windows, a.ctx)
    nll_sum, scored = 0.0, 0
    start = time.time()
    with torch.no_grad():
        for b in range(0, windows, a.batch):
            x = data[b : b + a.batch].to(device)
            logits = model(x).logits.float()  # [batch, ctx, vocab]; NLL in fp32 as qllm computes it
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            nll = -logp.gather(-1, x[:, 1:].unsqueeze(-1)).squeeze(-1)
            nll_sum += nll.double().sum().item()
            scored += nll.numel()
    ppl = math.exp(nll_sum / scored)
    result = {"model": a.model, "file": a.file, "protocol": "hf", "ctx": a.ctx, "dtype": a.dtype,
              "windows": windows, "tokens_scored": scored, "perplexity": ppl,
              "seconds": round(time.time() - start, 2), "transformers": __import__("transformers").__version__,
              "torch": torch.__version__, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    print(json.dumps(result))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
