#!/usr/bin/env python3
"""A textbook GPTQ in plain torch on a GGUF Llama: the outside check of qllm's GPTQ (issue 21). Runs on the
device (torch); never part of qllm.

It reads the GGUF itself (F32/F16/BF16/Q8_0/Q4_0/Q4_1 dequantized as ggml does, Q/K rows put back in Hugging
Face's order), runs its own float32 Llama forward (checked against transformers' LlamaForCausalLM on the same
weights), quantizes every decoder linear layer by round to nearest or by GPTQ (Frantar et al. 2022: the
Hessian of each layer's inputs through the model as quantized so far, true-sequential inside a layer,
dampening, the upper Cholesky factor of H^-1, lazy column blocks; act order with static groups as an option),
and scores WikiText-2 with the Hugging Face protocol. Quantizer: qllm's symmetric INT4 rule
(scale = absmax / 7 rounded to bf16, nibble = clamp(round(w / s) + 8, 0, 15)), so that its RTN row equals
qllm's `--quant int4-g<N>` RTN figure and the GPTQ rows show what GPTQ itself gains on this model.

Usage: gptq_torch_check.py --gguf FILE --qllm BIN --text WIKITEXT [--group 128] [--ctx 2048]
         [--calib self|FILE] [--samples 128] [--calib-len 512] [--variants "rtn;gptq;gptq,act;gptq,damp=0.1"]
         [--json OUT]
A variant is a comma list: rtn | gptq, then act (act order), damp=X, samples=N (the first N windows),
skip0 (the first position of each window left out of the Hessians), group=N, mse (each group's clipping by
weight MSE), awq (AWQ-style input-channel scales searched on the calibration inputs and folded into the
preceding norm or up_proj, before RTN or GPTQ).
"""
import argparse
import json
import math
import struct
import subprocess
import time

import numpy as np
import torch
import torch.nn.functional as F

# ---- GGUF (llama.cpp's file format; docs/FORMATS.md) ------------------------------------------------------

SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class Reader:
    def __init__(self, path):
        self.data = np.memmap(path, dtype=np.uint8, mode="r")
        self.off = 0

    def scalar(self, fmt):
        v = struct.unpack_from("<" + fmt, self.data, self.off)[0]
        self.off += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.scalar("Q")
        s = bytes(self.data[self.off:self.off + n]).decode("utf-8", "replace")
        self.off += n
        return s

    def value(self, t):
        if t in SCALARS:
            return self.scalar(SCALARS[t])
        if t == 8:
            return self.string()
        assert t == 9, f"GGUF value type {t}"
        et, n = self.scalar("I"), self.scalar("Q")
        return [self.value(et) for _ in range(n)]


def dequantize(raw, ggml_type, count):
    f16 = lambda b: b.view(np.float16).astype(np.float32)
    if ggml_type == 0:
        return raw.view(np.float32)[:count].copy()
    if ggml_type == 1:
        return f16(raw)[:count]
    if ggml_type == 30:
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)[:count]
    if ggml_type == 8:  # Q8_0: d (f16), 32 x int8
        b = raw.reshape(-1, 34)
        return (f16(b[:, :2].copy()).reshape(-1, 1) * b[:, 2:].view(np.int8).astype(np.float32)).reshape(-1)
    if ggml_type in (2, 3):  # Q4_0: d, 16 bytes (q - 8) * d; Q4_1: d, m, 16 bytes q * d + m
        size = 18 if ggml_type == 2 else 20
        b = raw.reshape(-1, size)
        d = f16(b[:, :2].copy()).reshape(-1, 1)
        qs = b[:, size - 16:]
        q = np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.float32)  # element j low, j + 16 high
        if ggml_type == 2:
            return ((q - 8) * d).reshape(-1)
        m = f16(b[:, 2:4].copy()).reshape(-1, 1)
        return (q * d + m).reshape(-1)
    raise SystemExit(f"tensor type {ggml_type} is not read by this script")


BLOCK = {0: (1, 4), 1: (1, 2), 30: (1, 2), 8: (32, 34), 2: (32, 18), 3: (32, 20)}


def read_gguf(path):
    r = Reader(path)
    assert bytes(r.data[:4]) == b"GGUF", path
    r.off = 4
    version, n_tensors, n_kv = r.scalar("I"), r.scalar("Q"), r.scalar("Q")
    assert version in (2, 3), version
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.scalar("I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.scalar("Q") for _ in range(r.scalar("I"))]
        infos.append((name, dims, r.scalar("I"), r.scalar("Q")))
    align = meta.get("general.alignment", 32)
    base = (r.off + align - 1) // align * align
    tensors = {}
    for name, dims, t, off in infos:
        count = int(np.prod(dims))
        per, size = BLOCK[t]
        raw = np.asarray(r.data[base + off:base + off + count // per * size])
        shape = list(reversed(dims))  # ggml's ne[0] is the innermost dimension
        tensors[name] = torch.from_numpy(dequantize(raw, t, count).reshape(shape))
    return meta, tensors


def unpermute(w, heads):
    """llama.cpp's converter permutes Q/K rows for its rope; this puts them back in Hugging Face's order."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_model(path, device):
    meta, t = read_gguf(path)
    a = meta["general.architecture"]
    cfg = {
        "layers": meta[f"{a}.block_count"], "hidden": meta[f"{a}.embedding_length"],
        "inter": meta[f"{a}.feed_forward_length"], "heads": meta[f"{a}.attention.head_count"],
        "kv_heads": meta[f"{a}.attention.head_count_kv"], "eps": meta[f"{a}.attention.layer_norm_rms_epsilon"],
        "theta": meta.get(f"{a}.rope.freq_base", 10000.0), "bos": meta.get("tokenizer.ggml.bos_token_id"),
        "eos": meta.get("tokenizer.ggml.eos_token_id"),
    }
    cfg["head_dim"] = cfg["hidden"] // cfg["heads"]
    dev = lambda x: x.to(device=device, dtype=torch.float32).contiguous()
    layers = []
    for i in range(cfg["layers"]):
        p = f"blk.{i}."
        layers.append({
            "attn_norm": dev(t[p + "attn_norm.weight"]), "ffn_norm": dev(t[p + "ffn_norm.weight"]),
            "q": dev(unpermute(t[p + "attn_q.weight"], cfg["heads"])),
            "k": dev(unpermute(t[p + "attn_k.weight"], cfg["kv_heads"])),
            "v": dev(t[p + "attn_v.weight"]), "o": dev(t[p + "attn_output.weight"]),
            "gate": dev(t[p + "ffn_gate.weight"]), "up": dev(t[p + "ffn_up.weight"]),
            "down": dev(t[p + "ffn_down.weight"]),
        })
    embed = dev(t["token_embd.weight"])
    model = {"cfg": cfg, "layers": layers, "embed": embed, "norm": dev(t["output_norm.weight"]),
             "lm_head": dev(t["output.weight"]) if "output.weight" in t else embed}
    return model


# ---- the forward (float32) ----------------------------------------------------------------------------

def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(cfg, length, device):
    hd = cfg["head_dim"]
    inv = 1.0 / (cfg["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64, device=device) / hd))
    freqs = torch.outer(torch.arange(length, dtype=torch.float64, device=device), inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().float(), emb.sin().float()


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def layer_forward(cfg, L, x, cos, sin, tap=None):
    """x [B, T, D]; tap(site, input) sees the inputs of qkv, o, gateup and down."""
    B, T, _ = x.shape
    H, KV, hd = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    h = rms(x, L["attn_norm"], cfg["eps"])
    if tap: tap("qkv", h)
    q = (h @ L["q"].T).view(B, T, H, hd).transpose(1, 2)
    k = (h @ L["k"].T).view(B, T, KV, hd).transpose(1, 2)
    v = (h @ L["v"].T).view(B, T, KV, hd).transpose(1, 2)
    q, k = rope(q, cos[:T], sin[:T]), rope(k, cos[:T], sin[:T])
    k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
    a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, H * hd)
    if tap: tap("o", a)
    x = x + a @ L["o"].T
    h = rms(x, L["ffn_norm"], cfg["eps"])
    if tap: tap("gateup", h)
    g = F.silu(h @ L["gate"].T) * (h @ L["up"].T)
    if tap: tap("down", g)
    return x + g @ L["down"].T


def logits_of(model, layers, ids, cos, sin):
    x = model["embed"][ids]
    for L in layers:
        x = layer_forward(model["cfg"], L, x, cos, sin)
    return rms(x, model["norm"], model["cfg"]["eps"]) @ model["lm_head"].T


def perplexity(model, layers, ids, ctx, chunks, device, batch=4):
    """Hugging Face protocol: non-overlapping windows of ctx tokens, every position but the first scored."""
    windows = len(ids) // ctx
    if chunks:
        windows = min(windows, chunks)
    data = torch.tensor(ids[:windows * ctx], device=device).view(windows, ctx)
    cos, sin = rope_tables(model["cfg"], ctx, device)
    nll, count = 0.0, 0
    with torch.no_grad():
        for b in range(0, windows, batch):
            x = data[b:b + batch]
            logp = torch.log_softmax(logits_of(model, layers, x, cos, sin)[:, :-1].float(), dim=-1)
            nll += -logp.gather(-1, x[:, 1:].unsqueeze(-1)).double().sum().item()
            count += x[:, 1:].numel()
    return math.exp(nll / count), count


# ---- quantizers ---------------------------------------------------------------------------------------

CLIP = {"mse": False}  # the variant being run: search each group's clipping by its weight MSE


def group_params(w):
    """qllm's symmetric INT4 rule on groups w [rows, g]: scale = absmax / 7 in bf16, zero 8; with the MSE
    search, the scale of absmax * p / 7 (p = 1.00, 0.99, ..., 0.70) with the least squared weight error."""
    amax = w.abs().amax(-1)
    best = (amax * 100 / 700).to(torch.bfloat16).to(w.dtype)
    if not CLIP["mse"]:
        return best
    best_err = (quantize_with(w, best.unsqueeze(1)) - w).pow(2).sum(-1)
    for p in range(99, 69, -1):
        sc = (amax * p / 700).to(torch.bfloat16).to(w.dtype)
        err = (quantize_with(w, sc.unsqueeze(1)) - w).pow(2).sum(-1)
        better = err < best_err
        best, best_err = torch.where(better, sc, best), torch.where(better, err, best_err)
    return best


def quantize_with(w, s):
    inv = torch.where(s > 0, 1 / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s))
    q = (torch.round(w * inv) + 8).clamp(0, 15)
    return (q - 8) * s


def rtn(w, group):
    rows, cols = w.shape
    out = torch.empty_like(w)
    for c in range(0, cols, group):
        g = w[:, c:c + group]
        out[:, c:c + group] = quantize_with(g, group_params(g).unsqueeze(1))
    return out


def gptq(w, h, group, damp, act_order, block=128):
    """Textbook GPTQ of w [rows, cols] under h [cols, cols] (float64 solve); returns the dequantized weights."""
    w = w.clone().double()
    h = h.clone().double()
    cols = w.shape[1]
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    static = None
    if act_order:  # static groups from the original weights: the layout stays that of RTN
        static = torch.stack([group_params(w[:, c:c + group].float()).double()
                              for c in range(0, cols, group)], dim=1)  # [rows, groups]
        perm = torch.argsort(torch.diag(h), descending=True, stable=True)
    else:
        perm = torch.arange(cols, device=w.device)
    w, h = w[:, perm], h[perm][:, perm]
    block = max(block, group) if group <= cols else cols  # a group never straddles a block's end
    h += damp * torch.mean(torch.diag(h)) * torch.eye(cols, dtype=h.dtype, device=h.device)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    qw = torch.zeros_like(w)
    scale = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        for i in range(i2 - i1):
            col = int(perm[i1 + i])
            if static is not None:
                scale = static[:, col // group]
            elif col % group == 0:  # the group's current weights, this block's updates included
                scale = group_params(w1[:, i:i + group].float()).double()
            q = quantize_with(w1[:, i], scale)
            qw[:, i1 + i] = q
            e = (w1[:, i] - q) / u[i1 + i, i1 + i]
            w1[:, i:] -= e.unsqueeze(1) * u[i1 + i, i1 + i:i2].unsqueeze(0)
            err1[:, i] = e
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    out = torch.empty_like(qw)
    out[:, perm] = qw
    return out.float()


SITES = [("qkv", ["q", "k", "v"]), ("o", ["o"]), ("gateup", ["gate", "up"]), ("down", ["down"])]
LINEARS = ("q", "k", "v", "o", "gate", "up", "down")


def collect(cfg, L, xs, cos, sin, site, skip0=False, limit=None):
    """The inputs of `site` over the calibration activations xs, as [tokens, width] (at most `limit` rows)."""
    rows = []
    def tap(s, inp):
        if s == site:
            x = inp[:, 1:] if skip0 else inp
            rows.append(x.reshape(-1, x.shape[-1]))
    for x in xs:
        layer_forward(cfg, L, x, cos, sin, tap)
        if limit and sum(r.shape[0] for r in rows) >= limit:
            break
    return torch.cat(rows)[:limit] if limit else torch.cat(rows)


def awq_scales(x, weights, group):
    """AWQ (Lin et al. 2023): per input channel s = mean|x|^a (a on a grid of 20), normalised, chosen so that
    RTN of W * s, divided back by s, changes the outputs on x least."""
    xmean = x.abs().mean(0)
    ref = [x @ w.T for w in weights]
    best, best_loss = torch.ones_like(xmean), None
    for i in range(20):
        sc = xmean.pow(i / 20).clamp(min=1e-4)
        sc = sc / (sc.max() * sc.min()).sqrt()
        loss = sum((x @ (rtn(w * sc, group) / sc).T - r).pow(2).mean() for w, r in zip(weights, ref)).item()
        if best_loss is None or loss < best_loss:
            best, best_loss = sc, loss
    return best


def awq_layer(cfg, L, xs, cos, sin, group):
    """A copy of layer L with AWQ scales folded in: q/k/v columns * s and attn_norm / s; gate/up likewise with
    ffn_norm; down columns * s and up rows / s (o is left: with GQA its inputs repeat v's rows per head)."""
    L = dict(L)
    x = collect(cfg, L, xs, cos, sin, "qkv", limit=16384)
    sc = awq_scales(x, [L["q"], L["k"], L["v"]], group)
    L["attn_norm"] = L["attn_norm"] / sc
    for n in ("q", "k", "v"):
        L[n] = L[n] * sc
    x = collect(cfg, L, xs, cos, sin, "gateup", limit=16384)
    sc = awq_scales(x, [L["gate"], L["up"]], group)
    L["ffn_norm"] = L["ffn_norm"] / sc
    for n in ("gate", "up"):
        L[n] = L[n] * sc
    x = collect(cfg, L, xs, cos, sin, "down", limit=16384)
    sc = awq_scales(x, [L["down"]], group)
    L["up"] = L["up"] / sc.unsqueeze(1)
    L["down"] = L["down"] * sc
    return L


def quantize_model(model, windows, variant, device):
    """Returns quantized layer dicts. windows: LongTensor [n, len] of calibration tokens."""
    cfg = model["cfg"]
    group = variant.get("group", 128)
    CLIP["mse"] = variant.get("mse", False)
    if variant["method"] == "rtn" and not variant.get("awq"):
        return [{k: (rtn(v, group) if k in LINEARS else v) for k, v in L.items()} for L in model["layers"]]
    windows = windows[:variant.get("samples", len(windows))]
    cos, sin = rope_tables(cfg, windows.shape[1], device)
    layers_out = []
    with torch.no_grad():
        xs = [model["embed"][windows[b:b + 8]] for b in range(0, len(windows), 8)]
        for L in model["layers"]:
            Lq = awq_layer(cfg, L, xs, cos, sin, group) if variant.get("awq") else dict(L)
            source = dict(Lq)
            for site, names in SITES:  # true-sequential: each site's inputs through the layer as quantized so far
                if variant["method"] == "rtn":
                    for name in names:
                        Lq[name] = rtn(source[name], group)
                    continue
                hsum, n = None, 0
                def tap(s, inp):
                    nonlocal hsum, n
                    if s != site:
                        return
                    x = inp[:, 1:] if variant.get("skip0") else inp
                    x = x.reshape(-1, x.shape[-1]).double()
                    hsum = x.T @ x if hsum is None else hsum + x.T @ x
                    n += x.shape[0]
                for x in xs:
                    layer_forward(cfg, Lq, x, cos, sin, tap)
                h = 2 * hsum / n
                for name in names:
                    Lq[name] = gptq(source[name], h, group, variant.get("damp", 0.01), variant.get("act", False))
            xs = [layer_forward(cfg, Lq, x, cos, sin) for x in xs]
            layers_out.append(Lq)
    return layers_out


# ---- calibration ----------------------------------------------------------------------------------------

def sample_self(model, n, length, seed, device):
    """n windows sampled from BOS at temperature 1 with transformers' generate (KV cache) on the same weights."""
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = model["cfg"]
    hf = LlamaForCausalLM(LlamaConfig(
        vocab_size=model["embed"].shape[0], hidden_size=cfg["hidden"], intermediate_size=cfg["inter"],
        num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kv_heads"],
        rms_norm_eps=cfg["eps"], rope_theta=cfg["theta"], max_position_embeddings=8192,
        tie_word_embeddings=model["lm_head"] is model["embed"]))
    state = {"model.embed_tokens.weight": model["embed"], "model.norm.weight": model["norm"],
             "lm_head.weight": model["lm_head"]}
    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
             "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
    for i, L in enumerate(model["layers"]):
        state[f"model.layers.{i}.input_layernorm.weight"] = L["attn_norm"]
        state[f"model.layers.{i}.post_attention_layernorm.weight"] = L["ffn_norm"]
        for k, v in names.items():
            state[f"model.layers.{i}.{v}.weight"] = L[k]
    hf.load_state_dict({k: v.cpu() for k, v in state.items()}, strict=False)
    hf = hf.to(device).eval()
    # The forward here against transformers' on the same weights: the check that the GGUF was read right.
    probe = torch.randint(0, model["embed"].shape[0], (1, 64), device=device)
    with torch.no_grad():
        cos, sin = rope_tables(cfg, 64, device)
        mine, theirs = logits_of(model, model["layers"], probe, cos, sin), hf(probe).logits.float()
    rel = ((mine - theirs).abs().max() / theirs.abs().max()).item()
    print(f"own forward vs transformers: max rel {rel:.2e}", flush=True)
    assert rel < 1e-3, rel
    torch.manual_seed(seed)
    out = []
    with torch.no_grad():
        for b in range(0, n, 64):
            m = min(64, n - b)
            start = torch.full((m, 1), cfg["bos"], device=device)
            out.append(hf.generate(start, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_length=length,
                                   min_length=length, pad_token_id=cfg["eos"]))  # not BOS: a BOS input reads as padding
    return torch.cat(out)[:, :length]


def windows_from_ids(ids, n, length, bos, seed, device):
    """n windows at seeded random offsets, BOS first unless bos is None."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - length, (n,), generator=g)
    head = [] if bos is None else [bos]
    return torch.stack([torch.tensor(head + ids[s:s + length - len(head)]) for s in starts.tolist()]).to(device)


def token_ids(qllm, gguf, text):
    out = subprocess.run([qllm, "tokenize", "--model", gguf, "--file", text, "--ids", "--no-special"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def parse_variant(s):
    v = {"name": s}
    for part in s.split(","):
        if part in ("rtn", "gptq"):
            v["method"] = part
        elif part == "act":
            v["act"] = True
        elif part in ("skip0", "awq", "mse"):
            v[part] = True
        elif part.startswith("damp="):
            v["damp"] = float(part[5:])
        elif part.startswith("samples="):
            v["samples"] = int(part[8:])
        elif part.startswith("group="):
            v["group"] = int(part[6:])
        else:
            raise SystemExit(f"variant '{s}': unknown part '{part}'")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--qllm", required=True, help="qllm binary (its tokenizer gives the token ids)")
    ap.add_argument("--text", required=True, help="evaluation text (WikiText-2 test)")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--chunks", type=int, default=0)
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--calib", default="self")
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--calib-len", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-bos", action="store_true", help="calibration windows from a file without BOS first")
    ap.add_argument("--variants", default="rtn;gptq;gptq,act")
    ap.add_argument("--json")
    a = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    t0 = time.time()
    model = load_model(a.gguf, device)
    ids = token_ids(a.qllm, a.gguf, a.text)
    print(f"loaded in {time.time() - t0:.1f} s; {len(ids)} evaluation tokens", flush=True)
    t0 = time.time()
    if a.calib == "self":
        windows = sample_self(model, a.samples, a.calib_len, a.seed, device)
    else:
        windows = windows_from_ids(token_ids(a.qllm, a.gguf, a.calib), a.samples, a.calib_len,
                                   None if a.no_bos else model["cfg"]["bos"], a.seed, device)
    print(f"calibration {a.calib}: {tuple(windows.shape)} in {time.time() - t0:.1f} s", flush=True)
    rows = []
    base, _ = perplexity(model, model["layers"], ids, a.ctx, a.chunks, device)
    rows.append({"variant": "unquantized", "perplexity": base, "ratio": 1.0, "seconds": 0})
    print(f"{'unquantized':28s} PPL {base:9.4f}", flush=True)
    for s in a.variants.split(";"):
        v = parse_variant(s)
        v.setdefault("group", a.group)
        t0 = time.time()
        layers = quantize_model(model, windows, v, device)
        secs = time.time() - t0
        ppl, _ = perplexity(model, layers, ids, a.ctx, a.chunks, device)
        rows.append({"variant": s, "group": v["group"], "perplexity": ppl, "ratio": ppl / base, "seconds": secs})
        print(f"{s:28s} PPL {ppl:9.4f}  {ppl / base:6.3f}x  ({secs:.1f} s)", flush=True)
    result = {"gguf": a.gguf, "protocol": "hf", "ctx": a.ctx, "chunks": a.chunks, "calib": a.calib,
              "samples": a.samples, "calib_len": a.calib_len, "torch": torch.__version__,
              "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "rows": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
