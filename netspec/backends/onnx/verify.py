"""The torch side of exporting: initial weights for a seed, and the check that the
exported model computes what the torch module computes in eval mode.

This is the only module of the ONNX backend that touches torch, and it imports torch
inside its functions, so ``export_onnx(..., verify=False)`` with given weights and
``netspec export --no-verify --weights`` never load it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from netspec.agreement import random_inputs
from netspec.errors import NetspecError
from netspec.graph import Graph


class VerificationError(NetspecError):
    """ONNX and torch disagree beyond the tolerance: a bug, so the CLI exits 1."""

    exit_code = 1


@dataclass(frozen=True)
class Verification:
    batches: tuple[int, ...]
    max_abs: float
    #: max |onnx − torch| / max |torch|: the error relative to the output's scale
    max_rel: float
    tolerance: float
    #: the largest |torch| seen, which the tolerance scales with when above 1
    ref_max: float
    #: the input shapes (after the batch) compared: the spec's, and a second one for
    #: a model with symbolic H, W
    sizes: tuple[tuple[int, ...], ...] = ()

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.tolerance * max(1.0, self.ref_max)

    def to_dict(self) -> dict[str, Any]:
        return {"batches": list(self.batches), "max_abs": self.max_abs,
                "max_rel": self.max_rel, "tolerance": self.tolerance, "ok": self.ok,
                "sizes": [list(s) for s in self.sizes]}


def initial_weights(graph: Graph, seed: int) -> dict[str, np.ndarray]:
    """The torch backend's initialisation for ``seed``, as numpy (state_dict names)."""
    import torch

    from netspec.backends.torch import build

    torch.manual_seed(seed)
    module = build(graph)
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def torch_outputs(graph: Graph, weights: dict[str, np.ndarray], x: np.ndarray
                  ) -> list[np.ndarray]:
    """The outputs of the torch module with these weights, in eval mode, on ``x``."""
    import torch

    from netspec.backends.torch import eval_module

    module = eval_module(graph, weights)
    with torch.inference_mode():
        out = module(torch.from_numpy(x))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def verify(model_bytes: bytes, graph: Graph, weights: dict[str, np.ndarray], *,
           tolerance: float, batches: Sequence[int] = (1, 3), seed: int = 0,
           sizes: Sequence[Sequence[int]] | None = None) -> Verification:
    """Run onnxruntime (CPU) and torch eval on the same random inputs, at each input
    shape in ``sizes`` (default: the spec's); compare. A half-precision model is fed
    the float32 inputs rounded to half, and its outputs are read as float32."""
    import onnxruntime as ort
    import torch

    from netspec.backends.onnx.runner import session_options
    from netspec.backends.torch import eval_module

    session = ort.InferenceSession(model_bytes, session_options(),
                                   providers=["CPUExecutionProvider"])
    half = session.get_inputs()[0].type == "tensor(float16)"
    module = eval_module(graph, weights)
    max_abs = ref_max = 0.0
    shapes = [tuple(s) for s in sizes] if sizes else [tuple(graph.input_shape)]
    inputs = [x for shape in shapes for x in random_inputs(graph, batches, seed, shape)]
    for x in inputs:
        if half:  # torch sees exactly what the model sees
            x = x.astype(np.float16).astype(np.float32)
        feed = x.astype(np.float16) if half else x
        theirs = [o.astype(np.float32) for o in session.run(None, {"input": feed})]
        with torch.inference_mode():
            out = module(torch.from_numpy(x))
        refs = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
        for name, ours, ref in zip(graph.output_names, theirs, refs, strict=True):
            if ours.shape != ref.shape:
                raise VerificationError(f"{name}: onnxruntime output {list(ours.shape)} but "
                                        f"torch {list(ref.shape)}")
            diff = float(np.max(np.abs(ours - ref)))
            # a NaN anywhere must fail, not vanish in max()
            max_abs = max(max_abs, diff if math.isfinite(diff) else math.inf)
            ref_max = max(ref_max, float(np.max(np.abs(ref))))
    max_rel = max_abs / ref_max if ref_max > 0 else max_abs
    return Verification(tuple(batches), max_abs, max_rel, tolerance, ref_max,
                        tuple(shapes))
