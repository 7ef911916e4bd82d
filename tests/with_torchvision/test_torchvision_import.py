"""Every torchvision classification model through ``netspec import``, drawn from
``torchvision.models.list_models`` rather than a list of ours: each either round-trips
(the spec counts the model's parameters, registers them in its order, computes its
outputs with its weights, and exports to ONNX verified in onnxruntime) or is refused in
one line naming the module and the operation netspec lacks. Which models must be refused
is not a list either: those with an attention module (a class named for it) other than
the two netspec reads: nn.MultiheadAttention as its `attention` kind (the ViTs, built
here at a small image size of their own: their position table fixes it) and Swin's
ShiftedWindowAttention as `window_attention` (V2's, its own forward, is refused)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch

from netspec.backends.onnx.export import export_onnx
from netspec.backends.torch.sources import compare_with_torch
from netspec.backends.torch.trace import flatten_module
from netspec.importer.flat import Unmappable
from netspec.importer.pipeline import spec_from_flat

try:
    import torchvision
    MODELS = torchvision.models.list_models(module=torchvision.models)
except Exception:  # conftest.py skips or fails these, saying why
    MODELS = []

#: the input (inception_v3 needs 75 or more); large enough for every model's strides
SIZE = (3, 96, 96)
#: GoogLeNet and Inception v3 hold auxiliary classifiers their eval forward never calls
#: (a spec holds only what it computes): imported without them, and refused with them
WITHOUT_AUX = {"aux_logits": False, "init_weights": False}
#: beyond protobuf's 2 GiB an ONNX file needs external data, which export does not write
EXPORT_LIMIT = 400_000_000


def _model(name: str, **kw: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.get_model(name, **kw).eval()


#: the attention modules netspec reads, by the class whose forward runs
READ_ATTENTION = ("torch.nn.modules.activation.MultiheadAttention",
                  "torchvision.models.swin_transformer.ShiftedWindowAttention")


def _attends(model: torch.nn.Module) -> bool:
    """An attention netspec has no kind for (Swin V2's windows, MaxViT's grids…)."""
    def runs(m: torch.nn.Module) -> str:
        cls = next(c for c in type(m).__mro__ if "forward" in c.__dict__)
        return f"{cls.__module__}.{cls.__qualname__}"

    return any("attention" in type(m).__name__.lower() and runs(m) not in READ_ATTENTION
               for m in model.modules())


def _vit_size(name: str) -> int | None:
    """A ViT's image size here: a few patches (the model's own check wants exactly it)."""
    if not name.startswith("vit_"):
        return None
    return 28 if name.endswith("_14") else 64


@pytest.mark.parametrize("name", MODELS)
def test_a_torchvision_model_round_trips_or_is_refused_in_one_line(name: str) -> None:
    has_aux = name in ("googlenet", "inception_v3")
    vit = _vit_size(name)
    kw = WITHOUT_AUX if has_aux else {"image_size": vit} if vit else {}
    model = _model(name, **kw)
    size = (3, vit, vit) if vit else SIZE
    if vit:  # torchvision zeroes the ViT's head: its outputs would all be 0
        with torch.no_grad():
            model.heads.head.weight.normal_(std=0.02)
    if _attends(model):
        with pytest.raises(Unmappable) as refusal:
            spec_from_flat(flatten_module(model, name, name, SIZE), [], f"{name}.yaml")
        # one line naming where it stopped, and how much the layers before it cover
        message = str(refusal.value)
        assert "\n" not in message and ": " in message, message
        assert "the layers before it cover" in message, message
        return
    imported = spec_from_flat(flatten_module(model, name, name, size), [], f"{name}.yaml")
    params = sum(p.numel() for p in model.parameters())
    assert imported.graph.params().params == params
    assert imported.by_position
    agreement = compare_with_torch(model, imported.graph, imported.weights)
    assert agreement.ok and agreement.ref_max > 0, agreement
    if params <= EXPORT_LIMIT:
        onnx_model, report = export_onnx(imported.graph, weights=imported.weights)
        assert report.verification is not None and report.verification.ok
        ops = {n.op_type for n in onnx_model.graph.node}
        assert "BatchNormalization" not in ops and "Dropout" not in ops


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_auxiliary_classifiers_the_forward_never_calls_are_refused(name: str) -> None:
    model = _model(name, init_weights=False)
    with pytest.raises(Unmappable, match=re.escape("parameters the traced forward (eval "
                                                   "mode) never uses")):
        spec_from_flat(flatten_module(model, name, name, SIZE), [], f"{name}.yaml")


#: the bundled specs written by hand from torchvision's source
BUNDLED = ["resnet18", "resnet50", "vgg16_bn", "densenet121", "mobilenet_v2",
           "efficientnet_b0", "mobilenet_v3_small", "mobilenet_v3_large", "convnext_tiny",
           "shufflenet_v2_x1_0", "regnet_y_400mf"]


@pytest.mark.parametrize("name", BUNDLED if MODELS else [])
def test_torchvisions_model_imports_as_the_bundled_spec(name: str) -> None:
    """Imported at the bundled spec's size, torchvision's own model is the hand-written
    spec layer by layer (``netspec diff --match order`` finds nothing)."""
    from pathlib import Path

    import netspec
    from netspec.diff import diff

    spec = Path(__file__).resolve().parents[2] / "specs" / f"{name}.yaml"
    imported = spec_from_flat(flatten_module(_model(name), name, name, (3, 224, 224)), [],
                              f"{name}.yaml")
    d = diff(imported.graph, netspec.load(spec), "order")
    assert d.changes == [] and d.params[0] == d.params[1], [c.name for c in d.changes[:5]]


def test_resnet18_through_torch_onnx_export_round_trips(tmp_path: Any) -> None:
    """torchvision's resnet18 written by torch.onnx.export, imported: the spec computes
    what onnxruntime computes from the file."""
    from netspec.backends.onnx.read import import_onnx

    model = _model("resnet18")
    path = tmp_path / "r18.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 96, 96),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    imported, agreement = import_onnx(str(path), None, None, str(tmp_path / "r18.yaml"),
                                      lambda origin, n: [], 1e-4)
    assert agreement.ok and agreement.ref_max > 0, agreement
    assert "residual" in imported.text
