#!/usr/bin/env python3
"""Summary of gpu_check.sh gemm-ab: gemm-bench rows of this tree (head) and of one or more base commits, run in
turn in one call.

Usage: summarize_ab.py DIR   (DIR holds ab_{gemm,int8}_<side>_r<round>.json, side = head, base or base<i>,
and ab_bases.txt naming each base's commit when gpu_check.sh wrote it)
Per base and row (M, mode, shape): each side's time as the mean of its rounds, head / base, the rounds' spread,
and the kernel each side chose; then the geometric mean of head / base and the rows outside +-5%.
"""
import glob
import json
import math
import os
import re
import sys


def rows(path):
    with open(path) as f:
        return {(r["M"], r["mode"], r["out x in"]): r for r in json.load(f)["table"]}


def runs_by_side(d, kind):
    sides = {}
    for path in sorted(glob.glob(os.path.join(d, f"ab_{kind}_*_r*.json"))):
        m = re.fullmatch(rf"ab_{kind}_(.+)_r(\d+)\.json", os.path.basename(path))
        if m:
            sides.setdefault(m.group(1), []).append(rows(path))
    return sides


def compare(kind, label, base_runs, head_runs):
    keys = [k for k in base_runs[0] if all(k in run for run in base_runs + head_runs)]
    print(f"\n{kind}, head against {label}: {len(keys)} rows, {len(base_runs)} / {len(head_runs)} rounds "
          "(times in ms)")
    print(f"{'M':>5} {'mode':>10} {'shape':>12} {'base':>9} {'head':>9} {'head/base':>9} {'spread':>7}  kernels")
    logs, outside = [], []
    for k in keys:
        t = {"base": [run[k]["time_ms"] for run in base_runs], "head": [run[k]["time_ms"] for run in head_runs]}
        base, head = sum(t["base"]) / len(t["base"]), sum(t["head"]) / len(t["head"])
        spread = max(max(v) / min(v) for v in t.values()) - 1  # the larger side's round-to-round change
        ratio = head / base
        logs.append(math.log(ratio))
        if abs(ratio - 1) > 0.05:
            outside.append(k)
        kernels = f"{base_runs[0][k]['kernel']} / {head_runs[0][k]['kernel']}"
        print(f"{k[0]:>5} {k[1]:>10} {k[2]:>12} {base:9.4f} {head:9.4f} {ratio:9.3f} {spread:7.1%}  {kernels}")
    if logs:
        print(f"{kind}: head / {label} geometric mean {math.exp(sum(logs) / len(logs)):.3f} over {len(logs)} rows; "
              f"min {math.exp(min(logs)):.3f}, max {math.exp(max(logs)):.3f}; outside +-5%: {len(outside)} "
              f"{outside[:8]}")


def main():
    d = sys.argv[1]
    labels = {}
    bases_file = os.path.join(d, "ab_bases.txt")
    if os.path.exists(bases_file):
        for line in open(bases_file):
            parts = line.split()
            if len(parts) >= 3:
                labels[parts[0]] = f"{parts[0]} ({parts[1]} = {parts[2]})"
    for kind in ("gemm", "int8"):
        sides = runs_by_side(d, kind)
        bases = sorted(s for s in sides if s != "head")
        if "head" not in sides or not bases:
            print(f"{kind}: missing runs ({', '.join(sides) or 'none'})")
            continue
        for base in bases:
            compare(kind, labels.get(base, base), sides[base], sides["head"])


if __name__ == "__main__":
    main()
