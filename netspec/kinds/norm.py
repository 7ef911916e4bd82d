"""Normalisation layers. The spec writes ``norm: batch`` (or ``{kind: batch, ...}``);
each kind is its own Graph op because each averages over different axes:

- batch: over batch and space, per channel; running statistics kept for inference;
- layer: over channels and space, per sample; γ, δ per channel or per element;
- instance: over space only, per sample and channel;
- group: over space and a group of channels, per sample;
- rms: no re-centering, h / sqrt(mean(h²) + ε), γ only.

γ starts at 1 and δ at 0; netspec.param_groups keeps both out of weight decay.
"""

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator

from netspec.kinds.base import (
    KEEPS_SIZE,
    Float,
    LayerArgs,
    PosInt,
    Saved,
    Shape,
    ShapeError,
    fmt_shape,
    numel,
)


def _gamma_delta(c: int) -> dict[str, Shape]:
    return {"weight": (c,), "bias": (c,)}


def _stats(groups: int, affine: bool, *extra: tuple[int, int | None, bool]) -> Saved:
    """Its input, and the mean and 1/std of each of ``groups`` per sample. torch keeps
    them in float32 when the norm has γ, δ and in the input's dtype when it has none
    (bf16 under autocast; measured, tests/test_memory_kinds.py)."""
    itemsize = 4 if affine else None
    return Saved(extra=((groups, itemsize, True), (groups, itemsize, True), *extra))


class _Norm(LayerArgs):
    auto_name = "norm"
    shorthand = "kind"
    spec_kind = "norm"
    is_norm = True
    decay = False
    fresh_output = True

    eps: Float = Field(default=1e-5, gt=0)

    def formula(self, inputs: Sequence[Shape]) -> str:
        shapes = self.param_shapes(inputs)
        if not shapes:
            return "0"
        (first, *_) = shapes.values()
        size = "·".join(str(d) for d in first)
        return f"{len(shapes)}·{size}"


class BatchNorm(_Norm):
    op = "batchnorm"
    auto_name = "bn"
    running_stats = True
    samples = ({}, {"momentum": None, "eps": 1e-3}, {"affine": False})

    kind: Literal["batch"] = "batch"
    #: weight of the newest batch in the running average; null = cumulative average
    momentum: Float | None = Field(default=0.1, gt=0, le=1)
    affine: bool = True

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return _gamma_delta(self.check_input(inputs)[0]) if self.affine else {}

    def buffer_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        c = self.check_input(inputs)[0]
        return {"running_mean": (c,), "running_var": (c,)}

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        # its input, and the batch's mean and 1/std per channel (fp32 under autocast too)
        c = inputs[0][0]
        return Saved(extra=((c, 4, False), (c, 4, False)))


class LayerNorm(_Norm):
    op = "layernorm"
    auto_name = "ln"
    #: on tokens [N, D], each token over its D features (nn.LayerNorm(D)), γ, δ [D]
    ranks = (1, 2, 3)

    kind: Literal["layer"] = "layer"
    #: γ, δ per channel (shape [C]) or per element (shape [C, H, W]), or none
    affine: Literal["channel", "element", "none"] = "channel"
    #: statistics over channels and space per sample, or over the channels at each
    #: position (ConvNeXt's LayerNorm2d)
    over: Literal["channels+space", "channels"] = "channels+space"
    samples = ({}, {"affine": "element"}, {"over": "channels"}, {"affine": "none"})

    @field_validator("affine", mode="before")
    @classmethod
    def _bool_affine(cls, v: Any) -> Any:
        if v is True:
            return "channel"
        if v is False:
            return "none"
        return v

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = self.check_input(inputs)
        if len(x) == 2 and self.affine == "element":
            raise ShapeError("on tokens, layer norm normalises each token over its D "
                             "features with γ, δ per feature: affine element is for maps",
                             "affine")
        if self.over == "channels" and len(x) == 3:
            if self.affine == "element":
                raise ShapeError("layer norm over channels has γ, δ per channel: affine "
                                 "element is for statistics over channels and space", "affine")
            if x[0] == 1:
                raise ShapeError("layer norm over the channels of a 1-channel input sees one "
                                 "value at each position: its output would be δ alone", "over")
        if len(x) == 3 and numel(x) == 1:
            raise ShapeError("layer norm averages over channels and space, and a [1, 1, 1] "
                             "input has one value: its output would be δ alone")
        return x

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        x = self.check_input(inputs)
        if self.affine == "none":
            return {}
        if len(x) == 2:
            shape: Shape = (x[1],)
        else:
            shape = x if self.affine == "element" and self.over != "channels" else (x[0],)
        return {"weight": shape, "bias": shape}

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        # its input, and the mean and 1/std of each group it averages: per token on
        # tokens, per position over a map's channels, per sample otherwise
        x = inputs[0]
        groups = (x[0] if len(x) == 2 else
                  x[1] * x[2] if len(x) == 3 and self.over == "channels" else 1)
        return _stats(groups, self.affine != "none")

    def symbolic_size(self, inputs: Sequence[Shape], out: Shape) -> str:
        if self.affine == "element" and len(out) == 3:
            return f"has per-element γ, δ shaped {list(out)}, the spec's size"
        return KEEPS_SIZE


class InstanceNorm(_Norm):
    op = "instancenorm"
    auto_name = "inorm"
    ranks = (3,)

    kind: Literal["instance"] = "instance"
    samples = ({}, {"affine": False})
    affine: bool = True

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = self.check_input(inputs)
        if x[1] * x[2] == 1:
            raise ShapeError("instance norm averages over space, and a [C, 1, 1] input has "
                             "one position: its output would be δ alone")
        return x

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return _gamma_delta(self.check_input(inputs)[0]) if self.affine else {}

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        # torch runs it as a batch norm of one sample with B·C channels, so γ repeated
        # B times is a tensor of the step's, kept with the statistics
        c = inputs[0][0]
        return _stats(c, self.affine, *([(c, 4, True)] if self.affine else []))


class GroupNorm(_Norm):
    op = "groupnorm"
    auto_name = "gn"
    ranks = (3,)

    kind: Literal["group"] = "group"
    samples = ({"groups": 1}, {"groups": 2}, {"groups": 2, "affine": False})
    groups: PosInt
    affine: bool = True

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = self.check_input(inputs)
        if x[0] % self.groups:
            raise ShapeError(f"groups={self.groups} does not divide the {x[0]} channels",
                             "groups")
        if x[0] // self.groups * x[1] * x[2] == 1:
            raise ShapeError(f"with groups={self.groups} each group of this {fmt_shape(x)} "
                             "input holds one value: its output would be δ alone", "groups")
        return x

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return _gamma_delta(self.check_input(inputs)[0]) if self.affine else {}

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return _stats(self.groups, self.affine)


class RMSNorm(_Norm):
    op = "rmsnorm"
    auto_name = "rms"
    autocast = "float"  # the mean of squares in float32 (backends/torch/layers.py)

    kind: Literal["rms"] = "rms"
    fresh_output = False  # torch's RMSNorm module here returns y.to(dtype): a view in fp32
    samples = ({}, {"over": "channels+space"}, {"affine": False})
    eps: Float = Field(default=1e-6, gt=0)
    #: mean of h² over the channels at each position, or over channels and space
    over: Literal["channels", "channels+space"] = "channels"
    affine: bool = True

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {"weight": (self.check_input(inputs)[0],)} if self.affine else {}

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        # its input (as float32), 1/rms per group in float32, and, for γ's gradient, the
        # normalised float32 values γ multiplies (backends/torch/layers.py's RMSNorm)
        x = inputs[0]
        groups = x[1] * x[2] if len(x) == 3 and self.over == "channels" else 1
        return Saved(extra=((groups, 4, True), *([(numel(out), 4, True)] if self.affine else [])))
