"""Hand-written reference re-implementation of Ultralytics' YOLOv8n detection model.

``ultralytics`` cannot be installed in this environment, so tests use this module as an
independent reference, as ``tests/reference_nets.py`` does for the classifiers. It
mirrors ``DetectionModel("yolov8n.yaml")`` (``ultralytics/cfg/models/v8/yolov8.yaml``
at scale n: depth 0.33, width 0.25, max_channels 1024, built by ``parse_model``):

- module names and nesting: ``model.0`` … ``model.22`` (``model.2.m.0.cv1.conv``,
  ``model.22.cv2.0.2``, ``model.22.dfl.conv``, …);
- parameter/buffer registration order, so ``state_dict`` key order (within Detect:
  ``cv2.*``, then ``cv3.*``, then ``dfl.conv.weight``);
- batch norms with eps 1e-3 and momentum 0.03 (``initialize_weights`` in tasks.py);
- the DFL's fixed, non-trainable weight ``arange(16)``.

``forward`` returns Ultralytics' training-mode output of Detect: the three per-level
maps ``cat(cv2[i](x_i), cv3[i](x_i), 1)`` — before box decoding (DFL is not called), in
train and eval mode alike. Parameter total: 3,157,200 (Ultralytics' model summary,
the 16 DFL weights included).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "DFL",
    "REFERENCE_MODELS",
    "SPPF",
    "ULTRALYTICS_PARAMS",
    "C2f",
    "Conv",
    "Detect",
    "YOLOv8",
    "yolov8n",
]


def make_divisible(x: float, divisor: int = 8) -> int:
    """Ultralytics' ``make_divisible``: the smallest multiple of ``divisor`` ≥ x."""
    return math.ceil(x / divisor) * divisor


def autopad(k: int, p: int | None = None) -> int:
    return k // 2 if p is None else p


class Conv(nn.Module):
    """Conv2d (no bias) → BatchNorm2d(eps 1e-3, momentum 0.03) → SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None,
                 g: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=0.001, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3×3 Convs, with a residual when ``shortcut`` and the widths agree."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1,
                 k: tuple[int, int] = (3, 3), e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, k[0], 1)
        self.cv2 = Conv(c_, c2, k[1], 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: Tensor) -> Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP bottleneck with two convolutions: cv1, split in halves, n bottlenecks on the
    last half in sequence, concatenate both halves and every bottleneck's output, cv2."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1,
                 e: float = 0.5) -> None:
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(
            Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n)
        )

    def forward(self, x: Tensor) -> Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: cv1 (halves the width), the same 5×5 stride-1
    max pool applied three times in sequence, concatenate the four, cv2."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: Tensor) -> Tensor:
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[Tensor]) -> Tensor:
        return torch.cat(x, self.d)


class DFL(nn.Module):
    """Distribution focal loss integral: softmax over the c1 bins of each box side, then
    the expectation with the fixed weights 0 … c1−1 (a frozen 1×1 conv)."""

    def __init__(self, c1: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        x = torch.arange(c1, dtype=torch.float)
        self.conv.weight.data[:] = nn.Parameter(x.view(1, c1, 1, 1))
        self.c1 = c1

    def forward(self, x: Tensor) -> Tensor:
        b, _, a = x.shape  # batch, channels, anchors
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


class Detect(nn.Module):
    """YOLOv8 detection head (``legacy`` form): per level a box branch ``cv2[i]`` and a
    class branch ``cv3[i]``; ``dfl`` decodes boxes (not called by ``forward``)."""

    def __init__(self, nc: int = 80, ch: tuple[int, ...] = (), reg_max: int = 16) -> None:
        super().__init__()
        self.nc = nc
        self.nl = len(ch)
        self.reg_max = reg_max
        self.no = nc + reg_max * 4
        c2, c3 = max((16, ch[0] // 4, reg_max * 4)), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1))
            for x in ch
        )
        self.cv3 = nn.ModuleList(
            nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch
        )
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        """Ultralytics' training-mode output: [cat(box_i, cls_i) for each level]."""
        return [torch.cat((self.cv2[i](x[i]), self.cv3[i](x[i])), 1) for i in range(self.nl)]


class YOLOv8(nn.Module):
    """``DetectionModel`` for ``yolov8.yaml`` at a given scale (depth, width, max_channels)."""

    def __init__(self, nc: int = 80, depth: float = 0.33, width: float = 0.25,
                 max_channels: int = 1024) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return make_divisible(min(c, max_channels) * width, 8)

        def n(r: int) -> int:
            return max(round(r * depth), 1) if r > 1 else r

        c = [ch(x) for x in (64, 128, 256, 512, 1024)]  # P1 … P5 widths
        layers: list[nn.Module] = [
            Conv(3, c[0], 3, 2),                      # 0  P1/2
            Conv(c[0], c[1], 3, 2),                   # 1  P2/4
            C2f(c[1], c[1], n(3), True),              # 2
            Conv(c[1], c[2], 3, 2),                   # 3  P3/8
            C2f(c[2], c[2], n(6), True),              # 4
            Conv(c[2], c[3], 3, 2),                   # 5  P4/16
            C2f(c[3], c[3], n(6), True),              # 6
            Conv(c[3], c[4], 3, 2),                   # 7  P5/32
            C2f(c[4], c[4], n(3), True),              # 8
            SPPF(c[4], c[4], 5),                      # 9
            nn.Upsample(None, 2, "nearest"),          # 10
            Concat(1),                                # 11 cat backbone P4
            C2f(c[4] + c[3], c[3], n(3)),             # 12
            nn.Upsample(None, 2, "nearest"),          # 13
            Concat(1),                                # 14 cat backbone P3
            C2f(c[3] + c[2], c[2], n(3)),             # 15 (P3/8-small)
            Conv(c[2], c[2], 3, 2),                   # 16
            Concat(1),                                # 17 cat head P4
            C2f(c[2] + c[3], c[3], n(3)),             # 18 (P4/16-medium)
            Conv(c[3], c[3], 3, 2),                   # 19
            Concat(1),                                # 20 cat head P5
            C2f(c[3] + c[4], c[4], n(3)),             # 21 (P5/32-large)
            Detect(nc, (c[2], c[3], c[4])),           # 22
        ]
        self.model = nn.Sequential(*layers)
        # [from] of each layer, as in the yaml (-1: the previous layer)
        self.sources: list[int | list[int]] = [
            -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
            -1, [-1, 6], -1,
            -1, [-1, 4], -1,
            -1, [-1, 12], -1,
            -1, [-1, 9], -1,
            [15, 18, 21],
        ]

    def forward(self, x: Tensor) -> list[Tensor]:
        y: list[Tensor] = []
        for m, f in zip(self.model, self.sources, strict=True):
            if f != -1:
                x = y[f] if isinstance(f, int) else [x if j == -1 else y[j] for j in f]
            x = m(x)
            y.append(x)
        return x


def yolov8n(nc: int = 80) -> YOLOv8:
    return YOLOv8(nc=nc, depth=0.33, width=0.25, max_channels=1024)


REFERENCE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "yolov8n": yolov8n,
}

# Ultralytics' model summary (yolov8.yaml, scale n, 80 classes), DFL weights included.
ULTRALYTICS_PARAMS: dict[str, int] = {
    "yolov8n": 3_157_200,
}
