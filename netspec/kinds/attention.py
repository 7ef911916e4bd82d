"""Multi-head self-attention (Vaswani et al., 2017), with its projections, as one kind.

Over tokens [N, D], or over the H·W positions of a [C, H, W] map (D = C): one linear map
gives every position's queries, keys and values, laid out [q | k | v] with the heads
consecutive inside each (torch's ``nn.MultiheadAttention`` ``in_proj``, timm's ``qkv``);
each head attends, softmax(q·kᵀ / √key_dim)·v; the heads' outputs, concatenated, are
projected back to D. ``key_dim`` makes queries and keys narrower than the values (YOLO11's
C2PSA: half the head size).

With ``project: false`` the kind owns no weights: its input already holds each
position's queries, keys and values (computed by the layers before it: C2PSA's 1×1 conv
and batch norm), and its output is the heads' values joined, [heads·head_dim], for the
layers after it to project. ``layout: heads`` reads them per head, [q | k | v] for head
0, then head 1… (Ultralytics' ``qkv.view(B, heads, 2·key_dim + head_dim, N)``).
"""

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from netspec.kinds.base import Float, LayerArgs, PosInt, Saved, Shape, ShapeError


class Attention(LayerArgs):
    op = "attention"
    autocast = "lower"
    auto_name = "attn"
    shorthand = "heads"
    ranks = (2, 3)
    fresh_output = True
    samples = ({"heads": 1}, {"heads": 2, "key_dim": 1},
               {"heads": 2, "head_dim": 3, "qkv_bias": False, "out_bias": False},
               {"heads": 1, "drop": 0.1}, {"heads": 1, "project": False},
               {"heads": 1, "project": False, "drop": 0.1},
               {"heads": 2, "key_dim": 1, "project": False, "layout": "heads"})

    heads: PosInt
    #: each head's size (its values, and its queries and keys unless ``key_dim``);
    #: default D / heads. Or give ``dim``, all heads together
    head_dim: PosInt | None = None
    dim: PosInt | None = None
    #: each head's query and key size, when smaller than its values (C2PSA)
    key_dim: PosInt | None = None
    qkv_bias: bool = True
    out_bias: bool = True
    #: dropout on the attention weights while training (torch's MultiheadAttention
    #: ``dropout``, torchvision's ``attention_dropout``)
    drop: Float = Field(default=0.0, ge=0, lt=1)
    #: own the qkv and output projections (true), or read q, k, v from the input and
    #: return the heads joined (false)
    project: bool = True
    #: how q, k, v lie along the features: all queries, all keys, all values (qkv), or
    #: head by head (heads)
    layout: Literal["qkv", "heads"] = "qkv"

    @model_validator(mode="after")
    def _one_size(self) -> "Attention":
        if self.head_dim is not None and self.dim is not None:
            raise ValueError("give head_dim (each head's size) or dim (all heads "
                             "together), not both")
        if not self.project and (self.dim is not None or not self.qkv_bias
                                 or not self.out_bias):
            raise ValueError("without its projections (project: false) attention has no "
                             "biases and no dim: the input's features are heads·(2·key_dim "
                             "+ head_dim)")
        return self

    def sizes(self, d: int) -> tuple[int, int]:
        """(head size, query/key size per head) on tokens of D features."""
        if not self.project:
            return self._sizes_from_input(d)
        if self.head_dim is not None:
            hd = self.head_dim
        else:
            total = self.dim if self.dim is not None else d
            if total % self.heads:
                raise ShapeError(f"heads={self.heads} does not divide "
                                 f"{'dim=' if self.dim else 'the dimension '}{total}",
                                 "heads")
            hd = total // self.heads
        return hd, self.key_dim if self.key_dim is not None else hd

    def _sizes_from_input(self, d: int) -> tuple[int, int]:
        """Without projections the input's D features are heads·(2·key_dim + head_dim):
        one size given, the other follows; neither, all three the same."""
        h, hd, kd = self.heads, self.head_dim, self.key_dim
        if d % h:
            raise ShapeError(f"heads={h} does not divide the input's {d} features of "
                             "queries, keys and values", "heads")
        per = d // h
        if hd is None and kd is None:
            if per % 3:
                raise ShapeError(f"each head's {per} features are not three equal q, k, "
                                 "v: give key_dim or head_dim", "heads")
            return per // 3, per // 3
        if hd is None:
            assert kd is not None
            hd = per - 2 * kd
        kd = kd if kd is not None else (per - hd) // 2
        if hd < 1 or kd < 1 or 2 * kd + hd != per:
            raise ShapeError(f"each head's {per} input features are not 2·key_dim + "
                             f"head_dim", "key_dim" if self.key_dim else "head_dim")
        return hd, kd

    @staticmethod
    def features(x: Shape) -> tuple[int, int]:
        """(positions, features) of tokens [N, D] or a map [C, H, W]."""
        return (x[0], x[1]) if len(x) == 2 else (x[1] * x[2], x[0])

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = self.check_input(inputs)
        hd, _ = self.sizes(self.features(x)[1])
        if self.project:
            return x
        out = self.heads * hd  # the heads joined
        return (x[0], out) if len(x) == 2 else (out, *x[1:])

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        if not self.project:
            return {}
        d = self.features(inputs[0])[1]
        hd, kd = self.sizes(d)
        qkv = self.heads * (2 * kd + hd)
        shapes: dict[str, Shape] = {"qkv.weight": (qkv, d)}
        if self.qkv_bias:
            shapes["qkv.bias"] = (qkv,)
        shapes["proj.weight"] = (d, self.heads * hd)
        if self.out_bias:
            shapes["proj.bias"] = (d,)
        return shapes

    def macs(self, inputs: Sequence[Shape], out: Shape) -> int:
        n, d = self.features(inputs[0])
        hd, kd = self.sizes(d)
        h = self.heads
        projections = n * d * h * (2 * kd + hd) + n * h * hd * d if self.project else 0
        return projections + h * n * n * (kd + hd)  # q·kᵀ, then the weights · v

    def formula(self, inputs: Sequence[Shape]) -> str | None:
        if not self.project:
            return None
        d = self.features(inputs[0])[1]
        hd, kd = self.sizes(d)
        qkv = self.heads * (2 * kd + hd)
        return (f"{d}·{qkv} + {qkv if self.qkv_bias else 0} + {self.heads * hd}·{d} + "
                f"{d if self.out_bias else 0}")

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        return self._saved(inputs, upcast=False)

    def saved_under_autocast(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        # the math path computes a bf16 q, k, v in float32: it keeps float32 copies
        return self._saved(inputs, upcast=True)

    def _saved(self, inputs: Sequence[Shape], upcast: bool) -> Saved:
        # As backends/torch/tokens.py's Attention runs on the CPU (torch 2.13 and 2.14,
        # measured with saved_tensors_hooks: tests/test_memory_kinds.py, fp32 and bf16
        # autocast, exactly; tests/test_memory.py). Which kernel
        # scaled_dot_product_attention takes decides what it keeps. On the CPU it takes
        # the flash kernel unless there is dropout, q, k, v differ in size, or their
        # last axis is strided (sdp_utils_cpp's use_flash_attention_cpp; a sdpa_kernel
        # context can also turn it off, which a spec cannot see). On CUDA the choice
        # also follows the dtype, head size and GPU (flash / memory-efficient / cuDNN
        # keep the output and the log-sum-exp as below and dropout as an RNG seed, not a
        # mask; math as below): this rule is the CPU's.
        n, d = self.features(inputs[0])
        hd, kd = self.sizes(d)
        h = self.heads
        lse = (h * n, 4, True)  # flash: the log-sum-exp per head and query, float32
        # the math path, all float32 (on the CPU it computes a bf16 q, k, v in float32):
        # q·√s and k·√s (each scaled, made contiguous for bmm) and the softmax's output;
        # with dropout, its mask and the weights after it. Its output is [B, heads, N, d],
        # so joining the heads copies it (a block of n·heads·d, in the activations' dtype)
        weights = (h * n * n, 4, True)
        math = ((n * h * 2 * kd, 4, True), weights,
                *((weights, weights) if self.drop > 0 else ()))
        joined = (n * h * hd, None, True)
        # the math path's v for the second bmm: a float32 copy (under autocast, the
        # upcast one; in float32, a contiguous one), except where it is a view the bmm
        # takes as it is (float32, one head, or a map's positions per head)
        v = (n * h * hd, 4, True)
        v_is_view = not upcast and (h == 1 or (len(inputs[0]) == 3 and self.layout == "heads"))
        # A map is taken to be laid out as torch lays a conv's output out, [B, C, H, W]
        # contiguous. One that is channels-last in memory is not (a conv reading an
        # attention's output, itself a transposed view, writes channels-last, and the
        # layers after it follow): its positions are then no transposed view, the qkv
        # linear keeps the map itself rather than a copy, and without projections the
        # flash kernel runs. The memory format is the torch backend's, not the spec's,
        # so no rule here can see it (measured: an attention after conv ← attention
        # counted 2× what torch keeps; yolo11n's C2PSA, after plain convs, exact)
        if not self.project:
            # q, k, v are views of the input. A map's positions are a transposed view of
            # it, whose last axis is strided: never the flash kernel
            if self.drop == 0 and kd == hd and len(inputs[0]) == 2:
                # flash keeps q, k, v (the input), its log-sum-exp and its output, laid
                # out [B, N, heads, d] under a transposed view: joining the heads is a
                # view of it, so that output is this layer's
                return Saved(output=True, extra=(lse,))
            if v_is_view:
                # math, and v (per head of a map's positions, [B, heads] folded into one
                # axis; or one head's) a view of the input: it keeps the input
                return Saved(extra=math)
            return Saved(inputs=(), extra=(*math, v))
        # the qkv linear keeps its input: tokens as they are; a map's positions are a
        # transposed view of it ([B, C, H·W] → [B, H·W, C]) that the linear's matmul
        # copies to [B·H·W, C] and keeps: one more block of n·d, not the map's own.
        # (At batch 1 this copy, and the math path's of v, are views, the batch axis
        # gone: the rule is batch ≥ 2's, off there by a block of n·d or so.) Tokens
        # that are ``tokens``' own transposed view, read with no layer between, are
        # copied too, which a rule cannot see from the shapes: counted as the map
        keep, copy = ((0,), ()) if len(inputs[0]) == 2 else ((), ((n * d, None, True),))
        if self.drop == 0 and kd == hd:
            # flash keeps q, k, v (views of the qkv projection's output: its one block),
            # its output and the log-sum-exp. Its output is laid out [B, N, heads, d]
            # under a transposed view, so joining the heads for the output projection is
            # a view of it, and the projection keeps that same block
            return Saved(inputs=keep, extra=(*copy, (n * h * (2 * kd + hd), None, True),
                                             joined, lse))
        # math: v, and the joined heads' copy, which the output projection keeps. The
        # qkv projection's output is kept only where v is a view of it (one head)
        qkv = (n * h * (2 * kd + hd), None, True)
        return Saved(inputs=keep, extra=(*copy, *math, qkv if v_is_view else v, joined))
