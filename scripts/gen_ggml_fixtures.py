#!/usr/bin/env python3
"""Reference dequantizations of ggml blocks for tests/cpu/test_ggml_blocks.cpp, from gguf-py (llama.cpp's
Python package, numpy): an implementation independent of qllm's C++.

Writes tests/fixtures/gguf/ggml_blocks.json:
  blocks   per type (q4_0 q4_1 q5_0 q5_1 q8_0 q4_K q5_K q6_K f16 bf16): a few seeded random blocks (random
           bytes; the fp16 scale fields, and f16 data, forced to non-NaN values, since ggml's and numpy's fp16
           conversions differ only in NaN payloads) with the float bits gguf-py's dequantizer returns
  smollm2  with --model: the dequantized rows 0 of token_embd.weight (Q8_0) and blk.0.attn_q.weight (Q4_1)
           of SmolLM2-135M-Instruct.Q4_1.gguf, read with gguf-py's GGUFReader

Before writing, every block is also dequantized by a scalar float32 transcription of ggml's C
`dequantize_row_*` (ggml-quants.c: same operands, same order, one float32 rounding per operation) and the
script stops if gguf-py differs from it by a single bit. (Reading quants.py: its dequantizers compute in
float32, multiply in the C's order and add the minimum last, so they agree; this makes that checked. Every
product in these formulas is exact in float32 (docs/FORMATS.md), so only the final addition rounds.)

Usage (from the repository root; gguf-py is in the llama.cpp tarball of ../shared/peers):
  mkdir -p /tmp/peers && tar -xJf ../shared/peers/llama.cpp.tar.xz -C /tmp/peers
  pip install numpy
  PYTHONPATH=/tmp/peers/llama.cpp/gguf-py python3 scripts/gen_ggml_fixtures.py \
      --model ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
      --out tests/fixtures/gguf/ggml_blocks.json
"""

import argparse
import importlib.util
import json
import os
import sys
import types

import numpy as np


def import_gguf():
    # gguf/__init__.py imports its tokenizer helpers, which need sentencepiece; only quants.py and
    # gguf_reader.py are used here, so load the package without running its __init__.
    spec = importlib.util.find_spec("gguf")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("gguf-py not found: set PYTHONPATH=/tmp/peers/llama.cpp/gguf-py")
    package = types.ModuleType("gguf")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["gguf"] = package
    from gguf import constants, gguf_reader, quants  # noqa: E402
    return constants, gguf_reader, quants


constants, gguf_reader, quants = import_gguf()
T = constants.GGMLQuantizationType
F32 = np.float32

# type -> (blocks to generate, byte offsets of fp16 fields inside a block)
BLOCK_SPECS = {
    T.Q4_0: (6, [0]),
    T.Q4_1: (6, [0, 2]),
    T.Q5_0: (6, [0]),
    T.Q5_1: (6, [0, 2]),
    T.Q8_0: (6, [0]),
    T.Q4_K: (3, [0, 2]),
    T.Q5_K: (3, [0, 2]),
    T.Q6_K: (3, [208]),
    T.F16: (64, None),  # None: every 2-byte element is an fp16 value
    T.BF16: (64, []),
}


def f16(block, offset):
    return F32(np.frombuffer(bytes(block[offset:offset + 2]), dtype=np.float16)[0])


def u32(block, offset):
    return int.from_bytes(bytes(block[offset:offset + 4]), "little")


def transcribe(qtype, block):
    """ggml's dequantize_row_* for one block, as float32 scalar operations in the C's order."""
    b = [int(x) for x in block]
    y = []
    if qtype in (T.Q4_0, T.Q4_1):
        d = f16(block, 0)
        m = f16(block, 2) if qtype == T.Q4_1 else None
        qs = b[4:] if m is not None else b[2:]
        for half in (0, 1):
            for j in range(16):
                q = (qs[j] >> (4 * half)) & 0x0F
                y.append(F32(q - 8) * d if m is None else F32(q) * d + m)
    elif qtype in (T.Q5_0, T.Q5_1):
        d = f16(block, 0)
        m = f16(block, 2) if qtype == T.Q5_1 else None
        base = 2 if m is None else 4
        qh = u32(block, base)
        qs = b[base + 4:]
        for j in range(32):
            q = ((qs[j % 16] >> (4 * (j // 16))) & 0x0F) | (((qh >> j) & 1) << 4)
            y.append(F32(q - 16) * d if m is None else F32(q) * d + m)
    elif qtype == T.Q8_0:
        d = f16(block, 0)
        y = [F32(np.int8(np.uint8(x))) * d for x in b[2:34]]
    elif qtype in (T.Q4_K, T.Q5_K):
        d, dmin = f16(block, 0), f16(block, 2)
        sc = b[4:16]
        qh = b[16:48] if qtype == T.Q5_K else None
        qs = b[48:] if qtype == T.Q5_K else b[16:]
        for s in range(8):
            if s < 4:
                scale, mn = sc[s] & 63, sc[s + 4] & 63
            else:
                scale = (sc[s + 4] & 0x0F) | ((sc[s - 4] >> 6) << 4)
                mn = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4)
            ds, ms = d * F32(scale), dmin * F32(mn)
            for l in range(32):
                q = (qs[32 * (s // 2) + l] >> (4 * (s % 2))) & 0x0F
                if qh is not None:
                    q += 16 if (qh[l] >> s) & 1 else 0
                y.append(ds * F32(q) - ms)
    elif qtype == T.Q6_K:
        d = f16(block, 208)
        ql, qh = b[0:128], b[128:192]
        sc = [int(np.int8(np.uint8(x))) for x in b[192:208]]
        out = [None] * 256
        for h in range(2):
            for l in range(32):
                i = l // 16
                q1 = ((ql[64 * h + l] & 0xF) | (((qh[32 * h + l] >> 0) & 3) << 4)) - 32
                q2 = ((ql[64 * h + l + 32] & 0xF) | (((qh[32 * h + l] >> 2) & 3) << 4)) - 32
                q3 = ((ql[64 * h + l] >> 4) | (((qh[32 * h + l] >> 4) & 3) << 4)) - 32
                q4 = ((ql[64 * h + l + 32] >> 4) | (((qh[32 * h + l] >> 6) & 3) << 4)) - 32
                for k, q in enumerate((q1, q2, q3, q4)):
                    out[128 * h + l + 32 * k] = d * F32(sc[8 * h + i + 2 * k]) * F32(q)
        y = out
    elif qtype == T.F16:
        y = list(np.frombuffer(bytes(block), dtype=np.float16).astype(np.float32))
    elif qtype == T.BF16:
        y = list((np.frombuffer(bytes(block), dtype=np.uint16).astype(np.uint32) << 16).view(np.float32))
    return np.array(y, dtype=np.float32)


def random_block(rng, qtype):
    block_size, type_size = constants.GGML_QUANT_SIZES[qtype]
    block = rng.integers(0, 256, size=type_size, dtype=np.uint8)
    _, fp16_fields = BLOCK_SPECS[qtype]
    offsets = range(0, type_size, 2) if fp16_fields is None else fp16_fields
    for o in offsets:
        if block[o + 1] & 0x7C == 0x7C:  # exponent all ones: inf or NaN; clear one exponent bit
            block[o + 1] ^= 0x40
    return block


def hex_bits(values):
    return np.asarray(values, dtype=np.float32).view(np.uint32).astype(">u4").tobytes().hex()


def block_fixtures(seed):
    rng = np.random.default_rng(seed)
    out = []
    for qtype, (count, _) in BLOCK_SPECS.items():
        blocks = np.stack([random_block(rng, qtype) for _ in range(count)])
        expected = quants.dequantize(blocks, qtype).reshape(-1)
        transcribed = np.concatenate([transcribe(qtype, blk) for blk in blocks])
        if hex_bits(expected) != hex_bits(transcribed):
            sys.exit(f"gguf-py's {qtype.name} dequantizer differs from the C transcription")
        out.append({
            "type": qtype.name,
            "type_id": int(qtype),
            "elements": int(expected.size),
            "bytes_hex": blocks.tobytes().hex(),
            "expected_bits": hex_bits(expected),
        })
    return out


def model_fixtures(path):
    reader = gguf_reader.GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    rows = []
    for name in ("token_embd.weight", "blk.0.attn_q.weight"):
        t = by_name[name]
        row_bytes = np.asarray(t.data[0:1])  # the first row's blocks
        values = quants.dequantize(row_bytes, t.tensor_type).reshape(-1)
        type_size = constants.GGML_QUANT_SIZES[t.tensor_type][1]
        transcribed = np.concatenate([transcribe(t.tensor_type, blk) for blk in row_bytes.reshape(-1, type_size)])
        if hex_bits(values) != hex_bits(transcribed):
            sys.exit(f"{name}: gguf-py differs from the C transcription")
        rows.append({"tensor": name, "type": t.tensor_type.name, "row": 0, "elements": int(values.size),
                     "expected_bits": hex_bits(values)})
    return {"file_size": os.path.getsize(path), "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="SmolLM2-135M-Instruct.Q4_1.gguf (optional)")
    parser.add_argument("--seed", type=int, default=20251205)
    parser.add_argument("--out", default="tests/fixtures/gguf/ggml_blocks.json")
    args = parser.parse_args()
    fixture = {
        "generator": "scripts/gen_ggml_fixtures.py (gguf-py quants.dequantize)",
        "seed": args.seed,
        "blocks": block_fixtures(args.seed),
    }
    if args.model:
        fixture["smollm2"] = model_fixtures(args.model)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
