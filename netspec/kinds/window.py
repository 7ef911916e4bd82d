"""Shifted-window self-attention (Liu et al., 2021, "Swin Transformer"), as one kind.

Over a map [C, H, W]: the map is padded (bottom, right) to whole windows, cyclically
shifted by −shift, and cut into windows of wh×ww positions; each window attends within
itself (multi-head, q scaled by head_dim^−½), with a learned bias per head for each
relative position inside a window and, for shifted windows, −100 between positions that
came from different regions of the unshifted map; then the windows are put back, the
shift undone and the padding cropped. torchvision's ``shifted_window_attention``
exactly: its ``qkv`` lays out [q | k | v] with the heads consecutive in each, and its
``relative_position_bias_table`` is a parameter of the attention itself, so it comes
first in torchvision's state_dict, before ``qkv`` and ``proj``.

The relative position *index* (which table row each pair of positions reads) follows
from the window alone: it is no weight, so it is no tensor of the Graph (torchvision
keeps it as a persistent int64 buffer; a weights file from torchvision pairs with
netspec's tensors once those are left out). The torch backend makes it from the window
at each call, the ONNX export adds the gathered bias as a constant.
"""

from collections.abc import Sequence
from typing import Any

from pydantic import Field, model_validator

from netspec.kinds.base import Float, LayerArgs, PosInt, Saved, Shape, ShapeError
from netspec.kinds.conv import NonNegPair, Pair, pair


def relative_position_index(window: tuple[int, int]) -> list[int]:
    """For each (query, key) pair of a window's wh·ww positions, row by row, the row of
    the bias table that holds their offset: (Δh + wh − 1)·(2·ww − 1) + (Δw + ww − 1),
    Δ = query − key (torchvision's ``define_relative_position_index``)."""
    wh, ww = window
    cells = [(i, j) for i in range(wh) for j in range(ww)]
    return [(qi - ki + wh - 1) * (2 * ww - 1) + (qj - kj + ww - 1)
            for qi, qj in cells for ki, kj in cells]


def shifted_regions(padded: tuple[int, int], window: tuple[int, int],
                    shift: tuple[int, int]) -> list[list[int]]:
    """The region each position of the padded, shifted map came from, [Hp][Wp]: along
    each axis the positions before the last window, the last window's first part, and
    the ``shift`` positions rolled in from the start (torchvision's three slices per
    axis, which with no shift along an axis make that axis one region)."""

    def regions(n: int, w: int, s: int) -> list[int]:
        if s == 0:
            return [0] * n
        return [0 if i < n - w else 1 if i < n - s else 2 for i in range(n)]

    rows = regions(padded[0], window[0], shift[0])
    cols = regions(padded[1], window[1], shift[1])
    return [[3 * r + c for c in cols] for r in rows]


class WindowAttention(LayerArgs):
    op = "window_attention"
    autocast = "lower"
    auto_name = "attn"
    shorthand = "heads"
    ranks = (3,)
    fresh_output = True
    undecayed = frozenset({"relative_position_bias_table"})
    # small maps: the generators draw inputs of a few positions a side (6×6: 2×2
    # windows, or 4×4 padded to 8×8)
    samples = ({"heads": 1, "window": 2}, {"heads": 2, "window": 2, "shift": 1},
               {"heads": 1, "window": [2, 3], "shift": [1, 2], "qkv_bias": False,
                "out_bias": False},
               {"heads": 1, "window": 4, "shift": 2, "drop": 0.1})

    heads: PosInt
    #: each window's height and width (a pair, or one size for both)
    window: Pair = 7
    #: how far the windows are shifted (torchvision: 0, then window // 2 every other
    #: block); each smaller than the window
    shift: NonNegPair = 0
    qkv_bias: bool = True
    out_bias: bool = True
    #: dropout on the attention weights while training (torchvision's
    #: ``attention_dropout``)
    drop: Float = Field(default=0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _shift_within_the_window(self) -> "WindowAttention":
        if any(s >= w for s, w in zip(pair(self.shift), pair(self.window), strict=True)):
            raise ValueError(f"shift {list(pair(self.shift))} must be smaller than the "
                             f"window {list(pair(self.window))} along each axis")
        return self

    def canonical(self) -> dict[str, Any]:
        return {**self.model_dump(), "window": pair(self.window), "shift": pair(self.shift)}

    def layout(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(the padded size, the shift) on an [H, W] map: padded to whole windows, and no
        shift along an axis that holds one window only (torchvision's rule)."""
        wh, ww = pair(self.window)
        padded = (-(-h // wh) * wh, -(-w // ww) * ww)
        sh, sw = pair(self.shift)
        return padded, (0 if wh >= padded[0] else sh, 0 if ww >= padded[1] else sw)

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = self.check_input(inputs)
        if x[0] % self.heads:
            raise ShapeError(f"heads={self.heads} does not divide the {x[0]} channels",
                             "heads")
        return x

    def table_rows(self) -> int:
        wh, ww = pair(self.window)
        return (2 * wh - 1) * (2 * ww - 1)

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        c = inputs[0][0]
        # torchvision's order: the table is the attention's own parameter, so its
        # state_dict holds it before its children qkv and proj
        shapes: dict[str, Shape] = {"relative_position_bias_table": (self.table_rows(),
                                                                     self.heads),
                                    "qkv.weight": (3 * c, c)}
        if self.qkv_bias:
            shapes["qkv.bias"] = (3 * c,)
        shapes["proj.weight"] = (c, c)
        if self.out_bias:
            shapes["proj.bias"] = (c,)
        return shapes

    def macs(self, inputs: Sequence[Shape], out: Shape) -> int:
        c, h, w = inputs[0]
        (hp, wp), _ = self.layout(h, w)
        n = pair(self.window)[0] * pair(self.window)[1]
        # every padded position is projected (qkv: 3·C², proj: C²) and, within its
        # window, attends to the window's n positions (q·kᵀ and the weights · v: 2·n·C)
        return hp * wp * (4 * c * c + 2 * n * c)

    def formula(self, inputs: Sequence[Shape]) -> str:
        c = inputs[0][0]
        return (f"{self.table_rows()}·{self.heads} + {c}·{3 * c} + "
                f"{3 * c if self.qkv_bias else 0} + {c}·{c} + {c if self.out_bias else 0}")

    def symbolic_size(self, inputs: Sequence[Shape], out: Shape) -> str:
        _, h, w = inputs[0]
        wh, ww = pair(self.window)
        return (f"lays out its {wh}×{ww} windows (their padding, shift and mask) for the "
                f"{h}×{w} map")

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return self._saved(inputs, lowered=False)

    def saved_under_autocast(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return self._saved(inputs, lowered=True)

    def _saved(self, inputs: Sequence[Shape], lowered: bool) -> Saved:
        # As backends/torch/window.py computes it (torchvision's arithmetic, on the
        # channels-last view), padded positions included: the windows' tokens copied to
        # [B·windows, n, C] for the qkv linear, q scaled, kᵀ and v copied contiguous for
        # the two matmuls (with one head they are views of the qkv output, and its whole
        # block of three is kept instead), the softmax's output (with dropout its mask and
        # the weights after it), the joined heads the proj linear keeps; and the table
        # lookup's int64 index, n² values, not per sample. The weights are float32 under
        # bf16 autocast too, the float32 table's bias having widened them, and the second
        # matmul keeps a bf16 copy of the ones it multiplies. Measured with
        # saved_tensors_hooks (torch 2.13, CPU: tests/test_memory_kinds.py)
        c, h, w = inputs[0]
        (hp, wp), _ = self.layout(h, w)
        n = pair(self.window)[0] * pair(self.window)[1]
        windows = hp * wp // n
        tokens = (hp * wp * c, None, True)
        k_and_v = ((3 * hp * wp * c, None, True),) if self.heads == 1 else (tokens, tokens)
        weights = windows * self.heads * n * n
        if self.drop > 0:
            # the float32 mask, and the dropped weights the matmul takes: float32 in fp32,
            # its own bf16 copy under autocast
            after = ((weights, 4, True), (weights, None, True))
            return Saved(inputs=(), extra=(tokens, tokens, *k_and_v, (weights, 4, True),
                                           *after, tokens, (n * n, 8, False)))
        # without dropout the matmul takes the float32 softmax output itself, or under
        # autocast a bf16 copy of it
        copy = ((weights, None, True),) if lowered else ()
        return Saved(inputs=(), extra=(tokens, tokens, *k_and_v, (weights, 4, True), *copy,
                                       tokens, (n * n, 8, False)))
