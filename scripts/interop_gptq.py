#!/usr/bin/env python3
"""GPTQ/AWQ interop of `qllm quantize` (run on the device, where torch and transformers are installed).

Usage: scripts/interop_gptq.py --qllm BIN --model MODEL --work DIR [--group 64] [--ctx 256] [--chunks 4]
                               [--text FILE]

MODEL is a Hugging Face checkpoint directory (bf16/f16 safetensors) or a GGUF file. Checks, each printed as
PASS/FAIL (exit status 1 if any fails):

1. qllm -> torch: `qllm quantize --format gptq` (int4-g<N> and int4-g<N>-asym) and `--format awq`
   (int4-g<N>-asym) are unpacked here by a plain-torch implementation of the documented layouts
   (docs/FORMATS.md, "Quantized checkpoints"). The GPTQ and AWQ files of the same mode must give the same
   dequantized weights; for a safetensors MODEL they must equal this script's own round-to-nearest quantizer
   (the spec of docs/FORMATS.md, "Values", in float32 torch ops) on the original weights, bit for bit.
   When transformers can build a GPTQ model (optimum + auto-gptq or gptqmodel installed), its logits on the
   qllm-written checkpoint are compared with the dense model made of the plain-torch dequantization.
2. torch -> qllm: this script packs the same integers itself into a GPTQ (and an AWQ) checkpoint; qllm loads
   it and its perplexity must equal that of qllm's own checkpoint (to 1e-5: the same weights); and it must match a float32 torch
   Llama built from the dequantized weights within 1% (activations are f16 in qllm's GPTQ path).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import torch
from safetensors.torch import load_file, save_file

AWQ_POSITION = [0, 4, 1, 5, 2, 6, 3, 7]  # column 8i + m sits at nibble AWQ_POSITION[m] of word i
FAILURES = []


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILURES.append(what)


def run(cmd):
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:])
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(cmd)}")
    return r.stdout


# ---- unpacking (plain torch, documented layouts) -------------------------------------------------------

def nibbles(words, positions):
    """int32 words [..., W] -> uint8 [..., W, 8]: nibble p of each word in slot j = positions.index(..)."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    shifts = torch.tensor([4 * p for p in positions], dtype=torch.int64)
    return ((w.unsqueeze(-1) >> shifts) & 0xF).to(torch.uint8)


def unpack_gptq(t, base, k, n, group):
    qweight, qzeros, scales = t[base + ".qweight"], t[base + ".qzeros"], t[base + ".scales"]
    assert qweight.shape == (k // 8, n) and qweight.dtype == torch.int32, (base, qweight.shape, qweight.dtype)
    q = nibbles(qweight.T.contiguous(), range(8)).reshape(n, k)  # row n: words over k/8, nibble j = k % 8
    z = nibbles(qzeros, range(8)).reshape(qzeros.shape[0], n).to(torch.int32) + 1  # v1: zero - 1
    g_idx = t.get(base + ".g_idx")
    if g_idx is not None:
        assert torch.equal(g_idx, torch.arange(k, dtype=torch.int32) // group), base + ": g_idx"
    return q, z.T.contiguous(), scales.T.contiguous()  # [n, k], [n, groups], [n, groups]


def unpack_awq(t, base, k, n):
    qweight, qzeros, scales = t[base + ".qweight"], t[base + ".qzeros"], t[base + ".scales"]
    assert qweight.shape == (k, n // 8) and qweight.dtype == torch.int32, (base, qweight.shape)
    q = nibbles(qweight, AWQ_POSITION).reshape(k, n).T.contiguous()
    z = nibbles(qzeros, AWQ_POSITION).reshape(qzeros.shape[0], n).to(torch.int32)
    return q, z.T.contiguous(), scales.T.contiguous()


def dequantize(q, z, s, group):
    """w' = (q - z) * s in float32 (exact: a 5-bit integer times a 16-bit float); groups of `group` along k."""
    n, k = q.shape
    idx = torch.arange(k) // group
    return (q.to(torch.int32) - z[:, idx]).to(torch.float32) * s[:, idx].to(torch.float32)


# ---- the spec's round-to-nearest quantizer (docs/FORMATS.md, "Values") -----------------------------------

def rtn(w, group, asym):
    """w [n, k] float32 (exact 16-bit values) -> q uint8 [n, k], z int32 [n, G], s f16 [n, G]."""
    n, k = w.shape
    groups = (k + group - 1) // group
    pad = groups * group - k
    wp = torch.nn.functional.pad(w, (0, pad)).reshape(n, groups, group)
    valid = torch.nn.functional.pad(torch.ones(n, k, dtype=torch.bool), (0, pad)).reshape(n, groups, group)
    if asym:  # the same float32 operations as src/quant/int4_math.h (p = 100: lo * 100 / 100 is not always lo)
        lo = torch.where(valid, wp, torch.inf).amin(-1).clamp(max=0) * 100 / 100
        hi = torch.where(valid, wp, -torch.inf).amax(-1).clamp(min=0) * 100 / 100
        s = ((hi - lo) / 15).to(torch.float16)
        sf = s.to(torch.float32)
        z = torch.where(sf > 0, torch.round(-lo / torch.where(sf > 0, sf, 1)), torch.zeros_like(sf)).clamp(0, 15)
    else:
        amax = torch.where(valid, wp.abs(), 0).amax(-1)
        s = (amax * 100 / 700).to(torch.float16)
        sf = s.to(torch.float32)
        z = torch.full_like(sf, 8)
    inv = torch.where(sf > 0, 1 / torch.where(sf > 0, sf, 1), torch.zeros_like(sf))
    q = torch.round(wp * inv.unsqueeze(-1)) + z.unsqueeze(-1)
    q = torch.where(sf.unsqueeze(-1) > 0, q.clamp(0, 15), z.unsqueeze(-1))
    q = q.reshape(n, groups * group)[:, :k].to(torch.uint8)
    return q, z.to(torch.int32), s


# ---- packing (torch -> GPTQ/AWQ files) --------------------------------------------------------------

def pack_words(values, positions):
    """uint8 [..., W*8] -> int32 [..., W]: slot j of each group of 8 into nibble positions[j]."""
    v = values.to(torch.int64).reshape(*values.shape[:-1], -1, 8)
    shifts = torch.tensor([4 * p for p in positions], dtype=torch.int64)
    words = (v << shifts).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def pack_gptq(q, z, s, group):
    n, k = q.shape
    return {
        # word [k / 8, n] holds rows k = 8i .. 8i + 7 of column n: regroup q^T [k, n] to [k / 8, n, 8]
        "qweight": pack_words(q.T.reshape(k // 8, 8, n).permute(0, 2, 1).reshape(k // 8, n * 8), range(8)),
        "qzeros": pack_words((z - 1).T.contiguous().to(torch.uint8), range(8)).contiguous(),
        "scales": s.T.contiguous().to(torch.float16),
        "g_idx": (torch.arange(k, dtype=torch.int32) // group).contiguous(),
    }


def pack_awq(q, z, s):
    return {
        "qweight": pack_words(q.T.contiguous(), AWQ_POSITION).contiguous(),
        "qzeros": pack_words(z.T.contiguous().to(torch.uint8), AWQ_POSITION).contiguous(),
        "scales": s.T.contiguous().to(torch.float16),
    }


# ---- models -------------------------------------------------------------------------------------------

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"]


def linear_bases(config):
    return [f"model.layers.{i}.{name}" for i in range(config["num_hidden_layers"]) for name in LINEARS]


def shape_of(config, base):
    h, inter = config["hidden_size"], config["intermediate_size"]
    hd = config.get("head_dim") or h // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    n = {"q_proj": q, "k_proj": kv, "v_proj": kv, "o_proj": h, "gate_proj": inter, "up_proj": inter, "down_proj": h}
    k = {"o_proj": q, "down_proj": inter}
    name = base.split(".")[-1]
    return n[name], k.get(name, h)


def load_dir(d):
    tensors = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(d, f)))
    with open(os.path.join(d, "config.json")) as f:
        return tensors, json.load(f)


def dense_state(tensors, config, weights):
    """A plain Llama state dict: `weights` (base -> float32 [n, k]) plus the file's 16-bit/f32 tensors."""
    state = {name: t.to(torch.float32) for name, t in tensors.items() if name.endswith(".weight")}
    for base, w in weights.items():
        state[base + ".weight"] = w
    return state


def torch_ppl(config, state, ids, ctx, chunks, device):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = {k: v for k, v in config.items() if k != "quantization_config"}
    model = LlamaForCausalLM(LlamaConfig(**cfg)).to(torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and cfg.get("tie_word_embeddings"))]
    assert not missing and not unexpected, (missing, unexpected)
    if cfg.get("tie_word_embeddings"):
        model.tie_weights()
    model = model.to(device).eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for c in range(min(chunks, len(ids) // ctx)):
            x = torch.tensor(ids[c * ctx:(c + 1) * ctx], device=device).unsqueeze(0)
            logits = model(x).logits[0, :-1].double()
            nll += torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum").item()
            count += ctx - 1
    return math.exp(nll / count)


def qllm_ppl(args, model, text):
    out = run([args.qllm, "perplexity", "--model", model, "--file", text, "--protocol", "hf", "--ctx", str(args.ctx),
               "--chunks", str(args.chunks), "--json"])
    return json.loads(out)["table"][0]["perplexity"]


def token_ids(args, model, text):
    gguf_tokenizer = os.path.join(model, "tokenizer.gguf")  # a GGUF input's tokenizer, kept by quantize
    source = gguf_tokenizer if os.path.exists(gguf_tokenizer) else model
    out = run([args.qllm, "tokenize", "--model", source, "--file", text, "--ids", "--no-special"])
    return json.loads(out)


def write_checkpoint(src_dir, out_dir, tensors, config, quantization_config):
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    for f in os.listdir(src_dir):
        if f not in ("model.safetensors", "config.json"):
            shutil.copy(os.path.join(src_dir, f), out_dir)
    cfg = dict(config)
    cfg["quantization_config"] = quantization_config
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "model.safetensors"),
              metadata={"format": "pt"})


def try_transformers_gptq(path, ids, reference_logits, device):
    try:
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float16, device_map=device)
    except Exception as e:  # no GPTQ backend (optimum + auto-gptq / gptqmodel) on this machine
        print(f"SKIP transformers' own GPTQ loader: {type(e).__name__}: {str(e)[:200]}")
        return
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=device)).logits[0].float().cpu()
    rel = ((logits - reference_logits).abs().max() / reference_logits.abs().max()).item()
    check(rel < 3e-2, f"transformers' GPTQ model on qllm's file vs the dense dequantized model: max rel {rel:.4f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--qllm", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--group", type=int, default=64)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--chunks", type=int, default=4)
    p.add_argument("--text", default=None, help="perplexity text (default: a generated one)")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    text = args.text
    if text is None:
        text = os.path.join(args.work, "text.txt")
        with open(text, "w") as f:
            f.write(" ".join(f"The {i}th number is {i * 7 % 13}, and then the story goes on." for i in range(2000)))

    g = args.group
    written = {}
    for fmt, quant in [("gptq", f"int4-g{g}"), ("gptq", f"int4-g{g}-asym"), ("awq", f"int4-g{g}-asym")]:
        out = os.path.join(args.work, f"qllm-{fmt}-{quant}")
        run([args.qllm, "quantize", "--model", args.model, "--out", out, "--quant", quant, "--format", fmt,
             "--force", "--json"])
        written[(fmt, quant)] = out

    from_hf = os.path.isdir(args.model)
    original = load_dir(args.model)[0] if from_hf else None
    ids = token_ids(args, written[("gptq", f"int4-g{g}")], text)
    for quant, asym in [(f"int4-g{g}", False), (f"int4-g{g}-asym", True)]:
        gptq_dir = written[("gptq", quant)]
        tensors, config = load_dir(gptq_dir)
        weights, ints = {}, {}
        for base in linear_bases(config):
            n, k = shape_of(config, base)
            q, z, s = unpack_gptq(tensors, base, k, n, g)
            ints[base] = (q, z, s)
            weights[base] = dequantize(q, z, s, g)
        if asym:  # the AWQ file of the same mode: the same integers and scales
            awq, _ = load_dir(written[("awq", quant)])
            same = all(torch.equal(dequantize(*unpack_awq(awq, b, *shape_of(config, b)[::-1]), g), weights[b])
                       for b in weights)
            check(same, f"{quant}: qllm's AWQ and GPTQ files unpack to the same weights")
        if from_hf:
            exact = True
            for base in weights:
                w = original[base + ".weight"].to(torch.float32)
                q, z, s = rtn(w, g, asym)
                exact &= torch.equal(dequantize(q, z, s, g), weights[base])
            check(exact, f"{quant}: qllm's GPTQ weights equal this script's round-to-nearest quantizer, bit for bit")

        # torch -> qllm: the same integers packed by this script.
        own = {name: t for name, t in tensors.items() if not any(name.startswith(b + ".") for b in weights)}
        for base, (q, z, s) in ints.items():
            own.update({f"{base}.{k}": v for k, v in pack_gptq(q, z, s, g).items()})
        own_dir = os.path.join(args.work, f"torch-gptq-{quant}")
        write_checkpoint(gptq_dir, own_dir, own, config, config["quantization_config"])
        ppl_qllm = qllm_ppl(args, gptq_dir, text)
        ppl_own = qllm_ppl(args, own_dir, text)
        # The same weights: the same logits (a GPU split-K reduction may reorder fp32 sums: 1e-5 allowed).
        check(abs(ppl_own - ppl_qllm) <= 1e-5 * ppl_qllm,
              f"{quant}: qllm reads the torch-written GPTQ checkpoint: PPL {ppl_own} vs {ppl_qllm}")
        if asym:
            awq_own = {name: t for name, t in own.items() if not any(name.startswith(b + ".") for b in weights)}
            for base, (q, z, s) in ints.items():
                awq_own.update({f"{base}.{k}": v for k, v in pack_awq(q, z, s).items()})
            awq_dir = os.path.join(args.work, f"torch-awq-{quant}")
            write_checkpoint(gptq_dir, awq_dir, awq_own, config,
                             {"quant_method": "awq", "bits": 4, "group_size": g, "zero_point": True, "version": "gemm"})
            ppl_awq = qllm_ppl(args, awq_dir, text)
            check(abs(ppl_awq - ppl_qllm) <= 1e-5 * ppl_qllm,
                  f"{quant}: qllm reads the torch-written AWQ checkpoint: PPL {ppl_awq} vs {ppl_qllm}")
        ppl_torch = torch_ppl(config, dense_state(tensors, config, weights), ids, args.ctx, args.chunks, device)
        rel = abs(ppl_qllm - ppl_torch) / ppl_torch
        check(rel < 0.01, f"{quant}: qllm PPL {ppl_qllm:.4f} vs float32 torch on the dequantized weights "
                          f"{ppl_torch:.4f} (rel {rel:.5f})")
        if not asym:
            from transformers import LlamaConfig, LlamaForCausalLM
            cfg = {k: v for k, v in config.items() if k != "quantization_config"}
            dense = LlamaForCausalLM(LlamaConfig(**cfg)).to(torch.float32)
            dense.load_state_dict(dense_state(tensors, config, weights), strict=False)
            if cfg.get("tie_word_embeddings"):
                dense.tie_weights()
            with torch.no_grad():
                ref = dense.eval()(torch.tensor([ids[:args.ctx]])).logits[0]
            try_transformers_gptq(gptq_dir, ids[:args.ctx], ref, device)

    print(f"{len(FAILURES)} failed" if FAILURES else "all interop checks passed")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
