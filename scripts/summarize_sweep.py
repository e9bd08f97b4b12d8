#!/usr/bin/env python3
"""Summarizes a folder of `qllm gemm-bench --json` runs of one kernel under different tuning flags.

Usage: scripts/summarize_sweep.py DIR. Each file DIR/<label>.json is one run; a file named auto*.json is the
automatic plan. Prints, per (M, shape), the automatic plan's time, the fastest variant and the next ones.
"""
import json
import pathlib
import sys


def main(folder: str) -> None:
    rows = {}  # (M, shape) -> list of (time_ms, label, kernel, bf16_ms)
    for path in sorted(pathlib.Path(folder).glob("*.json")):
        try:
            table = json.loads(path.read_text())["table"]
        except (ValueError, KeyError):
            continue  # a variant the kernel rejects (e.g. too little shared memory) leaves no JSON
        for r in table:
            key = (r["M"], r["out x in"])
            rows.setdefault(key, []).append((r["time_ms"], path.stem, r["kernel"], r["bf16_ms"]))
    print(f'{"M":>5} {"shape":>12} {"bf16 us":>8} {"auto us":>8} {"best us":>8} {"best/auto":>9}  best, next')
    for (m, shape), runs in sorted(rows.items()):
        runs.sort()
        auto = [r for r in runs if r[1].startswith("auto")]
        auto_us = auto[0][0] * 1e3 if auto else float("nan")
        best = runs[0]
        others = ", ".join(f"{label} {t * 1e3:.1f}" for t, label, _, _ in runs[1:4])
        print(f"{m:>5} {shape:>12} {best[3] * 1e3:8.1f} {auto_us:8.1f} {best[0] * 1e3:8.1f} "
              f"{best[0] * 1e3 / auto_us:9.2f}  {best[1]} ({best[2]}); {others}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
