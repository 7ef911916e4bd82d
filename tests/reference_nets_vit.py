"""Hand-written reference re-implementation of torchvision's Vision Transformer.

As in ``reference_nets.py``: torchvision does not install beside the CPU torch the suite
runs on, so this module, written from reading torchvision 0.29's
``models/vision_transformer.py`` (``VisionTransformer``, ``Encoder``, ``EncoderBlock``,
``MLPBlock``) and ``ops/misc.py`` (``MLP``), stands in for it. It is written with torch's
own ops (``nn.Conv2d``, ``nn.MultiheadAttention(batch_first=True)``, ``nn.LayerNorm``,
``nn.GELU``, ``nn.Linear``, ``nn.Dropout``), not netspec's, and mirrors torchvision:

- module names and nesting: ``conv_proj``, ``encoder.pos_embedding``,
  ``encoder.layers.encoder_layer_{i}.{ln_1, self_attention, ln_2, mlp.0, mlp.3}``,
  ``encoder.ln``, ``heads.head``;
- registration order, so ``state_dict`` order: ``class_token`` is the model's own
  parameter, so first, before ``conv_proj``; ``pos_embedding`` is the encoder's own,
  before its layers; ``self_attention``'s ``in_proj_weight`` [3·D, D] holds q | k | v;
- its initialisation, which the built spec's is checked against: class token zeros,
  position embedding N(0, 0.02²), the patchify conv truncated-normal with std
  √(1 / fan-in) and zero bias, the MLP's Linears Xavier-uniform with N(0, 1e-6²) biases,
  and, with ``zero_head`` (torchvision's own choice), the head all zeros;
- eval- and train-mode arithmetic (LayerNorm ε = 1e-6, exact GELU, pre-norm residuals).

The parameters (image, patch, dim, depth, heads, mlp) are the spec's vars, so a small
variant of the reference and ``netspec.load("specs/vit_b_16.yaml", dim=…, …)`` are the same
network.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "REFERENCE_MODELS",
    "TORCHVISION_PARAMS",
    "EncoderBlock",
    "MLPBlock",
    "VisionTransformer",
    "vit_b_16",
]


class MLPBlock(nn.Sequential):
    """torchvision's MLP(in, [mlp, in], GELU, dropout): Linear, GELU, Dropout, Linear,
    Dropout as children 0 … 4 (so its tensors are ``mlp.0.*`` and ``mlp.3.*``)."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(in_dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, in_dim),
            nn.Dropout(dropout),
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """x + dropout(attention(ln_1(x))), then that + mlp(ln_2(that))."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float,
                 attention_dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(
            hidden_dim, num_heads, dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, input: Tensor) -> Tensor:
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x)
        x = x + input
        y = self.ln_2(x)
        y = self.mlp(y)
        return x + y


class Encoder(nn.Module):
    """pos_embedding added, dropout, the blocks, a final LayerNorm."""

    def __init__(self, seq_length: int, num_layers: int, num_heads: int, hidden_dim: int,
                 mlp_dim: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        # batch first: [1, N, D], drawn as torchvision draws it (BERT's 0.02)
        self.pos_embedding = nn.Parameter(
            torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(num_layers):
            layers[f"encoder_layer_{i}"] = EncoderBlock(
                num_heads, hidden_dim, mlp_dim, dropout, attention_dropout)
        self.layers = nn.Sequential(layers)
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, input: Tensor) -> Tensor:
        input = input + self.pos_embedding
        return self.ln(self.layers(self.dropout(input)))


class VisionTransformer(nn.Module):
    """Patchify conv → tokens, class token first, encoder, the class token's state → head."""

    def __init__(self, image_size: int = 224, patch_size: int = 16, num_layers: int = 12,
                 num_heads: int = 12, hidden_dim: int = 768, mlp_dim: int = 3072,
                 dropout: float = 0.0, attention_dropout: float = 0.0,
                 num_classes: int = 1000, zero_head: bool = True) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch "
                             f"size {patch_size}")
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.conv_proj = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)
        seq_length = (image_size // patch_size) ** 2
        # assigned after conv_proj, but a module's own parameters come before its
        # children's in state_dict order: class_token is the model's first tensor
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        seq_length += 1
        self.encoder = Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim,
                               dropout, attention_dropout)
        self.seq_length = seq_length
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))

        fan_in = 3 * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        assert self.conv_proj.bias is not None
        nn.init.zeros_(self.conv_proj.bias)
        if zero_head:
            # torchvision's: an untrained model outputs zeros, so tests that compare
            # outputs must give the head weights of their own
            nn.init.zeros_(self.heads.head.weight)
            nn.init.zeros_(self.heads.head.bias)

    def _process_input(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        p = self.patch_size
        # torch._assert, as torchvision: torch.fx traces through it
        torch._assert(h == self.image_size, f"Wrong image height! Expected {self.image_size}")
        torch._assert(w == self.image_size, f"Wrong image width! Expected {self.image_size}")
        x = self.conv_proj(x)                                    # [n, D, h/p, w/p]
        x = x.reshape(n, self.hidden_dim, (h // p) * (w // p))   # row by row
        return x.permute(0, 2, 1)                                # [n, N, D]

    def forward(self, x: Tensor) -> Tensor:
        x = self._process_input(x)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.encoder(x)
        return self.heads(x[:, 0])


def vit_b_16(num_classes: int = 1000, *, image: int = 224, patch: int = 16, dim: int = 768,
             depth: int = 12, heads: int = 12, mlp: int = 3072, dropout: float = 0.0,
             attention_dropout: float = 0.0, zero_head: bool = True) -> VisionTransformer:
    """torchvision's vit_b_16; its keywords are specs/vit_b_16.yaml's vars, for variants."""
    return VisionTransformer(image, patch, depth, heads, dim, mlp, dropout,
                             attention_dropout, num_classes, zero_head)


REFERENCE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "vit_b_16": vit_b_16,
}

# Published parameter totals (torchvision model docs, 1000 classes).
TORCHVISION_PARAMS: dict[str, int] = {
    "vit_b_16": 86_567_656,
}
