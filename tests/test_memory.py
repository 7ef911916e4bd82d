"""The training-memory estimate (netspec/memory.py) against torch's own account: the
tensors autograd saves for backward, seen through ``torch.autograd.graph.
saved_tensors_hooks`` on the built model, each storage once, the model's own weights
and buffers aside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import netspec
from netspec.cli import main
from netspec.memory import step_memory

torch = pytest.importorskip("torch")

SPECS = Path(__file__).resolve().parent.parent / "specs"


def saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """What autograd keeps for backward after one forward pass in training mode."""
    state = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in state:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(kept.values())


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2"])
def test_saved_activations_match_autograd(name: str) -> None:
    graph = netspec.load(SPECS / f"{name}.yaml")
    torch.manual_seed(0)
    model = netspec.build(graph).train()
    measured = saved_bytes(model, torch.randn(8, *graph.input_shape))
    estimate = step_memory(graph, 8).activations
    assert abs(estimate - measured) <= 0.10 * measured, (name, estimate, measured)


def test_bf16_autocast_activations_match_autograd() -> None:
    """Under autocast the activations are bf16 and convs keep a bf16 copy of their weight."""
    graph = netspec.load(SPECS / "resnet18.yaml")
    torch.manual_seed(0)
    model = netspec.build(graph).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        measured = saved_bytes(model, torch.randn(8, *graph.input_shape))
    estimate = step_memory(graph, 8, precision="bf16").activations
    assert abs(estimate - measured) <= 0.10 * measured, (estimate, measured)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_step_peak_on_gpu() -> None:
    """On a GPU the whole step is visible: weights, gradients, AdamW's moments and the
    saved activations, against the allocator's peak (which also holds transient tensors
    and workspaces, so the estimate is a lower bound within a margin)."""
    graph = netspec.load(SPECS / "resnet18.yaml")
    model = netspec.build(graph, device="cuda").train()
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randn(8, *graph.input_shape, device="cuda")
    for _ in range(2):  # the second step has the optimizer's state allocated
        torch.cuda.reset_peak_memory_stats()
        model(x).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated() - x.nbytes
    estimate = step_memory(graph, 8, "adamw").training_total
    # not yet run on a GPU (none was lent when this was written): the margin is a guess
    # to be tightened from the first run's figures
    assert 0.6 * peak <= estimate <= 1.05 * peak, (estimate, peak)


def test_params_batch_json_carries_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", str(SPECS / "resnet18.yaml"), "--batch", "8", "--optimizer",
                 "sgd", "--format", "json"]) == 0
    mem = json.loads(capsys.readouterr().out)["memory_bytes"]
    assert mem["params"] == mem["grads"] == mem["optimizer_state"] == 4 * 11_689_512
    assert mem["training_total"] == (mem["params"] + mem["grads"] + mem["optimizer_state"]
                                     + mem["buffers"] + mem["activations"])
    assert mem["activations"] > mem["inference_peak"] > 0


def test_params_batch_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", str(SPECS / "mlp.yaml"), "--batch", "0"]) == 2
    assert capsys.readouterr().err.strip() == "--batch must be 1 or more"
