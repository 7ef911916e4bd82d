"""Merging tensors: the current one with named earlier ones (long skips), and the
merges residual and dense blocks produce. Channel concatenation is along C."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from netspec.kinds.base import LayerArgs, Shape, ShapeError, fmt_shape


class _Merge(LayerArgs):
    arity = None
    shorthand = "from"

    #: names given with ``as:`` to earlier layers; the current tensor comes first
    from_: list[str] = Field(default_factory=list, alias="from")


class Add(_Merge):
    op = "add"
    auto_name = "add"

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        first = inputs[0]
        for other in inputs[1:]:
            if other != first:
                raise ShapeError(f"add needs equal shapes, got {fmt_shape(first)} and "
                                 f"{fmt_shape(other)}")
        return first


class Concat(_Merge):
    op = "concat"
    auto_name = "cat"

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        first = inputs[0]
        for other in inputs[1:]:
            if len(other) != len(first) or other[1:] != first[1:]:
                raise ShapeError(
                    f"concat joins channels and needs equal sizes otherwise, got "
                    f"{fmt_shape(first)} and {fmt_shape(other)}")
        return (sum(x[0] for x in inputs), *first[1:])
