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


#: whole networks, exact in float32 and under CPU bf16 autocast (where activations take
#: each kind's dtype, convs and linears keep bf16 copies of their weights, attention's
#: math path and RMS norm compute in float32): the four at batch 8 as the issue asks of
#: the CNNs and ViT-B/16, the rest at batch 2 to keep the suite fast
WHOLE_NETS = {"resnet18": 8, "resnet50": 8, "mobilenet_v2": 8, "vit_b_16": 8,
              "convnext_tiny": 2, "swin_t": 2, "yolo11n": 2, "efficientnet_b0": 2}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", sorted(WHOLE_NETS))
def test_saved_activations_match_autograd(name: str, precision: str) -> None:
    graph = netspec.load(SPECS / f"{name}.yaml")
    batch = WHOLE_NETS[name]
    torch.manual_seed(0)
    model = netspec.build(graph).train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        measured = saved_bytes(model, torch.randn(batch, *graph.input_shape))
    estimate = step_memory(graph, batch, precision=precision).activations
    assert estimate == measured, (name, precision, estimate, measured)


def test_a_residual_add_wider_than_its_block_is_a_new_block_under_autocast() -> None:
    """A bf16 block's output plus a float32 stream (after a learned position table) is
    a float32 sum of its own, not written into the bf16 output (backends/torch's
    add_into): the layer norm after it keeps that float32 block."""
    graph = netspec.loads("""
netspec: 1
name: widening_residual
input: [4, 4, 4]
layers:
  - conv: {out: 8, k: 1}
  - tokens
  - pos_embed
  - residual: {body: [{linear: {out: 8}}]}
  - norm: layer
  - linear: {out: 3}
""")
    torch.manual_seed(0)
    model = netspec.build(graph).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        measured = saved_bytes(model, torch.randn(3, *graph.input_shape))
    assert step_memory(graph, 3, precision="bf16").activations == measured


#: attention on torch's other paths: with dropout on its weights (the math path, which
#: keeps the n×n weights, the dropout mask and the weights after it), and over a map's
#: positions (whose transposed view the qkv linear copies), once with queries and keys
#: narrower than the values (the math path without dropout); and without projections
#: (C2PSA's: q, k, v read from a conv + BN before it, per head), where a map's strided
#: positions keep it off the flash kernel and tokens do not
ATTENTION_SPECS = {
    "attention_dropout": """
netspec: 1
name: attention_dropout
input: [3, 32, 32]
layers:
  - conv: {out: 48, k: 4, stride: 4, pad: 0}
  - tokens
  - class_token
  - pos_embed
  - residual: {body: [{norm: layer}, {attention: {heads: 3, drop: 0.1}}, {dropout: {drop: 0.1}}]}
  - residual: {body: [{norm: layer}, {linear: {out: 96}}, gelu, {linear: {out: 48}}]}
  - norm: layer
  - select: 0
  - linear: {out: 10}
""",
    "map_attention": """
netspec: 1
name: map_attention
input: [3, 32, 32]
layers:
  - conv: {out: 32, k: 3, stride: 2}
  - relu
  - residual: {body: [{attention: {heads: 2}}]}
  - attention: {heads: 4, key_dim: 4}
  - conv: {out: 8, k: 1}
""",
    "attention_without_projections": """
netspec: 1
name: attention_without_projections
input: [3, 32, 32]
layers:
  - conv: {out: 64, k: 3, stride: 2}
  - norm: batch
  - attention: {heads: 2, key_dim: 8, project: false, layout: heads}
  - conv: {out: 48, k: 2, stride: 2, pad: 0}
  - tokens
  - norm: layer
  - attention: {heads: 2, project: false}
  - linear: {out: 48}
  - attention: {heads: 2, key_dim: 4, project: false, drop: 0.1}
  - select: mean
  - linear: {out: 10}
""",
    "map_attention_without_projections": """
netspec: 1
name: map_attention_without_projections
input: [3, 32, 32]
layers:
  - conv: {out: 48, k: 3, stride: 2}
  - attention: {heads: 2, project: false}
  - conv: {out: 8, k: 1}
""",
}


@pytest.mark.parametrize("name", sorted(ATTENTION_SPECS))
def test_attention_paths_match_autograd(name: str) -> None:
    graph = netspec.loads(ATTENTION_SPECS[name])
    torch.manual_seed(0)
    model = netspec.build(graph).train()
    measured = saved_bytes(model, torch.randn(8, *graph.input_shape))
    estimate = step_memory(graph, 8).activations
    assert estimate == measured, (name, estimate, measured)


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
