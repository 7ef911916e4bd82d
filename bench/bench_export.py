"""ONNX export measured against torch's own exporter, as ratios in one run.

(a) export step, in one process: netspec ``export_onnx_file(verify=False)`` + writing the
    file, vs ``torch.onnx.export`` of the same built module with the same weights (the
    default exporter, torch.export-based, needs onnxscript: ``pip install onnxscript``;
    the legacy TorchScript exporter is timed too, for reference). Goal: ≥ 10× faster.
(b) whole process: ``netspec export --no-verify --weights W`` vs a script that builds the
    module, loads W and calls torch.onnx.export. Goal: ≥ 10× faster.
(c) onnxruntime latency of our file vs the torch exporter's file, same session options,
    batch 1. Goal: ≤ 1.0×.
(d) onnxruntime (our file) vs torch eager, CPU, batch 1, same thread count.

Repetitions are interleaved (ours, theirs, ours, …) so machine noise hits both alike,
latency calls alternate one by one between the files, and every figure is a median.
Also checks that both files compute the same outputs.

    python bench/bench_export.py [--models resnet18,resnet50] [--repeats 3] [--runs 30]
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
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

TORCH_SCRIPT = """
import sys, warnings
warnings.filterwarnings("ignore")
import torch
import netspec
from netspec.backends.torch import load_weights_into
spec, weights, out = sys.argv[1:4]
model = netspec.build(spec).eval()
load_weights_into(model, weights)
x = torch.zeros(1, *model.netspec_graph.input_shape)
torch.onnx.export(model, (x,), out, input_names=["input"], output_names=["output"],
                  dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                  verbose=False)
"""


def quiet_torch_export(model: Any, x: Any, out: Path, dynamo: bool) -> None:
    import contextlib
    import io

    import torch

    kw: dict[str, Any] = (
        {"dynamic_shapes": ({0: torch.export.Dim("batch")},), "verbose": False} if dynamo
        else {"dynamic_axes": {"input": {0: "batch"}, "output": {0: "batch"}}})
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(out), input_names=["input"],
                          output_names=["output"], dynamo=dynamo, **kw)


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()  # the same options for every file
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def bench_model(name: str, repeats: int, runs: int, tmp: Path) -> list[tuple[str, ...]]:
    import torch

    import netspec
    from netspec.backends.onnx.export import export_onnx_file
    from netspec.backends.torch import state_dict_numpy
    from netspec.weights import save_weights, spec_metadata

    spec = ROOT / "specs" / f"{name}.yaml"
    graph = netspec.load(spec)
    torch.manual_seed(0)
    model = netspec.build(graph).eval()
    weights = state_dict_numpy(model)
    wfile = tmp / f"{name}.safetensors"
    save_weights(wfile, weights, spec_metadata(graph))
    x = torch.zeros(1, *graph.input_shape)
    ours_file, dyn_file, legacy_file = (tmp / f"{name}.{k}.onnx" for k in
                                        ("netspec", "dynamo", "legacy"))

    def ours() -> None:
        export_onnx_file(graph, weights, verify=False)[0].write(ours_file)

    # (a) in process; one untimed round first (imports, torch.export's caches)
    ours()
    quiet_torch_export(model, x, dyn_file, True)
    quiet_torch_export(model, x, legacy_file, False)
    a_ours, a_dyn, a_leg = [], [], []
    for _ in range(repeats):
        a_ours.append(timed(ours))
        a_dyn.append(timed(lambda: quiet_torch_export(model, x, dyn_file, True)))
        a_leg.append(timed(lambda: quiet_torch_export(model, x, legacy_file, False)))

    # (b) whole processes
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ours_cmd = [sys.executable, "-m", "netspec", "export", str(spec), "--weights", str(wfile),
                "--no-verify", "--force", "-o", str(tmp / "cli.onnx")]
    torch_cmd = [sys.executable, "-c", TORCH_SCRIPT, str(spec), str(wfile),
                 str(tmp / "script.onnx")]
    b_ours, b_torch = [], []
    for _ in range(repeats):
        b_ours.append(timed(lambda: subprocess.run(ours_cmd, check=True, env=env,
                                                   stdout=subprocess.DEVNULL)))
        b_torch.append(timed(lambda: subprocess.run(torch_cmd, check=True, env=env,
                                                    stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL)))

    # (c) onnxruntime latency, (d) vs torch eager; same threads everywhere
    threads = torch.get_num_threads()
    s_ours, s_dyn = session(ours_file, threads), session(dyn_file, threads)
    xn = np.random.default_rng(0).standard_normal((1, *graph.input_shape)).astype(np.float32)
    y_ours = s_ours.run(None, {"input": xn})[0]
    y_dyn = s_dyn.run(None, {"input": xn})[0]
    with torch.inference_mode():
        y_torch = model(torch.from_numpy(xn)).numpy()
    diff = max(float(np.abs(y_ours - y_dyn).max()), float(np.abs(y_ours - y_torch).max()))
    calls = {"ours": lambda: s_ours.run(None, {"input": xn}),
             "dyn": lambda: s_dyn.run(None, {"input": xn}),
             "torch": lambda: model(torch.from_numpy(xn))}
    times: dict[str, list[float]] = {k: [] for k in calls}
    with torch.inference_mode():
        for _ in range(3):  # warm-up
            for call in calls.values():
                call()
        for _ in range(runs):  # one call each in turn: drift and noise hit all three
            for k, call in calls.items():
                times[k].append(timed(call))
    c_ours, c_dyn, d_torch = times["ours"], times["dyn"], times["torch"]

    m = statistics.median
    ms = lambda v: f"{m(v) * 1e3:,.0f} ms"  # noqa: E731
    ms1 = lambda v: f"{m(v) * 1e3:,.1f} ms"  # noqa: E731
    return [
        (name, "(a) export step, in process (vs torch.onnx.export, dynamo)", ms(a_ours),
         ms(a_dyn), f"{m(a_dyn) / m(a_ours):.1f}× faster", "≥ 10×"),
        (name, "(a′) same, vs legacy TorchScript exporter (dynamo=False)", ms(a_ours),
         ms(a_leg), f"{m(a_leg) / m(a_ours):.1f}× faster", "–"),
        (name, "(b) whole process: `netspec export --no-verify --weights` vs build + "
         "torch.onnx.export script", ms(b_ours), ms(b_torch),
         f"{m(b_torch) / m(b_ours):.1f}× faster", "≥ 10×"),
        (name, f"(c) onnxruntime latency, batch 1, {threads} threads: our file vs torch's "
         "file", ms1(c_ours), ms1(c_dyn), f"{m(c_ours) / m(c_dyn):.2f}×", "≤ 1.0×"),
        (name, "(d) onnxruntime (our file) vs torch eager, CPU, batch 1", ms1(c_ours),
         ms1(d_torch), f"{m(d_torch) / m(c_ours):.2f}× faster", "–"),
        (name, "max |Δ| of outputs: ours vs torch's file and vs torch eager", f"{diff:.1e}",
         "", "", ""),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18,resnet50")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=30, help="latency runs per file")
    args = ap.parse_args()
    try:
        import onnxscript  # noqa: F401  (torch.onnx.export's default exporter needs it)
    except ImportError:
        sys.exit("torch.onnx.export (dynamo) needs onnxscript: pip install onnxscript")

    import onnxruntime
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.models.split(","):
            rows += bench_model(name.strip(), args.repeats, args.runs, Path(d))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, python "
          f"{platform.python_version()}, torch {torch.__version__}, onnxruntime "
          f"{onnxruntime.__version__}; medians of {args.repeats} interleaved repetitions "
          f"({args.runs} latency runs per file)\n")
    print("| model | measurement | netspec | torch | ratio | goal |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
