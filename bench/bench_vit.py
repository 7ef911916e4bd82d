"""netspec's ViT-B/16 (specs/vit_b_16.yaml) against torchvision's own ``vit_b_16``,
holding the same weights (copied by position: the spec registers its tensors in
torchvision's order), in one run:

(a) torch, CPU, fp32: eval forward (no_grad) and one SGD training step (forward,
    cross-entropy, backward, step). torchvision's attention is ``nn.MultiheadAttention``:
    in eval under no_grad it takes the fused fast path (``_native_multi_head_attention``),
    while training ``F.multi_head_attention_forward``; netspec's is its own qkv and proj
    linears around ``F.scaled_dot_product_attention`` (backends/torch/tokens.py).
(b) onnxruntime, CPU: netspec's export (``export_onnx_file``) against torch.onnx.export of
    torchvision's model (the TorchScript exporter, ``dynamo=False``: the default one
    needs onnxscript), opset 17 both, the same session options.

Repetitions are interleaved and alternate which model goes first, so machine noise hits
both alike; the tables give medians, and the median of the per-repetition ratios
netspec / torchvision (goal ≤ 1.02) with their quartiles (the noise). Both models'
outputs are checked to agree first.

torchvision is not a netspec dependency: run it where torchvision is installed, e.g.

    PYTHONPATH=. python bench/bench_vit.py [--batch 2] [--repeats 7] [--warmup 2]
        [--runs 30] [--threads N] [--clock wall|cpu] [--skip-onnx] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_torch_forward import CLOCKS, compare  # noqa: E402

import netspec  # noqa: E402

Step = Callable[[], None]


def same_weights(dst: nn.Module, src: nn.Module) -> None:
    """Copy by position: the spec registers its tensors in torchvision's order."""
    with torch.no_grad():
        for a, b in zip(dst.state_dict().values(), src.state_dict().values(), strict=True):
            assert a.shape == b.shape, (a.shape, b.shape)
            a.copy_(b)


def steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[Step, Step]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    def train() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return forward, train


def quartiles(r: list[float]) -> tuple[float, float]:
    q1, _, q3 = statistics.quantiles(r, n=4) if len(r) > 1 else (r[0], r[0], r[0])
    return q1, q3


def profile(model: nn.Module, x: torch.Tensor, train: bool, rows: int = 12) -> str:
    """torch.profiler's table of one step, by self CPU time: where each model spends."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    model.train(train)
    with prof(activities=[ProfilerActivity.CPU]) as p:
        if train:
            model(x).sum().backward()
        else:
            with torch.no_grad():
                model(x)
    return str(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()  # the same options for both files
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_latency(ours: nn.Module, theirs: nn.Module, batch: int, runs: int, threads: int,
                 clock: Callable[[], float], tmp: Path
                 ) -> tuple[float, float, list[float], float]:
    """Medians (s) of our file and torch's, the per-call ratios, and the largest
    difference between their outputs."""
    from netspec.backends.onnx.export import export_onnx_file
    from netspec.backends.torch import state_dict_numpy

    graph = ours.netspec_graph
    ours_file, torch_file = tmp / "netspec.onnx", tmp / "torchvision.onnx"
    export_onnx_file(graph, state_dict_numpy(ours), verify=False)[0].write(ours_file)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(theirs.eval(), (torch.zeros(1, *graph.input_shape),),
                          str(torch_file), input_names=["input"], output_names=["output"],
                          opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    a, b = session(ours_file, threads), session(torch_file, threads)
    x = np.random.default_rng(0).standard_normal((batch, *graph.input_shape)).astype(
        np.float32)
    ya, yb = a.run(None, {"input": x})[0], b.run(None, {"input": x})[0]
    for _ in range(3):  # warm-up
        a.run(None, {"input": x})
        b.run(None, {"input": x})
    ta: list[float] = []
    tb: list[float] = []
    for i in range(runs):  # one call each in turn, alternating who goes first
        pair = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
        for s, times in pair:
            t = clock()
            s.run(None, {"input": x})
            times.append(clock() - t)
    ratios = [p / q for p, q in zip(ta, tb, strict=True)]
    return statistics.median(ta), statistics.median(tb), ratios, float(np.abs(ya - yb).max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30, help="onnxruntime calls per file")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for torch and onnxruntime (0: torch's default)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall time, or this process's CPU time (steadier on a busy CPU)")
    ap.add_argument("--skip-onnx", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="print torch.profiler's tables of one step of each model")
    args = ap.parse_args()
    try:
        from torchvision.models import vit_b_16
    except ImportError:
        sys.exit("bench: needs torchvision (not a netspec dependency)")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    torch.manual_seed(0)
    ours = netspec.build(ROOT / "specs" / "vit_b_16.yaml")
    theirs = vit_b_16()
    # torchvision zeroes its head; random weights there make the outputs comparable
    nn.init.normal_(theirs.heads.head.weight, std=0.02)
    same_weights(ours, theirs)
    x = torch.randn(args.batch, 3, 224, 224)
    y = torch.randint(0, 1000, (args.batch,))
    with torch.no_grad():
        diff = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()

    rows = []
    o_fwd, o_train = steps(ours, x, y)
    t_fwd, t_train = steps(theirs, x, y)
    for what, o, t in (("eval forward (no_grad)", o_fwd, t_fwd),
                       ("SGD training step", o_train, t_train)):
        a, b, r = compare(o, t, torch.device("cpu"), args.repeats, args.warmup,
                          CLOCKS[args.clock])
        rows.append((what, a, b, r))

    cpu = platform.processor() or platform.machine()
    print(f"ViT-B/16, batch {args.batch} at 224×224, CPU ({cpu}, {threads} threads), "
          f"torch {torch.__version__}, "
          f"{args.clock} clock, {args.repeats} interleaved repetitions after "
          f"{args.warmup} warm-up; eval outputs differ by at most {diff:.2e}\n")
    print("| case | netspec (ms) | torchvision (ms) | netspec / torchvision | "
          "ratio quartiles |")
    print("|---|---:|---:|---:|---:|")
    for label, a, b, r in rows:
        q1, q3 = quartiles(r)
        print(f"| {label} | {a * 1e3:.1f} | {b * 1e3:.1f} | {statistics.median(r):.3f} | "
              f"{q1:.3f}–{q3:.3f} |")

    if not args.skip_onnx:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as d:
            a, b, r, odiff = onnx_latency(ours, theirs, args.batch, args.runs, threads,
                                          CLOCKS[args.clock], Path(d))
        q1, q3 = quartiles(r)
        print(f"\nonnxruntime {ort.__version__}, CPU, {threads} intra-op threads, "
              f"ORT_ENABLE_ALL, batch {args.batch}, {args.clock} clock, {args.runs} alternating "
              "calls per file; "
              f"outputs differ by at most {odiff:.2e}\n")
        print("| file | netspec (ms) | torch.onnx.export (ms) | netspec / torch | "
              "ratio quartiles |")
        print("|---|---:|---:|---:|---:|")
        print(f"| vit_b_16, opset 17 | {a * 1e3:.1f} | {b * 1e3:.1f} | "
              f"{statistics.median(r):.3f} | {q1:.3f}–{q3:.3f} |")

    if args.profile:
        for label, train in (("eval forward", False), ("forward + backward", True)):
            for name, model in (("netspec", ours), ("torchvision", theirs)):
                print(f"\n{name}, {label}:\n{profile(model, x, train)}")


if __name__ == "__main__":
    main()
