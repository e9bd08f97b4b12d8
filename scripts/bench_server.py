#!/usr/bin/env python3
"""Serving benchmark of an OpenAI-compatible server (qllm serve, llama.cpp's llama-server), one JSON out.

Figures (issue 22): output tokens/s with --clients concurrent streaming clients (prompts of --prompt-tokens
token ids, --max-tokens outputs with ignore_eos, --requests in all), time to first token p50/p99 under that
load, and the decode tokens/s of one stream alone. Prompts are token-id arrays (both servers accept them), so
every server sees exactly the same prompt lengths whatever its tokenizer does with text.
Output tokens are counted from the usage of each stream's last chunk when the server sends it, else as
max_tokens (ignore_eos makes every request generate exactly that many).
Needs aiohttp (present on the GPU machine's image).
"""
import argparse
import asyncio
import json
import random
import statistics
import sys
import time

import aiohttp


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


async def one_request(session, args, prompt, max_tokens):
    """Streams one completion; returns (ttft s, end s, output tokens, chunk times) relative to its start."""
    body = {"model": args.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "ignore_eos": True}
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    start = time.perf_counter()
    ttft, tokens, times = None, None, []
    async with session.post(f"{args.base}/v1/completions", json=body, headers=headers) as r:
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {(await r.text())[:200]}")
        buffer = b""
        async for data in r.content.iter_any():
            buffer += data
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                line = event.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise RuntimeError(f"stream error: {chunk['error']}")
                now = time.perf_counter() - start
                # OpenAI chunks carry "choices"; llama-server's native ones "content".
                if chunk.get("choices") or "content" in chunk:
                    if ttft is None:
                        ttft = now
                    times.append(now)
                if chunk.get("usage"):
                    tokens = chunk["usage"].get("completion_tokens", tokens)
    end = time.perf_counter() - start
    return ttft, end, tokens if tokens is not None else max_tokens, times


def prompts(args):
    rng = random.Random(args.seed)
    return [[rng.randrange(args.id_low, args.id_high) for _ in range(args.prompt_tokens)] for _ in range(args.requests)]


async def load(args):
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    # A fresh connection per request: a server may close a kept-alive connection after a stream (llama-server
    # does), and a client reusing it then fails with "Server disconnected" through no fault of the server.
    connector = aiohttp.TCPConnector(limit=args.clients + 4, force_close=True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await one_request(session, args, prompts(args)[0][:16], 8)  # warm-up (CUDA graphs, allocations)
        queue = list(enumerate(prompts(args)))
        results, errors = [], []

        async def client():
            while queue:
                i, p = queue.pop(0)
                try:
                    results.append(await one_request(session, args, p, args.max_tokens))
                except Exception as e:  # counted and reported, never hidden
                    errors.append(f"request {i}: {e}")

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(args.clients)))
        wall = time.perf_counter() - start

        # One stream alone. Its decode speed is taken from two whole requests that differ only in max_tokens,
        # (N - N/4) / (end_N - end_N/4): prefill and the first token cancel, and a server that holds text back
        # (an incomplete UTF-8 sequence, tokens with no text) cannot shift a "first token" time.
        single = await one_request(session, args, prompts(args)[0], args.max_tokens)
        short_tokens = max(args.max_tokens // 4, 1)
        short = await one_request(session, args, prompts(args)[0], short_tokens)
    ttfts = [r[0] for r in results if r[0] is not None]
    out_tokens = sum(r[2] for r in results)
    s_ttft, s_end, s_tokens, _ = single
    _, short_end, short_count, _ = short
    return {
        "label": args.label,
        "base": args.base,
        "clients": args.clients,
        "requests": args.requests,
        "prompt_tokens": args.prompt_tokens,
        "max_tokens": args.max_tokens,
        "errors": len(errors),
        "error_examples": errors[:5],
        "wall_s": wall,
        "output_tokens": out_tokens,
        "output_tokens_per_s": out_tokens / wall if wall > 0 else 0,
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p99_s": percentile(ttfts, 99),
        "ttft_mean_s": statistics.mean(ttfts) if ttfts else None,
        "single_stream_ttft_s": s_ttft,
        "single_stream_decode_tokens_per_s":
            (s_tokens - short_count) / (s_end - short_end) if s_end > short_end and s_tokens > short_count else None,
        # The earlier measure, between the first and the last streamed chunk, for comparison.
        "single_stream_chunk_tokens_per_s": (s_tokens - 1) / (s_end - s_ttft) if s_end > s_ttft else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="http://127.0.0.1:PORT (no /v1)")
    ap.add_argument("--model", default="", help="the model name the server expects (qllm: its id; llama-server: any)")
    ap.add_argument("--label", default="server")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--id-low", type=int, default=1000, help="prompt token ids are drawn from [low, high)")
    ap.add_argument("--id-high", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--out", help="write the JSON here too")
    args = ap.parse_args()
    result = asyncio.run(load(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
