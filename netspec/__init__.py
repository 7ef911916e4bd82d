"""netspec: a declarative model-spec compiler.

Write a network once in YAML; netspec validates it, counts it exactly without building
it, builds PyTorch modules for training and exports ONNX for onnxruntime.

The core (this namespace's ``load``, ``loads`` and the Graph) never imports torch or
onnx; ``build``, ``param_groups`` and ``export_onnx`` import them when called.
"""

# no `from __future__ import annotations`, and Any under a private name: both would
# otherwise be public names of the package (netspec.annotations, netspec.Any)
from typing import Any as _Any

from netspec._version import __version__
from netspec.count import Counts
from netspec.errors import NetspecError, Pos, SpecError, SpecErrors, UsageError
from netspec.graph import Graph, Node
from netspec.load import load, loads

__all__ = [
    "Counts", "Graph", "NetspecError", "Node", "Pos", "SpecError", "SpecErrors", "UsageError",
    "__version__", "build", "export_onnx", "load", "load_weights", "loads", "param_groups",
]


def build(spec: _Any, device: _Any = None, **vars: _Any) -> _Any:
    """Build a ``torch.nn.Module`` from a spec path or a Graph (imports torch)."""
    from netspec.backends.torch import build as _build

    return _build(spec, device=device, **vars)


def param_groups(model: _Any, weight_decay: float) -> list[dict[str, _Any]]:
    """Optimizer groups: norm γ/δ and biases without weight decay, the rest with it."""
    from netspec.backends.torch import param_groups as _param_groups

    return _param_groups(model, weight_decay)


def export_onnx(spec: _Any, weights: _Any = None, **options: _Any) -> _Any:
    """Export a spec path or Graph to ONNX: ``(ModelProto, ExportReport)``, verified
    against torch. ``weights``: a model built by :func:`build` (trained), its state dict,
    or a weights file; without them, torch's initialisation. See
    :func:`netspec.backends.onnx.export_onnx` for the options (imports onnx)."""
    from netspec.backends.onnx import export_onnx as _export_onnx
    from netspec.weights_api import numpy_weights

    graph = spec if isinstance(spec, Graph) else load(spec)
    return _export_onnx(graph, numpy_weights(weights, graph), **options)


def load_weights(model: _Any, path: _Any) -> dict[str, str]:
    """Copy a weights file (netspec .safetensors, or a state dict in .pth/.pt/.npz/
    .safetensors, paired by name or by position) into a model built by :func:`build`;
    returns the file's netspec metadata (imports torch)."""
    from netspec.weights_api import load_weights as _load_weights

    return _load_weights(model, path)
