"""Graph op → torch module: one entry per op, so coverage is checkable in one place.

``MODULES`` maps every op that owns a module to a factory ``(args, in_shapes) →
nn.Module``; ``FUNCTIONS`` maps the stateless ops that read several tensors or slice one
(add, concat, mul, split) to an emitter that writes plain tensor code into the fx graph
(``a + b``, ``torch.cat``, ``torch.narrow``), because a module for them would only add a
call. Every op in ``netspec.kinds.OPS`` is in exactly one of them
(tests/test_kinds_registry.py checks it).

Parameter and buffer names are the ones the kinds declare in ``param_shapes`` /
``buffer_shapes`` (``weight``, ``bias``, ``running_mean``, ``running_var``): weight
files and counts rely on that.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx, nn

from netspec.backends.torch import tokens, window
from netspec.kinds import Shape
from netspec.kinds.conv import pair

ModuleFactory = Callable[[Any, Sequence[Shape]], nn.Module]
#: (fx graph, inputs, the kind's options, input shapes, whether it may overwrite its
#: first input) → the value
FunctionEmitter = Callable[[fx.Graph, Sequence[fx.Node], Any, Sequence[Shape], bool], fx.Node]


class RMSNorm(nn.Module):
    """h / sqrt(mean(h²) + ε) · γ, γ per channel (or feature); no re-centring, no δ.

    torch's own nn.RMSNorm normalises over trailing dims only, so it cannot average
    over the channel axis of an NCHW tensor; hence this module.
    """

    def __init__(self, channels: int, rank: int, over: str, eps: float, affine: bool) -> None:
        super().__init__()
        self.eps = eps
        self.over = over
        # [F]: features are dim 1; [C, H, W]: channels (dim 1), or channels and space
        self.dims: tuple[int, ...] = (1, 2, 3) if rank == 3 and over == "channels+space" else (1,)
        # γ broadcasts along the channel axis, so shape [C] becomes [C, 1, 1] for images
        self.view: tuple[int, ...] = (channels,) + (1,) * (rank - 1)
        if affine:
            self.weight = nn.Parameter(torch.ones(channels))
        else:
            self.register_parameter("weight", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the mean of squares is taken in float32 even under bf16 autocast: it is a sum
        h = x.float()
        y = h * torch.rsqrt(h.pow(2).mean(self.dims, keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight.view(self.view)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"over={self.over}, eps={self.eps}, affine={self.weight is not None}"


class ClassicDropout(nn.Module):
    """Dropout as in the original paper: train with an unscaled Bernoulli(keep) mask,
    multiply by keep at inference, so both have the same expected activation."""

    def __init__(self, keep: float, channel: bool) -> None:
        super().__init__()
        self.keep = keep
        self.channel = channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x * self.keep
        # channel kind: one draw per (sample, channel), broadcast over H and W
        shape = (*x.shape[:2], *([1] * (x.dim() - 2))) if self.channel else x.shape
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(self.keep)
        return x * mask

    def extra_repr(self) -> str:
        return f"keep={self.keep}, channel={self.channel}"


class LinearOverChannels(nn.Linear):
    """nn.Linear applied at each position of an [N, C, H, W] tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LayerNormOverChannels(nn.LayerNorm):
    """nn.LayerNorm over the channels at each position of an [N, C, H, W] tensor
    (torchvision's LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LayerScale(nn.Module):
    """y = γ·x, γ per channel ([C, 1, 1] on images, as torchvision's ConvNeXt; or [C],
    timm's, viewed as [C, 1, 1]), per feature on [F], per token feature on [N, D]."""

    def __init__(self, shape: Shape, init: float, rank: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full(shape, float(init)))
        self.flat_on_map = rank == 3 and len(shape) == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flat_on_map:
            return x * self.weight.view(-1, 1, 1)
        return x * self.weight


class DFL(nn.Module):
    """YOLOv8's box decoding: per side, softmax over the bins, then the expected bin with
    the fixed weights 0 … bins−1 (a frozen parameter, as Ultralytics holds it)."""

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.bins = bins
        weight = torch.arange(bins, dtype=torch.get_default_dtype()).view(1, bins, 1, 1)
        self.weight = nn.Parameter(weight, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        p = x.view(n, 4, self.bins, h, w).softmax(2)
        return (p * self.weight.view(1, 1, self.bins, 1, 1)).sum(2)


class DropPath(nn.Module):
    """Stochastic depth, per sample ("row"): while training, zero a sample's whole tensor
    with probability p and divide the survivors by 1 − p; at inference, the identity."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _conv(a: Any, ins: Sequence[Shape]) -> nn.Module:
    return nn.Conv2d(ins[0][0], a.out, pair(a.k), stride=pair(a.stride), padding=a.padding,
                     dilation=pair(a.dilation), groups=a.groups, bias=a.bias)


def _conv_transpose(a: Any, ins: Sequence[Shape]) -> nn.Module:
    # torch's weight is (c_in, out/groups, k, k), as the kind declares
    return nn.ConvTranspose2d(ins[0][0], a.out, pair(a.k), stride=pair(a.stride),
                              padding=pair(a.pad), output_padding=pair(a.output_pad),
                              groups=a.groups, bias=a.bias, dilation=pair(a.dilation))


def _batchnorm(a: Any, ins: Sequence[Shape]) -> nn.Module:
    # momentum None is torch's cumulative average too, so it passes straight through
    cls = nn.BatchNorm1d if len(ins[0]) == 1 else nn.BatchNorm2d
    return cls(ins[0][0], eps=a.eps, momentum=a.momentum, affine=a.affine)


def _layernorm(a: Any, ins: Sequence[Shape]) -> nn.Module:
    x = ins[0]
    if len(x) == 3 and a.over == "channels":
        return LayerNormOverChannels(x[0], eps=a.eps, elementwise_affine=a.affine != "none")
    if len(x) < 3:  # [F], or each token's [D]
        return nn.LayerNorm(x[-1], eps=a.eps, elementwise_affine=a.affine != "none")
    if a.affine == "element":
        return nn.LayerNorm(list(x), eps=a.eps)
    # statistics over (C, H, W) per sample with γ, δ per channel is exactly one group
    return nn.GroupNorm(1, x[0], eps=a.eps, affine=a.affine == "channel")


def _dropout(a: Any, ins: Sequence[Shape]) -> nn.Module:
    # on a [F] input a channel is a feature, so channel dropout is element dropout
    channel = a.kind == "channel" and len(ins[0]) == 3
    if a.scaling == "classic":
        return ClassicDropout(a.p_keep, channel)
    return nn.Dropout2d(a.p_drop) if channel else nn.Dropout(a.p_drop)


def _attention(a: Any, ins: Sequence[Shape]) -> nn.Module:
    d = a.features(ins[0])[1]
    hd, kd = a.sizes(d)
    return tokens.Attention(d if a.project else None, a.heads, hd, kd, a.qkv_bias,
                            a.out_bias, a.drop, per_head=a.layout == "heads")


def _window(a: Any) -> dict[str, Any]:
    return {"kernel_size": pair(a.k), "stride": a.strides, "padding": pair(a.pad),
            "ceil_mode": a.ceil}


MODULES: dict[str, ModuleFactory] = {
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "linear": lambda a, ins: (
        LinearOverChannels if a.over == "channels" and len(ins[0]) == 3 else nn.Linear)(
        a.in_features(ins[0]), a.out, bias=a.bias),
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "instancenorm": lambda a, ins: nn.InstanceNorm2d(
        ins[0][0], eps=a.eps, affine=a.affine, track_running_stats=False),
    "groupnorm": lambda a, ins: nn.GroupNorm(a.groups, ins[0][0], eps=a.eps, affine=a.affine),
    "rmsnorm": lambda a, ins: RMSNorm(ins[0][0], len(ins[0]), a.over, a.eps, a.affine),
    "dropout": _dropout,
    "relu": lambda a, ins: nn.ReLU(),
    "relu6": lambda a, ins: nn.ReLU6(),
    "gelu": lambda a, ins: nn.GELU(approximate=a.approximate),
    "silu": lambda a, ins: nn.SiLU(),
    "sigmoid": lambda a, ins: nn.Sigmoid(),
    "tanh": lambda a, ins: nn.Tanh(),
    "leaky_relu": lambda a, ins: nn.LeakyReLU(a.slope),
    "hardswish": lambda a, ins: nn.Hardswish(),
    "hardsigmoid": lambda a, ins: nn.Hardsigmoid(),
    "mish": lambda a, ins: nn.Mish(),
    "elu": lambda a, ins: nn.ELU(a.alpha),
    "softplus": lambda a, ins: nn.Softplus(a.beta, a.threshold),
    "softmax": lambda a, ins: nn.Softmax(dim=1),
    "prelu": lambda a, ins: nn.PReLU(ins[0][0] if a.per_channel else 1, init=a.init),
    "shuffle": lambda a, ins: nn.ChannelShuffle(a.groups),
    "layer_scale": lambda a, ins: LayerScale(a.param_shapes(ins)["weight"], a.init,
                                             len(ins[0])),
    "drop_path": lambda a, ins: DropPath(a.p_drop),
    "dfl": lambda a, ins: DFL(a.bins),
    "maxpool": lambda a, ins: nn.MaxPool2d(dilation=pair(a.dilation), **_window(a)),
    "avgpool": lambda a, ins: nn.AvgPool2d(count_include_pad=a.count_pad, **_window(a)),
    "adaptive_avgpool": lambda a, ins: nn.AdaptiveAvgPool2d(pair(a.size)),
    "global_avgpool": lambda a, ins: nn.AdaptiveAvgPool2d(1),
    "flatten": lambda a, ins: nn.Flatten(1),
    "upsample": lambda a, ins: nn.Upsample(
        scale_factor=int(a.scale), mode=a.mode,
        align_corners=False if a.mode == "bilinear" else None),
    "tokens": lambda a, ins: tokens.Tokens(),
    "map": lambda a, ins: tokens.ToMap(*a.size),
    "class_token": lambda a, ins: tokens.ClassToken(ins[0][1], a.std),
    "pos_embed": lambda a, ins: tokens.PosEmbed(*ins[0], a.std),
    "select": lambda a, ins: tokens.Select(a.token),
    "attention": _attention,
    "window_attention": lambda a, ins: window.WindowAttention(
        ins[0][0], a.heads, pair(a.window), pair(a.shift), a.qkv_bias, a.out_bias, a.drop),
    "patch_merge": lambda a, ins: window.PatchMerge(),
}


def add_into(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b, written into a's memory where the sum has a's dtype. Under autocast a
    block's bf16 output plus a float32 residual stream is float32, as the out-of-place
    sum of the hand-written nets is: adding in place would round the stream to bf16."""
    return a.add_(b) if torch.promote_types(a.dtype, b.dtype) == a.dtype else a + b


def _emit_add(g: fx.Graph, xs: Sequence[fx.Node], a: Any, ins: Sequence[Shape],
              inplace: bool) -> fx.Node:
    # chained binary adds, left to right: (a + b) + c, as the hand-written blocks do;
    # in place, the first input accumulates the others: a += b; a += c
    out = xs[0]
    for x in xs[1:]:
        out = g.call_function(add_into if inplace else operator.add, (out, x))
    return out


def _emit_concat(g: fx.Graph, xs: Sequence[fx.Node], a: Any, ins: Sequence[Shape],
                 inplace: bool) -> fx.Node:
    # dim 1 is channels for [C, H, W] and features for [F] (dim 0 is the batch)
    return g.call_function(torch.cat, (list(xs), 1))


def _emit_mul(g: fx.Graph, xs: Sequence[fx.Node], a: Any, ins: Sequence[Shape],
              inplace: bool) -> fx.Node:
    # broadcasting as the kind's shape rule: a [C, 1, 1] gate times a [C, H, W] map
    out = xs[0]
    for x in xs[1:]:
        out = g.call_function(operator.mul, (out, x))
    return out


def _emit_split(g: fx.Graph, xs: Sequence[fx.Node], a: Any, ins: Sequence[Shape],
                inplace: bool) -> fx.Node:
    # a view of the part's channels, as torch.chunk/split give
    start, stop = a.bounds(ins[0][0])
    return g.call_function(torch.narrow, (xs[0], 1, start, stop - start))


FUNCTIONS: dict[str, FunctionEmitter] = {
    "add": _emit_add,
    "concat": _emit_concat,
    "mul": _emit_mul,
    "split": _emit_split,
}
