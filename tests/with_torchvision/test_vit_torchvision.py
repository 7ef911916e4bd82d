"""specs/vit_b_16.yaml against torchvision's own vit_b_16, and the hand-written reference
(tests/reference_nets_vit.py, which the rest of the suite trusts) against it too: the same
count, the same tensors in the same order, the same eval outputs with torchvision's
weights (randomised: an untrained torchvision ViT's head is all zeros).

Where timm imports (.ci/run's second stage installs it with the ``import`` extra, and
there NETSPEC_REQUIRE_TORCHVISION=1 makes its absence a failure, not a skip), the timm
examples against timm 1.0's models: examples/vit_tiny_timm.yaml is
vit_tiny_patch16_224 and examples/convnext_atto_timm.yaml is convnext_atto, by count,
tensor order and eval outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import netspec

try:
    import torchvision
except Exception:  # conftest.py skips or fails these, saying why
    torchvision = None

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "vit_b_16.yaml"
#: timm's model → the example that writes it, and the image size it takes
TIMM = {"vit_tiny_patch16_224": "vit_tiny_timm", "convnext_atto": "convnext_atto_timm"}


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every tensor moved off where it starts (zeros, ones, a 1e-6 γ), by a fraction of
    its own scale: outputs stay finite and depend on every tensor."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            scale = float(t.abs().mean()) or 0.05
            t.add_(torch.randn(t.shape, generator=gen) * scale * 0.5)
    return model.eval()


def copy_by_position(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """As a state_dict of another tool loads: by position, each shape checked."""
    theirs, mine = source.state_dict(), target.state_dict()
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


def torchvision_vit(**kw: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.vit_b_16(**kw)


# ----------------------------------------------------------------------- torchvision
def test_vit_b_16_counts_as_torchvision() -> None:
    with torch.device("meta"):
        tv = torchvision.models.vit_b_16()
    total = sum(p.numel() for p in tv.parameters())
    assert netspec.load(SPEC).params().params == total == 86_567_656


def test_vit_b_16_pairs_with_torchvisions_state_dict_by_position() -> None:
    with torch.device("meta"):
        theirs = torchvision.models.vit_b_16().state_dict()
        mine = netspec.build(SPEC, device="meta").state_dict()
    assert len(theirs) == len(mine)
    for i, ((tk, tv), (mk, mv)) in enumerate(zip(theirs.items(), mine.items(), strict=True)):
        assert tv.shape == mv.shape, f"tensor {i}: {tk} {tuple(tv.shape)}, {mk}"


@pytest.mark.slow
def test_vit_b_16_computes_torchvisions_outputs() -> None:
    tv = randomised(torchvision_vit())
    ours = netspec.build(SPEC)
    copy_by_position(tv, ours)
    agree(tv, ours, 224)


def test_a_small_variant_computes_torchvisions_outputs() -> None:
    """torchvision's VisionTransformer at the sizes the spec's vars give."""
    vars = {"image": 32, "patch": 8, "dim": 24, "depth": 2, "heads": 3, "mlp": 40,
            "classes": 7}
    torch.manual_seed(0)
    tv = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=3, hidden_dim=24, mlp_dim=40,
        num_classes=7)
    randomised(tv)
    ours = netspec.build(netspec.load(SPEC, **vars))
    copy_by_position(tv, ours)
    agree(tv, ours, 32, batch=3)


def test_the_hand_written_reference_is_torchvisions_vit() -> None:
    """The reference the main suite checks the spec against has torchvision's names, in
    its order, and computes its outputs with its weights."""
    sys.path.insert(0, str(ROOT / "tests"))
    from reference_nets_vit import vit_b_16

    vars = {"image": 32, "patch": 8, "dim": 24, "depth": 2, "heads": 3, "mlp": 40}
    tv = randomised(torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=3, hidden_dim=24, mlp_dim=40,
        num_classes=7))
    ref = vit_b_16(7, **vars)
    assert list(ref.state_dict()) == list(tv.state_dict())
    ref.load_state_dict(tv.state_dict())
    agree(tv, ref, 32, batch=3)
    with torch.device("meta"):
        full, ours = torchvision.models.vit_b_16(), vit_b_16()
    assert [(k, v.shape) for k, v in full.state_dict().items()] == [
        (k, v.shape) for k, v in ours.state_dict().items()]


# ------------------------------------------------------------------------------ timm
@pytest.fixture(scope="module")
def timm() -> Any:
    if os.environ.get("NETSPEC_REQUIRE_TORCHVISION") == "1":
        import timm as installed  # CI: a missing timm fails, never skips

        return installed
    return pytest.importorskip("timm", reason="timm is not installed here")


@pytest.mark.parametrize("name", list(TIMM))
def test_a_timm_example_counts_and_pairs_as_timm(timm: Any, name: str) -> None:
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
        ours = netspec.build(ROOT / "examples" / f"{TIMM[name]}.yaml", device="meta")
    total = sum(p.numel() for p in model.parameters())
    assert netspec.load(ROOT / "examples" / f"{TIMM[name]}.yaml").params().params == total
    theirs, mine = model.state_dict(), ours.state_dict()
    assert len(theirs) == len(mine)
    for i, ((tk, tv), (mk, mv)) in enumerate(zip(theirs.items(), mine.items(), strict=True)):
        assert tv.shape == mv.shape, f"tensor {i}: {tk} {tuple(tv.shape)}, {mk}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TIMM))
def test_a_timm_example_computes_timms_outputs(timm: Any, name: str) -> None:
    torch.manual_seed(0)
    model = randomised(timm.create_model(name, pretrained=False))
    ours = netspec.build(ROOT / "examples" / f"{TIMM[name]}.yaml")
    copy_by_position(model, ours)
    agree(model, ours, 224)


def test_the_timm_vit_starts_its_tables_as_timm(timm: Any) -> None:
    """cls_token drawn with std 1e-6, pos_embed with 0.02, as timm's init_weights."""
    torch.manual_seed(0)
    ours = netspec.build(ROOT / "examples" / "vit_tiny_timm.yaml")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    for mine, theirs in ((ours.get_parameter("cls_token.token"), model.cls_token),
                         (ours.get_parameter("pos_embed.weight"), model.pos_embed)):
        with torch.no_grad():
            assert 0 < float(mine.std()) < 2 * float(theirs.std())
            assert float(mine.std()) > 0.5 * float(theirs.std())
