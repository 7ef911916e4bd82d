"""Every hand-written reference network, by the bundled spec it checks.

The references are our own re-implementations of torchvision's models and Ultralytics'
YOLOv8n (neither installs beside the CPU torch here), each written from the original
source with its module names, registration order, shapes and eval-mode arithmetic."""

from __future__ import annotations

from collections.abc import Callable

from reference_nets import REFERENCE_MODELS as CLASSIC
from reference_nets_mobile import REFERENCE_MODELS as MOBILE
from reference_nets_modern import REFERENCE_MODELS as MODERN
from reference_nets_shufflenet import REFERENCE_MODELS as SHUFFLE
from reference_nets_yolo import REFERENCE_MODELS as YOLO
from torch import nn

REFERENCES: dict[str, Callable[..., nn.Module]] = {
    **CLASSIC, **MOBILE, **MODERN, **SHUFFLE, **YOLO}
