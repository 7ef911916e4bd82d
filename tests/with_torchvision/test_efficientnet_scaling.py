"""specs/efficientnet_b0.yaml scaled with its vars ``width``, ``depth`` and ``resolution``
is torchvision's efficientnet_b1 … b7: the same parameter count, the same tensors in the
same order, the same MACs at the variant's resolution (the models built on the ``meta``
device: no memory, no weights), and with a variant's weights loaded, its outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import netspec
from netspec.cli import main

try:
    import torchvision
except Exception:  # conftest.py skips or fails these, saying why
    torchvision = None

SPEC = Path(__file__).resolve().parents[2] / "specs" / "efficientnet_b0.yaml"

#: torchvision's efficientnet_bK: (width_mult, depth_mult) and the paper's resolution
VARIANTS = {
    "b0": (1.0, 1.0, 224), "b1": (1.0, 1.1, 240), "b2": (1.1, 1.2, 260),
    "b3": (1.2, 1.4, 300), "b4": (1.4, 1.8, 380), "b5": (1.6, 2.2, 456),
    "b6": (1.8, 2.6, 528), "b7": (2.0, 3.1, 600),
}
#: what else torchvision's builders set: the classifier's dropout, and from B5 the norms'
#: eps and momentum (neither changes a count)
EXTRA: dict[str, dict[str, Any]] = {
    "b2": {"dropout": 0.3}, "b3": {"dropout": 0.3}, "b4": {"dropout": 0.4},
    **{k: {"dropout": p, "bn_eps": 1e-3, "bn_momentum": 0.01}
       for k, p in (("b5", 0.4), ("b6", 0.5), ("b7", 0.5))},
}


def spec_vars(variant: str) -> dict[str, Any]:
    width, depth, resolution = VARIANTS[variant]
    return {"width": width, "depth": depth, "resolution": resolution,
            **EXTRA.get(variant, {})}


def reference(variant: str, device: str = "meta") -> torch.nn.Module:
    with torch.device(device):
        return getattr(torchvision.models, f"efficientnet_{variant}")().eval()


def reference_macs(model: torch.nn.Module, resolution: int) -> int:
    """Multiply-accumulates of the convs and the linear layer, as netspec counts them."""
    total = 0

    def hook(module: torch.nn.Module, _: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += out[0].numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(torch.empty(1, 3, resolution, resolution, device="meta"))
    for h in handles:
        h.remove()
    return total


def ordered_shapes(graph: Any) -> list[tuple[int, ...]]:
    """Each node's parameters then its buffers, in registration order: a state_dict's."""
    by_node: dict[str, list[tuple[int, ...]]] = {}
    for key, shape in (*graph.param_shapes().items(), *graph.buffer_shapes().items()):
        by_node.setdefault(key.rpartition(".")[0], []).append(tuple(shape))
    return [s for node in graph.registration() for s in by_node.pop(node.name, [])]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_scaled_spec_counts_and_registers_as_torchvision(variant: str) -> None:
    ref = reference(variant)
    graph = netspec.load(SPEC, **spec_vars(variant))
    resolution = VARIANTS[variant][2]
    assert graph.input_shape == (3, resolution, resolution)
    counts = graph.params()
    assert counts.params == sum(p.numel() for p in ref.parameters())
    assert counts.macs == reference_macs(ref, resolution)
    assert ordered_shapes(graph) == [tuple(t.shape) for k, t in ref.state_dict().items()
                                     if not k.endswith("num_batches_tracked")]


def randomize(model: torch.nn.Module) -> None:
    """Non-trivial γ, δ, biases and running statistics, so the comparison means something."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and t.dim() == 1:
                scale = name.endswith(("running_var", "weight"))
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5 if scale
                        else torch.randn(t.shape, generator=gen) * 0.1)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["b1", "b3"])  # b3: the 0.9 rule widens stage 1 to 24
def test_the_scaled_spec_computes_torchvisions_outputs(
        variant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file

    torch.manual_seed(0)
    ref = reference(variant, "cpu")
    randomize(ref)
    src = tmp_path / "tv.pth"
    torch.save(ref.state_dict(), src)
    out = tmp_path / "w.safetensors"
    sets = [a for k, v in spec_vars(variant).items() for a in ("--set", f"{k}={v}")]
    assert main(["weights", "import", str(SPEC), str(src), "-o", str(out), *sets]) == 0, \
        capsys.readouterr().err
    assert "by position" in capsys.readouterr().out

    model = netspec.build(SPEC, **spec_vars(variant)).eval()
    loaded = model.load_state_dict(load_file(str(out)), strict=False)
    assert not loaded.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in loaded.missing_keys)
    resolution = VARIANTS[variant][2]
    x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=0)
    # stochastic depth: block j of N drops with probability 0.2·j/N, in the residual blocks
    want = [b.stochastic_depth.p for stage in ref.features[1:-1] for b in stage
            if b.use_res_connect]
    got = [m.p for m in model.modules() if type(m).__name__ == "DropPath"]
    assert got == want
