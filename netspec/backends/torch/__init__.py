"""The PyTorch backend: build the nn.Module a Graph describes, group its parameters for
an optimizer, and move weights between it and safetensors files.

Modules come from ``layers.MODULES`` (one factory per op); ``model.graph_module`` wires
them into a torch.fx GraphModule whose module paths are the Graph's dotted names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from netspec.backends.torch.layers import MODULES
from netspec.backends.torch.model import graph_module
from netspec.errors import NetspecError, UsageError
from netspec.graph import Graph
from netspec.load import load
from netspec.weights import check_weights, load_weights

__all__ = ["build", "eval_module", "graph_of", "load_state", "load_weights_into", "param_groups",
           "state_dict_numpy"]


def build(spec: str | Path | Graph, device: Any = None, **vars: Any) -> nn.Module:
    """Build the model of a spec file (``vars`` override its vars) or of a Graph.

    Parameters are created directly on ``device`` (``"meta"`` builds without memory,
    for shapes and counts) and initialised by torch's defaults: seed torch first for
    reproducible weights.
    """
    if isinstance(spec, Graph):
        if vars:
            raise UsageError("vars apply to a spec file; a Graph has them resolved already")
        graph = spec
    else:
        graph = load(spec, **vars)
    # creating tensors on the device (rather than .to() after) saves a host copy and
    # lets "meta" skip initialisation altogether
    where = torch.device(device) if device is not None else contextlib.nullcontext()
    with where:
        model = graph_module(graph)
    return model.to(device) if device is not None else model


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimizer groups: norm γ/δ, PReLU slopes, learned tokens and position tables
    and every bias without weight decay (decaying them only pulls scale, shift, slope
    and learned inputs towards 0), everything else with ``weight_decay``. Which
    tensors those are, their kinds say (``decay``, ``undecayed``). Empty groups
    are left out; a parameter shared by several modules appears once."""
    graph = graph_of(model)
    no_decay: dict[int, nn.Parameter] = {}
    for node in graph.layers:
        assert node.args is not None
        if node.op not in MODULES:
            continue
        module = model.get_submodule(node.name)
        for name, p in module.named_parameters():
            if (not node.args.decay or name.rpartition(".")[2] == "bias"
                    or name in node.args.undecayed):
                no_decay[id(p)] = p
    decay = [p for p in model.parameters() if id(p) not in no_decay]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": list(no_decay.values()), "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def graph_of(model: nn.Module) -> Graph:
    """The Graph a netspec model was built from, through DDP and torch.compile wrappers."""
    inner: Any = model
    while not isinstance(getattr(inner, "netspec_graph", None), Graph):
        nxt = getattr(inner, "module", None) or getattr(inner, "_orig_mod", None)
        if nxt is None:
            raise UsageError("param_groups needs a model built by netspec.build")
        inner = nxt
    return inner.netspec_graph


def eval_module(graph: Graph, weights: dict[str, np.ndarray]) -> nn.Module:
    """The model of ``graph`` with these numpy weights (state_dict names), in eval mode:
    what an export or an import is checked against."""
    module = build(graph)
    state = module.state_dict()
    # BN's step counter plays no part in eval (and files store it as [] or [1])
    # a copy: the arrays may be read-only views of a file (torch warns of those)
    loaded = {k: torch.from_numpy(np.array(v, copy=True)).to(state[k].dtype)
              for k, v in weights.items()
              if k in state and not k.endswith(".num_batches_tracked")}
    missing = [k for k in state if k not in loaded and not k.endswith(".num_batches_tracked")]
    if missing:
        raise NetspecError(f"weights lack {', '.join(missing)}")
    load_state(module, loaded)
    return module.eval()


def state_dict_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """The state_dict as numpy on the host: floats as float32 (numpy has no bf16),
    integers (BN's num_batches_tracked) as they are."""
    out: dict[str, np.ndarray] = {}
    for key, t in model.state_dict().items():
        t = t.detach().to("cpu")
        out[key] = (t.float() if t.is_floating_point() else t).numpy()
    return out


def load_weights_into(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Copy a safetensors file's tensors into ``model`` (never unpickling anything).

    Checks first that the file holds exactly the tensors the model's spec declares,
    with their shapes; a missing ``num_batches_tracked`` keeps the model's own.
    Returns the file's metadata (spec text, its sha256…)."""
    tensors, meta = load_weights(path)
    own = model.state_dict()
    for key, value in tensors.items():
        # BN's step counter is a 0-d tensor; numpy writers often store it as shape [1]
        if key.endswith(".num_batches_tracked") and key in own and value.size == 1:
            tensors[key] = value.reshape(own[key].shape)
    graph = getattr(model, "netspec_graph", None)
    if isinstance(graph, Graph):
        check_weights(graph, tensors, str(path))
    wrong = [f"{k} {list(v.shape)} (model has {list(own[k].shape)})"
             for k, v in tensors.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    unknown = [k for k in tensors if k not in own]
    missing = [k for k in own if k not in tensors and not k.endswith(".num_batches_tracked")]
    if wrong or unknown or missing:
        raise UsageError(f"{path}: weights do not fit the model: "
                         f"missing {missing}, unexpected {unknown}, wrong shape {wrong}")
    # torch.tensor copies (safetensors' arrays may be read-only); load_state then
    # copies into the existing tensors, so device and dtype stay the model's
    load_state(model, {k: torch.tensor(v) for k, v in tensors.items()})
    return meta


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """``model.load_state_dict(state, strict=False)`` for keys that name the model's own
    tensors, given to each owning module in turn. torch's own walk filters the whole
    remaining dict once per child, which is quadratic in a wide scope (10,000 copies of
    a repeat under one name took minutes); grouped first, each tensor is looked at once.
    Each module's own ``_load_from_state_dict`` still runs (shape checks, BN's counter)."""
    by_module: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        owner, _, local = key.rpartition(".")
        by_module.setdefault(owner, {})[local] = tensor
    for owner, part in by_module.items():
        model.get_submodule(owner).load_state_dict(part, strict=False)
