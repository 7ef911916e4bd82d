"""Multi-head self-attention (Vaswani et al., 2017), with its projections, as one kind.

Over tokens [N, D], or over the H·W positions of a [C, H, W] map (D = C): one linear map
gives every position's queries, keys and values, laid out [q | k | v] with the heads
consecutive inside each (torch's ``nn.MultiheadAttention`` ``in_proj``, timm's ``qkv``);
each head attends, softmax(q·kᵀ / √key_dim)·v; the heads' outputs, concatenated, are
projected back to D. ``key_dim`` makes queries and keys narrower than the values (YOLO11's
C2PSA: half the head size).
"""

from collections.abc import Sequence

from pydantic import Field, model_validator

from netspec.kinds.base import Float, LayerArgs, PosInt, Saved, Shape, ShapeError


class Attention(LayerArgs):
    op = "attention"
    auto_name = "attn"
    shorthand = "heads"
    ranks = (2, 3)
    fresh_output = True
    samples = ({"heads": 1}, {"heads": 2, "key_dim": 1},
               {"heads": 2, "head_dim": 3, "qkv_bias": False, "out_bias": False},
               {"heads": 1, "drop": 0.1})

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

    @model_validator(mode="after")
    def _one_size(self) -> "Attention":
        if self.head_dim is not None and self.dim is not None:
            raise ValueError("give head_dim (each head's size) or dim (all heads "
                             "together), not both")
        return self

    def sizes(self, d: int) -> tuple[int, int]:
        """(head size, query/key size per head) on tokens of D features."""
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

    @staticmethod
    def features(x: Shape) -> tuple[int, int]:
        """(positions, features) of tokens [N, D] or a map [C, H, W]."""
        return (x[0], x[1]) if len(x) == 2 else (x[1] * x[2], x[0])

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        x = self.check_input(inputs)
        self.sizes(self.features(x)[1])
        return x

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
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
        projections = n * d * h * (2 * kd + hd) + n * h * hd * d
        return projections + h * n * n * (kd + hd)  # q·kᵀ, then the weights · v

    def formula(self, inputs: Sequence[Shape]) -> str:
        d = self.features(inputs[0])[1]
        hd, kd = self.sizes(d)
        qkv = self.heads * (2 * kd + hd)
        return (f"{d}·{qkv} + {qkv if self.qkv_bias else 0} + {self.heads * hd}·{d} + "
                f"{d if self.out_bias else 0}")

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        # as the torch backend runs it (backends/torch/layers.py's Attention): its input
        # (the qkv projection's), the projection's output (q, k, v: scaled_dot_product_
        # attention keeps views of it), the attention's output and the heads joined for
        # the output projection; and per head and query the softmax's log-sum-exp
        # (float32). With attention dropout, torch's math path instead keeps the n×n
        # weights before and after dropout and the dropout mask.
        n, d = self.features(inputs[0])
        hd, kd = self.sizes(d)
        h = self.heads
        qkv = n * h * (2 * kd + hd)
        if self.drop > 0:
            return Saved(extra=((qkv, None, True), (n * h * hd, None, True),
                                (h * n * n, None, True), (h * n * n, None, True),
                                (h * n * n, 1, True)))
        return Saved(extra=((qkv, None, True), (n * h * hd, None, True),
                            (n * h * hd, None, True), (h * n, 4, True)))

