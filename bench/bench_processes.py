"""Issue 15's two whole-process figures, measured in one run, as ratios:

(1) `netspec params specs/resnet50.yaml` against building the same ResNet-50 in torch
    (hand-written, torchvision's layout) and summing numel. Goal: ≥ 25× faster.
(2) `netspec export specs/resnet50.yaml --weights W --no-verify` against a script that
    builds the module, loads W and calls torch.onnx.export (the default, dynamo
    exporter; needs `pip install onnxscript`). Goal: ≥ 10× faster.

Each pair runs interleaved (ours, theirs, ours, …) so machine noise hits both alike; the
ratio is of medians, and of minimums (the least disturbed run of each side), both shown.

    python bench/bench_processes.py [--repeats 7] [--export-repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_export import TORCH_SCRIPT
from bench_params import TORCH_COUNT

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "resnet50.yaml"


def wall(cmd: list[str]) -> float:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=ROOT, env=env)
    return time.perf_counter() - t


def pair(ours: list[str], theirs: list[str], repeats: int) -> tuple[list[float], list[float]]:
    a, b = [], []
    wall(ours), wall(theirs)  # one untimed round: the OS's file cache
    for _ in range(repeats):
        a.append(wall(ours))
        b.append(wall(theirs))
    return a, b


def row(what: str, a: list[float], b: list[float], goal: str) -> str:
    med, low = statistics.median, min
    return (f"| {what} | {med(a) * 1e3:,.0f} ms (min {low(a) * 1e3:,.0f}) | "
            f"{med(b) * 1e3:,.0f} ms (min {low(b) * 1e3:,.0f}) | "
            f"{med(b) / med(a):.1f}× ({low(b) / low(a):.1f}× of minimums) | {goal} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--export-repeats", type=int, default=3)
    args = ap.parse_args()

    py = sys.executable
    # an installed package's modules are compiled once, when pip installs it; a checkout
    # run with PYTHONDONTWRITEBYTECODE (as on these machines) would compile netspec's
    # edited modules from source in every process, while torch's came precompiled
    subprocess.run([py, "-m", "compileall", "-q", "netspec", "tests"], check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)
    count = pair([py, "-m", "netspec", "params", str(SPEC)], [py, "-c", TORCH_COUNT],
                 args.repeats)
    with tempfile.TemporaryDirectory() as d:
        weights = Path(d) / "resnet50.safetensors"
        subprocess.run([py, "-m", "netspec", "build", str(SPEC), "-o", str(weights)],
                       check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        export = pair([py, "-m", "netspec", "export", str(SPEC), "--weights", str(weights),
                       "--no-verify", "--force", "-o", str(Path(d) / "ours.onnx")],
                      [py, "-c", TORCH_SCRIPT, str(SPEC), str(weights),
                       str(Path(d) / "torch.onnx")], args.export_repeats)

    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, load average "
          f"{os.getloadavg()[0]:.1f}, python {platform.python_version()}, torch "
          f"{torch.__version__}; {args.repeats} / {args.export_repeats} interleaved "
          "repetitions\n")
    print("| whole process, resnet50 | netspec | torch | ratio | goal |")
    print("|---|---:|---:|---:|---|")
    print(row("count: `netspec params` vs build + sum of numel", *count, "≥ 25×"))
    print(row("export: `netspec export --no-verify --weights` vs build + load + "
              "torch.onnx.export (dynamo)", *export, "≥ 10×"))


if __name__ == "__main__":
    main()
