"""The deployment options of ``netspec export`` (issue 13): ``--precision fp16|int8``,
``--io-dtype``, ``--dynamic-size``, ``--calibration-data``, ``--calibration-method``,
``--max-drop``. commands/export.py adds them, checks them before any work, and calls
:func:`export_model`; the backend modules do the work (precision.py, dynamic.py,
quantize.py)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netspec.commands.options import number
from netspec.errors import UsageError
from netspec.graph import Graph

if TYPE_CHECKING:  # numpy costs `netspec params` 0.1 s at import; only annotations use it
    import numpy as np


def add_deploy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="fp16: half weights and compute (fp32 inputs/outputs unless "
                   "--io-dtype fp16); int8: onnxruntime's static QDQ quantization, "
                   "calibrated on --calibration-data and judged against fp32")
    p.add_argument("--io-dtype", choices=("fp32", "fp16"), default=None,
                   help="with --precision fp16: the inputs' and outputs' dtype (default fp32, "
                   "with a Cast at each edge)")
    p.add_argument("--dynamic-size", action="store_true",
                   help="symbolic height and width (verified at the spec's size and at twice "
                   "it); refused where a layer fixes the size (flatten → linear…)")
    p.add_argument("--calibration-data", metavar="digits|F.npz|DIR|random",
                   help="int8 calibration samples: digits, an .npz of x and y, an image "
                   "folder, or random (speed checks only: nothing is judged)")
    p.add_argument("--calibration-method", default="auto",
                   choices=("auto", "minmax", "entropy", "percentile"),
                   help="int8 ranges (default auto: MinMax, then Percentile and Entropy if "
                   "MinMax loses agreement or accuracy; the best is kept)")
    p.add_argument("--max-drop", default=1.0, metavar="POINTS",
                   type=number("--max-drop", least=0.0, below=100.0,
                               why=" (points of accuracy: a drop is at most 100, so a "
                               "limit of 100 or more would refuse nothing)"),
                   help="int8: refuse (exit 1, nothing written) when held-out accuracy "
                   "drops by more than this many points (default 1)")


@dataclass
class Checked:
    precision: str
    io_dtype: str | None
    calibration: Any  # quantize.CalibrationData, or None unless int8


def check_deploy_args(args: argparse.Namespace, graph: Graph, opset: int,
                      metadata: dict[str, str] | None = None) -> Checked:
    """Every refusal the options can cause, before any export work (exit 2).
    ``metadata``: the weights file's, whose record of training's held-out split (same
    data) makes int8's held-out samples the ones training never saw."""
    from netspec.backends.onnx.precision import check_precision

    check_precision(args.precision, args.io_dtype)
    if args.dynamic_size:
        from netspec.backends.onnx.dynamic import size_dependent

        size_dependent(graph)  # a SpecError at the layer that fixes the size
    calibration = None
    if args.precision == "int8":
        from netspec.backends.onnx.quantize import check_int8_opset

        check_int8_opset(graph, opset)
        fraction, seed = _training_split(metadata or {}, args.calibration_data, args.seed)
        calibration = load_calibration(graph, args.calibration_data, seed=seed,
                                       val_fraction=fraction)
    elif args.calibration_data:
        raise UsageError("--calibration-data: only with --precision int8")
    return Checked(args.precision, args.io_dtype, calibration)


def load_calibration(graph: Graph, source: str | None, seed: int = 0,
                     val_fraction: float = 0.2) -> Any:
    """quantize.py's ``CalibrationData`` of ``source``, checked against the spec (a
    UsageError, exit 2, when it does not fit): loaded and split here as ``netspec train``
    loads it, for ``val_fraction`` and ``seed``, since the backend imports no training."""
    from netspec.backends.onnx.quantize import RANDOM, calibration_data

    data = None
    if source and source != RANDOM:
        from netspec.train.data import load_data

        data = load_data(graph, source, val_fraction=val_fraction, seed=seed)
    return calibration_data(graph, source, data, seed)


def _training_split(metadata: dict[str, str], source: str | None, seed: int
                    ) -> tuple[float, int]:
    """(held-out fraction, seed) as training split ``source``, when the checkpoint says
    it trained on it (``netspec.data``, as ``netspec calibrate`` reads it); else 0.2 and
    ``seed``, training's defaults."""
    try:
        recorded = json.loads(metadata.get("netspec.data", "{}"))
    except ValueError:
        recorded = {}
    if not isinstance(recorded, dict) or recorded.get("data") != source \
            or recorded.get("val_data"):
        return 0.2, seed
    return float(recorded.get("val_fraction", 0.2)) or 0.2, int(recorded.get("seed", seed))


def export_model(args: argparse.Namespace, checked: Checked, graph: Graph,
                 weights: dict[str, np.ndarray] | None, metadata: dict[str, str] | None,
                 opset: int, tolerance: float | None) -> tuple[Any, Any, Any]:
    """(the file: an OnnxFile, or the int8 model's bytes; the ExportReport; the int8
    QuantReport or None)."""
    from netspec.backends.onnx.export import export_onnx_file

    fp16 = checked.precision == "fp16"
    file, report = export_onnx_file(
        graph, weights, opset=opset, seed=args.seed, verify=not args.no_verify,
        tolerance=tolerance, metadata=metadata, precision="fp16" if fp16 else "fp32",
        io_dtype=checked.io_dtype, dynamic=args.dynamic_size)
    if checked.precision != "int8":
        return file, report, None
    import onnx

    from netspec.backends.onnx.quantize import quantize_int8

    data, quant = quantize_int8(file.tobytes(), graph, checked.calibration,
                                method=args.calibration_method, max_drop=args.max_drop)
    report.precision = "int8"
    report.onnx_nodes = len(onnx.load_from_string(data).graph.node)
    return data, report, quant


def describe(report: Any, quant: Any, report_all: bool = False) -> list[str]:
    """The extra lines of the text report: precision, dynamic axes, int8 figures."""
    lines = []
    if report.precision != "fp32":
        lines.append(f"precision {report.precision} (inputs and outputs {report.io_dtype})")
    if any(len(axes) > 1 for axes in report.dynamic_axes.values()):
        lines.append("dynamic axes: " + json.dumps(report.dynamic_axes))
    if quant is not None:
        lines.append(f"int8 ({quant.method} calibration on {quant.source}): top-1 agreement "
                     f"with fp32 {100 * quant.agreement:.2f}% of {quant.samples:,} samples; "
                     f"{quant.fp32_bytes / 1e6:.2f} MB → {quant.int8_bytes / 1e6:.2f} MB")
        if quant.drop is not None:
            lines.append(f"held-out accuracy ({quant.heldout:,} samples): fp32 "
                         f"{100 * quant.fp32_accuracy:.2f}%, int8 "
                         f"{100 * quant.int8_accuracy:.2f}% (drop {quant.drop:.2f} points)")
        else:
            lines.append("no labels: accuracy not judged")
        if quant.float_layers:
            lines.append(f"{len(quant.float_layers)} layers stay float in onnxruntime "
                         "(--report lists them and why)" if not report_all else
                         "layers that stay float in onnxruntime:")
        if report_all:
            for layer, why in quant.float_layers.items():
                lines.append(f"  {layer}: {why}")
    return lines
