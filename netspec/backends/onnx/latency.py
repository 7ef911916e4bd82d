"""A variant's latency as onnxruntime measures it on this machine (``netspec fit
--latency``): exported as ``netspec export`` would (BN folded, dropout gone) with the
torch backend's initial weights, since the time does not depend on their values."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from netspec.backends.onnx.export import export_onnx_file
from netspec.backends.onnx.runner import OnnxRunner
from netspec.graph import Graph


def measure_latency(graph: Graph, batch: int = 1, runs: int = 20) -> float:
    """The median milliseconds of one batch, over ``runs`` runs after a warm-up."""
    file, _ = export_onnx_file(graph, None, verify=False)
    with tempfile.TemporaryDirectory(prefix="netspec-fit-") as folder:
        path = Path(folder) / "variant.onnx"
        path.write_bytes(file.tobytes())
        runner = OnnxRunner(path)
        x = np.random.default_rng(0).standard_normal(
            (batch, *graph.input_shape)).astype(runner.input_dtype)
        return runner.latency(x, runs)["p50"]
