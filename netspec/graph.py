"""The Graph IR: what a spec means, with blocks, repeats, vars and skips expanded.

A Graph is a flat DAG of :class:`Node` s in topological order (the order the spec
declares them, which is also the order backends register parameters in). A node's
``name`` is a dotted path — ``layer1.0.conv1`` — that is its module path in torch, its
tensor prefix in state_dicts and safetensors, and its node name in ONNX. Scopes
(block instances, repeats, dense blocks, shortcuts) are recorded beside the nodes so
reports and pictures can group by them; backends need only the nodes.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from netspec.errors import Pos, SpecError
from netspec.kinds import REGISTRY, LayerArgs, Shape
from netspec.names import INPUT, RESERVED_NAMES
from netspec.totals import Counts, count

_shape_of = operator.attrgetter("shape")


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

    def live(self) -> set[str]:
        """The nodes some output depends on; the rest hold weights nobody computes with
        (a detection head's fixed DFL weights, before decoding)."""
        return live_nodes(self.nodes, self.outputs)

    def registration(self) -> list[Node]:
        """Every layer in the order its tensors register (state_dict order)."""
        if self.register_order is None:
            return self.layers
        return [self.nodes[n] for n in self.register_order]

    @property
    def spec_sha256(self) -> str:
        import hashlib  # here, not at the top: OpenSSL's load is 4 ms of `netspec params`

        return hashlib.sha256(self.spec_text.encode("utf-8")).hexdigest()

    def input_shapes(self, node: Node) -> list[Shape]:
        # map, not a Python loop: a dense block's merges read many inputs
        return list(map(_shape_of, map(self.nodes.__getitem__, node.inputs)))

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

    def tensor_owners(self) -> dict[str, str]:
        """Each parameter's and buffer's state_dict name → its node's name (a tensor's
        own name may have dots: attention's ``qkv.weight``)."""
        out: dict[str, str] = {}
        for node in self.registration():
            assert node.args is not None
            ins = self.input_shapes(node)
            for key in (*node.args.param_shapes(ins), *node.args.buffer_shapes(ins)):
                out[f"{node.name}.{key}"] = node.name
        return out

    def consumers(self) -> dict[str, list[str]]:
        users: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in self.nodes.values():
            for i in node.inputs:
                users[i].append(node.name)
        return users

    def inplace_nodes(self) -> set[str]:
        """Nodes that may overwrite their (first) input, as the torch backend runs them:
        it is a fresh tensor that nothing else reads (this is its one consumer, once; it
        is not an output) and that no backward needs, so the overwrite cannot be seen."""
        users = self.consumers()
        out = set()
        for node in self.layers:
            if node.args is not None and node.args.inplace_ok:
                src = self.nodes[node.inputs[0]]
                if (src.args is not None and src.args.fresh_output
                        and users[src.name] == [node.name] and src.name not in self.outputs):
                    out.add(node.name)
        return out

    def lint(self) -> list[SpecError]:
        """The IR's own invariants, checked once after resolve so that no backend needs a
        backstop: inputs come before their readers, every op has a kind, outputs exist,
        the registration order is a permutation of the layers, and names can be module
        paths — no atom torch modules use for themselves, no layer inside another."""
        problems: list[SpecError] = []
        seen: set[str] = set()
        #: per scope, what its layers' names share (a scope holds many layers)
        scopes: dict[str, tuple[list[str], list[str]]] = {}
        for node in self.nodes.values():
            if node.op != INPUT and node.op not in REGISTRY:
                problems.append(SpecError(f"layer '{node.name}': unknown op {node.op!r}",
                                          node.pos))
            # a set operation, not a Python loop: a dense block's merges read many inputs
            for i in () if seen.issuperset(node.inputs) else node.inputs:
                if i not in seen:
                    problems.append(SpecError(f"layer '{node.name}' reads '{i}', which is "
                                              "not an earlier layer", node.pos))
            scope, _, atom = node.name.rpartition(".")
            if scope not in scopes:
                scopes[scope] = self._scope_names(scope)
            reserved, holders = scopes[scope]
            if node.op != INPUT:
                for bad in (*reserved, atom) if _reserved(atom) else reserved:
                    problems.append(SpecError(f"layer name '{node.name}': '{bad}' is "
                                              "reserved (torch modules use it)", node.pos))
            for holder in holders:
                problems.append(SpecError(f"layer name '{node.name}' puts a layer inside "
                                          f"layer '{holder}'", node.pos))
            seen.add(node.name)
        for o in self.outputs:
            if o not in self.nodes:
                problems.append(SpecError(f"output '{o}' is not a layer"))
        if self.register_order is not None and sorted(self.register_order) != sorted(
                n.name for n in self.layers):
            problems.append(SpecError("the registration order is not the layers' names"))
        return problems

    def _scope_names(self, scope: str) -> tuple[list[str], list[str]]:
        """For the layers of ``scope`` (a dotted name, "" at top level): its atoms that are
        reserved, in order, and the layers it lies in, innermost first."""
        if not scope:
            return [], []
        reserved = [atom for atom in scope.split(".") if _reserved(atom)]
        holders = []
        while True:
            if scope in self.nodes:
                holders.append(scope)
            if "." not in scope:
                return reserved, holders
            scope = scope.rpartition(".")[0]

    def params(self) -> Counts:
        """Parameters, trainable parameters, buffer values and MACs (netspec/totals.py)."""
        return count(self)


def _reserved(atom: str) -> bool:
    """A name torch modules use for themselves, which no part of a layer's name may be."""
    return atom.startswith("_") or atom in RESERVED_NAMES


def live_nodes(nodes: dict[str, Node], outputs: tuple[str, ...]) -> set[str]:
    """The nodes ``outputs`` depend on (resolve asks before the Graph exists)."""
    seen = set(outputs)
    stack = list(outputs)
    while stack:
        for i in nodes[stack.pop()].inputs:
            if i not in seen:
                seen.add(i)
                stack.append(i)
    return seen
