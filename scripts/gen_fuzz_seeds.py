#!/usr/bin/env python3
"""Seed corpus for the fuzzers of fuzz/: a few small valid GGUF and safetensors files, written here from
scratch (standard library only; nothing is read from ../shared).

  OUT/gguf/*.gguf                 v2 and v3 files with every metadata value type, a nested array, a
                                  non-default alignment, and tensors of F32, F16, BF16, Q4_0, Q4_1, Q5_0,
                                  Q5_1, Q8_0, Q4_K, Q5_K, Q6_K and one type qllm does not dequantize (Q2_K)
  OUT/safetensors/*.safetensors   files with F32/F16/BF16/I8/U8/I32 tensors, metadata, an empty tensor

Usage: python3 scripts/gen_fuzz_seeds.py OUT      (scripts/fuzz.sh runs it)
"""

import json
import os
import random
import struct
import sys

# ggml type name -> (id, elements per block, bytes per block)
GGML_TYPES = {
    "F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q5_0": (6, 32, 22),
    "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84), "Q4_K": (12, 256, 144),
    "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210), "BF16": (30, 1, 2),
}
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FORMATS = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
                  U64: "<Q", I64: "<q", F64: "<d"}


def gguf_string(s):
    data = s.encode()
    return struct.pack("<Q", len(data)) + data


def gguf_value(value_type, value):
    if value_type == STRING:
        return gguf_string(value)
    if value_type == ARRAY:
        element_type, elements = value
        return struct.pack("<IQ", element_type, len(elements)) + b"".join(
            gguf_value(element_type, e) for e in elements)
    return struct.pack(SCALAR_FORMATS[value_type], value)


def gguf_file(version, metadata, tensors, alignment=32, rng=None):
    """metadata: [(key, type, value)]; tensors: [(name, shape, type name)] with random data."""
    pad = lambda n: (n + alignment - 1) // alignment * alignment  # noqa: E731
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, value_type, value in metadata:
        out += gguf_string(key) + struct.pack("<I", value_type) + gguf_value(value_type, value)
    blobs, offset = [], 0
    for name, shape, type_name in tensors:
        type_id, block_elements, block_bytes = GGML_TYPES[type_name]
        elements = 1
        for d in shape:
            elements *= d
        size = elements // block_elements * block_bytes
        out += gguf_string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<q", d) for d in shape)
        out += struct.pack("<IQ", type_id, offset)
        blobs.append((offset, bytes(rng.getrandbits(8) for _ in range(size))))
        offset = pad(offset + size)
    data_start = pad(len(out))
    out += b"\0" * (data_start - len(out))
    for blob_offset, blob in blobs:
        out += b"\0" * (data_start + blob_offset - len(out)) + blob
    return out


def gguf_seeds(rng):
    every_type = [
        ("general.architecture", STRING, "llama"), ("u8", U8, 7), ("i8", I8, -7), ("u16", U16, 700),
        ("i16", I16, -700), ("llama.block_count", U32, 2), ("i32", I32, -70000), ("f32", F32, 1e-5),
        ("bool", BOOL, True), ("u64", U64, 1 << 40), ("i64", I64, -(1 << 40)), ("f64", F64, 0.5),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, ["a", "b", "ab", "<s>"])),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [1, 1, 1, 3])),
        ("tokenizer.ggml.scores", ARRAY, (F32, [0.0, -1.0, -2.0, 0.0])),
        ("tokenizer.ggml.merges", ARRAY, (STRING, ["a b"])),
        ("flags", ARRAY, (BOOL, [True, False])),
        ("nested", ARRAY, (ARRAY, [(U8, [1, 2]), (STRING, ["x"])])),
    ]
    quantized = [(f"t.{name.lower()}", [256, 1] if block == 256 else [64, 2], name)
                 for name, (_, block, _) in GGML_TYPES.items() if block > 1]
    floats = [("norm.f32", [8], "F32"), ("norm.f16", [4, 2], "F16"), ("norm.bf16", [3, 1, 1, 2], "BF16")]
    return {
        "v3_every_value_type.gguf": gguf_file(3, every_type, floats, rng=rng),
        "v2_quantized.gguf": gguf_file(2, [("general.alignment", U32, 32)], quantized, rng=rng),
        "v3_align64.gguf": gguf_file(3, [("general.alignment", U32, 64)],
                                     [("a", [32], "Q8_0"), ("b", [256], "Q6_K")], alignment=64, rng=rng),
        "v3_empty.gguf": gguf_file(3, [], []),
    }


def safetensors_file(tensors, metadata, rng):
    """tensors: [(name, dtype, shape)] with random data, laid out in order."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1, "I32": 4}
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        size = sizes[dtype]
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + size]}
        data += bytes(rng.getrandbits(8) for _ in range(size))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds(rng):
    return {
        "all_dtypes.safetensors": safetensors_file(
            [("w.f32", "F32", [2, 3]), ("w.f16", "F16", [4]), ("w.bf16", "BF16", [2, 2]), ("q.i8", "I8", [5]),
             ("q.u8", "U8", [1, 3]), ("q.i32", "I32", [2])], {"format": "pt"}, rng),
        "empty_tensor.safetensors": safetensors_file([("e", "F32", [0, 4]), ("s", "F16", [])], None, rng),
        "no_tensors.safetensors": safetensors_file([], {"format": "pt", "note": "x"}, rng),
    }


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rng = random.Random(1234)
    for folder, files in (("gguf", gguf_seeds(rng)), ("safetensors", safetensors_seeds(rng))):
        os.makedirs(os.path.join(sys.argv[1], folder), exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(sys.argv[1], folder, name), "wb") as f:
                f.write(data)
    print(f"seeds written to {sys.argv[1]}/gguf and {sys.argv[1]}/safetensors")


if __name__ == "__main__":
    main()
