#!/usr/bin/env python3
"""Prints a `qllm bench --json` file as one line per row (used by scripts/gpu_check.sh)."""
import json
import sys

d = json.load(open(sys.argv[1]))
print(d["device"], d["date"], f'{d["reps"]} reps')
for r in d["table"]:
    print(f'{r["quant"]:>24} {r["test"]:>6} batch {r["batch"]:>3}: {r["tokens_per_s"]:10.1f} +/- {r["stddev"]:7.1f} '
          f'tok/s  weights {r["weights_MiB"]:8.1f} MiB  context {r["context_MiB"]:8.1f} MiB')
