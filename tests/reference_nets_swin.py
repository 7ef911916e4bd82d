"""Hand-written reference re-implementation of torchvision's Swin Transformer (V1).

As in ``reference_nets.py``: torchvision does not install beside the CPU torch the suite
runs on, so this module, written from reading torchvision 0.29's
``models/swin_transformer.py`` (``shifted_window_attention``, ``ShiftedWindowAttention``,
``SwinTransformerBlock``, ``PatchMerging``, ``SwinTransformer``) and ``ops/misc.py``
(``MLP``; ``Permute`` and ``StochasticDepth`` are reference_ops.py's), stands in for
it. It is written with torch's own ops (``nn.Conv2d``, ``nn.LayerNorm``, ``nn.Linear``, ``nn.GELU``,
``nn.Dropout``, ``torch.roll``, ``F.pad``), not netspec's, and mirrors torchvision:

- channels-last from the patch embedding on ([B, H, W, C]), as torchvision runs;
- module names and nesting: ``features.0`` (conv, permute, norm), ``features.{1,3,5,7}``
  the stages' blocks (``norm1``, ``attn.{qkv, proj}``, ``norm2``, ``mlp.{0, 3}``),
  ``features.{2,4,6}`` the patch mergings (``reduction``, ``norm``), ``norm``, ``head``;
- registration order, so ``state_dict`` order: the attention's own
  ``relative_position_bias_table`` and its ``relative_position_index`` (a persistent
  int64 buffer, as torchvision registers it) before ``qkv`` and ``proj``; a patch
  merging's ``reduction`` before its ``norm``, though the norm runs first;
- its initialisation: every nn.Linear truncated-normal with std 0.02 and zero bias, the
  bias table truncated-normal with std 0.02;
- eval- and train-mode arithmetic: the attention padded to whole windows, rolled,
  windowed, q scaled by head_dim^−½, the relative position bias and the −100 mask added
  to the scores, softmax, the windows put back, rolled back, cropped; stochastic depth
  per sample, growing linearly over the blocks.

The keywords (image size aside: Swin takes any size its merging allows) are
specs/swin_t.yaml's vars, so a small variant of the reference and
``netspec.load("specs/swin_t.yaml", embed=…, …)`` are the same network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from reference_ops import Permute, StochasticDepth
from torch import Tensor, nn

__all__ = ["REFERENCE_MODELS", "TORCHVISION_PARAMS", "ShiftedWindowAttention",
           "SwinTransformer", "shifted_window_attention", "swin_t"]


def shifted_window_attention(x: Tensor, qkv: nn.Linear, proj: nn.Linear, bias: Tensor,
                             window: list[int], heads: int, shift: list[int],
                             attention_dropout: float, dropout: float,
                             training: bool) -> Tensor:
    """torchvision's ``shifted_window_attention`` (V1: no logit scale) on [B, H, W, C]."""
    b, h, w, c = x.shape
    pad_r = (window[1] - w % window[1]) % window[1]
    pad_b = (window[0] - h % window[0]) % window[0]
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    _, ph, pw, _ = x.shape
    shift = shift.copy()
    if window[0] >= ph:
        shift[0] = 0
    if window[1] >= pw:
        shift[1] = 0
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    nw = (ph // window[0]) * (pw // window[1])
    x = x.view(b, ph // window[0], window[0], pw // window[1], window[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b * nw, window[0] * window[1], c)
    t = qkv(x).reshape(x.size(0), x.size(1), 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = t[0], t[1], t[2]
    q = q * (c // heads) ** -0.5
    attn = q.matmul(k.transpose(-2, -1)) + bias
    if sum(shift) > 0:
        mask = x.new_zeros((ph, pw))
        h_slices = ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None))
        w_slices = ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None))
        count = 0
        for hs in h_slices:
            for ws in w_slices:
                mask[hs[0]:hs[1], ws[0]:ws[1]] = count
                count += 1
        mask = mask.view(ph // window[0], window[0], pw // window[1], window[1])
        mask = mask.permute(0, 2, 1, 3).reshape(nw, window[0] * window[1])
        mask = mask.unsqueeze(1) - mask.unsqueeze(2)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        attn = attn.view(x.size(0) // nw, nw, heads, x.size(1), x.size(1))
        attn = (attn + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, x.size(1), x.size(1))
    attn = F.dropout(F.softmax(attn, dim=-1), p=attention_dropout, training=training)
    x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), c)
    x = F.dropout(proj(x), p=dropout, training=training)
    x = x.view(b, ph // window[0], pw // window[1], window[0], window[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)
    if sum(shift) > 0:
        x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


class ShiftedWindowAttention(nn.Module):
    def __init__(self, dim: int, window: list[int], shift: list[int], heads: int,
                 attention_dropout: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.window, self.shift, self.heads = window, shift, heads
        self.attention_dropout, self.dropout = attention_dropout, dropout
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1), heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]),
                                            indexing="ij")).flatten(1)   # 2, Wh·Ww
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        rel[:, :, 0] += window[0] - 1
        rel[:, :, 1] += window[1] - 1
        rel[:, :, 0] *= 2 * window[1] - 1
        self.register_buffer("relative_position_index", rel.sum(-1).flatten())

    def forward(self, x: Tensor) -> Tensor:
        n = self.window[0] * self.window[1]
        bias = self.relative_position_bias_table[self.relative_position_index]
        bias = bias.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        return shifted_window_attention(x, self.qkv, self.proj, bias, self.window, self.heads,
                                        self.shift, self.attention_dropout, self.dropout,
                                        self.training)


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: list[int], shift: list[int],
                 dropout: float, attention_dropout: float, sd_prob: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftedWindowAttention(dim, window, shift, heads, attention_dropout,
                                           dropout)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")
        self.norm2 = nn.LayerNorm(dim)
        # torchvision's ops.misc.MLP: Linear, GELU, Dropout, Linear, Dropout
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)  # defined first
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-3:-1]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :],
                       x[..., 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x))


class SwinTransformer(nn.Module):
    def __init__(self, patch: int, embed: int, depths: list[int], heads: list[int],
                 window: list[int], drop_path: float, dropout: float = 0.0,
                 attention_dropout: float = 0.0, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(3, embed, kernel_size=patch, stride=patch), Permute([0, 2, 3, 1]),
            nn.LayerNorm(embed))]
        total, block = sum(depths), 0
        for s, depth in enumerate(depths):
            dim = embed * 2 ** s
            stage = []
            for i in range(depth):
                stage.append(SwinTransformerBlock(
                    dim, heads[s], window, [0 if i % 2 == 0 else k // 2 for k in window],
                    dropout, attention_dropout, drop_path * block / (total - 1)))
                block += 1
            layers.append(nn.Sequential(*stage))
            if s < len(depths) - 1:
                layers.append(PatchMerging(dim))
        self.features = nn.Sequential(*layers)
        features = embed * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(features)
        self.permute = Permute([0, 3, 1, 2])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head = nn.Linear(features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(self.features(x))
        return self.head(self.flatten(self.avgpool(self.permute(x))))


def swin_t(num_classes: int = 1000, *, embed: int = 96, heads: int = 3, window: int = 7,
           depth1: int = 2, depth2: int = 2, depth3: int = 6, depth4: int = 2,
           drop_path: float = 0.2, dropout: float = 0.0, attention_dropout: float = 0.0,
           image: int = 224) -> SwinTransformer:
    """torchvision's swin_t; its keywords are specs/swin_t.yaml's vars, for variants
    (``image`` only says what size the spec's input is: the network takes any)."""
    return SwinTransformer(4, embed, [depth1, depth2, depth3, depth4],
                           [heads, 2 * heads, 4 * heads, 8 * heads], [window, window],
                           drop_path, dropout, attention_dropout, num_classes)


REFERENCE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "swin_t": swin_t,
}

# Published parameter totals (torchvision model docs, 1000 classes).
TORCHVISION_PARAMS: dict[str, int] = {
    "swin_t": 28_288_354,
    "swin_s": 49_606_258,
    "swin_b": 87_768_224,
}
