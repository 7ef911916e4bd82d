"""Element-wise activations (and softmax over channels): shape unchanged; only PReLU
owns parameters (its slopes)."""

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from netspec.kinds.base import Float, LayerArgs, Saved, Shape


class _Activation(LayerArgs):
    """An activation: a spec may also name it through the ``act`` family, ``act: silu``
    (so that a var or a default chooses it: ``act: $act``)."""

    family = "act"
    #: element-wise, so tokens too
    ranks = (1, 2, 3)


class ReLU(_Activation):
    op = "relu"
    auto_name = "relu"
    inplace_ok = True

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=(), output=True)  # its output (its input's, when in place)


class ReLU6(_Activation):
    op = "relu6"
    auto_name = "relu"
    inplace_ok = True


class GELU(_Activation):
    op = "gelu"
    auto_name = "gelu"
    shorthand = "approximate"

    samples = ({}, {"approximate": "tanh"})

    approximate: Literal["none", "tanh"] = "none"


class SiLU(_Activation):
    op = "silu"
    auto_name = "silu"


class Sigmoid(_Activation):
    op = "sigmoid"
    auto_name = "sigmoid"

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=(), output=True)


class Tanh(_Activation):
    op = "tanh"
    auto_name = "tanh"

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=(), output=True)


class LeakyReLU(_Activation):
    op = "leaky_relu"
    auto_name = "relu"
    shorthand = "slope"

    samples = ({}, {"slope": 0.2})

    slope: Float = Field(default=0.01, ge=0)


class Hardswish(_Activation):
    """x·relu6(x + 3)/6 (MobileNetV3)."""

    op = "hardswish"
    auto_name = "hswish"


class Hardsigmoid(_Activation):
    """relu6(x + 3)/6: a piecewise-linear sigmoid (MobileNetV3's squeeze-excitation gate)."""

    op = "hardsigmoid"
    auto_name = "hsigmoid"


class Mish(_Activation):
    """x·tanh(softplus(x))."""

    op = "mish"
    auto_name = "mish"


class ELU(_Activation):
    """x where x > 0, else α·(exp(x) − 1)."""

    op = "elu"
    auto_name = "elu"
    shorthand = "alpha"
    samples = ({}, {"alpha": 0.5})

    alpha: Float = Field(default=1.0, gt=0)


class Softplus(_Activation):
    """log(1 + exp(β·x)) / β, a smooth ReLU; where β·x is above ``threshold`` it is x
    itself, as torch computes it (exp would overflow, and the two agree there)."""

    op = "softplus"
    auto_name = "softplus"
    shorthand = "beta"
    samples = ({}, {"beta": 2.0, "threshold": 3.0})

    beta: Float = Field(default=1.0, gt=0)
    threshold: Float = 20.0


class Softmax(LayerArgs):
    """exp / Σ exp over the channels (features), at each position of a [C, H, W] input."""

    op = "softmax"
    auto_name = "softmax"

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=(), output=True)


class PReLU(_Activation):
    """max(0, x) + a·min(0, x) with learned slopes a: one shared, or one per channel."""

    op = "prelu"
    autocast = "lower"
    auto_name = "prelu"
    ranks = (1, 3)  # its slopes are per channel, axis 1 of torch's input
    decay = False  # He et al. (2015): decaying the slopes pulls PReLU towards ReLU
    samples = ({}, {"per_channel": True, "init": 0.1})

    per_channel: bool = False
    #: the slopes' starting value (torch's default)
    init: Float = 0.25

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {"weight": (inputs[0][0] if self.per_channel else 1,)}

    def formula(self, inputs: Sequence[Shape]) -> str:
        return f"{inputs[0][0]} slopes" if self.per_channel else "1 slope"
