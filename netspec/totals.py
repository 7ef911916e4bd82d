"""The totals of a network's layers (``Counts``): parameters, trainable parameters,
buffer values and MACs, from each kind's own rules and the shapes resolve inferred.

Below the Graph, whose ``params()`` returns them, so this module sees a Graph and its
nodes only through the two protocols here and never imports netspec/graph.py;
netspec/count.py, on the floor above, adds each layer's count with its formula."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, overload

from netspec.kinds import LayerArgs, Shape


class Layer(Protocol):
    """What counting reads of a node (netspec/graph.py's ``Node``)."""

    @property
    def args(self) -> LayerArgs | None: ...

    @property
    def inputs(self) -> tuple[str, ...]: ...

    @property
    def shape(self) -> Shape: ...


class Layers(Protocol):
    """What counting reads of a Graph: its nodes by name, its layers in order."""

    @property
    def nodes(self) -> Mapping[str, Layer]: ...

    @property
    def layers(self) -> Sequence[Layer]: ...


@dataclass(frozen=True)
class Counts:
    params: int
    #: parameters an optimizer updates: all but the fixed ones (DFL's bins)
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
    return sum(map(math.prod, shapes.values()))  # numel, without a call of ours per tensor


class InputShapes(Sequence[Shape]):
    """A node's input shapes, looked up as a kind's rule reads them. Most kinds read one
    or two; a merge that reads many (each merge of a dense block reads every earlier
    output) has no parameters, and counting it must not cost a look-up per input."""

    __slots__ = ("_names", "_nodes")

    def __init__(self, graph: Layers, node: Layer) -> None:
        self._nodes = graph.nodes
        self._names = node.inputs

    def __len__(self) -> int:
        return len(self._names)

    @overload
    def __getitem__(self, i: int) -> Shape: ...

    @overload
    def __getitem__(self, i: slice) -> list[Shape]: ...

    def __getitem__(self, i: int | slice) -> Shape | list[Shape]:
        if isinstance(i, slice):
            return [self._nodes[n].shape for n in self._names[i]]
        return self._nodes[self._names[i]].shape


def input_shapes(graph: Layers, node: Layer) -> Sequence[Shape]:
    """What a kind's rules read: most layers read one tensor, whose shape is looked up
    at once; a merge's through :class:`InputShapes`."""
    if len(node.inputs) == 1:
        return (graph.nodes[node.inputs[0]].shape,)
    return InputShapes(graph, node)


def count(graph: Layers) -> Counts:
    """The totals; no per-layer formula text, since a search counts thousands of variants
    (``netspec fit``). A rule a kind leaves to :class:`LayerArgs` (no tensors, no MACs:
    activations, merges, reshapes) is not called: it would add 0."""
    params = fixed = buffers = macs = 0
    for node in graph.layers:
        args = node.args
        assert args is not None
        kind = type(args)
        ins = input_shapes(graph, node)
        if kind.param_shapes is not _NONE_PARAMS:
            p = total(args.param_shapes(ins))
            params += p
            fixed += p if args.fixed_params else 0
        if kind.buffer_shapes is not _NONE_BUFFERS:
            buffers += total(args.buffer_shapes(ins))
        if kind.macs is not _NO_MACS:
            macs += args.macs(ins, node.shape)
    return Counts(params=params, trainable=params - fixed, buffers=buffers, macs=macs)


#: the base class's rules, which every kind that owns no tensors (or does no MACs) keeps
_NONE_PARAMS = LayerArgs.param_shapes
_NONE_BUFFERS = LayerArgs.buffer_shapes
_NO_MACS = LayerArgs.macs
