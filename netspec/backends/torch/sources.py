"""Where ``netspec import`` finds a PyTorch network, and the check that the imported
spec computes what it computes.

SOURCE is ``torchvision:NAME``, ``timm:NAME`` (when timm is installed) or
``package.module:callable`` returning an ``nn.Module`` (the user's own code, imported as
Python imports it, the current folder first on the path). Keyword arguments for the
constructor come as JSON (``--kw``).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from netspec.agreement import Agreement, agreement, random_inputs
from netspec.errors import UsageError, did_you_mean
from netspec.graph import Graph
from netspec.kinds import Shape

#: the input of a classifier when neither the source nor --input says
DEFAULT_INPUT: Shape = (3, 224, 224)


@dataclass
class TorchSource:
    module: nn.Module
    name: str
    #: what the header says the spec was made from (``torchvision:resnet50 (torchvision
    #: 0.29.1)``)
    origin: str
    #: the input shape the source declares, if it does (timm's pretrained_cfg)
    input_shape: Shape | None = None


def _library(name: str, extra: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise UsageError(f"{name} is not installed ({e.msg.splitlines()[0]}); "
                         f"pip install {extra}") from None


def _built(make: Any, kw: dict[str, Any], what: str) -> nn.Module:
    try:
        module = make(**kw)
    except TypeError as e:
        raise UsageError(f"{what}: {str(e).splitlines()[0]} (check --kw)") from None
    except (RuntimeError, ValueError, KeyError, AssertionError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"{what}: could not be built: {first}") from None
    if not isinstance(module, nn.Module):
        raise UsageError(f"{what}: returned {type(module).__name__}, not a torch.nn.Module")
    return module


def torch_source(source: str, kw: dict[str, Any]) -> TorchSource:
    prefix, _, rest = source.partition(":")
    if prefix == "torchvision":
        tv = _library("torchvision", "torchvision")
        names = tv.models.list_models()
        if rest not in names:
            raise UsageError(f"{source}: torchvision has no model '{rest}'"
                             f"{did_you_mean(rest, names)}")
        module = _built(lambda **k: tv.models.get_model(rest, **k), kw, source)
        return TorchSource(module, rest, f"{source} (torchvision {tv.__version__})")
    if prefix == "timm":
        timm = _library("timm", "timm (or netspec[import])")
        if not timm.is_model(rest):
            names = timm.list_models()
            raise UsageError(f"{source}: timm has no model '{rest}'{did_you_mean(rest, names)}")
        module = _built(lambda **k: timm.create_model(rest, **k), kw, source)
        cfg = getattr(module, "pretrained_cfg", None) or {}
        size = tuple(cfg.get("input_size") or ()) or None
        return TorchSource(module, rest, f"{source} (timm {timm.__version__})", size)
    module_name, _, attr = source.partition(":")
    if not attr or not module_name:
        raise UsageError(f"{source}: expected torchvision:NAME, timm:NAME, "
                         "package.module:callable or a .onnx file")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -c` would find the user's module
    try:
        mod = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(f"{source}: cannot import {module_name}: "
                         f"{str(e).splitlines()[0]}") from None
    make: Any = mod
    for part in attr.split("."):
        if not hasattr(make, part):
            raise UsageError(f"{source}: {module_name} has no '{attr}'")
        make = getattr(make, part)
    if isinstance(make, nn.Module):
        if kw:
            raise UsageError(f"{source}: is a module already; --kw applies to a callable")
        return TorchSource(make, attr.rpartition(".")[2], source)
    if not callable(make):
        raise UsageError(f"{source}: is not callable")
    return TorchSource(_built(make, kw, source), attr.rpartition(".")[2], source)


def compare_with_torch(source: nn.Module, graph: Graph, weights: dict[str, np.ndarray],
                       tolerance: float = 1e-4, batch: int = 2, seed: int = 0) -> Agreement:
    """The spec, built with the source's weights, against the source itself: both in eval
    mode on the same random input."""
    from netspec.backends.torch import eval_module

    ours = eval_module(graph, weights)
    (x,) = random_inputs(graph, [batch], seed)
    was = source.training
    source.eval()
    try:
        with torch.inference_mode():
            theirs = source(torch.from_numpy(x))
            mine = ours(torch.from_numpy(x))
    finally:
        source.train(was)
    return agreement(_outputs(mine), _outputs(theirs), tolerance)


def _outputs(out: Any) -> list[np.ndarray]:
    if isinstance(out, dict):
        out = list(out.values())
    items = out if isinstance(out, list | tuple) else [out]
    return [t.detach().float().cpu().numpy() for t in items]
