"""Layers that change the layout, not the values: flatten, upsample, channel shuffle,
Swin's patch merging."""

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator

from netspec.kinds.base import Float, LayerArgs, PosInt, Saved, Shape, ShapeError


class Flatten(LayerArgs):
    op = "flatten"
    auto_name = "flatten"
    view = True

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        return (math.prod(x),)

    def symbolic_size(self, inputs: Sequence[Shape], out: Shape) -> str:
        c, h, w = inputs[0]
        return (f"makes {c}·{h}·{w} features of a [{c}, H, W] map, a number fixed by the "
                "spec's size")

    def channel_repeat(self, inputs: Sequence[Shape]) -> int:
        return math.prod(inputs[0][1:])  # channel-major: feature c·H·W + p

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())


class Upsample(LayerArgs):
    """Resize by a scale factor: nearest or bilinear (``align_corners`` false, as torch)."""

    op = "upsample"
    auto_name = "upsample"
    shorthand = "scale"
    ranks = (3,)
    samples = ({"scale": 2}, {"scale": 2, "mode": "bilinear"})

    scale: Float = Field(gt=0, le=64)
    mode: Literal["nearest", "bilinear"] = "nearest"

    @field_validator("scale")
    @classmethod
    def _integer_scale_for_exact_shapes(cls, v: float) -> float:
        if not float(v).is_integer():
            raise ValueError("scale must be a whole number (2, 3, …) so every backend "
                             "agrees on the output size")
        return v

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.check_input(inputs)
        s = int(self.scale)
        if h * s * w * s > 1 << 31:
            raise ShapeError(f"upsampling {h}×{w} by {s} is too large", "scale")
        return (c, h * s, w * s)

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())  # its backward needs only the sizes


class Shuffle(LayerArgs):
    """Channel shuffle (ShuffleNet): view the C channels as [groups, C/groups], transpose
    to [C/groups, groups] and flatten back, so the next grouped conv sees every group."""

    op = "shuffle"
    auto_name = "shuffle"
    shorthand = "groups"
    ranks = (3,)
    samples = ({"groups": 2},)

    groups: PosInt

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = self.check_input(inputs)
        if x[0] % self.groups:
            raise ShapeError(f"groups={self.groups} does not divide the {x[0]} channels",
                             "groups")
        return x

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())  # a permuted copy: nothing kept


class PatchMerge(LayerArgs):
    """Swin's patch merging, its rearrangement: each 2×2 block of positions becomes one
    position of 4·C channels, [C, H, W] → [4·C, H/2, W/2], in torchvision's order:
    x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2] (rows first), concatenated
    along the channels (YOLOv5's Focus takes the same four). torchvision's PatchMerging
    is this, then LayerNorm(4·C) and Linear(4·C → 2·C, no bias)."""

    op = "patch_merge"
    auto_name = "merge"
    ranks = (3,)

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        c, h, w = self.check_input(inputs)
        if h % 2 or w % 2:
            # torchvision pads an odd side with a zero row or column; the spec's sizes
            # are fixed, so an odd one is a spec to correct, found when it resolves
            raise ShapeError(f"merges 2×2 blocks of positions, so needs an even height "
                             f"and width, got {h}×{w}")
        return (4 * c, h // 2, w // 2)

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return Saved(inputs=())  # strided slices joined: its backward needs only sizes
