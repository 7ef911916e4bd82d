"""Hand-written reference re-implementations of two more recent torchvision classifiers.

As in ``reference_nets.py``: torchvision cannot be installed here, so these modules,
written from reading torchvision's source, stand in for it. Each mirrors torchvision's
architecture exactly: module names and nesting, parameter/buffer registration order (and
so ``state_dict`` key order), tensor shapes and eval-mode forward arithmetic. Weight
initialization is PyTorch's default and does not match torchvision's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from reference_ops import Conv2dNormActivation, Permute, SqueezeExcitation, StochasticDepth
from torch import Tensor, nn

__all__ = [
    "REFERENCE_MODELS",
    "REGNET_Y_400MF_STAGES",
    "TORCHVISION_PARAMS",
    "convnext_tiny",
    "regnet_y_400mf",
]


# --------------------------------------------------------------------------- ConvNeXt


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, at each position."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def _layer_norm_2d(channels: int) -> LayerNorm2d:
    return LayerNorm2d(channels, eps=1e-6)


class CNBlock(nn.Module):
    """Depthwise 7×7, LayerNorm, 4× inverted MLP on channels-last, layer scale, residual."""

    def __init__(self, dim: int, layer_scale: float, stochastic_depth_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        # assigned after `block`, but a module's own parameters come before its
        # children's in state_dict order: `layer_scale` is the block's first tensor
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)

    def forward(self, x: Tensor) -> Tensor:
        result = self.layer_scale * self.block(x)
        result = self.stochastic_depth(result)
        return result + x


class ConvNeXt(nn.Module):
    def __init__(
        self,
        block_setting: list[tuple[int, int | None, int]],
        stochastic_depth_prob: float = 0.0,
        layer_scale: float = 1e-6,
        num_classes: int = 1000,
    ) -> None:
        """``block_setting``: per stage (input channels, output channels or None, blocks)."""
        super().__init__()
        layers: list[nn.Module] = [
            # stem: "patchify" 4×4 stride-4 conv (with bias) then LayerNorm2d
            Conv2dNormActivation(
                3,
                block_setting[0][0],
                kernel_size=4,
                stride=4,
                padding=0,
                norm_layer=_layer_norm_2d,
                activation_layer=None,
                bias=True,
            )
        ]
        total_blocks = sum(n for _, _, n in block_setting)
        block_id = 0
        for c_in, c_out, n in block_setting:
            stage: list[nn.Module] = []
            for _ in range(n):
                sd_prob = stochastic_depth_prob * block_id / (total_blocks - 1.0)
                stage.append(CNBlock(c_in, layer_scale, sd_prob))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if c_out is not None:
                # downsampling: LayerNorm2d then a 2×2 stride-2 conv
                down = nn.Conv2d(c_in, c_out, kernel_size=2, stride=2)
                layers.append(nn.Sequential(_layer_norm_2d(c_in), down))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last_c_in, last_c_out, _ = block_setting[-1]
        last = last_c_out if last_c_out is not None else last_c_in
        self.classifier = nn.Sequential(
            _layer_norm_2d(last), nn.Flatten(1), nn.Linear(last, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(x)


def convnext_tiny(num_classes: int = 1000) -> ConvNeXt:
    setting = [(96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3)]
    return ConvNeXt(setting, stochastic_depth_prob=0.1, num_classes=num_classes)


# --------------------------------------------------------------------------- RegNet

# regnet_y_400mf's stages, from torchvision's BlockParams.from_init_params(depth=16,
# w_0=48, w_a=27.89, w_m=2.09, group_width=8, se_ratio=0.25): the per-block widths
# w_0·w_m^round(log(1 + j·w_a/w_0)/log w_m), rounded to multiples of 8, are
# [48, 104×3, 208×6, 440×6]; each run of equal widths is a stage, and the widths are
# already divisible by the group width 8 (bottleneck multiplier 1), so nothing is
# adjusted. (depth, width, group width, stride):
REGNET_Y_400MF_STAGES: list[tuple[int, int, int, int]] = [
    (1, 48, 8, 2),
    (3, 104, 8, 2),
    (6, 208, 8, 2),
    (6, 440, 8, 2),
]


class BottleneckTransform(nn.Sequential):
    """a: 1×1; b: grouped 3×3 (strided); se: squeeze-excitation; c: 1×1, no activation."""

    def __init__(
        self, width_in: int, width_out: int, stride: int, group_width: int, se_ratio: float
    ) -> None:
        w_b = width_out  # bottleneck multiplier 1
        groups = w_b // group_width
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["a"] = Conv2dNormActivation(width_in, w_b, kernel_size=1)
        layers["b"] = Conv2dNormActivation(w_b, w_b, kernel_size=3, stride=stride, groups=groups)
        # the SE width is a fraction of the block's *input* width, not of w_b
        layers["se"] = SqueezeExcitation(w_b, round(se_ratio * width_in))
        layers["c"] = Conv2dNormActivation(w_b, width_out, kernel_size=1, activation_layer=None)
        super().__init__(layers)


class ResBottleneckBlock(nn.Module):
    def __init__(
        self, width_in: int, width_out: int, stride: int, group_width: int, se_ratio: float
    ) -> None:
        super().__init__()
        self.proj: nn.Module | None = None
        if width_in != width_out or stride != 1:
            self.proj = Conv2dNormActivation(
                width_in, width_out, kernel_size=1, stride=stride, activation_layer=None
            )
        self.f = BottleneckTransform(width_in, width_out, stride, group_width, se_ratio)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        if self.proj is not None:
            x = self.proj(x) + self.f(x)
        else:
            x = x + self.f(x)
        return self.activation(x)


class AnyStage(nn.Sequential):
    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        depth: int,
        group_width: int,
        se_ratio: float,
        stage_index: int,
    ) -> None:
        super().__init__()
        for i in range(depth):
            block = ResBottleneckBlock(
                width_in if i == 0 else width_out,
                width_out,
                stride if i == 0 else 1,
                group_width,
                se_ratio,
            )
            self.add_module(f"block{stage_index}-{i}", block)


class RegNet(nn.Module):
    def __init__(
        self,
        stages: list[tuple[int, int, int, int]],
        se_ratio: float,
        num_classes: int = 1000,
        stem_width: int = 32,
    ) -> None:
        super().__init__()
        # SimpleStemIN: 3×3 stride-2 conv, BN, ReLU
        self.stem = Conv2dNormActivation(3, stem_width, kernel_size=3, stride=2)
        width = stem_width
        blocks = []
        for i, (depth, width_out, group_width, stride) in enumerate(stages):
            stage = AnyStage(width, width_out, stride, depth, group_width, se_ratio, i + 1)
            blocks.append((f"block{i + 1}", stage))
            width = width_out
        self.trunk_output = nn.Sequential(OrderedDict(blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.trunk_output(x)
        x = self.avgpool(x)
        x = x.flatten(start_dim=1)
        return self.fc(x)


def regnet_y_400mf(num_classes: int = 1000) -> RegNet:
    return RegNet(REGNET_Y_400MF_STAGES, se_ratio=0.25, num_classes=num_classes)


# --------------------------------------------------------------------------- registry

REFERENCE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "convnext_tiny": convnext_tiny,
    "regnet_y_400mf": regnet_y_400mf,
}

# Published parameter totals (torchvision model docs, 1000 classes).
TORCHVISION_PARAMS: dict[str, int] = {
    "convnext_tiny": 28_589_128,
    "regnet_y_400mf": 4_344_144,
}
