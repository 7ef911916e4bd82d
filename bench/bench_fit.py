"""`netspec fit` against the same search done by building, measured as a ratio in one run.

(a) `netspec fit specs/resnet50.yaml --vary width,depth --params 10M` as a whole process:
    372 variants (widths 16…256 on multiples of 8, depths 0.25…3 in quarters), each
    resolved and counted.
(b) the same grid searched the way one would without netspec's counter: each variant
    built by netspec's torch backend on torch's ``meta`` device (no memory allocated,
    the fastest way torch counts) and its ``numel`` summed, the best chosen by the same
    rule. Both must choose the same variant; the script checks that they do.

    python bench/bench_fit.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 10_000_000

FIT = [sys.executable, "-m", "netspec", "fit", "specs/resnet50.yaml", "--vary",
       "width,depth", "--params", "10M", "--format", "json"]

BY_BUILDING = f"""
import itertools, json, torch, netspec
best = None
tried = 0
for width, k in itertools.product(range(16, 257, 8), range(1, 13)):
    graph = netspec.load("specs/resnet50.yaml", width=width, depth=0.25 * k)
    model = netspec.build(graph, device="meta")
    params = sum(p.numel() for p in model.parameters())
    tried += 1
    if params <= {BUDGET} and (best is None or params > best[0]):
        best = (params, width, 0.25 * k)
print(json.dumps({{"params": best[0], "vars": {{"width": best[1], "depth": best[2]}},
                  "tried": tried}}))
"""


def timed(cmd: list[str]) -> tuple[float, dict]:
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return time.perf_counter() - t, json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    ours, theirs, ratios = [], [], []
    for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
        a, fit = timed(FIT)
        b, built = timed([sys.executable, "-c", BY_BUILDING])
        assert fit["params"] == built["params"] and fit["tried"] == built["tried"], \
            (fit, built)
        ours.append(a)
        theirs.append(b)
        ratios.append(b / a)
    print(f"{platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"variants: {fit['tried']}; chosen {fit['vars']} with {fit['params']:,} params "
          f"(both searches agree)")
    print(f"netspec fit, whole process:        median {statistics.median(ours):.2f} s "
          f"(min {min(ours):.2f}, max {max(ours):.2f})")
    print(f"build on meta + numel, same grid:  median {statistics.median(theirs):.2f} s "
          f"(min {min(theirs):.2f}, max {max(theirs):.2f})")
    print(f"ratio, pair by pair: median {statistics.median(ratios):.1f}× faster "
          f"(min {min(ratios):.1f}, max {max(ratios):.1f})")


if __name__ == "__main__":
    main()
