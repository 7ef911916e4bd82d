"""specs/swin_t.yaml against torchvision's own swin_t, and the hand-written reference
(tests/reference_nets_swin.py, which the rest of the suite trusts) against it too: the
same count, the same tensors in the same order (torchvision's ``relative_position_index``
buffers left out: netspec derives the index from the window and holds no tensor for
it), the same eval outputs with torchvision's weights randomised (an untrained
torchvision Swin's biases are zeros and its bias tables tiny: they would not show)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import netspec

try:
    import torchvision
    from torchvision.models import swin_transformer
except Exception:  # conftest.py skips or fails these, saying why
    torchvision = None

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "swin_t.yaml"
INDEX = "relative_position_index"
#: a small Swin as the spec's vars, and torchvision's SwinTransformer at the same sizes:
#: 64×64 images, 16×16 patches, windows of 5 (maps of 16, 8, 4, 2 padded to 20, 10, 5,
#: 5; shifted by 2 in the first two stages, one window in the last two)
SMALL: dict[str, Any] = {"image": 64, "embed": 12, "heads": 2, "window": 5, "depth1": 2,
                         "depth2": 2, "depth3": 2, "depth4": 1, "classes": 7}


def small_torchvision() -> torch.nn.Module:
    torch.manual_seed(0)
    return swin_transformer.SwinTransformer(
        patch_size=[4, 4], embed_dim=12, depths=[2, 2, 2, 1], num_heads=[2, 4, 8, 16],
        window_size=[5, 5], stochastic_depth_prob=0.2, num_classes=7)


def learned(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """torchvision's state_dict without its relative position indices."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith(INDEX)}


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every float tensor moved off where it starts (zeros, ones, a 0.02 table), by a
    fraction of its own scale, the tables by a normal of std 1: outputs stay finite and
    depend on every tensor."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, t in learned(model).items():
            if k.endswith("relative_position_bias_table"):
                t.copy_(torch.randn(t.shape, generator=gen))
                continue
            scale = float(t.abs().mean()) or 0.05
            t.add_(torch.randn(t.shape, generator=gen) * scale * 0.5)
    return model.eval()


def copy_by_position(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """As a state_dict of another tool loads: by position, each shape checked."""
    theirs, mine = learned(source), target.state_dict()
    assert len(theirs) == len(mine)
    with torch.no_grad():
        for i, ((tk, tv), (mk, mv)) in enumerate(zip(theirs.items(), mine.items(),
                                                     strict=True)):
            assert tv.shape == mv.shape, f"tensor {i}: {tk} {tuple(tv.shape)}, {mk}"
            mv.copy_(tv)


def agree(a: torch.nn.Module, b: torch.nn.Module, size: int, batch: int = 2) -> None:
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = a.eval()(x), b.eval()(x)
    assert float((want - want[:1]).abs().max()) > 1e-3  # depends on the image
    torch.testing.assert_close(got, want)


# ----------------------------------------------------------------------- torchvision
@pytest.mark.parametrize(("name", "vars"), [("swin_t", {}), ("swin_s", {"depth3": 18}),
                                            ("swin_b", {"depth3": 18, "embed": 128,
                                                        "heads": 4})])
def test_counts_as_torchvision(name: str, vars: dict[str, int]) -> None:
    with torch.device("meta"):
        tv = getattr(torchvision.models, name)()
    total = sum(p.numel() for p in tv.parameters())
    assert netspec.load(SPEC, **vars).params().params == total


def test_swin_t_pairs_with_torchvisions_state_dict_by_position() -> None:
    with torch.device("meta"):
        full = torchvision.models.swin_t().state_dict()
        mine = netspec.build(SPEC, device="meta").state_dict()
    theirs = {k: v for k, v in full.items() if not k.endswith(INDEX)}
    assert len(full) - len(theirs) == 12  # one index per block
    assert len(theirs) == len(mine)
    for i, ((tk, tv), (mk, mv)) in enumerate(zip(theirs.items(), mine.items(), strict=True)):
        assert tv.shape == mv.shape, f"tensor {i}: {tk} {tuple(tv.shape)}, {mk}"


def test_swin_t_computes_torchvisions_outputs() -> None:
    torch.manual_seed(0)
    tv = randomised(torchvision.models.swin_t())
    ours = netspec.build(SPEC)
    copy_by_position(tv, ours)
    agree(tv, ours, 224)


def test_a_small_variant_computes_torchvisions_outputs() -> None:
    """torchvision's SwinTransformer at the sizes the spec's vars give, its windows
    padded."""
    tv = randomised(small_torchvision())
    ours = netspec.build(netspec.load(SPEC, **SMALL))
    copy_by_position(tv, ours)
    agree(tv, ours, 64, batch=3)


def test_the_hand_written_reference_is_torchvisions_swin() -> None:
    """The reference the main suite checks the spec against has torchvision's names, in
    its order, its index buffers included, and computes its outputs with its weights."""
    sys.path.insert(0, str(ROOT / "tests"))
    from reference_nets_swin import swin_t

    tv = randomised(small_torchvision())
    ref = swin_t(SMALL["classes"], **{k: v for k, v in SMALL.items() if k != "classes"})
    assert list(ref.state_dict()) == list(tv.state_dict())
    ref.load_state_dict(tv.state_dict())
    agree(tv, ref, 64, batch=3)
    with torch.device("meta"):
        full, ours = torchvision.models.swin_t(), swin_t()
    assert [(k, v.shape) for k, v in full.state_dict().items()] == [
        (k, v.shape) for k, v in ours.state_dict().items()]



@pytest.mark.parametrize("window", [[7, 7], [2, 3], [5, 1]])
def test_the_index_netspec_derives_is_torchvisions(window: list[int]) -> None:
    """kinds/window.py's relative_position_index (the ONNX export's, and the rule the
    torch module computes) is torchvision's buffer, and the torch module's bias is
    torchvision's get_relative_position_bias for the same table."""
    from netspec.backends.torch.window import WindowAttention
    from netspec.kinds.window import relative_position_index

    attn = swin_transformer.ShiftedWindowAttention(8, window, [0, 0], 2)
    assert relative_position_index((window[0], window[1])) == attn.relative_position_index.tolist()
    ours = WindowAttention(8, 2, (window[0], window[1]), (0, 0), True, True, 0.0)
    with torch.no_grad():
        ours.relative_position_bias_table.copy_(attn.relative_position_bias_table)
        assert torch.equal(ours.relative_position_bias(), attn.get_relative_position_bias())


def test_torchvisions_window_attention_imports() -> None:
    """``netspec import`` reads torchvision's ShiftedWindowAttention on its channels-last
    input (its index buffer no tensor of the spec), the spec proven equal to the module."""
    from torch import nn
    from torchvision.ops.misc import Permute

    from netspec.backends.torch.sources import compare_with_torch
    from netspec.backends.torch.trace import flatten_module
    from netspec.importer.pipeline import spec_from_flat

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 4, 4)
            self.permute = Permute([0, 2, 3, 1])
            self.norm = nn.LayerNorm(8)
            self.attn = swin_transformer.ShiftedWindowAttention(8, [3, 3], [1, 1], 2)
            self.back = Permute([0, 3, 1, 2])
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.norm(self.permute(self.conv(x)))
            x = x + self.attn(x)  # an 8×8 map: windows of 3 padded to 9, shifted by 1
            return self.fc(self.pool(self.back(x)).flatten(1))

    module = randomised(Net())
    imported = spec_from_flat(flatten_module(module, "net", "test", (3, 32, 32)), ["test"],
                              "net.yaml")
    agreement = compare_with_torch(module, imported.graph, imported.weights)
    assert agreement.ok and agreement.ref_max > 0, (agreement, imported.text)
    assert "window_attention: {heads: 2, window: 3, shift: 1" in imported.text, imported.text
    assert netspec.loads(imported.text).params().params == sum(
        p.numel() for p in module.parameters())


def test_torchvisions_swin_t_imports_as_the_bundled_spec() -> None:
    """torchvision's own swin_t through ``netspec import`` (PatchMerging's
    ``_patch_merging_pad`` read as patch_merge on the channels-last view): the spec
    computes its outputs and is specs/swin_t.yaml layer by layer, but for the bundled
    spec's dropout after each window attention (its ``$dropout`` var, 0 here), which
    the import reads as part of torchvision's attention, whose output dropout is 0."""
    from netspec.backends.torch.sources import compare_with_torch
    from netspec.backends.torch.trace import flatten_module
    from netspec.diff import diff
    from netspec.importer.pipeline import spec_from_flat

    model = randomised(torchvision.models.swin_t())
    imported = spec_from_flat(flatten_module(model, "swin_t", "swin_t", (3, 224, 224)), [],
                              "swin_t.yaml")
    agreement = compare_with_torch(model, imported.graph, imported.weights)
    assert agreement.ok and agreement.ref_max > 0, agreement
    # PatchMerging creates its reduction before the norm it runs first: the spec says so
    assert "register_before: norm" in imported.text and imported.by_position
    d = diff(imported.graph, netspec.load(SPEC), "order")
    assert d.params == (28_288_354, 28_288_354)
    others = [c for c in d.changes if not (
        c.status == "added" and c.b is not None and c.b.kind == "dropout"
        and c.b.args == "drop=0")]
    assert len(d.changes) == 12 and not others, [c.name for c in others[:5]]


def test_a_patch_merging_of_an_odd_sized_map_is_refused_in_one_line() -> None:
    """torchvision pads an odd height or width before merging; netspec's patch_merge
    takes even sizes: the import stops there, naming it."""
    from torch import nn
    from torchvision.ops.misc import Permute

    from netspec.backends.torch.trace import flatten_module
    from netspec.importer.flat import Unmappable
    from netspec.importer.pipeline import spec_from_flat

    model = nn.Sequential(nn.Conv2d(3, 8, 4, 4), Permute([0, 2, 3, 1]),
                          swin_transformer.PatchMerging(8)).eval()
    with pytest.raises(Unmappable, match=r"pads the odd-sized 7×7 map") as refusal:
        spec_from_flat(flatten_module(model, "net", "test", (3, 28, 28)), [], "net.yaml")
    assert "\n" not in str(refusal.value)
