"""The flat net: what a reader found in a source network, before any structure is
recovered. Pure Python.

A :class:`FlatNode` is one netspec layer: its spec kind and options (as a spec writes
them), the nodes it reads, the module path it came from, the module scopes around it
(outermost first, each with the class that defines its behaviour, so that instances of
one class can become one block) and where each of its tensors comes from in the source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from netspec.errors import UsageError
from netspec.kinds import FAMILIES, LayerArgs, Shape, ShapeError, fmt_shape, numel


class Unmappable(UsageError):
    """A part of the source netspec cannot express (exit 2, nothing written). The message
    names the module path and the operation: ``features.3.attn: scaled_dot_product_attention
    has no netspec kind``."""


@dataclass(frozen=True)
class ScopeRef:
    """A module around a layer: its path in the source and what it is."""

    path: str
    #: the class that defines the module's behaviour (``torchvision.models.resnet.Bottleneck``)
    #: or, for an ONNX file, '' (its scopes come from node names and carry no class)
    cls: str
    #: a pure container (nn.Sequential, a subclass that keeps its forward, ModuleList…):
    #: its children are the structure, it is none itself
    container: bool = False


@dataclass
class FlatNode:
    id: int
    #: the name a spec writes (``conv``, ``norm``…) and the options it writes there
    kind: str
    options: dict[str, Any]
    inputs: tuple[int, ...]
    #: the source's module path of the layer, or the path of the module whose code made it
    path: str
    scopes: tuple[ScopeRef, ...] = ()
    #: each netspec tensor name (``weight``) → the source's name for it
    tensors: dict[str, str] = field(default_factory=dict)
    #: the parts of one split share a group and differ in ``part``
    split_group: int | None = None
    part: int | None = None
    shape: Shape = ()
    args: LayerArgs | None = None
    #: ``path`` is the layer's own module (``fc``), not the module whose code called a
    #: function (``F.relu`` in ``layer1.0``'s forward, or the network's own: its name)
    own_path: bool = True

    @property
    def local(self) -> str:
        """The last component of the source path (``conv1`` of ``layer1.0.conv1``)."""
        return self.path.rpartition(".")[2]


@dataclass
class Mapped:
    """A call read as a netspec layer."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    #: netspec tensor name → the source's name (a module's ``weight`` → its path.weight)
    tensors: dict[str, str] = field(default_factory=dict)
    #: the tensors the layer reads, in order (default: the call's tensor arguments that
    #: are not parameters), as the reader was given them
    inputs: list[Any] | None = None
    #: the output keeps the input's layout (an element-wise op, a linear over channels)
    keeps_layout: bool = False
    #: torch's output shape with the batch axis, where it differs from netspec's
    #: (``x.mean((2, 3))`` is netspec's global pool, seen flat)
    view: tuple[int, ...] | None = None
    #: a split: the channels of each part, one node each
    parts: list[int] | None = None
    #: the call returns a tuple: the layer's output, then values netspec does not compute,
    #: each described (nn.MultiheadAttention's attention weights); a use of one is refused
    extra_outputs: tuple[str, ...] = ()


def kind_class(kind: str, options: dict[str, Any]) -> type[LayerArgs]:
    """The kind a spec's ``kind: options`` means (a family's member by its ``kind``)."""
    members = FAMILIES[kind]
    return members.get(options.get("kind")) or members[None]


def validated(kind: str, options: dict[str, Any]) -> LayerArgs:
    model = kind_class(kind, options).model_validate(options)
    return model


@dataclass
class FlatNet:
    """The source as netspec layers, in an order where inputs come first."""

    name: str
    origin: str
    input_shape: Shape
    nodes: list[FlatNode]
    outputs: tuple[int, ...]
    #: every source parameter's name and size, in the source's registration order
    source_params: dict[str, int] = field(default_factory=dict)
    #: the source's tensors (parameters and buffers) by name, as numpy arrays, when known
    source_tensors: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[FlatNode]:
        return iter(self.nodes)

    def node(self, i: int) -> FlatNode:
        return self.nodes[i]

    def add(self, mapped: Mapped, inputs: Sequence[int], in_shapes: list[Shape], path: str,
            scopes: tuple[ScopeRef, ...], tensor_shape: Callable[[str], Shape | None], *,
            split: tuple[int, int] | None = None, own_path: bool = True) -> FlatNode:
        """Append ``mapped`` as a layer reading ``inputs``: its options validated as a
        spec's are, its output shape by the kind's own rule, and every tensor the kind
        counts present in the source at its size (``tensor_shape`` looks one up by the
        source's name). ``split`` is (group, part) for one part of a split."""
        try:
            args = validated(mapped.kind, mapped.options)
            if split is not None:
                args = args.part(split[1])  # type: ignore[attr-defined]
            shape = args.out_shape(in_shapes)
        except (ShapeError, ValueError) as e:
            raise Unmappable(f"{path}: {mapped.kind} {mapped.options}: "
                             f"{str(e).splitlines()[0]}") from None
        want = {**args.param_shapes(in_shapes), **args.buffer_shapes(in_shapes)}
        for tensor, wanted in want.items():
            source = mapped.tensors.get(tensor)
            got = tensor_shape(source) if source else None
            if got is None or numel(got) != numel(wanted):
                raise Unmappable(f"{path}: {mapped.kind} needs a {tensor} of "
                                 f"{fmt_shape(wanted)}; the source has "
                                 f"{'none' if got is None else fmt_shape(got)}")
        flat = FlatNode(len(self.nodes), mapped.kind, dict(mapped.options), tuple(inputs),
                        path, scopes, {n: s for n, s in mapped.tensors.items() if n in want},
                        split[0] if split else None, split[1] if split else None, shape,
                        args, own_path)
        self.nodes.append(flat)
        return flat

    def consumers(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        out[INPUT_ID] = out.get(INPUT_ID, [])
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n.id)
        return out


#: the id of the network's input in :attr:`FlatNode.inputs`
INPUT_ID = -1


def prune(net: FlatNet) -> None:
    """Drop the layers no output depends on (the unused half of a split): the resolver
    leaves them out too, and their weights, if any, count as unused."""
    by_id = {n.id: n for n in net.nodes}
    live: set[int] = set()
    todo = list(net.outputs)
    while todo:
        i = todo.pop()
        if i in live or i == INPUT_ID:
            continue
        live.add(i)
        todo += by_id[i].inputs
    net.nodes = [n for n in net.nodes if n.id in live]
