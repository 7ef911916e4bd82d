"""Hand-written reference re-implementations of torchvision's mobile classifiers.

EfficientNet-B0, MobileNetV3-Small and MobileNetV3-Large, written from reading
torchvision's ``models/efficientnet.py``, ``models/mobilenetv3.py``,
``ops/misc.py`` (Conv2dNormActivation, SqueezeExcitation) and
``ops/stochastic_depth.py``. As in ``reference_nets.py``, each mirrors
torchvision exactly in module names and nesting, parameter/buffer registration
order (and so ``state_dict`` key order), tensor shapes, BatchNorm eps/momentum
and eval-mode arithmetic. Weight initialization is PyTorch's default.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from reference_ops import (
    Conv2dNormActivation,
    SqueezeExcitation,
    StochasticDepth,
    make_divisible,
)
from torch import Tensor, nn

__all__ = [
    "MOBILE_TORCHVISION_PARAMS",
    "REFERENCE_MODELS",
    "efficientnet_b0",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
]


# --------------------------------------------------------------------------- EfficientNet


class MBConv(nn.Module):
    """Expand 1×1 (if t ≠ 1), depthwise k×k, SE (squeeze to in/4), project 1×1; all SiLU."""

    def __init__(
        self,
        expand_ratio: float,
        kernel: int,
        stride: int,
        input_channels: int,
        out_channels: int,
        stochastic_depth_prob: float,
        norm_layer: Callable[..., nn.Module],
    ) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and input_channels == out_channels

        expanded_channels = make_divisible(input_channels * expand_ratio, 8)
        layers: list[nn.Module] = []
        if expanded_channels != input_channels:
            layers.append(
                Conv2dNormActivation(
                    input_channels,
                    expanded_channels,
                    kernel_size=1,
                    norm_layer=norm_layer,
                    activation_layer=nn.SiLU,
                )
            )
        layers.append(
            Conv2dNormActivation(
                expanded_channels,
                expanded_channels,
                kernel_size=kernel,
                stride=stride,
                groups=expanded_channels,
                norm_layer=norm_layer,
                activation_layer=nn.SiLU,
            )
        )
        squeeze_channels = max(1, input_channels // 4)
        layers.append(
            SqueezeExcitation(
                expanded_channels, squeeze_channels, activation=partial(nn.SiLU, inplace=True)
            )
        )
        layers.append(
            Conv2dNormActivation(
                expanded_channels,
                out_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=None,
            )
        )
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = out_channels

    def forward(self, input: Tensor) -> Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += input
        return result


# The paper's Table 1 (B0): expansion t, kernel k, first stride s, in, out, repeats n.
EFFICIENTNET_B0_SETTING: list[tuple[int, int, int, int, int, int]] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]


class EfficientNet(nn.Module):
    def __init__(
        self,
        setting: list[tuple[int, int, int, int, int, int]],
        dropout: float,
        stochastic_depth_prob: float = 0.2,
        num_classes: int = 1000,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            Conv2dNormActivation(
                3, setting[0][3], kernel_size=3, stride=2, norm_layer=norm_layer,
                activation_layer=nn.SiLU,
            )
        ]  # fmt: skip

        total_stage_blocks = sum(n for *_, n in setting)
        stage_block_id = 0
        for t, k, s, cin, cout, n in setting:
            stage: list[nn.Module] = []
            for j in range(n):
                sd_prob = stochastic_depth_prob * float(stage_block_id) / total_stage_blocks
                stage.append(
                    MBConv(
                        t,
                        k,
                        s if j == 0 else 1,
                        cin if j == 0 else cout,
                        cout,
                        sd_prob,
                        norm_layer,
                    )
                )
                stage_block_id += 1
            layers.append(nn.Sequential(*stage))

        lastconv_input_channels = setting[-1][4]
        lastconv_output_channels = 4 * lastconv_input_channels
        layers.append(
            Conv2dNormActivation(
                lastconv_input_channels,
                lastconv_output_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=nn.SiLU,
            )
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(lastconv_output_channels, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def efficientnet_b0(num_classes: int = 1000) -> EfficientNet:
    # torchvision passes no norm_layer for B0-B4: plain nn.BatchNorm2d (eps 1e-5, momentum
    # 0.1); only B5-B7 use eps=1e-3, momentum=0.01, and V2 eps=1e-3.
    return EfficientNet(EFFICIENTNET_B0_SETTING, dropout=0.2, num_classes=num_classes)


# --------------------------------------------------------------------------- MobileNetV3


class InvertedResidualV3(nn.Module):
    """Expand 1×1 (if needed), depthwise k×k, optional SE (hardsigmoid), linear project 1×1."""

    def __init__(
        self,
        input_channels: int,
        kernel: int,
        expanded_channels: int,
        out_channels: int,
        use_se: bool,
        activation: str,
        stride: int,
        norm_layer: Callable[..., nn.Module],
    ) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and input_channels == out_channels
        activation_layer = nn.Hardswish if activation == "HS" else nn.ReLU

        layers: list[nn.Module] = []
        if expanded_channels != input_channels:
            layers.append(
                Conv2dNormActivation(
                    input_channels,
                    expanded_channels,
                    kernel_size=1,
                    norm_layer=norm_layer,
                    activation_layer=activation_layer,
                )
            )
        layers.append(
            Conv2dNormActivation(
                expanded_channels,
                expanded_channels,
                kernel_size=kernel,
                stride=stride,
                groups=expanded_channels,
                norm_layer=norm_layer,
                activation_layer=activation_layer,
            )
        )
        if use_se:
            squeeze_channels = make_divisible(expanded_channels // 4, 8)
            layers.append(
                SqueezeExcitation(
                    expanded_channels, squeeze_channels, scale_activation=nn.Hardsigmoid
                )
            )
        layers.append(
            Conv2dNormActivation(
                expanded_channels,
                out_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=None,
            )
        )
        self.block = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, input: Tensor) -> Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result += input
        return result


# The paper's Tables 1 and 2: in, kernel, expanded ("exp size"), out, SE, NL, stride.
V3Setting = list[tuple[int, int, int, int, bool, str, int]]

MOBILENET_V3_LARGE_SETTING: V3Setting = [
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
]

MOBILENET_V3_SMALL_SETTING: V3Setting = [
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
]


class MobileNetV3(nn.Module):
    def __init__(
        self,
        setting: V3Setting,
        last_channel: int,
        num_classes: int = 1000,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)

        layers: list[nn.Module] = [
            Conv2dNormActivation(
                3, setting[0][0], kernel_size=3, stride=2, norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        ]  # fmt: skip
        for cin, k, exp, cout, se, nl, s in setting:
            layers.append(InvertedResidualV3(cin, k, exp, cout, se, nl, s, norm_layer))

        lastconv_input_channels = setting[-1][3]
        lastconv_output_channels = 6 * lastconv_input_channels
        layers.append(
            Conv2dNormActivation(
                lastconv_input_channels,
                lastconv_output_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(lastconv_output_channels, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def mobilenet_v3_large(num_classes: int = 1000) -> MobileNetV3:
    return MobileNetV3(MOBILENET_V3_LARGE_SETTING, 1280, num_classes=num_classes)


def mobilenet_v3_small(num_classes: int = 1000) -> MobileNetV3:
    return MobileNetV3(MOBILENET_V3_SMALL_SETTING, 1024, num_classes=num_classes)


# --------------------------------------------------------------------------- registry

REFERENCE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "efficientnet_b0": efficientnet_b0,
    "mobilenet_v3_small": mobilenet_v3_small,
    "mobilenet_v3_large": mobilenet_v3_large,
}

# Published parameter totals (torchvision model docs, 1000 classes).
MOBILE_TORCHVISION_PARAMS: dict[str, int] = {
    "efficientnet_b0": 5_288_548,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v3_large": 5_483_032,
}
