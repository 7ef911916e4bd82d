"""Fully connected layer over a [F] feature vector."""

from __future__ import annotations

from collections.abc import Sequence

from netspec.kinds.base import LayerArgs, PosInt, Shape


class Linear(LayerArgs):
    """c_in·c_out weights and c_out biases."""

    op = "linear"
    auto_name = "fc"
    ranks = (1,)

    out: PosInt
    bias: bool = True

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        self.check_input(inputs)
        return (self.out,)

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {"weight": (self.out, inputs[0][0])}
        if self.bias:
            shapes["bias"] = (self.out,)
        return shapes

    def macs(self, inputs: Sequence[Shape], out: Shape) -> int:
        return inputs[0][0] * self.out

    def formula(self, inputs: Sequence[Shape]) -> str:
        return f"{inputs[0][0]}·{self.out} + {self.out if self.bias else 0}"
