"""A small accumulator of ONNX nodes and initializers, and the naming rules.

Names come from the spec: the nodes of layer ``layer1.0.conv1`` are ``layer1.0.conv1``
(and ``layer1.0.conv1/mul``… where one layer takes several operators), its output tensor
is ``layer1.0.conv1`` and its tensors keep their state_dict names (``….weight``). The
model's input is ``input`` and the tensors the network returns are named as the spec's
``outputs:`` names them (``output`` for a network with one output by default); layers that
folded away take no name at all, their consumers read the tensor of the layer they folded
into.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import ModelProto, NodeProto, TensorProto, helper

from netspec.backends.onnx.fold import Plan
from netspec.backends.onnx.wire import little_endian
from netspec.graph import INPUT, Graph, Node


class Builder:
    def __init__(self, graph: Graph, plan: Plan, opset: int, *,
                 float_dtype: Any = np.float32, cast_io: bool = False,
                 dynamic: bool = False) -> None:
        self.graph = graph
        self.plan = plan
        self.opset = opset
        #: the dtype of weights, constants and compute (float16 for --precision fp16)
        self.float_dtype = np.dtype(float_dtype)
        #: half compute behind fp32 inputs and outputs: a Cast at each edge
        self.cast_io = cast_io
        #: H and W symbolic: emitters must not bake the spec's size into shapes
        self.dynamic = dynamic
        #: the tensor the first layers read: the input, or its half-precision cast
        self.input_tensor = f"{INPUT}/half" if cast_io else INPUT
        self.nodes: list[NodeProto] = []
        #: nodes and initializers' names, types and shapes are written straight into the
        #: model's graph (make_graph and make_model would copy them)
        self.model = ModelProto()
        self.proto = self.model.graph
        self.initializers: dict[str, TensorProto] = {}
        #: each initializer's data, written into the file as it is (wire.OnnxFile)
        self.arrays: dict[str, np.ndarray] = {}
        #: groups of nodes one operator serves (the parts of a split), once emitted
        self.emitted: set[str] = set()
        #: the node carrying each output's value after folding → the output's name
        self.finals: dict[str, str] = {}
        for node, name in zip(graph.outputs, graph.output_names, strict=True):
            self.finals.setdefault(plan.source(node), self.inner(name))
        #: output values that must be copied out under a second name (two outputs that
        #: folding made one tensor, or the input itself): (tensor, output name)
        self.copies: list[tuple[str, str]] = []
        taken = set(self.finals.values())
        for node, name in zip(graph.outputs, graph.output_names, strict=True):
            src = plan.source(node)
            if self.finals[src] != self.inner(name) or src == INPUT:
                self.copies.append((src, name))
        # the outputs' own names too: with Casts at the edges they are the Casts' outputs
        self._reserved = taken | set(graph.output_names)

    # ---------------------------------------------------------------- tensor names
    def inner(self, output_name: str) -> str:
        """The tensor computing output ``output_name`` (before its Cast to fp32, if any)."""
        return f"{output_name}/half" if self.cast_io else output_name

    def tensor(self, node_name: str) -> str:
        """The ONNX tensor that carries ``node_name``'s output after folding."""
        src = self.plan.source(node_name)
        if src == INPUT:
            return self.input_tensor
        if src in self.finals:
            return self.finals[src]
        if src in self._reserved:  # a layer named like an output it is not
            return f"{src}/layer"
        return src

    def finish_outputs(self) -> None:
        """Identity nodes for outputs that have no tensor of their own, and the Casts
        at the edges of a half-precision model with fp32 inputs and outputs."""
        for src, name in self.copies:
            self.op("Identity", [self.tensor(src)], self.inner(name), f"{name}/identity")
        if self.cast_io:
            from onnx import TensorProto

            # first, so the node list stays in topological order
            self.nodes.insert(0, helper.make_node(
                "Cast", [INPUT], [self.input_tensor], name=f"{INPUT}/cast",
                to=TensorProto.FLOAT16))
            for name in self.graph.output_names:
                self.op("Cast", [self.inner(name)], name, f"{name}/cast",
                        to=TensorProto.FLOAT)

    def inputs(self, node: Node) -> list[str]:
        return [self.tensor(i) for i in node.inputs]

    def out(self, node: Node) -> str:
        return self.tensor(node.name)

    # ---------------------------------------------------------------- initializers
    def const(self, name: str, value: Any, dtype: Any = None, scalar: bool = False) -> str:
        """An initializer (weights, folded constants, shapes), in the model's float dtype
        unless ``dtype`` says otherwise; returns its name. A single number is written as
        [1] (which broadcasts alike, and keeps every file's bytes as they were), or as a
        true scalar with ``scalar`` (Gather's index, which drops the axis only then)."""
        if name in self.initializers:
            raise AssertionError(f"initializer {name} emitted twice")
        array = little_endian(np.asarray(value, dtype=dtype or self.float_dtype))
        if scalar:
            array = array.reshape(())
        t = self.proto.initializer.add()  # its data stays in the array (wire.py)
        t.name = name
        t.data_type = helper.np_dtype_to_tensor_dtype(array.dtype.newbyteorder("="))
        t.dims.extend(array.shape)
        self.initializers[name] = t
        self.arrays[name] = array
        return name

    def param(self, node: Node, key: str) -> str | None:
        """The (folded) tensor ``node.key`` as an initializer, or None if it has none."""
        name = f"{node.name}.{key}"
        if name not in self.plan.tensors:
            return None
        if name not in self.initializers:
            self.const(name, self.plan.tensors[name])
        return name

    # ---------------------------------------------------------------- nodes
    def op(self, op_type: str, inputs: list[str], output: str, name: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        return output

    def chain(self, node: Node, steps: list[tuple[str, list[str], dict[str, Any]]]) -> None:
        """Several operators for one layer: step i reads the previous step's output
        (written ``_`` in its inputs); the last writes the layer's output tensor."""
        prev = self.inputs(node)[0]
        for i, (op_type, ins, attrs) in enumerate(steps):
            last = i == len(steps) - 1
            name = node.name if last else f"{node.name}/{op_type.lower()}{i}"
            out = self.out(node) if last else name
            prev = self.op(op_type, [prev if x == "_" else x for x in ins], out, name, **attrs)
