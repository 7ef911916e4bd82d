"""The ONNX backend: a Graph and numpy weights → an ONNX model for onnxruntime, with
BatchNorm folded and dropout gone, checked against the torch backend.

- opset.py: the default opset, the forms of each op from opset 11 on, and why;
- precision.py, dynamic.py, quantize.py: fp16, symbolic H and W, int8 (onnxruntime's
  quantizer, judged on data);
- fold.py: where each BatchNorm and dropout goes (and the arithmetic);
- builder.py, emitters.py: ONNX operators for each netspec op (``EMITTERS``);
- export.py: ``export_onnx``; verify.py: the only torch user, imported lazily;
- runner.py: ``OnnxRunner``, an onnxruntime session with input checks and latency.

Nothing here imports torch at import time.
"""

from __future__ import annotations

from netspec.backends.onnx.emitters import EMITTERS
from netspec.backends.onnx.export import ExportReport, export_onnx
from netspec.backends.onnx.fold import FoldEntry, Plan, plan_folds
from netspec.backends.onnx.opset import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from netspec.backends.onnx.runner import OnnxRunner
from netspec.backends.onnx.verify import VerificationError

__all__ = [
    "DEFAULT_OPSET", "EMITTERS", "MAX_OPSET", "MIN_OPSET", "ExportReport", "FoldEntry",
    "OnnxRunner", "Plan", "VerificationError", "export_onnx", "plan_folds",
]
