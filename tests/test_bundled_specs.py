"""The bundled specs: the zoo counts exactly as torchvision publishes, and registers its
tensors in torchvision's order with torchvision's shapes, so a torchvision state_dict
loads into a built spec by position. Every bundled spec validates through the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from zoo import REFERENCES

import netspec
from netspec.graph import Graph

SPECS = Path(__file__).resolve().parent.parent / "specs"

# the originals' published totals (torchvision's model docs, 1000 classes; Ultralytics'
# model summary for yolov8n, 80 classes, its 16 fixed DFL weights included); written out
# here, not read from the references, so the test holds the numbers it checks against
PUBLISHED_PARAMS = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "vgg16_bn": 138_365_992,
    "densenet121": 7_978_856,
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v3_large": 5_483_032,
    "convnext_tiny": 28_589_128,
    "shufflenet_v2_x1_0": 2_278_604,
    "regnet_y_400mf": 4_344_144,
    "yolov8n": 3_157_200,
}


def ordered_shapes(graph: Graph) -> list[tuple[int, ...]]:
    """Each node's parameters then its buffers, in node order: a state_dict's order."""
    params, buffers = graph.param_shapes(), graph.buffer_shapes()
    by_node: dict[str, list[tuple[int, ...]]] = {}
    owner = graph.tensor_owners()
    for key, shape in (*params.items(), *buffers.items()):  # params first, per node
        by_node.setdefault(owner[key], []).append(tuple(shape))
    out = [shape for node in graph.registration() for shape in by_node.pop(node.name, [])]
    assert not by_node and len(out) == len(params) + len(buffers)
    return out


def reference_shapes(name: str) -> list[tuple[int, ...]]:
    state = REFERENCES[name]().state_dict()
    return [tuple(t.shape) for k, t in state.items() if not k.endswith("num_batches_tracked")]


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS))
def test_zoo_counts_match_torchvision(name: str) -> None:
    assert netspec.load(SPECS / f"{name}.yaml").params().params == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS))
def test_zoo_registers_torchvision_shapes_in_order(name: str) -> None:
    ours = ordered_shapes(netspec.load(SPECS / f"{name}.yaml"))
    ref = reference_shapes(name)
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
        assert a == b, f"{name}: tensor {i} is {a} in the spec, {b} in torchvision"


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_bundled_spec_validates_via_the_cli(path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "netspec", "validate", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_expected_specs_are_bundled() -> None:
    names = {p.stem for p in SPECS.glob("*.yaml")}
    assert {*PUBLISHED_PARAMS, "unet", "digits_cnn", "mlp"} <= names


def test_unet_segments_at_input_size() -> None:
    g = netspec.load(SPECS / "unet.yaml")
    assert g.task == "segmentation"
    assert g.input_shape == (3, 64, 64)
    assert g.output_shape == (g.vars["classes"], 64, 64) == (2, 64, 64)
    bigger = netspec.load(SPECS / "unet.yaml", classes=5, size=128)
    assert bigger.output_shape == (5, 128, 128)


def test_small_specs_have_the_documented_shapes() -> None:
    cnn = netspec.load(SPECS / "digits_cnn.yaml")
    assert (cnn.input_shape, cnn.output_shape) == ((1, 8, 8), (10,))
    assert 50_000 <= cnn.params().params <= 100_000
    mlp = netspec.load(SPECS / "mlp.yaml")
    assert (mlp.input_shape, mlp.output_shape) == ((64,), (10,))
