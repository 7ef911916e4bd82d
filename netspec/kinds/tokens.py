"""Token sequences: a transformer's [N, D] layout next to the [C, H, W] maps of CNNs.

A map becomes tokens only through ``tokens`` (each of the H·W positions a token of its C
channels, row by row: ViT's patchify is a k×k, stride-k conv and then ``tokens``) and
tokens become a map only through ``map``, so every shape stays checked statically: a
layer that needs one layout and is given the other is refused at the layer.

``class_token`` prepends a learned token, ``pos_embed`` adds a learned [N, D] table (the
layer that fixes the token count), and ``select`` takes one token out, or the mean of
all, as the [D] feature vector a classifier head reads.
"""

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from netspec.kinds.base import (
    ENDS_SIZE,
    Float,
    Int,
    LayerArgs,
    PosInt,
    Saved,
    Shape,
    ShapeError,
    fmt_shape,
)


class Tokens(LayerArgs):
    """[C, H, W] → [H·W, C]: torch's ``x.flatten(2).transpose(1, 2)``."""

    op = "tokens"
    auto_name = "tokens"
    ranks = (3,)
    view = True

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.check_input(inputs)
        return (h * w, c)

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())


class ToMap(LayerArgs):
    """[N, D] → [D, H, W] with N = H·W: the inverse of ``tokens``."""

    op = "map"
    auto_name = "map"
    shorthand = "size"
    ranks = (2,)
    samples = ({"size": [2, 2]},)

    #: [H, W] of the map, row by row
    size: tuple[PosInt, PosInt]

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        n, d = self.check_input(inputs)
        h, w = self.size
        if h * w != n:
            raise ShapeError(f"a {h}×{w} map holds {h * w} positions, but there are {n} "
                             "tokens", "size")
        return (d, h, w)

    def symbolic_size(self, inputs: Sequence[Shape], out: Shape) -> str:
        h, w = self.size
        return f"lays the tokens out as a {h}×{w} map, the spec's size"

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())  # a copy: its backward needs only the sizes


class ClassToken(LayerArgs):
    """A learned token put before the others: [N, D] → [N + 1, D]. Its [1, 1, D] tensor
    starts at 0 (torchvision's ViT) or, with ``std``, drawn from N(0, std²) (timm's,
    1e-6)."""

    op = "class_token"
    autocast = "widen"
    auto_name = "cls"
    ranks = (2,)
    fresh_output = True
    #: a learned input, not a weight: timm's ViT keeps it out of weight decay (its
    #: ``no_weight_decay``), and decaying it would pull it towards the zero it starts at
    decay = False
    samples = ({}, {"std": 1e-6, "register_first": True})

    std: Float = Field(default=0.0, ge=0)
    #: register the token before every other tensor of the enclosing scope, as
    #: torchvision's and timm's ViT hold it as a parameter of the model itself
    register_first: bool = False

    def registers_first(self) -> bool:
        return self.register_first

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        n, d = self.check_input(inputs)
        return (n + 1, d)

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {"token": (1, 1, inputs[0][1])}

    def formula(self, inputs: Sequence[Shape]) -> str:
        return f"{inputs[0][1]}"

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())  # a concatenation


class PosEmbed(LayerArgs):
    """A learned position embedding added to the tokens: one [D] vector per position, a
    [1, N, D] tensor drawn from N(0, std²) (0.02, as torchvision's and timm's ViT). It
    fixes the token count, so the image size, to the spec's."""

    op = "pos_embed"
    autocast = "widen"
    auto_name = "pos"
    ranks = (2,)
    fresh_output = True
    decay = False  # as the class token (timm's ``no_weight_decay``)
    samples = ({}, {"std": 0.1}, {"positions": 4}, {"register_first": True})

    std: Float = Field(default=0.02, ge=0)
    #: the number of positions the table holds, when written: checked against the
    #: tokens that reach it (197 for ViT-B/16 at 224: 14·14 patches and a class token)
    positions: PosInt | None = None
    #: register the table before every other tensor of the enclosing scope, after a
    #: class token that does too (timm's ViT holds both as its own parameters)
    register_first: bool = False

    def registers_first(self) -> bool:
        return self.register_first

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        n, d = self.check_input(inputs)
        if self.positions is not None and self.positions != n:
            raise ShapeError(f"positions={self.positions}, but {n} tokens reach this "
                             "layer", "positions")
        return (n, d)

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        n, d = self.check_input(inputs)
        return {"weight": (1, n, d)}

    def formula(self, inputs: Sequence[Shape]) -> str:
        n, d = inputs[0]
        return f"{n}·{d}"

    def symbolic_size(self, inputs: Sequence[Shape], out: Shape) -> str:
        n = inputs[0][0]
        return f"is a learned table of {n} positions, so the token count is the spec's"

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())  # an addition


class Select(LayerArgs):
    """One token out of [N, D] (``select: 0``, the class token; negative counts from the
    end), or the mean of all of them (``select: mean``): the [D] vector a head reads."""

    op = "select"
    auto_name = "select"
    shorthand = "token"
    ranks = (2,)
    samples = ({"token": 0}, {"token": "mean"}, {"token": -1})

    token: Int | Literal["mean"]

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        n, d = self.check_input(inputs)
        if self.token != "mean" and not -n <= self.token < n:
            raise ShapeError(f"token {self.token} is outside the {n} tokens of "
                             f"{fmt_shape(inputs[0])}", "token")
        return (d,)

    def symbolic_size(self, inputs: Sequence[Shape], out: Shape) -> str:
        return ENDS_SIZE

    def is_view(self) -> bool:
        # x[:, i] is a view: a reader that keeps it (the head's linear, a norm) keeps
        # the whole [N, D] block under it; a mean is new memory
        return self.token != "mean"

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())  # its backward needs only the sizes

