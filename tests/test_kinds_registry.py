"""A layer kind is declared once: its module in netspec/kinds/ registers it, and each
backend has exactly one entry for it. These tests fail when a kind is added without
its backend entries, or a backend keeps an entry for a kind that is gone."""

from __future__ import annotations

import pytest

from netspec.backends.onnx.emitters import EMITTERS
from netspec.backends.torch.layers import FUNCTIONS, MODULES
from netspec.json_schema import spec_schema
from netspec.kinds import FAMILIES, OPS, REGISTRY, SPEC_KINDS, LayerArgs, ShapeError


def test_every_op_has_exactly_one_torch_entry() -> None:
    assert not set(MODULES) & set(FUNCTIONS)
    assert set(MODULES) | set(FUNCTIONS) == set(OPS)


def test_every_op_has_a_reference_in_the_property_tests() -> None:
    """The property tests' oracle (tests/test_properties.py) is keyed by op, so a new
    kind without its torch reference fails here, not silently there."""
    from test_properties import REFERENCES, WHOLE_SPEC_ONLY

    assert not set(REFERENCES) & WHOLE_SPEC_ONLY
    assert set(REFERENCES) | WHOLE_SPEC_ONLY == set(OPS)


def test_every_opset_boundary_is_named_in_opset_py() -> None:
    """The emitters choose a form by comparing the opset with names from opset.py (where
    each boundary says why), never with a bare number."""
    import re
    from pathlib import Path

    import netspec.backends.onnx as onnx_backend

    folder = Path(onnx_backend.__file__).parent
    for path in folder.glob("*.py"):
        bare = re.findall(r"opset\s*(?:>=|<=|<|>|==)\s*\d+", path.read_text())
        assert not bare or path.name == "opset.py", (path.name, bare)


def test_every_op_has_an_onnx_emitter() -> None:
    assert set(EMITTERS) == set(OPS)


def test_every_op_has_exactly_one_reader_for_import() -> None:
    """``netspec import`` reads each kind back: one entry per op in each backend's
    reader table; one that claims nothing says why (an inference graph holds no
    stochastic depth) or is found another way (a moving or element-wise kind)."""
    from netspec.backends.onnx.readers import READERS as ONNX_READERS
    from netspec.backends.torch.readers import READERS as TORCH_READERS

    assert set(TORCH_READERS) == set(OPS)
    assert set(ONNX_READERS) == set(OPS)
    for op, r in TORCH_READERS.items():
        claims = r.modules or r.functions or r.methods
        assert (claims and r.read) or r.movement, f"torch reader of {op} reads nothing"
    for op, r in ONNX_READERS.items():
        assert (r.ops and r.read) or r.movement or r.elementwise or r.absent, op


def test_an_element_wise_kind_has_a_definition_to_be_recognised_by() -> None:
    from netspec.backends.onnx.readers import READERS as ONNX_READERS
    from netspec.importer.elementwise import CANDIDATES, DEFINITIONS

    elementwise = {op for op, r in ONNX_READERS.items() if r.elementwise}
    assert elementwise == set(DEFINITIONS) == {kind for kind, _ in CANDIDATES}


def test_registry_is_every_layerargs_subclass_with_an_op() -> None:
    def subclasses(cls: type) -> set[type]:
        out = set(cls.__subclasses__())
        for sub in list(out):
            out |= subclasses(sub)
        return out

    with_op = {c for c in subclasses(LayerArgs) if "op" in c.__dict__}
    assert with_op == set(REGISTRY.values()) == set(OPS.values())


def test_spec_kinds_and_families_come_from_the_registry() -> None:
    declared = {c.spec_kind for c in OPS.values()} | {c.family for c in OPS.values()}
    assert set(SPEC_KINDS) == declared - {None}
    for kind, members in FAMILIES.items():
        for key, cls in members.items():
            assert cls.spec_kind == kind or (cls.family == kind and key == cls.op)


@pytest.mark.parametrize("op", list(OPS))
def test_every_kind_has_samples_that_validate(op: str) -> None:
    cls = OPS[op]
    assert cls.samples, f"{op} declares no samples for the property tests"
    for options in cls.samples:
        cls.model_validate(options)


@pytest.mark.parametrize("op", list(OPS))
def test_fold_traits_agree_with_the_kinds_tensors(op: str) -> None:
    """The ONNX fold knows a kind only by its traits: which axis of a linear map's weight
    holds its output channels (``weight_out_axis``), when a BN before it folds
    (``input_fold_refusal()``, ``input_fold_note``), and what it looks through
    (``channel_repeat()``). Each is checked against the kind's own shapes on its samples,
    and a linear-map trait on a kind that is no linear map would mean nothing."""
    cls = OPS[op]
    if not cls.linear_map:
        assert cls.weight_out_axis == 0 and cls.input_fold_note == ""
        assert cls.input_fold_refusal is LayerArgs.input_fold_refusal
    assert cls.weight_out_axis in (0, 1)
    checked = 0
    for options in cls.samples:
        args = cls.model_validate(options)
        for x in [(8,), (8, 6, 6)]:
            if cls.arity != 1 or len(x) not in cls.ranks:
                continue
            try:
                out = args.out_shape([x])
            except ShapeError:
                continue
            repeat = args.channel_repeat([x])
            if repeat is not None:  # the same values, each channel's as `repeat` features
                assert out == (x[0] * repeat,), (op, options, x)
            if not cls.linear_map:
                continue
            shapes = args.param_shapes([x])
            w, g = shapes["weight"], getattr(args, "groups", 1)
            c_out, c_in = out[0], x[0]
            # axis 0 spans all channels, axis 1 one group's
            expect = (c_out, c_in // g) if cls.weight_out_axis == 0 else (c_in, c_out // g)
            assert w[:2] == expect, (op, options, x, w)
            assert shapes.get("bias", (c_out,)) == (c_out,)
            assert args.input_fold_refusal() is None or args.input_fold_refusal()
            checked += 1
    assert checked or not cls.linear_map, f"no sample of {op} reached the weight check"


def test_schema_lists_every_spec_kind() -> None:
    layer = spec_schema()["$defs"]["layer"]["anyOf"][1]["properties"]
    assert set(SPEC_KINDS) <= set(layer)


def test_the_property_generators_draw_every_spec_kind() -> None:
    from strategies import Gen

    gen = Gen(draw=None)  # only the shape rules are asked, nothing is drawn
    drawn: set[str] = set()
    for shape in [(8,), (1,), (8, 6, 6), (4, 1, 1), (1, 5, 5), (6, 16, 16), (4, 6)]:
        drawn |= set(gen.leaf_kinds(shape))
        gen.names = {"a": shape, "g": (shape[0], 1, 1) if len(shape) == 3 else shape}
        drawn |= {op for op, _ in gen._skip_targets(shape)}
    assert drawn >= set(SPEC_KINDS), sorted(set(SPEC_KINDS) - drawn)
