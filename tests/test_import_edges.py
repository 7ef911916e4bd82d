"""``netspec import`` at its edges: small modules a user writes, each either imported as a
spec that computes the module's own outputs and counts its own ``sum(p.numel())``, or
refused in one line. Each test here is a bug once found: the round trip failed with an
ImportBug (exit 1) or a traceback.

The references are independent of the import: the source module's forward, its parameter
count, netspec's resolver reading the written text back, and netspec's ONNX export
verified against torch.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from zoo import randomize

import netspec
from netspec.backends.torch.sources import compare_with_torch
from netspec.backends.torch.trace import flatten_module
from netspec.importer.flat import Unmappable
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


# ---------------------------------------------------------------------------- blocks
class Conv(nn.Module):
    """YOLO's ``Conv`` (conv, norm, SiLU): a class named as a layer kind."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Yes(nn.Module):
    """A class whose block name YAML would read as a boolean."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class _KindNamedBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # inside a container the uses go unnamed, apart each is written alone: ``- yes``
        self.body = nn.Sequential(nn.Conv2d(3, 8, 1), Yes(8, 8, 1), Conv(8, 8, 2),
                                  Yes(8, 8, 1), Conv(8, 8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_a_class_named_as_a_kind_or_a_yaml_word_is_a_block_of_another_name() -> None:
    """A block named ``conv`` (or ``residual``) is refused by the resolver, one named
    ``yes`` is read as true: the written spec did not resolve (ImportBug, exit 1)."""
    text = _round_trip(_KindNamedBlocks()).text
    assert "  conv_block:\n" in text and "- conv_block:" in text
    assert "  yes_block:\n" in text and "- yes_block\n" in text


class _Stage(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, 2, 1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class _Pyramid(nn.Module):
    """A feature pyramid: every stage's output returned."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([_Stage(3, 4), _Stage(4, 4), _Stage(4, 4)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class _Skip(nn.Module):
    """Skips from the first two of three chained stages to the end."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([_Stage(3, 4), _Stage(4, 4), _Stage(4, 4)])
        self.up = nn.Upsample(scale_factor=2)
        self.down = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stages[0](x)
        b = self.stages[1](a)
        c = self.stages[2](b)
        return torch.cat([self.up(c), self.down(a), b], 1)


@pytest.mark.parametrize("make", [_Pyramid, _Skip])
def test_a_repeat_never_hides_a_tensor_read_elsewhere(make: type[nn.Module]) -> None:
    """Chained uses were one ``repeat:`` even where a use's output was returned or read
    further on: the written spec referred to a name it never gave (ImportBug)."""
    text = _round_trip(make(), (3, 16, 16)).text
    assert "repeat: 3" not in text
    # the block's layers are named for nothing the network reads of a use
    assert "as: act" not in text


class _Outputs(nn.Module):
    """Several outputs made by functions, and the parts of a split."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p = F.relu(self.a(x))
        q = torch.sigmoid(self.b(p))
        low, high = q.chunk(2, 1)
        return p, low, high


def test_every_output_is_named() -> None:
    """Outputs no layer reads had no name: ``outputs: [a, '']`` (ImportBug)."""
    text = _round_trip(_Outputs()).text
    assert "outputs: [y1, y2.0, y2.1]" in text, text


def test_a_tensor_returned_twice_is_refused_in_one_line() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y = self.a(x)
            return y, y

    with pytest.raises(Unmappable, match="returns one tensor more than once") as e:
        _round_trip(Twice())
    assert "\n" not in str(e.value)


class _Gated(nn.Module):
    """Functions at the network's own level: a layer scale by its own parameter, a ReLU
    read twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gamma = nn.Parameter(torch.full((8, 1, 1), 0.5))
        self.fc = nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        return x + self.gamma * self.fc(x)


def test_a_function_at_the_top_is_not_named_after_the_network() -> None:
    """A function called in the network's own forward was named after the network
    (``relu: {as: net}``), one reading a parameter too; a parameter's layer is named
    after the parameter."""
    text = _round_trip(_Gated()).text
    assert "as: net" not in text
    assert "as: gamma" in text


# ---------------------------------------------------------------------------- order
class _CreatedOutOfOrder(nn.Module):
    """A block whose layers are created in another order than its forward runs them
    (torchvision's Swin PatchMerging creates ``reduction`` before ``norm``)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(8, 4, 1)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.bn(self.stem(x))))


def test_a_layer_created_before_an_earlier_one_registers_before_it() -> None:
    """The written spec moves the later layer's tensors ahead (``register_before``), so
    its state dict is the module's in the module's order and pairs by position."""
    module = _CreatedOutOfOrder()
    imported = _round_trip(module)
    assert "register_before: stem" in imported.text, imported.text
    assert imported.by_position
    ours = netspec.build(imported.graph).state_dict()
    theirs = module.state_dict()
    assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]


class _Unit(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class _BlocksCreatedOutOfOrder(nn.Module):
    """A block created before the layers that run ahead of it (timm's HRNet creates its
    head's incre modules before the downsamples that run between them)."""

    def __init__(self) -> None:
        super().__init__()
        self.late = _Unit(8, 8)
        self.early = _Unit(3, 8)
        self.mid = nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.late(self.mid(self.early(x)))


def test_a_block_created_before_an_earlier_one_registers_before_it() -> None:
    module = _BlocksCreatedOutOfOrder()
    imported = _round_trip(module)
    assert "- unit: {as: early}" in imported.text, imported.text
    assert "- unit: {as: late, register_before: early}" in imported.text, imported.text
    assert imported.by_position
    ours = list(netspec.build(imported.graph).state_dict().values())
    theirs = list(module.state_dict().values())
    assert [tuple(v.shape) for v in ours] == [tuple(v.shape) for v in theirs]


class _LinearOfAConstant(nn.Module):
    """A layer fed by the module's own buffer, not the input (Swin V2's continuous
    position bias: an MLP of a coordinate table)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", torch.randn(8, 2))
        self.mlp = nn.Linear(2, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.table).mean()


def test_a_layer_of_constants_only_is_refused_in_one_line() -> None:
    with pytest.raises(Unmappable, match=r"^mlp: Linear computes on constants only") as e:
        spec_from_flat(flatten_module(_LinearOfAConstant(), "net", "test", SHAPE), [],
                       "net.yaml")
    assert "\n" not in str(e.value)
