"""Merging tensors: the current one with named earlier ones (long skips, gates), and
the merges residual, dense and parallel blocks produce. Concatenation is along C."""

from collections.abc import Sequence

from pydantic import Field

from netspec.kinds.base import LayerArgs, Saved, Shape, ShapeError, fmt_shape


class _Merge(LayerArgs):
    arity = None
    shorthand = "from"
    fresh_output = True

    #: names of earlier tensors (``as:`` names, ``in``, ``m.0``, ``m.*``); the current
    #: tensor comes first unless the list names it
    from_: list[str] = Field(default_factory=list, alias="from")


class Add(_Merge):
    op = "add"
    auto_name = "add"
    ranks = (1, 2, 3)
    inplace_ok = True

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        first = inputs[0]
        for other in inputs[1:]:
            if other != first:
                raise ShapeError(f"add needs equal shapes, got {fmt_shape(first)} and "
                                 f"{fmt_shape(other)}")
        return first

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())


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

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())


class Mul(_Merge):
    """Element-wise product with broadcasting, as numpy and torch broadcast: a size-1
    axis stretches, so a [C, 1, 1] gate scales every position of a [C, H, W] map
    (squeeze-and-excitation)."""

    op = "mul"
    auto_name = "mul"

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        out = inputs[0]
        for other in inputs[1:]:
            if len(other) != len(out) or any(a != b and 1 not in (a, b)
                                              for a, b in zip(out, other, strict=True)):
                raise ShapeError(f"cannot broadcast {fmt_shape(out)} with "
                                 f"{fmt_shape(other)}: each axis must be equal or 1")
            out = tuple(max(a, b) for a, b in zip(out, other, strict=True))
        return out

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=tuple(range(len(inputs))))  # each factor, for the other's grad
