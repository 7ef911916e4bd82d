"""The registry of layer kinds: Graph op name → options model (with its rules).

Backends keep one entry per op in their own maps; tests/test_kinds_registry.py checks
that none is missing.
"""

from __future__ import annotations

from netspec.kinds.activation import GELU, LeakyReLU, ReLU, ReLU6, Sigmoid, SiLU, Tanh
from netspec.kinds.base import LayerArgs, Shape, ShapeError, fmt_shape, numel
from netspec.kinds.conv import Conv, ConvTranspose
from netspec.kinds.dropout import Dropout
from netspec.kinds.linear import Linear
from netspec.kinds.merge import Add, Concat
from netspec.kinds.norm import NORM_KINDS, BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RMSNorm
from netspec.kinds.pool import AdaptiveAvgPool, AvgPool, GlobalAvgPool, MaxPool
from netspec.kinds.reshape import Flatten, Upsample

OPS: dict[str, type[LayerArgs]] = {
    cls.op: cls
    for cls in (
        Conv, ConvTranspose, Linear,
        BatchNorm, LayerNorm, InstanceNorm, GroupNorm, RMSNorm,
        Dropout,
        ReLU, ReLU6, GELU, SiLU, Sigmoid, Tanh, LeakyReLU,
        MaxPool, AvgPool, AdaptiveAvgPool, GlobalAvgPool,
        Flatten, Upsample,
        Add, Concat,
    )
}

#: kinds a spec names directly; ``norm`` stands for the five norm ops, chosen by ``kind``
SPEC_KINDS: tuple[str, ...] = tuple(
    sorted({op for op in OPS if op not in {c.op for c in NORM_KINDS.values()}} | {"norm"})
)

#: what a spec may mean by a kind name it got wrong, beyond spelling
KIND_HINTS: dict[str, str] = {
    "batchnorm": "norm: batch", "bn": "norm: batch", "batch_norm": "norm: batch",
    "layernorm": "norm: layer", "layer_norm": "norm: layer", "ln": "norm: layer",
    "groupnorm": "norm: {kind: group, groups: G}", "instancenorm": "norm: instance",
    "rmsnorm": "norm: rms", "dense_layer": "dense", "fc": "linear", "conv2d": "conv",
    "avg_pool": "avgpool", "max_pool": "maxpool", "convtranspose": "conv_transpose",
    "deconv": "conv_transpose", "skip": "residual", "cat": "concat",
}

__all__ = [
    "KIND_HINTS", "NORM_KINDS", "OPS", "SPEC_KINDS", "LayerArgs", "Shape", "ShapeError",
    "fmt_shape", "numel",
]
