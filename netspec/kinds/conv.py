"""Convolutions: ``conv`` and its decoder twin ``conv_transpose`` (2-D, [C, H, W])."""

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationInfo, field_validator

from netspec.kinds.base import LayerArgs, NonNegInt, PosInt, Shape, ShapeError, fmt_shape

Pair = PosInt | tuple[PosInt, PosInt]
NonNegPair = NonNegInt | tuple[NonNegInt, NonNegInt]


def pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _k_text(k: tuple[int, int]) -> str:
    return f"{k[0]}²" if k[0] == k[1] else f"{k[0]}·{k[1]}"


class Conv(LayerArgs):
    """k×k convolution: k²·(c_in/groups)·c_out weights and c_out biases."""

    op = "conv"
    autocast = "lower"
    auto_name = "conv"
    ranks = (3,)
    fresh_output = True
    linear_map = True
    input_fold_note = "no padding"
    samples = ({"out": 4, "k": 3}, {"out": 6, "k": 1, "stride": 2, "bias": False},
               {"out": 4, "k": 3, "groups": 2, "dilation": 2})

    out: PosInt
    k: Pair
    stride: Pair = 1
    pad: NonNegPair | None = None
    dilation: Pair = 1
    groups: PosInt = 1
    bias: bool = True

    @property
    def padding(self) -> tuple[int, int]:
        """``pad`` or, by default, dilation·(k−1)//2: "same" size at stride 1 for odd k."""
        if self.pad is not None:
            return pair(self.pad)
        k, d = pair(self.k), pair(self.dilation)
        return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)

    def canonical(self) -> dict[str, Any]:
        return {**self.model_dump(), "pad": self.padding, "k": pair(self.k),
                "stride": pair(self.stride), "dilation": pair(self.dilation)}

    def input_fold_refusal(self) -> str | None:
        if self.padding != (0, 0):
            return (f"with padding {list(self.padding)} (a fold would be inexact at the "
                    "borders)")
        return None

    def _check_groups(self, c_in: int) -> None:
        if c_in % self.groups:
            raise ShapeError(f"groups={self.groups} does not divide the {c_in} input channels",
                             "groups")
        if self.out % self.groups:
            raise ShapeError(f"groups={self.groups} does not divide out={self.out}", "groups")

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.check_input(inputs)
        self._check_groups(c)
        k, s, d, p = pair(self.k), pair(self.stride), pair(self.dilation), self.padding
        # the two axes written out, not a loop: a search resolves every conv thousands
        # of times (netspec fit)
        size = ((h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1,
                (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1)
        if min(size) < 1:
            i = 0 if size[0] < 1 else 1
            raise ShapeError(f"kernel {k[i]} (dilation {d[i]}, pad {p[i]}) is larger than "
                             f"the {fmt_shape(inputs[0])} input", "k")
        return (self.out, *size)

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        c_in = inputs[0][0]
        k = pair(self.k)
        shapes: dict[str, Shape] = {"weight": (self.out, c_in // self.groups, *k)}
        if self.bias:
            shapes["bias"] = (self.out,)
        return shapes

    def macs(self, inputs: Sequence[Shape], out: Shape) -> int:
        k = pair(self.k)
        return out[0] * out[1] * out[2] * (inputs[0][0] // self.groups) * k[0] * k[1]

    def formula(self, inputs: Sequence[Shape]) -> str:
        c_in = inputs[0][0]
        cin = f"({c_in}/{self.groups})" if self.groups > 1 else str(c_in)
        bias = self.out if self.bias else 0
        return f"{_k_text(pair(self.k))}·{cin}·{self.out} + {bias}"


class ConvTranspose(LayerArgs):
    """Transposed convolution (a decoder's learned upsampling)."""

    op = "conv_transpose"
    autocast = "lower"
    auto_name = "up"
    ranks = (3,)
    fresh_output = True
    linear_map = True
    weight_out_axis = 1  # [C_in, C_out/groups, kh, kw]
    samples = ({"out": 4, "k": 2, "stride": 2}, {"out": 3, "k": 3, "pad": 1})

    out: PosInt
    k: Pair
    stride: Pair = 1
    pad: NonNegPair = 0
    dilation: Pair = 1
    output_pad: NonNegPair = 0
    groups: PosInt = 1
    bias: bool = True

    @field_validator("output_pad")
    @classmethod
    def _output_pad_below_stride(cls, v: NonNegPair, info: ValidationInfo) -> NonNegPair:
        # torch also allows output_pad < dilation, but onnxruntime refuses output_pad ≥
        # stride: the spec language keeps to what every backend runs
        for op_, s in zip(pair(v), pair(info.data.get("stride", 1)), strict=True):
            if op_ >= s:
                raise ValueError("output_pad must be smaller than stride")
        return v

    def input_fold_refusal(self) -> str | None:
        # only with one tap per output position is Σ W·t the same at every position
        if pair(self.k) == (1, 1) and pair(self.stride) == (1, 1) and pair(self.pad) == (0, 0):
            return None
        return ("that is not 1×1 stride 1 (a fold would be inexact where taps overlap or "
                "miss)")

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.check_input(inputs)
        if c % self.groups or self.out % self.groups:
            raise ShapeError(f"groups={self.groups} must divide both the {c} input channels "
                             f"and out={self.out}", "groups")
        k, s, d = pair(self.k), pair(self.stride), pair(self.dilation)
        p, op_ = pair(self.pad), pair(self.output_pad)
        size = [(n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
                for n, ki, si, di, pi, oi in zip((h, w), k, s, d, p, op_, strict=True)]
        if min(size) < 1:
            raise ShapeError(f"pad {self.pad} leaves no output for a {fmt_shape(inputs[0])} input",
                             "pad")
        return (self.out, size[0], size[1])

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        c_in = inputs[0][0]
        shapes: dict[str, Shape] = {"weight": (c_in, self.out // self.groups, *pair(self.k))}
        if self.bias:
            shapes["bias"] = (self.out,)
        return shapes

    def macs(self, inputs: Sequence[Shape], out: Shape) -> int:
        c, h, w = inputs[0]
        k = pair(self.k)
        return c * h * w * (self.out // self.groups) * k[0] * k[1]

    def formula(self, inputs: Sequence[Shape]) -> str:
        c_in = inputs[0][0]
        cout = f"({self.out}/{self.groups})" if self.groups > 1 else str(self.out)
        return f"{_k_text(pair(self.k))}·{c_in}·{cout} + {self.out if self.bias else 0}"
