"""Hand-written reference re-implementation of Ultralytics' YOLO11 detection model.

``ultralytics`` cannot be installed here, so the tests use this module as an independent
reference, as ``tests/reference_nets_yolo.py`` does for YOLOv8n. It mirrors
``DetectionModel("yolo11{n,s,m,l,x}.yaml")``: ``ultralytics/cfg/models/11/yolo11.yaml``
built by ``parse_model`` at a scale [depth, width, max_channels], as of the YOLO11 release
(Ultralytics 8.3; ``block.py``'s C3k2, C3k, C2PSA, PSABlock, Attention, SPPF, C2f,
Bottleneck; ``conv.py``'s Conv and DWConv; ``head.py``'s Detect, not legacy, and DFL):

- module names and nesting: ``model.0`` … ``model.23`` (``model.2.m.0.cv1.conv``,
  ``model.6.m.0.m.1.cv2.bn``, ``model.10.m.0.attn.qkv.conv``, ``model.23.cv3.0.0.0.conv``,
  ``model.23.dfl.conv``, …);
- parameter/buffer registration order, so ``state_dict`` key order: C3k2 inherits C2f's
  ``cv1``, ``cv2`` and replaces ``m`` in place (``cv1, cv2, m``); C3k likewise C3's
  (``cv1, cv2, cv3, m``); Attention registers ``qkv, proj, pe`` though ``pe`` computes
  before ``proj``; Detect ``cv2.*``, then ``cv3.*``, then ``dfl.conv.weight``;
- batch norms with eps 1e-3 and momentum 0.03 (``initialize_weights`` in tasks.py);
- parse_model's rules: widths ``make_divisible(min(c, max_channels) * width, 8)``, repeats
  ``max(round(n * depth), 1)``, and every C3k2 built with ``c3k=True`` at scales m, l, x
  (at n and s only where the yaml says True: layers 6, 8 and 22);
- the DFL's fixed, non-trainable weight ``arange(16)``.

``forward`` returns Detect's training-mode output: the three per-level maps
``cat(cv2[i](x_i), cv3[i](x_i), 1)``, before box decoding (DFL is not called), in train and
eval mode alike. Attention's arithmetic is Ultralytics' own, with its view and split, so
the spec's reading of that channel layout is checked against it, not against itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "C2PSA",
    "DFL",
    "REFERENCE_MODELS",
    "SCALES",
    "SPPF",
    "YOLO11",
    "Attention",
    "C3k",
    "C3k2",
    "Conv",
    "DWConv",
    "Detect",
    "PSABlock",
    "yolo11",
    "yolo11n",
]

#: yolo11.yaml's ``scales``: [depth, width, max_channels]
SCALES: dict[str, tuple[float, float, int]] = {
    "n": (0.50, 0.25, 1024),
    "s": (0.50, 0.50, 1024),
    "m": (0.50, 1.00, 512),
    "l": (1.00, 1.00, 512),
    "x": (1.00, 1.50, 512),
}


def make_divisible(x: float, divisor: int = 8) -> int:
    """Ultralytics' ``make_divisible``: the smallest multiple of ``divisor`` ≥ x."""
    return math.ceil(x / divisor) * divisor


class Conv(nn.Module):
    """Conv2d (no bias, "same" padding) → BatchNorm2d(eps 1e-3, momentum 0.03) → SiLU,
    or no activation (an Identity, which holds no tensors) with ``act=False``."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1,
                 act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=0.001, momentum=0.03)
        self.act: nn.Module = nn.SiLU() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv(Conv):
    """Ultralytics' DWConv: a Conv grouped by gcd(c1, c2) (depthwise when c1 == c2)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, act: bool = True) -> None:
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), act=act)


class Bottleneck(nn.Module):
    """Two Convs of kernels k, hidden width int(c2·e), with a residual when ``shortcut``
    and the widths agree."""

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
    """CSP bottleneck with two convolutions (C3k2's base): cv1, split in halves, the
    blocks of ``m`` chained on the last half, concatenate everything, cv2."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1,
                 e: float = 0.5) -> None:
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(
            Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n))

    def forward(self, x: Tensor) -> Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class C3(nn.Module):
    """CSP bottleneck with three convolutions (C3k's base): cv3(cat(m(cv1(x)), cv2(x)))."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m: nn.Module = nn.Sequential(
            *(Bottleneck(c_, c_, shortcut, g, k=(1, 3), e=1.0) for _ in range(n)))

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k(C3):
    """C3 whose bottlenecks have k×k kernels; assigning ``m`` again keeps its place after
    cv3 in the registration order (nn.Module replaces the entry in place)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5, k: int = 3) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(
            *(Bottleneck(c_, c_, shortcut, g, k=(k, k), e=1.0) for _ in range(n)))


class C3k2(C2f):
    """C2f whose blocks are C3k (``c3k``, two bottlenecks each) or Bottlenecks of
    expansion 0.5 (note: not C2f's 1.0); ``m`` keeps C2f's place after cv2."""

    def __init__(self, c1: int, c2: int, n: int = 1, c3k: bool = False, e: float = 0.5,
                 g: int = 1, shortcut: bool = True) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.ModuleList(
            C3k(self.c, self.c, 2, shortcut, g) if c3k
            else Bottleneck(self.c, self.c, shortcut, g) for _ in range(n))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: cv1 (halves the width), the same 5×5 stride-1 max
    pool three times in sequence, concatenate the four, cv2."""

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


class Attention(nn.Module):
    """Ultralytics' Attention: a 1×1 Conv makes each head's q, k (key_dim) and v
    (head_dim) side by side along the channels; softmax(qᵀk · key_dim^-½) weighs v; a
    depthwise 3×3 Conv of v (``pe``, positional encoding) is added; ``proj`` projects."""

    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim ** -0.5
        nh_kd = self.key_dim * num_heads
        h = dim + nh_kd * 2
        self.qkv = Conv(dim, h, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        n = h * w
        qkv = self.qkv(x)
        q, k, v = qkv.view(b, self.num_heads, self.key_dim * 2 + self.head_dim, n).split(
            [self.key_dim, self.key_dim, self.head_dim], dim=2)
        attn = (q.transpose(-2, -1) @ k) * self.scale
        attn = attn.softmax(dim=-1)
        x = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(x)


class PSABlock(nn.Module):
    """x + attn(x), then x + ffn(x) (two 1×1 Convs, the second without activation)."""

    def __init__(self, c: int, attn_ratio: float = 0.5, num_heads: int = 4,
                 shortcut: bool = True) -> None:
        super().__init__()
        self.attn = Attention(c, attn_ratio=attn_ratio, num_heads=num_heads)
        self.ffn = nn.Sequential(Conv(c, c * 2, 1), Conv(c * 2, c, 1, act=False))
        self.add = shortcut

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


class C2PSA(nn.Module):
    """cv1, split in halves, n PSABlocks (heads: c // 64) on the second, concatenate,
    cv2."""

    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5) -> None:
        super().__init__()
        assert c1 == c2
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(
            *(PSABlock(self.c, attn_ratio=0.5, num_heads=self.c // 64) for _ in range(n)))

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[Tensor]) -> Tensor:
        return torch.cat(x, self.d)


class DFL(nn.Module):
    """Distribution focal loss integral: the fixed weights 0 … c1−1 as a frozen 1×1 conv."""

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
    """YOLO11's detection head (not ``legacy``): per level a box branch ``cv2[i]`` (two
    3×3 Convs, a 1×1 conv) and a class branch ``cv3[i]`` (DWConv 3×3 + Conv 1×1, twice,
    then a 1×1 conv); ``dfl`` decodes boxes (not called by ``forward``)."""

    def __init__(self, nc: int = 80, ch: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.nc = nc
        self.nl = len(ch)
        self.reg_max = 16
        self.no = nc + self.reg_max * 4
        c2, c3 = max((16, ch[0] // 4, self.reg_max * 4)), max(ch[0], min(self.nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * self.reg_max, 1))
            for x in ch)
        self.cv3 = nn.ModuleList(
            nn.Sequential(
                nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                nn.Conv2d(c3, self.nc, 1),
            )
            for x in ch)
        self.dfl = DFL(self.reg_max)

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        """Ultralytics' training-mode output: [cat(box_i, cls_i) for each level]."""
        return [torch.cat((self.cv2[i](x[i]), self.cv3[i](x[i])), 1) for i in range(self.nl)]


class YOLO11(nn.Module):
    """``DetectionModel`` for ``yolo11.yaml`` at one of its scales ("n" … "x")."""

    def __init__(self, scale: str = "n", nc: int = 80) -> None:
        super().__init__()
        depth, width, max_channels = SCALES[scale]
        mlx = scale in "mlx"  # parse_model: every C3k2 gets c3k=True at these scales

        def ch(c: int) -> int:
            return make_divisible(min(c, max_channels) * width, 8)

        def n(r: int) -> int:
            return max(round(r * depth), 1) if r > 1 else r

        c64, c128, c256, c512, c1024 = (ch(x) for x in (64, 128, 256, 512, 1024))
        layers: list[nn.Module] = [
            Conv(3, c64, 3, 2),                                   # 0  P1/2
            Conv(c64, c128, 3, 2),                                # 1  P2/4
            C3k2(c128, c256, n(2), mlx, 0.25),                    # 2
            Conv(c256, c256, 3, 2),                               # 3  P3/8
            C3k2(c256, c512, n(2), mlx, 0.25),                    # 4
            Conv(c512, c512, 3, 2),                               # 5  P4/16
            C3k2(c512, c512, n(2), True),                         # 6
            Conv(c512, c1024, 3, 2),                              # 7  P5/32
            C3k2(c1024, c1024, n(2), True),                       # 8
            SPPF(c1024, c1024, 5),                                # 9
            C2PSA(c1024, c1024, n(2)),                            # 10
            nn.Upsample(None, 2, "nearest"),                      # 11
            Concat(1),                                            # 12 cat backbone P4
            C3k2(c1024 + c512, c512, n(2), mlx),                  # 13
            nn.Upsample(None, 2, "nearest"),                      # 14
            Concat(1),                                            # 15 cat backbone P3
            C3k2(c512 + c512, c256, n(2), mlx),                   # 16 (P3/8-small)
            Conv(c256, c256, 3, 2),                               # 17
            Concat(1),                                            # 18 cat head P4
            C3k2(c256 + c512, c512, n(2), mlx),                   # 19 (P4/16-medium)
            Conv(c512, c512, 3, 2),                               # 20
            Concat(1),                                            # 21 cat head P5
            C3k2(c512 + c1024, c1024, n(2), True),                # 22 (P5/32-large)
            Detect(nc, (c256, c512, c1024)),                      # 23
        ]
        self.model = nn.Sequential(*layers)
        # [from] of each layer, as in the yaml (-1: the previous layer)
        self.sources: list[int | list[int]] = [
            -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
            -1, [-1, 6], -1,
            -1, [-1, 4], -1,
            -1, [-1, 13], -1,
            -1, [-1, 10], -1,
            [16, 19, 22],
        ]

    def forward(self, x: Tensor) -> list[Tensor]:
        y: list[Tensor] = []
        for m, f in zip(self.model, self.sources, strict=True):
            if f != -1:
                x = y[f] if isinstance(f, int) else [x if j == -1 else y[j] for j in f]
            x = m(x)
            y.append(x)
        return x


def yolo11(scale: str = "n", nc: int = 80) -> YOLO11:
    return YOLO11(scale, nc)


def yolo11n(nc: int = 80) -> YOLO11:
    return YOLO11("n", nc)


REFERENCE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "yolo11n": yolo11n,
}
