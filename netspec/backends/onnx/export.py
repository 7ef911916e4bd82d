"""``export_onnx``: a Graph and its numpy weights → a checked ONNX ModelProto.

The model is written operator by operator from the Graph (emitters.py) after the
folding pass (fold.py), not traced through torch: exporting from a weights file needs
neither torch nor a forward pass, and the names in the file are the spec's names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from netspec import __version__
from netspec.backends.onnx.builder import Builder
from netspec.backends.onnx.emitters import EMITTERS
from netspec.backends.onnx.fold import FoldEntry, plan_folds, summarize
from netspec.backends.onnx.opset import DEFAULT_OPSET, check_opset
from netspec.backends.onnx.verify import Verification, VerificationError
from netspec.errors import UsageError
from netspec.graph import INPUT, Graph
from netspec.weights import check_weights, spec_metadata

BATCH = "batch"
#: the weights file's record of how BN statistics were gathered, copied into the model
BN_STATS_KEY = "netspec.bn_stats"
MAX_PROTO_BYTES = 2**31 - 1


@dataclass
class ExportReport:
    name: str
    opset: int
    folds: list[FoldEntry]
    summary: str
    #: parameters the spec declares, and the float constants in the file after folding
    params: int
    exported_params: int
    onnx_nodes: int
    verification: Verification | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "opset": self.opset, "summary": self.summary,
            "params": self.params, "exported_params": self.exported_params,
            "onnx_nodes": self.onnx_nodes,
            "folds": [e.to_dict() for e in self.folds],
            "verification": self.verification.to_dict() if self.verification else None,
        }


def _model(graph: Graph, b: Builder, metadata: dict[str, str]) -> onnx.ModelProto:
    inp = helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [BATCH, *graph.input_shape])
    outs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *graph[node].shape])
            for node, name in zip(graph.outputs, graph.output_names, strict=True)]
    model = b.model  # filled in place: its graph already holds the initializers
    g = model.graph
    g.name = graph.name
    g.node.extend(b.nodes)
    g.input.append(inp)
    g.output.extend(outs)
    opsets = [helper.make_opsetid("", b.opset)]
    model.opset_import.extend(opsets)
    # the oldest IR version that carries this opset, so older runtimes can load the file
    model.ir_version = helper.find_min_ir_version_for(opsets)
    model.producer_name = "netspec"
    model.producer_version = __version__
    helper.set_model_props(model, metadata)
    return model


def emit(graph: Graph, weights: dict[str, np.ndarray], opset: int
         ) -> tuple[onnx.ModelProto, list[FoldEntry], int]:
    """Fold, emit, assemble (no metadata, no check): the model, the fold report, and
    the number of float constants."""
    plan = plan_folds(graph, weights)
    b = Builder(graph, plan, opset)
    for node in graph.layers:
        if node.name not in plan.alias:
            EMITTERS[node.op](b, node)
    b.finish_outputs()  # an output the folds made the input, or made another output
    model = _model(graph, b, {})
    n_float = sum(int(np.prod(t.dims)) for t in b.initializers.values()
                  if t.data_type == TensorProto.FLOAT)
    return model, plan.report, n_float


def export_onnx(graph: Graph | str | Path, weights: dict[str, np.ndarray] | None = None, *,
                opset: int = DEFAULT_OPSET, seed: int = 0, verify: bool = True,
                tolerance: float = 1e-4, metadata: dict[str, str] | None = None,
                verify_batches: tuple[int, ...] = (1, 3)) -> tuple[onnx.ModelProto, ExportReport]:
    """Export a Graph (or a spec path) to ONNX: see :func:`export_onnx_bytes`."""
    model, _, report = export_onnx_bytes(
        graph, weights, opset=opset, seed=seed, verify=verify, tolerance=tolerance,
        metadata=metadata, verify_batches=verify_batches)
    return model, report


def export_onnx_bytes(graph: Graph | str | Path, weights: dict[str, np.ndarray] | None = None,
                      *, opset: int = DEFAULT_OPSET, seed: int = 0, verify: bool = True,
                      tolerance: float = 1e-4, metadata: dict[str, str] | None = None,
                      verify_batches: tuple[int, ...] = (1, 3)
                      ) -> tuple[onnx.ModelProto, bytes, ExportReport]:
    """Export a Graph (or a spec path) to ONNX.

    ``weights`` are numpy arrays by state_dict name (netspec.weights.load_weights); without
    them the torch backend's initialisation for ``seed`` is used (imports torch).
    ``metadata`` is the weights file's metadata (its ``netspec.bn_stats`` is kept).
    The model always passes ``onnx.checker.check_model(full_check=True)``. With
    ``verify``, onnxruntime and torch (eval mode) run the same random inputs at each
    batch size in ``verify_batches``; a difference above ``tolerance`` (absolute, or
    relative to the output's scale when that is above 1) raises VerificationError.
    """
    if not isinstance(graph, Graph):
        from netspec.load import load

        graph = load(graph)
    check_opset(opset)
    if weights is None:
        from netspec.backends.onnx.verify import initial_weights

        weights = initial_weights(graph, seed)
    else:
        check_weights(graph, weights, "weights")

    model, folds, n_float = emit(graph, weights, opset)
    counts = graph.params()
    props = {**spec_metadata(graph),
             "netspec.params": json.dumps({"params": counts.params, "buffers": counts.buffers,
                                           "macs": counts.macs, "exported_params": n_float}),
             "netspec.opset": str(opset),
             "netspec.folds": json.dumps([e.to_dict() for e in folds])}
    if metadata and BN_STATS_KEY in metadata:
        props[BN_STATS_KEY] = metadata[BN_STATS_KEY]
    helper.set_model_props(model, props)

    data = model.SerializeToString()
    if len(data) > MAX_PROTO_BYTES:
        raise UsageError(f"{graph.name}: the model is {len(data) / 1e9:.1f} GB, over ONNX's "
                         "2 GB limit for one file")
    onnx.checker.check_model(data, full_check=True)

    report = ExportReport(graph.name, opset, folds, summarize(folds, graph), counts.params,
                          n_float, len(model.graph.node), metadata=props)
    if verify:
        from netspec.backends.onnx.verify import verify as run_verify

        report.verification = run_verify(data, graph, weights, tolerance=tolerance,
                                         batches=verify_batches, seed=seed)
        v = report.verification
        if not v.ok:
            raise VerificationError(
                f"{graph.name}: onnxruntime and torch disagree: max abs difference "
                f"{v.max_abs:.3g} (relative {v.max_rel:.3g}) over tolerance {tolerance:g}")
    return model, data, report
