"""Pooling: windows (max, avg), to a fixed size (adaptive), or to 1×1 (global)."""

from collections.abc import Sequence
from itertools import chain
from typing import Any

from netspec.kinds.base import (
    ENDS_SIZE,
    KEEPS_SIZE,
    LayerArgs,
    Saved,
    Shape,
    ShapeError,
    fmt_shape,
    numel,
)
from netspec.kinds.conv import NonNegPair, Pair, pair


def _sees_input(start: int, k: int, d: int, n: int) -> bool:
    """Whether a window of k positions d apart from ``start`` touches [0, n): the same as
    ``any(0 <= start + j * d < n for j in range(k))``, in O(1)."""
    j = max(0, -(start // d))  # the first step at or past 0: ceil(-start / d)
    return j < k and 0 <= start + j * d < n


class WindowPool(LayerArgs):
    """The shared options and rules of the max and average pools (no op: not a kind
    itself); public because the ONNX emitters read the same options."""

    ranks = (3,)
    fresh_output = True

    k: Pair
    #: defaults to k: non-overlapping windows
    stride: Pair | None = None
    pad: NonNegPair = 0
    ceil: bool = False

    @property
    def strides(self) -> tuple[int, int]:
        return pair(self.stride if self.stride is not None else self.k)

    def canonical(self) -> dict[str, Any]:
        return {**self.model_dump(), "k": pair(self.k), "stride": self.strides,
                "pad": pair(self.pad)}

    def _dilation(self) -> tuple[int, int]:
        return (1, 1)

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.check_input(inputs)
        k, s, p, d = pair(self.k), self.strides, pair(self.pad), self._dilation()
        if p[0] > k[0] // 2 or p[1] > k[1] // 2:
            raise ShapeError(f"pad {self.pad} is more than half the kernel {self.k}", "pad")
        size = []
        for n, ki, si, pi, di in zip((h, w), k, s, p, d, strict=True):
            span = n + 2 * pi - di * (ki - 1) - 1
            o = (-(-span // si) if self.ceil else span // si) + 1
            # as torch: with ceil, the last window must start inside the input or left pad
            if self.ceil and (o - 1) * si >= n + pi:
                o -= 1
            if o < 1 or span < 0:
                raise ShapeError(f"window {ki} is larger than the {fmt_shape(inputs[0])} input",
                                 "k")
            # a dilated window can step over the input and see only padding: its max is
            # -inf in torch, and backends disagree on what follows. Only windows that
            # start in the left padding can (ceil mode drops any that start past the
            # input), so the check is bounded by the padding, not the input's size. Each
            # window is checked in O(1): its first position at or after 0 is the only
            # candidate. That position's offset past 0, (start mod di), repeats every di
            # windows, and the number of steps to reach it falls as i grows, so the first
            # window in the padding that sees only padding is among the first di; the one
            # after them starts at or past 0 and is checked as well
            last = min(o, -(-pi // si) + 1)
            for i in chain(range(min(last, di)), (last - 1,)):
                if not _sees_input(i * si - pi, ki, di, n):
                    raise ShapeError(f"window {i} (dilation {di}, pad {pi}) sees only padding "
                                     f"of the {fmt_shape(inputs[0])} input", "pad")
            size.append(o)
        return (c, size[0], size[1])

    def symbolic_size(self, inputs: Sequence[Shape], out: Shape) -> str:
        # a last window that can start in the right padding at some size: torch drops
        # it, ONNX's ceil_mode keeps it; at a fixed size the emitter knows which applies
        k, s, p, d = pair(self.k), self.strides, pair(self.pad), self._dilation()
        if self.ceil and any(si + pi > di * (ki - 1) + 1
                             for ki, si, pi, di in zip(k, s, p, d, strict=True)):
            return ("is a ceil-mode pool whose last window can start in the padding at some "
                    "sizes (torch drops it, ONNX keeps it)")
        return KEEPS_SIZE


class MaxPool(WindowPool):
    op = "maxpool"
    auto_name = "pool"
    samples = ({"k": 2}, {"k": 3, "stride": 2, "pad": 1}, {"k": 2, "ceil": True},
               {"k": 3, "stride": 1, "pad": 1}, {"k": 5, "stride": 1, "pad": 2})

    dilation: Pair = 1

    def _dilation(self) -> tuple[int, int]:
        return pair(self.dilation)

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(extra=((numel(out), 8, True),))  # its input, and int64 argmax indices


class AvgPool(WindowPool):
    op = "avgpool"
    auto_name = "pool"
    samples = ({"k": 2}, {"k": 3, "stride": 2, "pad": 1, "count_pad": False},
               {"k": 3, "stride": 2, "ceil": True})

    #: whether zero padding counts in each window's average (torch's default)
    count_pad: bool = True


class AdaptiveAvgPool(LayerArgs):
    op = "adaptive_avgpool"
    auto_name = "pool"
    shorthand = "size"
    ranks = (3,)
    samples = ({"size": 1}, {"size": [2, 3]})

    size: Pair

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, _, _ = self.check_input(inputs)
        return (c, *pair(self.size))

    def symbolic_size(self, inputs: Sequence[Shape], out: Shape) -> str:
        if tuple(out[1:]) == (1, 1):
            return ENDS_SIZE
        return (f"averages windows computed from the spec's size to give {list(out[1:])}; "
                "only an adaptive pool to 1 (or a global pool) works at any size")

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        # to a size of 1 torch takes the mean, whose backward needs no tensor
        return Saved(inputs=()) if tuple(pair(self.size)) == (1, 1) else Saved()


class GlobalAvgPool(LayerArgs):
    op = "global_avgpool"
    auto_name = "pool"
    ranks = (3,)

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, _, _ = self.check_input(inputs)
        return (c, 1, 1)

    def symbolic_size(self, inputs: Sequence[Shape], out: Shape) -> str:
        return ENDS_SIZE

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())  # a mean: its backward needs no tensor
