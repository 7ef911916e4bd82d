"""Deployment exports (issue 13), side by side in one run:

(a) onnxruntime CPU latency at batch 1, fp32 vs int8, for resnet18, resnet50 and
    mobilenet_v2, and the files' sizes: netspec's files (``export --precision int8``)
    against torch.onnx.export's file quantized by onnxruntime's quantizer with the same
    settings (QDQ, per-channel int8 weights, MinMax on the same calibration inputs).
    Weights are torch's initialisation and calibration inputs are random: latency and
    size do not depend on them (accuracy does, and is measured in (b)).
(b) the digits CNN (trained here, or ``--weights``): held-out accuracy at fp32, fp16 and
    int8 and top-1 agreement with fp32 over all 1,797 images, for netspec's files and for
    torch.onnx.export's fp32 file quantized by onnxruntime calibrated on the same images.

Latency calls alternate between the files one by one, so machine noise hits all alike;
every figure is a median.

    python bench/bench_deploy.py [--models resnet18,resnet50,mobilenet_v2] [--runs 30]
"""

from __future__ import annotations

import argparse
import contextlib
import io
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


def session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()  # the same options for every file
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def torch_export(model: Any, x: Any, out: Path) -> None:
    """torch's TorchScript exporter (its default, torch.export-based one needs
    onnxscript, which is not installed here), opset 17 like netspec's default."""
    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(out), input_names=["input"],
                          output_names=["output"], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})


def ort_quantize(src: Path, dst: Path, calib: np.ndarray) -> None:
    """onnxruntime's quantizer with the settings netspec uses, on a file netspec did
    not write."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod

    from netspec.backends.onnx.quantize import CalibrationReader, quantize_qdq

    inferred = src.with_suffix(".inferred.onnx")
    onnx.save(onnx.shape_inference.infer_shapes(onnx.load(src)), inferred)
    quantize_qdq(str(inferred), str(dst), CalibrationReader(calib, "input"),
                     CalibrationMethod.MinMax)


def s8s8(src: Path, dst: Path, calib: np.ndarray) -> None:
    """The same quantization with int8 activations (onnxruntime's default), to show
    why netspec uses uint8 ones."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from netspec.backends.onnx.quantize import CalibrationReader

    inferred = src.with_suffix(".inferred.onnx")
    onnx.save(onnx.shape_inference.infer_shapes(onnx.load(src)), inferred)
    quantize_static(str(inferred), str(dst), CalibrationReader(calib, "input"),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})


def latency(paths: dict[str, Path], x: np.ndarray, runs: int, threads: int
            ) -> dict[str, float]:
    sessions = {k: session(p, threads) for k, p in paths.items()}
    for s in sessions.values():  # warm-up
        for _ in range(3):
            s.run(None, {"input": x})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, {"input": x})
            times[k].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_latency(name: str, runs: int, threads: int, tmp: Path) -> list[str]:
    import torch

    import netspec
    from netspec.backends.onnx.export import export_onnx_file
    from netspec.backends.onnx.quantize import quantize_int8
    from netspec.backends.torch import state_dict_numpy
    from netspec.commands.export_deploy import load_calibration

    graph = netspec.load(ROOT / "specs" / f"{name}.yaml")
    torch.manual_seed(0)
    model = netspec.build(graph).eval()
    weights = state_dict_numpy(model)
    with contextlib.redirect_stderr(io.StringIO()):  # the random-calibration warning
        data = load_calibration(graph, "random")
    files = {k: tmp / f"{name}.{k}.onnx" for k in ("ours32", "ours8", "torch32", "torch8",
                                                     "s8s8")}
    fp32 = export_onnx_file(graph, weights, verify=False)[0].tobytes()
    files["ours32"].write_bytes(fp32)
    int8, _ = quantize_int8(fp32, graph, data, method="minmax")
    files["ours8"].write_bytes(int8)
    torch_export(model, torch.zeros(1, *graph.input_shape), files["torch32"])
    ort_quantize(files["torch32"], files["torch8"], data.calib)
    s8s8(files["ours32"], files["s8s8"], data.calib)
    x = np.random.default_rng(0).standard_normal((1, *graph.input_shape)).astype(np.float32)
    ms = latency(files, x, runs, threads)
    mb = {k: p.stat().st_size / 1e6 for k, p in files.items()}
    return [
        f"| {name} | {ms['ours32']:.1f} ms | {ms['ours8']:.1f} ms | "
        f"{ms['ours32'] / ms['ours8']:.2f}× | {mb['ours32']:.1f} → {mb['ours8']:.1f} MB "
        f"({mb['ours32'] / mb['ours8']:.1f}×) | {ms['torch32']:.1f} ms | {ms['torch8']:.1f} ms | "
        f"{ms['torch32'] / ms['torch8']:.2f}× | {mb['torch32']:.1f} → {mb['torch8']:.1f} MB | "
        f"{ms['s8s8']:.1f} ms |"]


def bench_digits(weights: Path | None, tmp: Path) -> list[str]:
    import torch

    import netspec
    from netspec.backends.onnx.export import export_onnx_file
    from netspec.backends.onnx.quantize import quantize_int8
    from netspec.backends.torch import load_weights_into
    from netspec.commands.export_deploy import load_calibration
    from netspec.train.data import load_data
    from netspec.weights import load_weights

    spec = ROOT / "specs" / "digits_cnn.yaml"
    if weights is None:
        weights = tmp / "digits.safetensors"
        subprocess.run([sys.executable, "-m", "netspec", "train", str(spec), "--data",
                        "digits", "--epochs", "5", "-o", str(weights)], check=True,
                       stdout=subprocess.DEVNULL)
    graph = netspec.load(spec)
    w, _ = load_weights(weights)
    files = {k: tmp / f"digits.{k}.onnx" for k in ("fp32", "fp16", "int8", "torch32",
                                                   "torch8")}
    export_onnx_file(graph, w)[0].write(files["fp32"])
    export_onnx_file(graph, w, precision="fp16")[0].write(files["fp16"])
    calib = load_calibration(graph, "digits")
    files["int8"].write_bytes(quantize_int8(files["fp32"].read_bytes(), graph, calib)[0])
    model = netspec.build(graph).eval()
    load_weights_into(model, weights)
    torch_export(model, torch.zeros(1, *graph.input_shape), files["torch32"])
    ort_quantize(files["torch32"], files["torch8"], calib.calib)

    data = load_data(graph, "digits", val_fraction=0.2, seed=0)
    x_all = np.concatenate([data.train.x, data.heldout.x])
    held = data.heldout

    def top1(path: Path, x: np.ndarray) -> np.ndarray:
        return session(path, 2).run(None, {"input": x})[0].argmax(axis=1)

    ref = top1(files["fp32"], x_all)
    rows = []
    for k, label in [("fp32", "netspec fp32"), ("fp16", "netspec fp16"),
                     ("int8", "netspec int8 (auto calibration)"),
                     ("torch32", "torch.onnx.export fp32"),
                     ("torch8", "torch.onnx.export + ORT quantizer int8 (MinMax)")]:
        acc = float(np.mean(top1(files[k], held.x) == held.y))
        agree = float(np.mean(top1(files[k], x_all) == ref))
        rows.append(f"| {label} | {100 * acc:.2f} % | {100 * agree:.2f} % | "
                    f"{files[k].stat().st_size / 1e3:.0f} kB |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet18,resnet50,mobilenet_v2")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", type=Path, help="trained digits CNN (default: train one)")
    args = ap.parse_args()
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice, per tensor
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # torch's files' unused initializers

    import onnx
    import onnxruntime as ort
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    print(f"{platform.machine()} {cpu}, {os.cpu_count()} cores, VNNI: "
          f"{'avx512_vnni' in flags}, load {os.getloadavg()[0]:.1f}; torch {torch.__version__}, "
          f"onnx {onnx.__version__}, onnxruntime {ort.__version__}; "
          f"GPU providers: {[p for p in ort.get_available_providers() if 'CUDA' in p] or 'none'}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"\n(a) onnxruntime CPU, batch 1, {args.threads} threads, median of {args.runs}")
        print("| net | netspec fp32 | netspec int8 | speed-up | file | torch.onnx fp32 | "
              "torch.onnx + ORT int8 | speed-up | file | netspec int8, S8S8 |")
        print("|---|---:|---:|---:|---|---:|---:|---:|---|---:|")
        for name in args.models.split(","):
            for row in bench_latency(name, args.runs, args.threads, tmp):
                print(row, flush=True)
        print("\n(b) digits CNN: held-out accuracy (359 images), top-1 agreement with "
              "netspec fp32 (1,797 images)")
        print("| file | held-out accuracy | agreement | size |")
        print("|---|---:|---:|---:|")
        for row in bench_digits(args.weights, tmp):
            print(row, flush=True)


if __name__ == "__main__":
    main()
