"""Fully connected layer over a [F] feature vector, or each of a sequence's tokens."""

from collections.abc import Sequence
from typing import Literal

from netspec.kinds.base import LayerArgs, PosInt, Shape, ShapeError, fmt_shape, numel


class Linear(LayerArgs):
    """c_in·c_out weights and c_out biases."""

    op = "linear"
    autocast = "lower"
    weights_kept_for_input_grad = True
    auto_name = "fc"
    ranks = (1, 2, 3)
    fresh_output = True
    linear_map = True
    samples = ({"out": 5}, {"out": 3, "bias": False}, {"out": 4, "over": "channels"})

    out: PosInt
    bias: bool = True
    #: features: a [F] vector; channels: the same map at each position of a [C, H, W]
    #: input (ConvNeXt's Linear on channels-last), weight [out, C] as nn.Linear's
    over: Literal["features", "channels"] = "features"

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        if len(x) == 2:  # tokens [N, D]: the same map on each token's D features
            return (x[0], self.out)
        if self.over == "channels":
            if len(x) != 3:
                raise ShapeError(f"over channels takes a [C, H, W] map input, got "
                                 f"{fmt_shape(x)}", "over")
            return (self.out, *x[1:])
        if len(x) != 1:
            raise ShapeError(f"takes a [F] features input, got {fmt_shape(x)} "
                             "(add flatten before it)")
        return (self.out,)

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {"weight": (self.out, self.in_features(inputs[0]))}
        if self.bias:
            shapes["bias"] = (self.out,)
        return shapes

    @staticmethod
    def in_features(x: Shape) -> int:
        """The features each output reads: F, C, or a token's D."""
        return x[1] if len(x) == 2 else x[0]

    def macs(self, inputs: Sequence[Shape], out: Shape) -> int:
        return numel(out) * self.in_features(inputs[0])

    def formula(self, inputs: Sequence[Shape]) -> str:
        return f"{self.in_features(inputs[0])}·{self.out} + {self.out if self.bias else 0}"
