"""Every hand-written reference network, by the bundled spec it checks, and the
randomized statistics that make comparing their outputs mean something.

The references are our own re-implementations of torchvision's models and Ultralytics'
YOLOv8n and YOLO11 (neither installs beside the CPU torch here), each written from the
original source with its module names, registration order, shapes and eval-mode
arithmetic."""

from __future__ import annotations

from collections.abc import Callable

import torch
from reference_nets import REFERENCE_MODELS as CLASSIC
from reference_nets_mobile import REFERENCE_MODELS as MOBILE
from reference_nets_modern import REFERENCE_MODELS as MODERN
from reference_nets_shufflenet import REFERENCE_MODELS as SHUFFLE
from reference_nets_vit import REFERENCE_MODELS as VIT
from reference_nets_yolo import REFERENCE_MODELS as YOLO
from reference_nets_yolo11 import REFERENCE_MODELS as YOLO11
from torch import nn

REFERENCES: dict[str, Callable[..., nn.Module]] = {
    **CLASSIC, **MOBILE, **MODERN, **SHUFFLE, **YOLO}

#: the references with attention (torchvision's ViT), kept beside REFERENCES rather than
#: in it: the tests that loop over REFERENCES import each network (netspec import refuses
#: attention), pair its safetensors by structure (nn.MultiheadAttention's in_proj_* and
#: its child out_proj.* are one netspec layer, which that pairing does not fit) and feed
#: it 64×64 images (a ViT's position table fixes its size). tests/test_vit.py checks them.
TOKEN_REFERENCES: dict[str, Callable[..., nn.Module]] = {**VIT}

#: Ultralytics' YOLO11 (C2PSA: attention over a map), kept beside REFERENCES rather than in
#: it: tests/test_import.py imports every network of REFERENCES but yolov8n, and netspec
#: import cannot read YOLO11 (torch.fx cannot trace its forward, which calls len() on
#: traced values, as YOLOv8's does). The other loops over REFERENCES pass with it
#: (pairing by position, and by structure from a safetensors file); tests/test_yolo11.py
#: checks it.
YOLO11_REFERENCES: dict[str, Callable[..., nn.Module]] = {**YOLO11}


def randomize(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial γ, δ, biases and running statistics, so eval-mode comparisons mean
    something (weights keep torch's initialisation, which keeps deep nets finite)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or t.dim() != 1:
                continue
            if name.endswith("running_var") or name.endswith("weight"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
