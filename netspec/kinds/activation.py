"""Element-wise activations: no parameters, shape unchanged."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from netspec.kinds.base import Float, LayerArgs


class ReLU(LayerArgs):
    op = "relu"
    auto_name = "relu"


class ReLU6(LayerArgs):
    op = "relu6"
    auto_name = "relu"


class GELU(LayerArgs):
    op = "gelu"
    auto_name = "gelu"
    shorthand = "approximate"

    approximate: Literal["none", "tanh"] = "none"


class SiLU(LayerArgs):
    op = "silu"
    auto_name = "silu"


class Sigmoid(LayerArgs):
    op = "sigmoid"
    auto_name = "sigmoid"


class Tanh(LayerArgs):
    op = "tanh"
    auto_name = "tanh"


class LeakyReLU(LayerArgs):
    op = "leaky_relu"
    auto_name = "relu"
    shorthand = "slope"

    slope: Float = Field(default=0.01, ge=0)
