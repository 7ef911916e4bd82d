"""``netspec import`` at its edges: small modules a user writes, each either imported as a
spec that computes the module's own outputs and counts its own ``sum(p.numel())``, or
refused in one line. Each test here is a bug once found: the round trip failed with an
ImportBug (exit 1) or a traceback.

The references are independent of the import: the source module's forward, its parameter
count, netspec's resolver reading the written text back, and netspec's ONNX export
verified against torch.
"""

from __future__ import annotations

import torch
from torch import nn
from zoo import randomize

import netspec
from netspec.backends.torch.sources import compare_with_torch
from netspec.backends.torch.trace import flatten_module
from netspec.importer.pipeline import Imported, spec_from_flat

SHAPE = (3, 8, 8)


def _round_trip(module: nn.Module, shape: tuple[int, ...] = SHAPE) -> Imported:
    """Import the module as the command does and check the spec against the module: its
    outputs, its count, and the text resolved again as any spec file is."""
    torch.manual_seed(0)
    randomize(module)
    net = flatten_module(module, "net", "test", shape)
    imported = spec_from_flat(net, ["test"], "net.yaml")
    agreement = compare_with_torch(module, imported.graph, imported.weights)
    assert agreement.ok, (agreement, imported.text)
    again = netspec.loads(imported.text)
    assert again.params().params == sum(p.numel() for p in module.parameters())
    return imported


# ---------------------------------------------------------------------------- names
class _OddNames(nn.Module):
    """Submodules named as ``add_module`` allows and Python does not: a keyword, a dash."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module("in", nn.Conv2d(3, 4, 1))
        self.add_module("my-conv", nn.Conv2d(4, 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, "my-conv")(getattr(self, "in")(x))


def test_submodules_python_cannot_name_import() -> None:
    """fx's GraphModule generated Python code naming ``self.in``: a SyntaxError
    traceback. Only the traced graph is read now."""
    _round_trip(_OddNames())
