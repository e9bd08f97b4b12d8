#!/usr/bin/env python3
"""Summary of gpu_check.sh gemm-ab: gemm-bench rows of two builds (base, head) run alternately in one call.

Usage: summarize_ab.py DIR   (DIR holds ab_{gemm,int8}_{base,head}_r<round>.json)
Per row (M, mode, shape): each side's time as the mean of its rounds, head / base, the rounds' spread, and
the kernel each side chose; then the geometric mean of head / base and the rows outside +-5%.
"""
import glob
import json
import math
import os
import sys


def rows(path):
    with open(path) as f:
        return {(r["M"], r["mode"], r["out x in"]): r for r in json.load(f)["table"]}


def main():
    d = sys.argv[1]
    for kind in ("gemm", "int8"):
        sides = {}
        for side in ("base", "head"):
            runs = [rows(p) for p in sorted(glob.glob(os.path.join(d, f"ab_{kind}_{side}_r*.json")))]
            if runs:
                sides[side] = runs
        if len(sides) < 2:
            print(f"{kind}: missing runs ({', '.join(sides) or 'none'})")
            continue
        keys = [k for k in sides["base"][0] if all(k in run for s in sides.values() for run in s)]
        print(f"\n{kind}: {len(keys)} rows, {len(sides['base'])} rounds per side (times in ms)")
        print(f"{'M':>5} {'mode':>10} {'shape':>12} {'base':>9} {'head':>9} {'head/base':>9} {'spread':>7}  kernels")
        logs, outside = [], []
        for k in keys:
            t = {s: [run[k]["time_ms"] for run in runs] for s, runs in sides.items()}
            base, head = sum(t["base"]) / len(t["base"]), sum(t["head"]) / len(t["head"])
            spread = max(max(v) / min(v) for v in t.values()) - 1  # the larger side's round-to-round change
            ratio = head / base
            logs.append(math.log(ratio))
            if abs(ratio - 1) > 0.05:
                outside.append(k)
            kernels = f"{sides['base'][0][k]['kernel']} / {sides['head'][0][k]['kernel']}"
            print(f"{k[0]:>5} {k[1]:>10} {k[2]:>12} {base:9.4f} {head:9.4f} {ratio:9.3f} {spread:7.1%}  {kernels}")
        print(f"{kind}: head / base geometric mean {math.exp(sum(logs) / len(logs)):.3f} over {len(logs)} rows; "
              f"min {math.exp(min(logs)):.3f}, max {math.exp(max(logs)):.3f}; outside +-5%: {len(outside)} "
              f"{outside[:8]}")


if __name__ == "__main__":
    main()
