"""``--precision int8``: the exported fp32 model, statically quantized by onnxruntime's
own quantizer, and judged on data before anything is written.

- Format QDQ (QuantizeLinear/DequantizeLinear pairs around each quantized operator),
  which every runtime reads and which onnxruntime fuses into int8 kernels. Weights int8,
  symmetric, per output channel (QuantizeLinear's ``axis``: opset 13); activations
  uint8, asymmetric, per tensor. U8S8 is the form onnxruntime's x86 kernels fuse
  throughout: with int8 activations (S8S8), onnxruntime 1.32 on this CPU left 36 of
  resnet50's layers (every residual Add and the convs reading one) in float, and the
  model ran 1.4× slower than U8S8 (bench/RESULTS.md).
- Calibration on ``--calibration-data``: ``digits``, an .npz or an image folder (read
  as ``netspec train`` reads them: the training split calibrates, the held-out split
  judges), or ``random`` (standard normal inputs: for speed checks only, the ranges
  mean nothing, so a warning says so and nothing is judged).
- Method ``auto`` tries MinMax, then Percentile and Entropy where MinMax loses accuracy
  or top-1 agreement (an outlier activation stretches MinMax's range and wastes the 256
  levels on it; the others clip it), and keeps the best; or the one asked for.
- Judged against the fp32 model in onnxruntime: top-1 agreement over every sample, and
  held-out accuracy of both where labels exist. A drop of more than ``max_drop`` points
  refuses the export (exit 1, nothing written).
- The report lists the layers that stayed in float and why (quantizer.py has no int8
  form for their operator, or it left them float between float neighbours).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from netspec.backends.onnx import opset as ops
from netspec.backends.onnx.runner import session_options
from netspec.errors import NetspecError, UsageError
from netspec.graph import Graph

RANDOM = "random"
METHODS = ("auto", "minmax", "entropy", "percentile")
#: samples of the calibration split the quantizer sees (more changes the ranges little
#: and costs time, Entropy's histograms above all)
CALIBRATION_SAMPLES = 512
#: MinMax is kept when it agrees with fp32 at least this often and loses no accuracy
GOOD_AGREEMENT = 0.995


class AccuracyDropError(NetspecError):
    """int8 loses more accuracy than --max-drop allows: nothing is written (exit 1)."""

    exit_code = 1


@dataclass
class CalibrationData:
    source: str
    #: the samples the quantizer calibrates on
    calib: np.ndarray
    #: samples the int8 and fp32 models are compared on, with labels where known
    eval_x: np.ndarray
    eval_y: np.ndarray | None
    #: the held-out part of eval_x (indices), where accuracy is measured
    heldout: np.ndarray | None


@dataclass
class QuantReport:
    source: str
    method: str
    #: every method tried, with its figures
    tried: list[dict[str, Any]]
    agreement: float
    samples: int
    fp32_accuracy: float | None
    int8_accuracy: float | None
    heldout: int
    #: layer → why it stayed float
    float_layers: dict[str, str] = field(default_factory=dict)
    fp32_bytes: int = 0
    int8_bytes: int = 0

    @property
    def drop(self) -> float | None:
        if self.fp32_accuracy is None or self.int8_accuracy is None:
            return None
        return 100 * (self.fp32_accuracy - self.int8_accuracy)

    def to_dict(self) -> dict[str, Any]:
        return {"calibration": self.source, "method": self.method, "tried": self.tried,
                "top1_agreement": self.agreement, "compared": self.samples,
                "fp32_accuracy": self.fp32_accuracy, "int8_accuracy": self.int8_accuracy,
                "accuracy_drop_points": self.drop, "heldout": self.heldout,
                "float_layers": self.float_layers, "fp32_bytes": self.fp32_bytes,
                "int8_bytes": self.int8_bytes}


# ----------------------------------------------------------------------- data
def calibration_data(graph: Graph, source: str | None, data: Any, seed: int = 0,
                     samples: int = CALIBRATION_SAMPLES) -> CalibrationData:
    """The calibration and evaluation samples of ``source``. ``data`` is ``source`` as
    ``netspec train`` loads and splits it (train/data.py's ``Data``, loaded by the
    command: the backend imports nothing of training), None for ``random``."""
    if not source:
        raise UsageError("--precision int8 needs --calibration-data (digits, a .npz of x "
                         "and y, an image folder, or random for speed checks only)")
    rng = np.random.default_rng(seed)
    if source == RANDOM:
        print("warning: --calibration-data random: ranges calibrated on noise mean nothing "
              "for real inputs; use it to measure speed, not accuracy", file=sys.stderr)
        x = rng.standard_normal((64, *graph.input_shape)).astype(np.float32)
        return CalibrationData(source, x[:32], x, None, None)
    train = data.train if hasattr(data.train, "x") else data.train.as_arrays()
    held = data.heldout
    pick = np.sort(rng.permutation(len(train.x))[:samples])
    if held is None:
        return CalibrationData(source, train.x[pick], train.x, train.y, None)
    x = np.concatenate([train.x, held.x])
    y = np.concatenate([train.y, held.y])
    return CalibrationData(source, train.x[pick], x, y,
                           np.arange(len(train.x), len(x)))


# ----------------------------------------------------------------------- quantizing
def check_int8_opset(graph: Graph, opset: int) -> None:
    """Per-channel weights need QuantizeLinear's ``axis`` (opset 13): name the first
    layer with weights, which has no int8 form below it."""
    if opset >= ops.PER_CHANNEL_QUANT_OPSET:
        return
    first = next((n for n in graph.layers if n.args is not None and n.args.linear_map),
                 None)
    if first is None:
        return
    raise ops.NoForm(first.name, first.pos, f"int8 {first.op} with per-channel weights "
                     "(QuantizeLinear's axis)", ops.PER_CHANNEL_QUANT_OPSET, opset)


class CalibrationReader(CalibrationDataReader):
    """The calibration samples, in batches of 16, as onnxruntime's quantizer reads them."""

    def __init__(self, x: np.ndarray, input_name: str) -> None:
        self.batches: Iterator[dict[str, np.ndarray]] = iter(
            [{input_name: x[i:i + 16]} for i in range(0, len(x), 16)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def _quantize(fp32: bytes, data: CalibrationData, method: str, workdir: Path) -> bytes:
    src, dst = workdir / "fp32.onnx", workdir / f"int8-{method}.onnx"
    # onnx's shape inference is the part of onnxruntime's recommended pre-processing the
    # quantizer needs (every tensor's type); its graph optimizations would rename and
    # fuse nodes, and the report maps nodes back to layers by name
    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(fp32))
    src.write_bytes(model.SerializeToString())
    name = model.graph.input[0].name
    reader = CalibrationReader(data.calib, name)
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process: done above, as far as it helps
    try:
        # the Entropy calibrator prints its histogram sizes: stdout is the command's
        # (JSON with --format json)
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_qdq(str(src), str(dst), reader, calibrate)
    finally:
        root.setLevel(level)
    return dst.read_bytes()


def quantize_qdq(src: str, dst: str, reader: CalibrationReader, calibrate: CalibrationMethod
                 ) -> None:
    """onnxruntime's static quantizer with netspec's settings (the bench runs the same
    on torch.onnx.export's file).

    Weights take 7 bits (``reduce_range``, -64…64): x86 CPUs without VNNI multiply uint8
    activations by int8 weights in pairs summed into 16 bits (VPMADDUBSW), and 255·127·2
    overflows it. There a full-range model computed something else (a conv's output off
    by a third of its range) than on the machine that judged it; 255·64·2 fits, so the
    file computes the same on every CPU."""
    quantize_static(
        str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=calibrate,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                       "CalibTensorRangeSymmetric": False,
                       "CalibMovingAverage": False, "CalibPercentile": 99.999})


def _outputs(model: bytes, x: np.ndarray) -> np.ndarray:
    """The first output of ``model`` on ``x`` (in batches of 256)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, session_options(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 256]})[0]
                           for i in range(0, len(x), 256)])


def _judge(fp32_top: np.ndarray, out: np.ndarray, data: CalibrationData
           ) -> tuple[float, float | None]:
    """(top-1 agreement with fp32 over every compared sample, held-out accuracy)."""
    top = out.argmax(axis=1)
    agreement = float(np.mean(top == fp32_top))
    if data.eval_y is None or data.heldout is None:
        return agreement, None
    held = data.heldout
    return agreement, float(np.mean(top[held] == data.eval_y[held]))


#: operators that only move or select int8 values (no arithmetic): onnxruntime runs
#: them on the int8 tensor once it drops their Dequantize/Quantize pair
_MOVERS = {"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Split",
           "Slice", "Gather", "Resize", "Identity", "Concat"}


def _layer_of(graph: Graph, node: onnx.NodeProto) -> str | None:
    """The netspec layer an optimized node came from: by its name, else by the tensors it
    writes or reads (nodes onnxruntime made by splitting one, like HardSwish, are nameless)."""
    for name in [node.name, *node.output, *node.input]:
        for cut in (name, name.partition("/")[0], name.rpartition("_")[0]):
            if cut in graph.nodes:
                return cut
    return None


def float_layers(graph: Graph, int8: bytes, workdir: Path) -> dict[str, str]:
    """Layers that compute in float in the int8 model as onnxruntime (CPU) runs it: after
    its graph optimizations, the operators that still read float tensors (a
    DequantizeLinear's output) instead of being fused into an int8 kernel."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(workdir / "optimized.onnx")
    ort.InferenceSession(int8, options, providers=["CPUExecutionProvider"])
    model = onnx.load(options.optimized_model_filepath)
    floats = {i.name for i in model.graph.input}
    out: dict[str, str] = {}
    for n in model.graph.node:  # topological order: producers first
        if n.op_type == "DequantizeLinear":
            floats.update(n.output)
            continue
        if n.op_type == "QuantizeLinear":
            continue
        read = [i for i in n.input if i in floats]
        if not read:
            continue
        floats.update(n.output)
        if n.op_type in _MOVERS or n.op_type == "Cast":
            continue
        layer = _layer_of(graph, n)
        if layer is not None:
            out.setdefault(layer, f"onnxruntime (CPU) runs its {n.op_type} in float: it "
                           f"has no int8 kernel that fuses DequantizeLinear → {n.op_type} → "
                           "QuantizeLinear here")
    return out


def quantize_int8(fp32: bytes, graph: Graph, data: CalibrationData, *, method: str = "auto",
                  max_drop: float = 1.0) -> tuple[bytes, QuantReport]:
    """The int8 model of ``fp32`` and its report; AccuracyDropError when held-out
    accuracy falls by more than ``max_drop`` points."""
    if method not in METHODS:
        raise UsageError(f"--calibration-method {method}: one of {', '.join(METHODS)}")
    fp32_out = _outputs(fp32, data.eval_x)
    fp32_top = fp32_out.argmax(axis=1)
    fp32_acc = None
    if data.eval_y is not None and data.heldout is not None:
        fp32_acc = float(np.mean(fp32_top[data.heldout] == data.eval_y[data.heldout]))
    order = (["minmax"] if data.source == RANDOM else ["minmax", "percentile", "entropy"]) \
        if method == "auto" else [method]
    tried: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], str, bytes, float, float | None] | None = None
    with tempfile.TemporaryDirectory(prefix="netspec-int8-") as tmp:
        for m in order:
            model = _quantize(fp32, data, m, Path(tmp))
            agreement, acc = _judge(fp32_top, _outputs(model, data.eval_x), data)
            tried.append({"method": m, "top1_agreement": agreement, "int8_accuracy": acc})
            score = (acc if acc is not None else 0.0, agreement)
            if best is None or score > best[0]:
                best = (score, m, model, agreement, acc)
            lost = fp32_acc is not None and acc is not None and acc < fp32_acc
            if agreement >= GOOD_AGREEMENT and not lost:
                break  # good enough: the slower methods could not do better by much
    assert best is not None
    _, chosen, model, agreement, acc = best
    report = QuantReport(data.source, chosen, tried, agreement, len(data.eval_x), fp32_acc,
                         acc, 0 if data.heldout is None else len(data.heldout),
                         fp32_bytes=len(fp32), int8_bytes=len(model))
    int8 = onnx.load_from_string(model)
    with tempfile.TemporaryDirectory(prefix="netspec-int8-") as tmp:
        report.float_layers = float_layers(graph, model, Path(tmp))
    drop = report.drop
    if drop is not None and drop > max_drop:
        raise AccuracyDropError(
            f"{graph.name}: int8 loses {drop:.2f} points of held-out accuracy "
            f"({100 * fp32_acc:.2f}% → {100 * acc:.2f}%, {data.source}, best of "  # type: ignore[operator]
            f"{', '.join(t['method'] for t in tried)}), over --max-drop {max_drop:g}; "
            "nothing written")
    return _with_metadata(int8, report), report


def _with_metadata(int8: onnx.ModelProto, report: QuantReport) -> bytes:
    """The fp32 model's metadata, now saying int8, with the calibration and figures."""
    props = {p.key: p.value for p in int8.metadata_props}
    props["netspec.precision"] = "int8"
    props["netspec.calibration"] = json.dumps(
        {"source": report.source, "method": report.method, "format": "QDQ",
         "weights": "int8 per channel", "activations": "uint8 per tensor"})
    props["netspec.agreement"] = json.dumps(
        {"top1_agreement": report.agreement, "compared": report.samples,
         "fp32_accuracy": report.fp32_accuracy, "int8_accuracy": report.int8_accuracy,
         "heldout": report.heldout})
    props["netspec.float_layers"] = json.dumps(report.float_layers)
    del int8.metadata_props[:]
    onnx.helper.set_model_props(int8, props)
    return int8.SerializeToString()
