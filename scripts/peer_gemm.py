#!/usr/bin/env python3
"""Peers for `qllm gemm-bench`, measured on the GPU machine with PyTorch: cuBLAS bf16 (torch.matmul),
tinygemm int4 (torch._weight_int4pack_mm, group 128) and int8 (torch._int_mm), on the Llama-3.2-1B weight
shapes. Same method as qllm: CUDA-event medians, a GPU spin before each repetition, weights rotated through
copies that together exceed 2x the L2 size. Prints a table and writes JSON (--out)."""
import argparse
import json
import math
import statistics
import sys

import torch

SHAPES = ["128256x2048", "2048x2048", "512x2048", "8192x2048", "2048x8192"]


def rotation_copies(nbytes):
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    return max(1, (2 * l2) // max(nbytes, 1) + 1)


def time_ms(fn, copies, reps, warmup):
    for i in range(warmup):
        fn(copies[i % len(copies)])
    torch.cuda.synchronize()
    samples = []
    for i in range(reps):
        torch.cuda._sleep(200_000)  # ~100 us of GPU work: the Python dispatch stays outside the events
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(copies[i % len(copies)])
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop))
    return statistics.median(samples)


def tinygemm_weights(n, k, group):
    """Random uint4 weights in tinygemm's packed layout plus bf16 (scale, zero) pairs [K/group, N, 2]."""
    q = torch.randint(0, 16, (n, k), dtype=torch.int32, device="cuda")
    packed_u8 = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)
    try:
        w = torch.ops.aten._convert_weight_to_int4pack(packed_u8, 8)
    except RuntimeError:
        w = torch.ops.aten._convert_weight_to_int4pack(q, 8)  # older signature: int32 [N, K]
    sz = torch.randn(k // group, n, 2, dtype=torch.bfloat16, device="cuda") * 0.01
    return w, sz


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--m", default="1,16,128,512,2048")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for shape in args.shapes.split(","):
        n, k = (int(v) for v in shape.split("x"))
        w_bf16 = [torch.randn(n, k, dtype=torch.bfloat16, device="cuda") * 0.02
                  for _ in range(rotation_copies(n * k * 2))]
        int4 = [tinygemm_weights(n, k, 128) for _ in range(rotation_copies(n * k // 2))]
        w_int8 = [torch.randint(-127, 128, (k, n), dtype=torch.int8, device="cuda").t().contiguous().t()
                  for _ in range(rotation_copies(n * k))]
        for m in (int(v) for v in args.m.split(",")):
            x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
            row = {"m": m, "shape": shape}
            row["cublas_bf16_ms"] = time_ms(lambda w: torch.matmul(x, w.t()), w_bf16, args.reps, args.warmup)
            try:
                row["tinygemm_int4_g128_ms"] = time_ms(
                    lambda w: torch.ops.aten._weight_int4pack_mm(x, w[0], 128, w[1]), int4, args.reps, args.warmup)
            except RuntimeError as e:
                row["tinygemm_int4_g128_ms"] = None
                row["tinygemm_error"] = str(e).splitlines()[0]
            if m > 16:  # torch._int_mm needs M > 16
                xi = torch.randint(-127, 128, (m, k), dtype=torch.int8, device="cuda")
                row["torch_int_mm_ms"] = time_ms(lambda w: torch._int_mm(xi, w), w_int8, args.reps, args.warmup)
            else:
                row["torch_int_mm_ms"] = None
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        del w_bf16, int4, w_int8
        torch.cuda.empty_cache()
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    print(f"peers on {result['device']} (torch {torch.__version__})")
    print(f"| {'M':>5} | {'out x in':<12} | {'cuBLAS bf16 ms':>14} | {'tinygemm g128 ms':>16} | {'_int_mm ms':>10} |")
    print(f"| {'-' * 5} | {'-' * 12} | {'-' * 14} | {'-' * 16} | {'-' * 10} |")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    for r in rows:
        print(f"| {r['m']:>5} | {r['shape']:<12} | {fmt(r['cublas_bf16_ms']):>14} | "
              f"{fmt(r['tinygemm_int4_g128_ms']):>16} | {fmt(r['torch_int_mm_ms']):>10} |")


if __name__ == "__main__":
    main()
