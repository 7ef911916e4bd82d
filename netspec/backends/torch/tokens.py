"""The torch modules of the token kinds (netspec/kinds/tokens.py, attention.py):
converting maps and tokens, the learned class token and position embedding, taking a
token out, and multi-head self-attention on torch's ``scaled_dot_product_attention``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Tokens(nn.Module):
    """[B, C, H, W] → [B, H·W, C], row by row (a view)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class ToMap(nn.Module):
    """[B, H·W, D] → [B, D, H, W]."""

    def __init__(self, h: int, w: int) -> None:
        super().__init__()
        self.h, self.w = h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], self.h, self.w)

    def extra_repr(self) -> str:
        return f"size=({self.h}, {self.w})"


class ClassToken(nn.Module):
    """A learned [1, 1, D] token put before the sequence."""

    def __init__(self, d: int, std: float) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, d))
        if std > 0:
            nn.init.normal_(self.token, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)


class PosEmbed(nn.Module):
    """A learned [1, N, D] table added to the tokens."""

    def __init__(self, n: int, d: int, std: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, n, d))
        if std > 0:
            nn.init.normal_(self.weight, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight


class Select(nn.Module):
    """[B, N, D] → [B, D]: one token (a view), or the mean of all."""

    def __init__(self, token: int | str) -> None:
        super().__init__()
        self.token = token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.token == "mean":
            return x.mean(dim=1)
        return x[:, self.token]

    def extra_repr(self) -> str:
        return f"token={self.token}"


class Attention(nn.Module):
    """Multi-head self-attention over tokens [B, N, D] or a map's positions [B, C, H, W].

    ``qkv`` gives [q | k | v], heads consecutive in each (nn.MultiheadAttention's
    ``in_proj``, timm's ``qkv``); ``proj`` maps the joined heads back to D. Initialised
    as nn.MultiheadAttention: Xavier-uniform ``qkv`` weight, zero biases. Without
    projections (``d`` None) the input holds q, k, v — per head with ``per_head``
    (Ultralytics' layout) — and the output is the heads joined."""

    def __init__(self, d: int | None, heads: int, head_dim: int, key_dim: int,
                 qkv_bias: bool, out_bias: bool, drop: float, per_head: bool = False) -> None:
        super().__init__()
        self.heads, self.head_dim, self.key_dim, self.drop = heads, head_dim, key_dim, drop
        self.per_head = per_head
        self.qkv: nn.Linear | None = None
        self.proj: nn.Linear | None = None
        if d is not None:
            self.qkv = nn.Linear(d, heads * (2 * key_dim + head_dim), bias=qkv_bias)
            self.proj = nn.Linear(heads * head_dim, d, bias=out_bias)
            nn.init.xavier_uniform_(self.qkv.weight)
            if qkv_bias:
                nn.init.zeros_(self.qkv.bias)
            if out_bias:
                nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x.dim() == 4
        if image:
            b, _, h, w = x.shape
            x = x.flatten(2).transpose(1, 2)
        n = x.shape[1]
        qkv = self.qkv(x) if self.qkv is not None else x
        hk, kd, hd = self.heads, self.key_dim, self.head_dim
        if self.per_head:  # [B, N, heads, 2·kd + hd]: each head's q, k, v side by side
            q, k, v = qkv.unflatten(-1, (hk, 2 * kd + hd)).transpose(1, 2).split(
                [kd, kd, hd], dim=-1)
        else:  # [q | k | v], heads consecutive in each: views of one tensor
            q, k, v = qkv.split([hk * kd, hk * kd, hk * hd], dim=-1)
            q = q.unflatten(-1, (hk, kd)).transpose(1, 2)
            k = k.unflatten(-1, (hk, kd)).transpose(1, 2)
            v = v.unflatten(-1, (hk, hd)).transpose(1, 2)
        o = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.drop if self.training else 0.0, scale=1 / math.sqrt(kd))
        o = o.transpose(1, 2).reshape(x.shape[0], n, hk * hd)
        if self.proj is not None:
            o = self.proj(o)
        if image:
            o = o.transpose(1, 2).reshape(b, o.shape[2], h, w)
        return o

    def extra_repr(self) -> str:
        return (f"heads={self.heads}, head_dim={self.head_dim}, key_dim={self.key_dim}, "
                f"drop={self.drop}")
