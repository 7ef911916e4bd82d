"""Every kind's ``saved_for_backward`` rule and ``autocast`` trait against torch's own
account, one layer at a time: each kind, on each layout it takes, with each of its
declared option samples, placed after a layer with weights (so that gradients flow into
it, as inside a network) and measured with ``saved_tensors_hooks`` in float32 and under
CPU bf16 autocast. A kind added to the registry is covered here without a line of this
file; tests/test_memory.py checks whole networks the same way."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from strategies import members
from test_memory import saved_bytes

import netspec
from netspec.errors import NetspecError
from netspec.kinds import REGISTRY
from netspec.memory import step_memory

torch = pytest.importorskip("torch")

#: the layers before the one measured, per input rank: its input made by a layer with
#: weights and laid out as torch lays out a conv's or a linear's output (tokens straight
#: from ``tokens`` are a transposed view of the map, which changes the kernel attention
#: takes: kinds/attention.py says which layout its rule assumes), in a few sizes. The
#: first whose shape rule the kind's options accept is used: a DFL needs 4·bins
#: channels, a token→map conversion a square count of tokens, attention without
#: projections channels that split into q, k and v
PRELUDES: dict[int, list[tuple[list[int], list[Any]]]] = {
    3: [([4, 8, 8], [{"conv": {"out": 8, "k": 1}}]),
        ([4, 4, 4], [{"conv": {"out": 64, "k": 1}}]),
        ([4, 6, 6], [{"conv": {"out": 4, "k": 1}}]),
        ([4, 8, 8], [{"conv": {"out": 12, "k": 1}}])],
    2: [([4, 8, 8], [{"conv": {"out": 8, "k": 1}}, "tokens", {"linear": {"out": 8}}]),
        ([4, 2, 2], [{"conv": {"out": 8, "k": 1}}, "tokens", {"linear": {"out": 8}}]),
        ([4, 8, 8], [{"conv": {"out": 8, "k": 1}}, "tokens", {"linear": {"out": 12}}])],
    1: [([12], [{"linear": {"out": 16}}])],
}


def layer_entry(op: str, options: dict[str, Any]) -> Any:
    cls = REGISTRY[op]
    key = next(k for k, c in members(cls.spec_kind) if c is cls)
    options = {"kind": key, **options} if key is not None else options
    return {cls.spec_kind: options} if options else cls.spec_kind


def merge_layers(op: str, prelude: list[Any]) -> list[Any]:
    # a merge reads a named earlier tensor: the prelude's output, and after it a ReLU
    *before, last = prelude
    named = {last: {"as": "a"}} if isinstance(last, str) else {
        kind: {**options, "as": "a"} for kind, options in last.items()}
    return [*before, named, "relu", {op: ["a"]}]


def fitting(op: str, rank: int, options: dict[str, Any]) -> netspec.Graph | None:
    """The one-layer network for this case, or None where the kind's own rules refuse
    these options on this layout (channel dropout on tokens)."""
    for shape, prelude in PRELUDES[rank]:
        if REGISTRY[op].arity is None:
            layers = merge_layers(op, prelude)
        else:
            layers = [*prelude, layer_entry(op, options)]
        text = yaml.safe_dump({"netspec": 1, "name": "one", "input": shape,
                               "layers": layers})
        try:
            return netspec.loads(text)
        except NetspecError:
            continue
    return None


CASES = [(op, rank, i, options) for op, cls in sorted(REGISTRY.items())
         for rank in cls.ranks for i, options in enumerate(cls.samples)
         if fitting(op, rank, options) is not None]


def test_every_kind_is_measured_on_every_layout_it_takes() -> None:
    measured = {(op, rank) for op, rank, _, _ in CASES}
    missing = {(op, rank) for op, cls in REGISTRY.items() for rank in cls.ranks} - measured
    assert not missing, f"no prelude fits these kinds' samples: {sorted(missing)}"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize(("op", "rank", "i", "options"), CASES,
                         ids=[f"{op}-rank{rank}-{i}" for op, rank, i, _ in CASES])
def test_each_kind_keeps_what_torch_keeps(op: str, rank: int, i: int,
                                          options: dict[str, Any], precision: str) -> None:
    graph = fitting(op, rank, options)
    assert graph is not None
    torch.manual_seed(0)
    model = netspec.build(graph).train()
    x = torch.randn(3, *graph.input_shape)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        measured = saved_bytes(model, x)
    estimate = step_memory(graph, 3, precision=precision).activations
    assert estimate == measured, (estimate, measured)
