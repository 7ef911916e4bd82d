"""How far two models' outputs agree on the same random inputs: the check that an
export or an import computes what its source computes, in numpy alone, so that the
torch and ONNX backends share it without importing each other."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from netspec.graph import Graph


def random_inputs(graph: Graph, batches: Sequence[int], seed: int = 0,
                  shape: Sequence[int] | None = None) -> list[np.ndarray]:
    """Standard normal inputs, one per batch size, of the spec's shape or ``shape``."""
    rng = np.random.default_rng(seed)
    shape = tuple(graph.input_shape if shape is None else shape)
    return [rng.standard_normal((n, *shape)).astype(np.float32) for n in batches]


@dataclass(frozen=True)
class Agreement:
    max_abs: float
    ref_max: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.tolerance * max(1.0, self.ref_max)


def agreement(mine: list[np.ndarray], theirs: list[np.ndarray], tolerance: float
              ) -> Agreement:
    """The largest difference of ``mine`` from ``theirs`` (infinite where the outputs
    differ in number or shape, or a value is not finite), and the largest |theirs|."""
    max_abs = ref_max = 0.0
    if len(mine) != len(theirs):
        return Agreement(math.inf, 0.0, tolerance)
    for a, b in zip(mine, theirs, strict=True):
        if a.shape != b.shape:
            return Agreement(math.inf, 0.0, tolerance)
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        max_abs = max(max_abs, diff if math.isfinite(diff) else math.inf)
        ref_max = max(ref_max, float(np.max(np.abs(b))) if b.size else 0.0)
    return Agreement(max_abs, ref_max, tolerance)
