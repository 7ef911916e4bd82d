"""``export_onnx``: a Graph and its numpy weights → a checked ONNX model.

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

from netspec._version import __version__
from netspec.backends.onnx import dynamic as dyn
from netspec.backends.onnx.builder import Builder
from netspec.backends.onnx.emitters import EMITTERS
from netspec.backends.onnx.fold import FoldEntry, plan_folds, summarize
from netspec.backends.onnx.opset import DEFAULT_OPSET, check_opset
from netspec.backends.onnx.precision import NUMPY, ONNX, TOLERANCE, check_precision
from netspec.backends.onnx.verify import Verification, VerificationError
from netspec.backends.onnx.wire import OnnxFile
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
    precision: str = "fp32"
    io_dtype: str = "fp32"
    #: ONNX input/output name → {axis: symbolic name}
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "opset": self.opset, "summary": self.summary,
            "precision": self.precision, "io_dtype": self.io_dtype,
            "dynamic_axes": self.dynamic_axes,
            "params": self.params, "exported_params": self.exported_params,
            "onnx_nodes": self.onnx_nodes,
            "folds": [e.to_dict() for e in self.folds],
            "verification": self.verification.to_dict() if self.verification else None,
        }


def _model(graph: Graph, b: Builder, metadata: dict[str, str], io_dtype: str = "fp32",
           dep: set[str] | None = None) -> onnx.ModelProto:
    """``dep``: with --dynamic-size, the size-dependent nodes (dynamic.py)."""
    elem = ONNX[io_dtype]
    in_dims = [BATCH, *graph.input_shape]
    if dep is not None:
        in_dims[2:] = [dyn.HEIGHT, dyn.WIDTH]
    inp = helper.make_tensor_value_info(INPUT, elem, in_dims)
    outs = [helper.make_tensor_value_info(
        name, elem, [BATCH, *(dyn.output_dims(graph, node, name, dep) if dep is not None
                              else graph[node].shape)])
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


def emit(graph: Graph, weights: dict[str, np.ndarray], opset: int, *,
         precision: str = "fp32", io_dtype: str = "fp32", dynamic: bool = False
         ) -> tuple[OnnxFile, list[FoldEntry], int]:
    """Fold, emit, assemble (no metadata, no check): the model, the fold report, and
    the number of float constants. ``precision`` fp32 or fp16 (int8 is quantize.py's,
    from the fp32 model); ``dynamic``: symbolic H, W (SpecError where a layer fixes them)."""
    dep = dyn.size_dependent(graph) if dynamic else None
    plan = plan_folds(graph, weights, NUMPY[precision])
    b = Builder(graph, plan, opset, float_dtype=NUMPY[precision],
                cast_io=precision != io_dtype, dynamic=dynamic)
    live = graph.live()  # a layer no output reads (weights held for their own sake) is left out
    for node in graph.layers:
        if node.name not in plan.alias and node.name in live:
            EMITTERS[node.op](b, node)
    b.finish_outputs()  # an output the folds made the input, or made another output
    model = OnnxFile(_model(graph, b, {}, io_dtype, dep), b.arrays)
    n_float = sum(int(np.prod(t.dims)) for t in b.initializers.values()
                  if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16))
    return model, plan.report, n_float


def dynamic_axes(graph: Graph, dynamic: bool) -> dict[str, dict[int, str]]:
    """Each ONNX input/output's symbolic axes, as torch.onnx.export spells them."""
    axes: dict[str, dict[int, str]] = {INPUT: {0: BATCH}}
    dep = dyn.size_dependent(graph) if dynamic else set()
    if dynamic:
        axes[INPUT].update({2: dyn.HEIGHT, 3: dyn.WIDTH})
    for node, name in zip(graph.outputs, graph.output_names, strict=True):
        dims = dyn.output_dims(graph, node, name, dep)
        axes[name] = {0: BATCH, **{i + 1: d for i, d in enumerate(dims) if isinstance(d, str)}}
    return axes


def export_onnx(graph: Graph | str | Path, weights: dict[str, np.ndarray] | None = None, *,
                opset: int = DEFAULT_OPSET, seed: int = 0, verify: bool = True,
                tolerance: float | None = None, metadata: dict[str, str] | None = None,
                verify_batches: tuple[int, ...] = (1, 3), precision: str = "fp32",
                io_dtype: str | None = None, dynamic: bool = False
                ) -> tuple[onnx.ModelProto, ExportReport]:
    """Export a Graph (or a spec path) to ONNX: the ModelProto (weights in it) and the
    report; see :func:`export_onnx_file`."""
    file, report = export_onnx_file(
        graph, weights, opset=opset, seed=seed, verify=verify, tolerance=tolerance,
        metadata=metadata, verify_batches=verify_batches, precision=precision,
        io_dtype=io_dtype, dynamic=dynamic)
    return file.model(), report


def export_onnx_file(graph: Graph | str | Path, weights: dict[str, np.ndarray] | None = None,
                     *, opset: int = DEFAULT_OPSET, seed: int = 0, verify: bool = True,
                     tolerance: float | None = None, metadata: dict[str, str] | None = None,
                     verify_batches: tuple[int, ...] = (1, 3), precision: str = "fp32",
                     io_dtype: str | None = None, dynamic: bool = False
                     ) -> tuple[OnnxFile, ExportReport]:
    """Export a Graph (or a spec path) to ONNX: the file, still in pieces (wire.py:
    ``write`` it, or take ``tobytes()``; its unfolded weights are views of ``weights``
    until then), and the report.

    ``weights`` are numpy arrays by state_dict name (netspec.weights.load_weights); without
    them the torch backend's initialisation for ``seed`` is used (imports torch).
    ``metadata`` is the weights file's metadata (its ``netspec.bn_stats`` is kept).
    The model always passes onnx's full checker (on its structure: wire.py). With
    ``verify``, onnxruntime and torch (eval mode) run the same random inputs at each
    batch size in ``verify_batches``; a difference above ``tolerance`` (absolute, or
    relative to the output's scale when that is above 1) raises VerificationError.

    ``precision`` fp32 or fp16 (precision.py; int8 is quantize.py's, from the fp32 model),
    ``io_dtype`` fp16 for half inputs and outputs; ``tolerance`` None: the precision's
    default. ``dynamic``: symbolic H and W (dynamic.py), verified at the spec's size and
    at twice it.
    """
    if precision == "int8":
        raise UsageError("export_onnx_file writes fp32 or fp16; int8 is "
                         "netspec.backends.onnx.quantize.quantize_int8 of the fp32 model")
    io = check_precision(precision, io_dtype)
    if tolerance is None:
        tolerance = TOLERANCE[precision]
    if not isinstance(graph, Graph):
        from netspec.load import load

        graph = load(graph)
    check_opset(opset)
    if dynamic:
        dyn.size_dependent(graph)  # refuse a size-fixed spec before any work
    if weights is None:
        from netspec.backends.onnx.verify import initial_weights

        weights = initial_weights(graph, seed)
    else:
        check_weights(graph, weights, "weights")

    file, folds, n_float = emit(graph, weights, opset, precision=precision, io_dtype=io,
                                 dynamic=dynamic)
    counts = graph.params()
    axes = dynamic_axes(graph, dynamic)
    props = {**spec_metadata(graph),
             "netspec.params": json.dumps({"params": counts.params, "buffers": counts.buffers,
                                           "macs": counts.macs, "exported_params": n_float}),
             "netspec.opset": str(opset),
             "netspec.precision": precision,
             "netspec.io_dtype": io,
             "netspec.dynamic_axes": json.dumps(axes),
             "netspec.folds": json.dumps([e.to_dict() for e in folds])}
    # kept from the weights file: BN statistics' origin; an image folder's preprocessing
    # and class names (netspec run applies and prints them)
    for key in (BN_STATS_KEY, "netspec.preprocess", "netspec.class_names"):
        if metadata and key in metadata:
            props[key] = metadata[key]
    helper.set_model_props(file.skeleton, props)
    if file.size > MAX_PROTO_BYTES:
        raise UsageError(f"{graph.name}: the model is {file.size / 1e9:.1f} GB, over ONNX's "
                         "2 GB limit for one file")
    file.check()

    report = ExportReport(graph.name, opset, folds, summarize(folds, graph), counts.params,
                          n_float, len(file.skeleton.graph.node), metadata=props,
                          precision=precision, io_dtype=io, dynamic_axes=axes)
    if verify:
        from netspec.backends.onnx.verify import verify as run_verify

        sizes = (graph.input_shape, dyn.second_size(graph)) if dynamic else None
        report.verification = run_verify(file.tobytes(), graph, weights, tolerance=tolerance,
                                         batches=verify_batches, seed=seed, sizes=sizes)
        v = report.verification
        if not v.ok:
            raise VerificationError(
                f"{graph.name}: onnxruntime and torch disagree: max abs difference "
                f"{v.max_abs:.3g} (relative {v.max_rel:.3g}) over tolerance {tolerance:g}")
    return file, report
