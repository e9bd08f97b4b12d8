#!/usr/bin/env python3
"""qllm serve through the official `openai` client (run by tests/test_server.sh against a running server).

Checks, each with a line of output and a non-zero exit on the first failure:
  api      chat and completions, streamed and not, with usage; greedy text equal to `qllm generate`'s
           (expected texts in --expect, a JSON file the shell script writes from `qllm generate --json`);
           errors as the client's exceptions (401, 404, 400).
  concurrent  distinct prompts sent together get the text each gets alone.
  load     --clients concurrent streaming clients, --requests requests in all: zero errors, and every
           stream's text equals its prompt's text alone (no lost or mixed-up tokens), usage counts match.
  fault    clients that hang up mid-stream: the server frees their sequences (running requests back to 0
           in /metrics) and answers the next request correctly.
"""
import argparse
import asyncio
import json
import re
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai


TOLERANT = False  # --tolerant: texts that differ from the reference are counted, not failed (GPU rounding)
MISMATCHES = []


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)


def check_text(got, want, what):
    """Greedy text against its reference: equal, or (tolerant) a counted warning."""
    if got == want:
        return
    if TOLERANT:
        MISMATCHES.append(what)
        print(f"WARN (tolerant): {what}: {got!r} != {want!r}", flush=True)
        return
    check(False, f"{what}: {got!r} != {want!r}")


def metric(base, name):
    text = urllib.request.urlopen(base.replace("/v1", "") + "/metrics", timeout=10).read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def completion_text(client, model, prompt, max_tokens, **kw):
    r = client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0, **kw)
    return r.choices[0].text, r


def test_api(client, model, expect):
    for case in expect["completions"]:
        text, r = completion_text(client, model, case["prompt"], case["max_tokens"])
        check_text(text, case["text"], f"completion of {case['prompt']!r} against generate's")
        check(r.usage.prompt_tokens == case["prompt_tokens"] and r.usage.completion_tokens == case["tokens"],
              f"usage {r.usage} vs generate's {case['prompt_tokens']} + {case['tokens']}")
        chunks = list(client.completions.create(model=model, prompt=case["prompt"], max_tokens=case["max_tokens"],
                                                temperature=0, stream=True))
        streamed = "".join(c.choices[0].text for c in chunks if c.choices)
        check_text(streamed, case["text"], "streamed completion")
        check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == case["tokens"],
              "the last stream chunk carries usage")
    for case in expect["chat"]:
        msgs = [{"role": "user", "content": case["prompt"]}]
        r = client.chat.completions.create(model=model, messages=msgs, max_tokens=case["max_tokens"], temperature=0)
        text = r.choices[0].message.content
        check_text(text, case["text"], f"chat {case['prompt']!r} against generate's")
        check(r.usage.prompt_tokens == case["prompt_tokens"], f"chat usage {r.usage}")
        stream = client.chat.completions.create(model=model, messages=msgs, max_tokens=case["max_tokens"],
                                                temperature=0, stream=True, stream_options={"include_usage": True})
        parts, usage = [], None
        for c in stream:
            if c.choices and c.choices[0].delta.content:
                parts.append(c.choices[0].delta.content)
            usage = c.usage or usage
        check_text("".join(parts), case["text"], "streamed chat")
        check(usage is not None and usage.completion_tokens == r.usage.completion_tokens, f"stream usage {usage}")
    # A stop string ends the text before it.
    case = expect["completions"][0]
    if len(case["text"]) > 4:
        stop = case["text"][2:4]
        text, r = completion_text(client, model, case["prompt"], case["max_tokens"], stop=[stop])
        check(text == case["text"][: case["text"].find(stop)] and r.choices[0].finish_reason == "stop",
              f"stop {stop!r}: {text!r}")
    # Seeded sampling repeats itself.
    a = client.completions.create(model=model, prompt="Once", max_tokens=8, temperature=1.0, seed=5).choices[0].text
    b = client.completions.create(model=model, prompt="Once", max_tokens=8, temperature=1.0, seed=5).choices[0].text
    check(a == b, f"same seed, different text: {a!r} {b!r}")
    print(f"api: ok ({len(expect['completions'])} completions, {len(expect['chat'])} chats, streamed and not)")


def test_logprobs(client, model, expect):
    """logprobs: one entry per output token, the greedy token the likeliest of its top alternatives, log-probs <= 0,
    the same in a stream; completions' legacy shape too."""
    case = expect["completions"][0]
    r = client.completions.create(model=model, prompt=case["prompt"], max_tokens=case["max_tokens"], temperature=0,
                                  logprobs=2)
    lp = r.choices[0].logprobs
    check(len(lp.tokens) == r.usage.completion_tokens == len(lp.token_logprobs) == len(lp.top_logprobs),
          f"completion logprobs: {len(lp.tokens)} tokens for {r.usage.completion_tokens}")
    check("".join(lp.tokens) == r.choices[0].text or TOLERANT, "completion logprobs: the tokens spell the text")
    for value, top in zip(lp.token_logprobs, lp.top_logprobs):
        check(value <= 0 and len(top) <= 2 and abs(max(top.values()) - value) < 1e-6,
              f"completion logprobs: greedy token {value} vs its top {top}")
    msgs = [{"role": "user", "content": "Say something."}]
    r = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0, logprobs=True,
                                       top_logprobs=3)
    content = r.choices[0].logprobs.content
    check(len(content) == r.usage.completion_tokens, f"chat logprobs: {len(content)} for {r.usage.completion_tokens}")
    for t in content:
        check(len(t.top_logprobs) == 3 and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob,
              f"chat top_logprobs in order: {t.top_logprobs}")
        check(abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6, f"chat: the greedy token is the likeliest: {t}")
        check(bytes(t.bytes).decode("utf-8", "replace") == t.token, f"chat: bytes spell the token: {t}")
    streamed = []
    for c in client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0, logprobs=True,
                                            top_logprobs=3, stream=True):
        if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content:
            streamed += c.choices[0].logprobs.content
    check([t.logprob for t in streamed] == [t.logprob for t in content], "chat logprobs streamed as not")
    print(f"logprobs: ok ({len(lp.tokens)} completion tokens, {len(content)} chat tokens, streamed and not)")

def test_errors(base, model, key):
    bad = openai.OpenAI(base_url=base, api_key="wrong-key", max_retries=0)
    try:
        bad.models.list()
        check(False, "a wrong API key is refused")
    except openai.AuthenticationError:
        pass
    client = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
    try:
        client.completions.create(model="no-such-model", prompt="x", max_tokens=2)
        check(False, "an unknown model is refused")
    except openai.NotFoundError:
        pass
    try:
        client.completions.create(model=model, prompt="x", max_tokens=-1)
        check(False, "max_tokens -1 is refused")
    except openai.BadRequestError as e:
        check(e.body and e.body.get("param") == "max_tokens", f"error names its param: {e.body}")
    check([m.id for m in client.models.list()] == [model], "/v1/models lists the model")
    print("errors: ok (401, 404, 400 through the client)")


def test_concurrent(client, model, prompts, max_tokens):
    alone = [completion_text(client, model, p, max_tokens)[0] for p in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(lambda p: completion_text(client, model, p, max_tokens)[0], prompts))
    for p, a, t in zip(prompts, alone, together):
        check_text(t, a, f"{p!r} concurrent against alone")
    print(f"concurrent: ok ({len(prompts)} prompts, each as alone)")
    return dict(zip(prompts, alone))


async def load(base, key, model, expected, clients, requests, max_tokens):
    client = openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0, timeout=600)
    prompts = list(expected)
    errors, mismatched, lengths, next_index = [], [], [], iter(range(requests))

    async def worker():
        for i in next_index:
            prompt = prompts[i % len(prompts)]
            try:
                stream = await client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens,
                                                         temperature=0, stream=True)
                parts, usage = [], None
                async for c in stream:
                    if c.choices:
                        parts.append(c.choices[0].text)
                    usage = c.usage or usage
                text = "".join(parts)
                if text != expected[prompt]:
                    mismatched.append(f"request {i}: {text!r} != {expected[prompt]!r}")
                lengths.append(usage.completion_tokens if usage else -1)
            except Exception as e:  # every failure is counted, none stops the test early
                errors.append(f"request {i}: {type(e).__name__}: {e}")

    start = time.time()
    await asyncio.gather(*(worker() for _ in range(clients)))
    seconds = time.time() - start
    await client.close()
    for e in (errors + mismatched)[:5]:
        print("  " + e)
    check(not errors, f"load: {len(errors)} of {requests} requests failed")
    check(all(1 <= n <= max_tokens for n in lengths), f"load: usage counts outside [1, {max_tokens}]")
    if mismatched:
        check(TOLERANT, f"load: {len(mismatched)} of {requests} texts differ from the prompt's text alone")
        MISMATCHES.append(f"load: {len(mismatched)} of {requests} texts differ")
    print(f"load: ok ({requests} requests from {clients} concurrent streaming clients in {seconds:.1f} s, "
          f"{sum(lengths)} tokens, no errors, every text as alone)")


async def fault(base, key, model, clients, expected):
    client = openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0, timeout=600)

    async def hang_up(i):
        stream = await client.completions.create(model=model, prompt=f"Story {i}:", temperature=0, stream=True, extra_body={"ignore_eos": True})
        n = 0
        async for _ in stream:
            n += 1
            if n >= 2:
                break
        await stream.close()  # the connection closes mid-stream

    await asyncio.gather(*(hang_up(i) for i in range(clients)))
    await client.close()
    deadline = time.time() + 60
    while time.time() < deadline and (metric(base, "qllm_running_requests") or 0) > 0:
        await asyncio.sleep(0.2)
    running = metric(base, "qllm_running_requests")
    check(running == 0, f"fault: {running} requests still running after their clients left")
    check(metric(base, "qllm_kv_pages_used") == 0, "fault: KV pages returned")
    sync = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
    prompt = next(iter(expected))
    max_tokens = expected.max_tokens
    text = completion_text(sync, model, prompt, max_tokens)[0]
    check_text(text, expected[prompt], "fault: the answer after the cancellations")
    print(f"fault: ok ({clients} clients hung up mid-stream; sequences and KV pages freed; next answer correct)")


class Expected(dict):
    max_tokens = 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="http://127.0.0.1:PORT/v1")
    ap.add_argument("--key", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--expect", required=True, help="JSON of `qllm generate` outputs (tests/test_server.sh)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--load-tokens", type=int, default=8)
    ap.add_argument("--fault-clients", type=int, default=16)
    ap.add_argument("--tolerant", action="store_true", help="count texts that differ instead of failing")
    a = ap.parse_args()
    global TOLERANT
    TOLERANT = a.tolerant
    expect = json.load(open(a.expect))
    client = openai.OpenAI(base_url=a.base, api_key=a.key, max_retries=0, timeout=600)
    test_api(client, a.model, expect)
    test_logprobs(client, a.model, expect)
    test_errors(a.base, a.model, a.key)
    prompts = [f"Item {i}: the" for i in range(8)]
    expected = Expected(test_concurrent(client, a.model, prompts, a.load_tokens))
    expected.max_tokens = a.load_tokens
    asyncio.run(load(a.base, a.key, a.model, expected, a.clients, a.requests, a.load_tokens))
    asyncio.run(fault(a.base, a.key, a.model, a.fault_clients, expected))
    if MISMATCHES:
        print(f"client tests: passed, tolerant of {len(MISMATCHES)} text mismatches: {MISMATCHES}")
    else:
        print("client tests: all passed")


if __name__ == "__main__":
    main()
