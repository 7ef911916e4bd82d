"""The Graph IR: what a spec means, with blocks, repeats, vars and skips expanded.

A Graph is a flat DAG of :class:`Node` s in topological order (the order the spec
declares them, which is also the order backends register parameters in). A node's
``name`` is a dotted path — ``layer1.0.conv1`` — that is its module path in torch, its
tensor prefix in state_dicts and safetensors, and its node name in ONNX. Scopes
(block instances, repeats, dense blocks, shortcuts) are recorded beside the nodes so
reports and pictures can group by them; backends need only the nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from netspec.errors import Pos
from netspec.kinds import LayerArgs, Shape, numel

INPUT = "input"


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    args: LayerArgs | None
    inputs: tuple[str, ...]
    shape: Shape
    pos: Pos
    #: why the resolver made this node, when the spec did not name it (auto shortcut…)
    note: str = ""

    @property
    def scope(self) -> str:
        return self.name.rpartition(".")[0]


@dataclass(frozen=True)
class Scope:
    """A group of nodes: a block instance, a repeat, a dense block or a shortcut."""

    path: str
    kind: str
    label: str
    pos: Pos


@dataclass
class Graph:
    name: str
    input_shape: Shape
    nodes: dict[str, Node]
    #: the nodes whose values the network returns, in the spec's order
    outputs: tuple[str, ...]
    scopes: dict[str, Scope] = field(default_factory=dict)
    task: str = "classification"
    spec_file: str = ""
    spec_text: str = ""
    vars: dict[str, Any] = field(default_factory=dict)
    #: the outputs' names as the spec's ``outputs:`` gives them (ONNX output names), or
    #: ``("output",)`` for a network with its one output by default
    output_names: tuple[str, ...] = ("output",)
    #: node names in the order their tensors register, where it differs from node order
    #: (a shortcut registered first, a layer scale held by its block); None: node order
    register_order: tuple[str, ...] | None = None

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    @property
    def layers(self) -> list[Node]:
        """Every node but the input."""
        return [n for n in self.nodes.values() if n.op != INPUT]

    @property
    def output(self) -> str:
        """The network's output node; for several outputs, the first."""
        return self.outputs[0]

    @property
    def output_shape(self) -> Shape:
        return self.nodes[self.output].shape

    @property
    def output_shapes(self) -> list[Shape]:
        return [self.nodes[o].shape for o in self.outputs]

    def registration(self) -> list[Node]:
        """Every layer in the order its tensors register (state_dict order)."""
        if self.register_order is None:
            return self.layers
        return [self.nodes[n] for n in self.register_order]

    @property
    def spec_sha256(self) -> str:
        return hashlib.sha256(self.spec_text.encode("utf-8")).hexdigest()

    def input_shapes(self, node: Node) -> list[Shape]:
        return [self.nodes[i].shape for i in node.inputs]

    def param_shapes(self) -> dict[str, Shape]:
        """Every parameter, by its state_dict name, in registration order."""
        out: dict[str, Shape] = {}
        for node in self.registration():
            assert node.args is not None
            for key, shape in node.args.param_shapes(self.input_shapes(node)).items():
                out[f"{node.name}.{key}"] = shape
        return out

    def buffer_shapes(self) -> dict[str, Shape]:
        """Every statistics buffer (BN running mean and variance), by state_dict name."""
        out: dict[str, Shape] = {}
        for node in self.registration():
            assert node.args is not None
            for key, shape in node.args.buffer_shapes(self.input_shapes(node)).items():
                out[f"{node.name}.{key}"] = shape
        return out

    def consumers(self) -> dict[str, list[str]]:
        users: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in self.nodes.values():
            for i in node.inputs:
                users[i].append(node.name)
        return users

    def params(self) -> Counts:
        from netspec.count import count

        return count(self)


@dataclass(frozen=True)
class Counts:
    params: int
    trainable: int
    buffers: int
    macs: int

    @property
    def size_mb_fp32(self) -> float:
        return self.params * 4 / 1e6

    @property
    def size_mb_bf16(self) -> float:
        return self.params * 2 / 1e6


def total(shapes: dict[str, Shape]) -> int:
    return sum(numel(s) for s in shapes.values())
