"""The totals of a network's layers (``Counts``): parameters, trainable parameters,
buffer values and MACs, from each kind's own rules and the shapes resolve inferred.

Below the Graph, whose ``params()`` returns them, so this module sees a Graph and its
nodes only through the two protocols here and never imports netspec/graph.py;
netspec/count.py, on the floor above, adds each layer's count with its formula."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, overload

from netspec.kinds import LayerArgs, Shape, numel


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
    return sum(numel(s) for s in shapes.values())


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


def count(graph: Layers) -> Counts:
    """The totals; no per-layer formula text, since a search counts thousands of variants
    (``netspec fit``)."""
    params = fixed = buffers = macs = 0
    for node in graph.layers:
        args = node.args
        assert args is not None
        ins = InputShapes(graph, node)
        p = total(args.param_shapes(ins))
        params += p
        fixed += p if args.fixed_params else 0
        buffers += total(args.buffer_shapes(ins))
        macs += args.macs(ins, node.shape)
    return Counts(params=params, trainable=params - fixed, buffers=buffers, macs=macs)
