"""Hand-written reference re-implementation of torchvision's ShuffleNet V2 (x1.0).

torchvision cannot be installed in this environment, so tests use this module as an
independent reference, as ``tests/reference_nets.py`` does for the other classifiers.
It mirrors ``torchvision.models.shufflenet_v2_x1_0``: module names and nesting
(``conv1.0``, ``stage2.0.branch1.0``, ``stage2.1.branch2.3``, …), parameter/buffer
registration order (so ``state_dict`` key order), tensor shapes and eval-mode
arithmetic. Weight initialization is PyTorch's default, as in torchvision.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["REFERENCE_MODELS", "TORCHVISION_PARAMS", "ShuffleNetV2", "shufflenet_v2_x1_0"]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """[N, g·k, H, W] → view [N, g, k, H, W] → swap g and k → [N, k·g, H, W]."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


def _depthwise(c: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, 3, stride, 1, bias=False, groups=c)


def _pointwise(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False)


class InvertedResidual(nn.Module):
    """ShuffleNet V2 unit.

    stride 1: split the channels in halves; the first passes through, the second goes
    through ``branch2`` (1×1, depthwise 3×3, 1×1); concatenate, then shuffle.
    stride > 1: both branches read the whole input and each halves the resolution;
    ``branch1`` is depthwise 3×3 then 1×1. Concatenate, then shuffle.
    """

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError("illegal stride value")
        self.stride = stride
        half = oup // 2
        if stride == 1 and inp != 2 * half:
            raise ValueError(f"stride 1 needs inp == 2 * (oup // 2), got inp={inp}, oup={oup}")

        # torchvision registers branch1 (empty at stride 1) before branch2.
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(inp, stride),
                nn.BatchNorm2d(inp),
                _pointwise(inp, half),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            _pointwise(inp if stride > 1 else half, half),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            _depthwise(half, stride),
            nn.BatchNorm2d(half),
            _pointwise(half, half),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(
        self,
        stages_repeats: list[int],
        stages_out_channels: list[int],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError("expected stages_repeats as list of 3 positive ints")
        if len(stages_out_channels) != 5:
            raise ValueError("expected stages_out_channels as list of 5 positive ints")

        c = stages_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, c, 3, 2, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        for name, repeats, out in zip(
            ("stage2", "stage3", "stage4"), stages_repeats, stages_out_channels[1:4],
            strict=True,
        ):
            units = [InvertedResidual(c, out, 2)]
            units += [InvertedResidual(out, out, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            c = out

        last = stages_out_channels[-1]
        self.conv5 = nn.Sequential(
            _pointwise(c, last),
            nn.BatchNorm2d(last),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.conv5(x)
        x = x.mean([2, 3])  # global average pool
        return self.fc(x)


def shufflenet_v2_x1_0(num_classes: int = 1000) -> ShuffleNetV2:
    return ShuffleNetV2([4, 8, 4], [24, 116, 232, 464, 1024], num_classes=num_classes)


REFERENCE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "shufflenet_v2_x1_0": shufflenet_v2_x1_0,
}

# Published parameter total (torchvision model docs, 1000 classes).
TORCHVISION_PARAMS: dict[str, int] = {
    "shufflenet_v2_x1_0": 2_278_604,
}
