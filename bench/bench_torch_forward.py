"""Does the built model cost anything at run time? netspec's ResNet-50 (specs/resnet50.yaml,
a torch.fx GraphModule) against a hand-written torch ResNet-50 of the same layout
(tests/reference_nets.py, torchvision's code), holding the same weights.

Cases: eval forward (no_grad) and one SGD training step (forward, cross-entropy,
backward, step), fp32; with ``--device cuda`` also bf16 autocast + channels_last.
Repetitions are interleaved (and alternate which model goes first) so machine noise
hits both alike; the table reports medians, the median of the per-repetition ratios
netspec / hand-written (goal ≤ 1.02) and their quartiles (the noise).

    python bench/bench_torch_forward.py [--device cpu|cuda] [--batch 8] [--size 224]
                                        [--repeats 7] [--threads N] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from reference_nets import resnet50  # noqa: E402

import netspec  # noqa: E402

Step = Callable[[], None]


def same_weights(dst: nn.Module, src: nn.Module) -> None:
    """Copy by position: both register their tensors in torchvision's order."""
    with torch.no_grad():
        for a, b in zip(dst.state_dict().values(), src.state_dict().values(), strict=True):
            assert a.shape == b.shape
            a.copy_(b)


def steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
          autocast: Callable[[], AbstractContextManager[object]]) -> tuple[Step, Step]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def forward() -> None:
        model.eval()
        with torch.no_grad(), autocast():
            model(x)

    def train() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return forward, train


#: "wall", or "cpu": this process's CPU time, which on a shared machine leaves out the
#: time other processes hold the cores (CPU runs only; CUDA work is not CPU time)
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(step: Step, device: torch.device, clock: Callable[[], float]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = clock()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return clock() - t


def compare(ours: Step, theirs: Step, device: torch.device, repeats: int, warmup: int,
            clock: Callable[[], float]) -> tuple[float, float, list[float]]:
    for _ in range(warmup):
        ours()
        theirs()
    a: list[float] = []
    b: list[float] = []
    for i in range(repeats):
        if i % 2:  # alternate who goes first: caches and clocks favour neither
            b.append(timed(theirs, device, clock))
            a.append(timed(ours, device, clock))
        else:
            a.append(timed(ours, device, clock))
            b.append(timed(theirs, device, clock))
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return statistics.median(a), statistics.median(b), ratios


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for torch (0: torch's default)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall time, or this process's CPU time (steadier on a busy CPU)")
    args = ap.parse_args()
    if args.clock == "cpu" and args.device == "cuda":
        sys.exit("bench: --clock cpu measures CPU runs only")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench: --device cuda, but CUDA is not available")

    torch.manual_seed(0)
    ours = netspec.build(ROOT / "specs" / "resnet50.yaml").to(device)
    theirs = resnet50().to(device)
    same_weights(ours, theirs)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 1000, (args.batch,), device=device)

    def fp32() -> AbstractContextManager[object]:
        return nullcontext()

    def bf16() -> AbstractContextManager[object]:
        return torch.autocast(device.type, dtype=torch.bfloat16)

    cases: list[tuple[str, Callable[[], AbstractContextManager[object]], bool]] = [
        ("fp32", fp32, False)]
    if device.type == "cuda":
        cases.append(("bf16 autocast, channels_last", bf16, True))

    rows = []
    for label, autocast, channels_last in cases:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        ours.to(memory_format=fmt)
        theirs.to(memory_format=fmt)
        xx = x.contiguous(memory_format=fmt)
        o_fwd, o_train = steps(ours, xx, y, autocast)
        t_fwd, t_train = steps(theirs, xx, y, autocast)
        for what, o, t in (("eval forward", o_fwd, t_fwd), ("SGD train step", o_train, t_train)):
            a, b, r = compare(o, t, device, args.repeats, args.warmup, CLOCKS[args.clock])
            rows.append((f"{what}, {label}", a, b, r))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"ResNet-50, batch {args.batch} at {args.size}×{args.size}, {device.type} "
          f"({name or platform.machine()}, {torch.get_num_threads()} threads), "
          f"torch {torch.__version__}, {args.clock} clock, {args.repeats} interleaved "
          f"repetitions after {args.warmup} warm-up\n")
    print("| case | netspec (ms) | hand-written (ms) | netspec / hand-written | "
          "ratio quartiles |")
    print("|---|---:|---:|---:|---:|")
    for label, a, b, r in rows:
        q1, _, q3 = statistics.quantiles(r, n=4) if len(r) > 1 else (r[0], r[0], r[0])
        print(f"| {label} | {a * 1e3:.1f} | {b * 1e3:.1f} | {statistics.median(r):.3f} | "
              f"{q1:.3f}–{q3:.3f} |")


if __name__ == "__main__":
    main()
