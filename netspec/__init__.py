"""netspec: a declarative model-spec compiler.

Write a network once in YAML; netspec validates it, counts it exactly without building
it, builds PyTorch modules for training and exports ONNX for onnxruntime.

The core (this namespace's ``load``, ``loads`` and the Graph) never imports torch or
onnx; ``build``, ``param_groups`` and ``export_onnx`` import them when called.
"""

from __future__ import annotations

from typing import Any

from netspec.errors import NetspecError, Pos, SpecError, SpecErrors, UsageError
from netspec.graph import Counts, Graph, Node
from netspec.load import load, loads

__version__ = "0.1.0"

__all__ = [
    "Counts", "Graph", "NetspecError", "Node", "Pos", "SpecError", "SpecErrors", "UsageError",
    "__version__", "build", "export_onnx", "load", "loads", "param_groups",
]


def build(spec: Any, device: Any = None, **vars: Any) -> Any:
    """Build a ``torch.nn.Module`` from a spec path or a Graph (imports torch)."""
    from netspec.backends.torch import build as _build

    return _build(spec, device=device, **vars)


def param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups: norm γ/δ and biases without weight decay, the rest with it."""
    from netspec.backends.torch import param_groups as _param_groups

    return _param_groups(model, weight_decay)


def export_onnx(spec: Any, weights: Any = None, **options: Any) -> Any:
    """Export a spec path or Graph to ONNX: ``(ModelProto, ExportReport)``. See
    :func:`netspec.backends.onnx.export_onnx` for the options (imports onnx)."""
    from netspec.backends.onnx import export_onnx as _export_onnx

    return _export_onnx(spec, weights, **options)
