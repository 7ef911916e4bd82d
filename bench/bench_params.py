"""Counting without building, measured as a ratio in one run.

(a) `netspec params specs/resnet50.yaml` as a whole process, against a whole process
    that builds the same ResNet-50 in torch (hand-written, torchvision's layout) and sums
    numel — what you would do without netspec.
(b) validate + count of a generated 2,000-layer spec, in process and as a whole
    `netspec validate` process.

    python bench/bench_params.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TORCH_COUNT = f"""
import sys; sys.path.insert(0, {str(ROOT / 'tests')!r})
from reference_nets import resnet50
m = resnet50()
print(sum(p.numel() for p in m.parameters()))
"""


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t


def long_spec(n_layers: int) -> str:
    """A plain chain of n layers: (conv, norm, relu) repeated, written out one by one."""
    lines = ["netspec: 1", "name: long", "input: [8, 16, 16]", "vars: {c: 8}", "layers:"]
    kinds = ["conv: {out: $c, k: 3, bias: false}", "norm: batch", "relu"]
    lines += [f"  - {kinds[i % 3]}" for i in range(n_layers - 3)]
    lines += ["  - global_avgpool", "  - flatten", "  - linear: {out: 10}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    netspec_cmd = [sys.executable, "-m", "netspec", "params", "specs/resnet50.yaml"]
    torch_cmd = [sys.executable, "-c", TORCH_COUNT]
    ours, theirs = [], []
    for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
        ours.append(wall(netspec_cmd))
        theirs.append(wall(torch_cmd))
    a, b = statistics.median(ours), statistics.median(theirs)

    import netspec

    text = long_spec(2000)
    in_proc = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        g = netspec.loads(text, "long.yaml")
        g.params()
        in_proc.append(time.perf_counter() - t)
    assert len(g.layers) == 2000
    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "long.yaml"
        spec.write_text(text)
        whole = [wall([sys.executable, "-m", "netspec", "validate", str(spec)])
                 for _ in range(args.repeats)]

    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"python {platform.python_version()}; median of {args.repeats}, interleaved\n")
    print("| measurement | netspec | alternative | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| resnet50 count, whole process (netspec params vs torch build + numel) "
          f"| {a * 1000:.0f} ms | {b * 1000:.0f} ms | {b / a:.1f}× faster |")
    print(f"| 2,000-layer spec: load + validate + resolve + count, in process "
          f"| {statistics.median(in_proc) * 1000:.0f} ms | – | – |")
    print(f"| 2,000-layer spec: `netspec validate`, whole process "
          f"| {statistics.median(whole) * 1000:.0f} ms | – | – |")


if __name__ == "__main__":
    main()
