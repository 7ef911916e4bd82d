"""The torch modules of Swin's kinds (netspec/kinds/window.py, ``patch_merge`` in
netspec/kinds/reshape.py): shifted-window attention, computed as torchvision's
``shifted_window_attention`` computes it on the channels-last view of netspec's
channels-first map, so the eval outputs are torchvision's; and patch merging."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WindowAttention(nn.Module):
    """[B, C, H, W] → [B, C, H, W]: multi-head self-attention inside (shifted) windows,
    with a learned relative position bias (``relative_position_bias_table``, registered
    first, as torchvision's is the attention's own parameter), ``qkv`` and ``proj``.

    Initialised as torchvision's ShiftedWindowAttention: the table truncated-normal with
    std 0.02, ``qkv`` and ``proj`` nn.Linear's own. (Its SwinTransformer then re-draws
    every nn.Linear of the model, truncated-normal with std 0.02 and zero biases; netspec's
    linear layers keep torch's initialisation, and so do these.)"""

    def __init__(self, c: int, heads: int, window: tuple[int, int], shift: tuple[int, int],
                 qkv_bias: bool, out_bias: bool, drop: float) -> None:
        super().__init__()
        self.heads, self.window, self.shift, self.drop = heads, window, shift, drop
        wh, ww = window
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * wh - 1) * (2 * ww - 1), heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(c, 3 * c, bias=qkv_bias)
        self.proj = nn.Linear(c, c, bias=out_bias)

    def relative_position_bias(self) -> torch.Tensor:
        """[1, heads, n, n]: each head's bias for each (query, key) pair of a window."""
        table = self.relative_position_bias_table
        (wh, ww), n = self.window, self.window[0] * self.window[1]
        # The index (which table row each pair reads) follows from the window alone, so
        # it is made here, on the table's device, rather than held: torchvision's
        # persistent buffer would be a tensor in the state_dict that no weight file of
        # netspec's (floats only) holds, and a non-persistent one stays behind on the
        # meta device when a model built there takes its weights with
        # load_state_dict(assign=True), silently indexing garbage. A few small integer
        # ops per call; kinds/window.py's relative_position_index is the same rule
        cell = torch.arange(n, device=table.device)
        rows, cols = cell // ww, cell % ww
        index = ((rows[:, None] - rows[None, :] + wh - 1) * (2 * ww - 1)
                 + cols[:, None] - cols[None, :] + ww - 1)
        bias = table[index.flatten()]
        return bias.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torchvision runs channels-last: the same operations in the same order on that
        # view give the same values, and the result goes back to channels-first
        y = self._channels_last(x.permute(0, 2, 3, 1))
        return y.permute(0, 3, 1, 2)

    def _channels_last(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        (wh, ww), heads = self.window, self.heads
        x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
        _, hp, wp, _ = x.shape
        # one window along an axis: nothing to shift along it (torchvision's rule)
        shift = (0 if wh >= hp else self.shift[0], 0 if ww >= wp else self.shift[1])
        shifted = sum(shift) > 0
        if shifted:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        windows = (hp // wh) * (wp // ww)
        n = wh * ww
        x = x.view(b, hp // wh, wh, wp // ww, ww, c)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(b * windows, n, c)
        qkv = self.qkv(x).reshape(b * windows, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * (c // heads) ** -0.5
        attn = q.matmul(k.transpose(-2, -1))
        attn = attn + self.relative_position_bias()
        if shifted:
            mask = self._mask(x, (hp, wp), shift, windows)
            attn = attn.view(b, windows, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, heads, n, n)
        attn = F.softmax(attn, dim=-1)
        attn = F.dropout(attn, p=self.drop, training=self.training)
        x = attn.matmul(v).transpose(1, 2).reshape(b * windows, n, c)
        x = self.proj(x)
        x = x.view(b, hp // wh, wp // ww, wh, ww, c)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if shifted:
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x[:, :h, :w, :].contiguous()

    def _mask(self, x: torch.Tensor, padded: tuple[int, int], shift: tuple[int, int],
              windows: int) -> torch.Tensor:
        """[windows, n, n]: −100 between positions of a window that came from different
        regions of the unshifted map, else 0 (torchvision's slices, computed at the
        size the module is run at)."""
        (hp, wp), (wh, ww) = padded, self.window
        regions = x.new_zeros((hp, wp))
        count = 0
        for hs in ((0, -wh), (-wh, -shift[0]), (-shift[0], None)):
            for ws in ((0, -ww), (-ww, -shift[1]), (-shift[1], None)):
                regions[hs[0]:hs[1], ws[0]:ws[1]] = count
                count += 1
        regions = regions.view(hp // wh, wh, wp // ww, ww).permute(0, 2, 1, 3)
        regions = regions.reshape(windows, wh * ww)
        diff = regions.unsqueeze(1) - regions.unsqueeze(2)
        return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)

    def extra_repr(self) -> str:
        return (f"heads={self.heads}, window={list(self.window)}, shift={list(self.shift)}, "
                f"drop={self.drop}")


class PatchMerge(nn.Module):
    """[B, C, H, W] → [B, 4·C, H/2, W/2]: the four positions of each 2×2 block, in
    torchvision's order (rows first), one after the other along the channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2],
                          x[:, :, 1::2, 1::2]], 1)
