#!/usr/bin/env python3
"""Markdown tables for docs/RESULTS.md from the JSON that scripts/gpu_check.sh writes.

Usage: scripts/results_tables.py DIR, where DIR holds gemm_bench.json, gemm_bench_int8.json and
peer_gemm.json (docs/results/ or an unpacked gpu_results archive). Prints the W4A16 table, its geometric
means, the tinygemm comparison and the int8 table, in that order.
"""
import json
import math
import pathlib
import sys

SHAPES = ["128256x2048", "2048x2048", "512x2048", "8192x2048", "2048x8192"]
TARGETS_W4A16 = {1: "2.0x", 16: "1.6x", 128: "1.0x", 512: "0.85x", 2048: "0.85x"}


def rows_by_key(path):
    return {(r["M"], r["mode"], r["out x in"]): r for r in json.loads(path.read_text())["table"]}


def w4a16(rows):
    print("| shape | M | cuBLAS bf16 | GLOBAL | ROWWISE | g128 | **g128 vs bf16** | kernel (g128) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    ms = sorted({m for m, _, _ in rows})
    for shape in SHAPES:
        for m in ms:
            g, r, q = (rows[(m, mode, shape)] for mode in ("global", "rowwise", "g128"))
            print(f"| {shape} | {m} | {q['bf16_ms'] * 1e3:.1f} | {g['time_ms'] * 1e3:.1f} ({g['speedup_vs_bf16']:.2f}x) "
                  f"| {r['time_ms'] * 1e3:.1f} ({r['speedup_vs_bf16']:.2f}x) | {q['time_ms'] * 1e3:.1f} "
                  f"| **{q['speedup_vs_bf16']:.2f}x** | {q['kernel']} |")
    print("\n| M | GLOBAL | ROWWISE | g128 | issue 3 target |\n| --- | --- | --- | --- | --- |")
    for m in ms:
        means = [math.exp(sum(math.log(rows[(m, mode, s)]["speedup_vs_bf16"]) for s in SHAPES) / len(SHAPES))
                 for mode in ("global", "rowwise", "g128")]
        print(f"| {m} | " + " | ".join(f"{x:.2f}x" for x in means) + f" | {TARGETS_W4A16.get(m, '-')} |")


def tinygemm(rows, peers):
    tiny = {(p["m"], p["shape"]): p["tinygemm_int4_g128_ms"] for p in peers["rows"]}
    ms = sorted({m for m, _ in tiny})
    print("| shape | " + " | ".join(f"M={m}" for m in ms) + " |")
    print("| --- |" + " --- |" * len(ms))
    for shape in SHAPES:
        cells = []
        for m in ms:
            ours, theirs = rows[(m, "g128", shape)]["time_ms"], tiny[(m, shape)]
            ratio = theirs / ours
            text = f"{theirs * 1e3:.1f} / {ours * 1e3:.1f} = " if m <= 16 else ""
            cells.append(text + (f"**{ratio:.2f}x**" if ratio >= 1 else f"{ratio:.2f}x"))
        print(f"| {shape} | " + " | ".join(cells) + " |")


def int8(rows, peers):
    int_mm = {(p["m"], p["shape"]): p["torch_int_mm_ms"] for p in peers["rows"]}
    print("| shape | M | cuBLAS bf16 | int8 | **int8 vs bf16** | int8@0.001 | vs bf16 | torch _int_mm | kernel |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ms = sorted({m for m, _, _ in rows})
    for shape in SHAPES:
        for m in ms:
            a, b = rows[(m, "int8", shape)], rows[(m, "int8@0.001", shape)]
            mm = int_mm.get((m, shape))
            print(f"| {shape} | {m} | {a['bf16_ms'] * 1e3:.1f} | {a['time_ms'] * 1e3:.1f} | "
                  f"**{a['speedup_vs_bf16']:.2f}x** | {b['time_ms'] * 1e3:.1f} | {b['speedup_vs_bf16']:.2f}x | "
                  f"{'-' if mm is None else f'{mm * 1e3:.1f}'} | {a['kernel']} |")


def main(folder):
    d = pathlib.Path(folder)
    peers = json.loads((d / "peer_gemm.json").read_text())
    rows = rows_by_key(d / "gemm_bench.json")
    w4a16(rows)
    print()
    tinygemm(rows, peers)
    print()
    int8(rows_by_key(d / "gemm_bench_int8.json"), peers)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
