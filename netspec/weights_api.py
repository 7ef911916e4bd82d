"""The Python API's weights: ``netspec.load_weights(model, path)`` and the ``weights``
that ``netspec.export_onnx`` accepts (a model, a state dict or a file), so a custom
training loop ends in a verified ONNX file without reaching into netspec.backends."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.weights_import import WRAPPER_PREFIXES


def numpy_weights(weights: Any, graph: Graph) -> dict[str, np.ndarray] | None:
    """``weights`` as numpy arrays by state_dict name: a torch module (DDP and
    torch.compile wrappers removed), a state dict of tensors or arrays, or a weights
    file (anything ``netspec weights import`` reads, paired with ``graph``)."""
    if weights is None:
        return None
    if isinstance(weights, str | Path):
        from netspec.weights_import import pair, read_source

        return pair(graph, read_source(weights), str(weights)).tensors
    state = weights.state_dict() if hasattr(weights, "state_dict") and callable(
        weights.state_dict) else weights
    if not isinstance(state, Mapping):
        raise UsageError(f"weights: a torch module, a state dict or a file path, not "
                         f"{type(weights).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = str(key)
        for prefix in WRAPPER_PREFIXES:
            while name.startswith(prefix):
                name = name[len(prefix):]
        if hasattr(value, "detach"):  # a torch tensor
            t = value.detach().to("cpu")
            value = (t.float() if t.is_floating_point() else t).numpy()
        out[name] = np.asarray(value)
    return out


def load_weights(model: Any, path: str | Path) -> dict[str, str]:
    """Copy a weights file into a model built by ``netspec.build``: a netspec
    .safetensors, or any state dict ``netspec weights import`` reads (.pth/.pt through
    torch's restricted loader, .safetensors, .npz), paired by name, by position or by
    structure with every shape checked. Returns the file's netspec metadata ({} when it
    has none)."""
    import torch

    from netspec.backends.torch import graph_of, load_state
    from netspec.weights_import import pair, read_source

    graph = graph_of(model)
    paired = pair(graph, read_source(path), str(path))
    own = model.state_dict()
    load_state(model, {k: torch.from_numpy(v).to(own[k].dtype)
                       for k, v in paired.tensors.items()})
    meta: dict[str, str] = {}
    if str(path).endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
    return meta
