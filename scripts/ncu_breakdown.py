#!/usr/bin/env python3
"""Per-kernel breakdown of one decode step from an Nsight Compute CSV (ncu --csv --page raw --metrics
gpu__time_duration.sum --graph-profiling node ...): the kernels between the last two launches of the sampling
kernel are one step (layers, lm_head, sampling). Prints the step's kernel count, its summed kernel time (ncu
serialises kernels, so launch gaps are not in it), and the time per kernel name, largest first."""
import argparse
import csv
import collections
import json
import re


def short(name):
    name = name.replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
    name = re.sub(r"\(.*", "", name)  # drop argument lists
    name = re.sub(r"<.*", "", name)  # and template arguments
    return name.split("::")[-1] or name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--step-marker", default="sample_tokens_kernel")
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = []
    with open(a.csv, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu prints its own log lines first
    reader = csv.DictReader(lines)
    for r in reader:
        t = r.get("gpu__time_duration.sum", "")
        try:
            us = float(t.replace(",", ""))
        except ValueError:
            continue  # the units row
        rows.append((r["Kernel Name"], us))
    unit = "ns"  # ncu reports gpu__time_duration.sum in ns by default (the units row says)
    marks = [i for i, (n, _) in enumerate(rows) if a.step_marker in n]
    if len(marks) < 2:
        raise SystemExit(f"fewer than two '{a.step_marker}' launches among {len(rows)} kernels")
    step = rows[marks[-2] + 1 : marks[-1] + 1]
    total = sum(us for _, us in step)
    by_name = collections.defaultdict(lambda: [0, 0.0])
    for n, us in step:
        by_name[short(n)][0] += 1
        by_name[short(n)][1] += us
    print(f"one decode step: {len(step)} kernels, {total / 1000:.1f} us of kernel time ({unit} in the CSV)")
    print(f"{'kernel':<48} {'count':>5} {'total us':>9} {'share':>6}")
    for n, (c, us) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
        print(f"{n[:48]:<48} {c:>5} {us / 1000:>9.1f} {100 * us / total:>5.1f}%")
    if a.json:
        json.dump({"kernels": len(step), "kernel_us": total / 1000,
                   "by_kernel": {n: {"count": c, "us": us / 1000} for n, (c, us) in by_name.items()},
                   "sequence": [[short(n), us / 1000] for n, us in step]}, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
