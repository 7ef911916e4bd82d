"""The ONNX file written in pieces (netspec/backends/onnx/wire.py): its bytes are exactly
what protobuf's own serializer gives for the same model with the weights filled in, and
the structure-only check still catches what onnx's full checker catches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from strategies import spec_texts

import netspec
from netspec.backends.onnx.export import export_onnx_file
from netspec.backends.onnx.wire import OnnxFile, _varint
from netspec.cli import main
from netspec.weights import load_weights

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["digits_cnn", "unet", "resnet18", "mobilenet_v3_small", "yolov8n"]


def filled(file: OnnxFile) -> onnx.ModelProto:
    """The skeleton with every initializer's data set the ordinary way."""
    model = onnx.ModelProto()
    model.CopyFrom(file.skeleton)
    for t in model.graph.initializer:
        t.raw_data = file.arrays[t.name].tobytes()
    return model


def random_weights(graph: netspec.Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Any values of the right shapes (the bytes are what is compared, not the maths);
    BN variances positive so the folds are finite."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in {**graph.param_shapes(), **graph.buffer_shapes()}.items():
        a = rng.normal(size=shape).astype(np.float32)
        out[name] = np.abs(a) + 0.5 if name.endswith("running_var") else a
    return out


@given(n=st.integers(0, 2**63 - 1))
def test_varint_is_protobufs(n: int) -> None:
    # field 1 of ModelProto is an int64: its encoding is the key byte 0x08 and n's varint
    assert onnx.ModelProto(ir_version=n).SerializeToString() == b"\x08" + _varint(n)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", SPECS)
def test_bytes_equal_protobufs_serialization(name: str, precision: str) -> None:
    graph = netspec.load(ROOT / "specs" / f"{name}.yaml")
    file, _ = export_onnx_file(graph, random_weights(graph), verify=False,
                               precision=precision)
    data = file.tobytes()
    assert data == filled(file).SerializeToString()
    assert file.size == len(data)
    onnx.checker.check_model(data, full_check=True)  # the whole file, weights included


@settings(max_examples=15, suppress_health_check=[HealthCheck.too_slow])
@given(spec=spec_texts())
def test_generated_specs_bytes_equal_protobufs(spec: tuple[str, tuple[int, ...]]) -> None:
    graph = netspec.loads(spec[0])
    file, _ = export_onnx_file(graph, random_weights(graph), verify=False)
    assert file.tobytes() == filled(file).SerializeToString()


def test_cli_file_is_the_checked_model(tmp_path: Path) -> None:
    """What `netspec export` writes loads, passes the full checker on the file itself, and
    holds the weights it was given, tensor for tensor."""
    weights = tmp_path / "w.safetensors"
    out = tmp_path / "m.onnx"
    spec = str(ROOT / "specs" / "resnet18.yaml")
    assert main(["build", spec, "-o", str(weights)]) == 0
    assert main(["export", spec, "--weights", str(weights), "--no-verify", "-o",
                 str(out)]) == 0
    onnx.checker.check_model(str(out), full_check=True)
    model = onnx.load(str(out))
    tensors, _ = load_weights(weights)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    fc = "fc.weight"  # the classifier is not folded into anything: stored as trained
    np.testing.assert_array_equal(inits[fc], tensors[fc])


def _digits() -> OnnxFile:
    graph = netspec.load(ROOT / "specs" / "digits_cnn.yaml")
    return export_onnx_file(graph, random_weights(graph), verify=False)[0]


def test_check_catches_a_weight_of_the_wrong_shape() -> None:
    """The classifier's weight one column too wide for its input: shape inference on the
    weight-as-input finds it, as onnx's checker does on the whole file."""
    file = _digits()
    gemm = next(n for n in file.skeleton.graph.node if n.op_type == "Gemm")
    t = next(t for t in file.skeleton.graph.initializer if t.name == gemm.input[1])
    wrong = np.zeros((t.dims[0], t.dims[1] + 1), np.float32)
    del t.dims[:]
    t.dims.extend(wrong.shape)
    file.arrays[t.name] = wrong
    with pytest.raises(onnx.shape_inference.InferenceError, match="mismatch"):
        onnx.checker.check_model(file.tobytes(), full_check=True)  # the reference
    with pytest.raises(onnx.shape_inference.InferenceError, match="mismatch"):
        file.check()


def test_check_catches_a_weight_of_the_wrong_type() -> None:
    file = _digits()
    t = file.skeleton.graph.initializer[0]
    file.arrays[t.name] = file.arrays[t.name].astype(np.float16)
    t.data_type = TensorProto.FLOAT16
    with pytest.raises(onnx.shape_inference.InferenceError):
        onnx.checker.check_model(file.tobytes(), full_check=True)
    with pytest.raises(onnx.shape_inference.InferenceError):
        file.check()


def test_check_catches_an_undefined_tensor() -> None:
    file = _digits()
    file.skeleton.graph.node[-1].input[0] = "nowhere"
    with pytest.raises(onnx.checker.ValidationError, match="nowhere"):
        file.check()


def test_skeleton_and_arrays_must_agree() -> None:
    file = _digits()
    name = file.skeleton.graph.initializer[0].name
    with pytest.raises(AssertionError, match="does not fill"):
        OnnxFile(file.skeleton, {**file.arrays, name: file.arrays[name].astype(np.float64)})
    t = TensorProto()
    t.CopyFrom(file.skeleton.graph.initializer[0])
    t.raw_data = b"\0"
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(file.skeleton)
    skeleton.graph.initializer[0].CopyFrom(t)
    with pytest.raises(AssertionError, match="data"):
        OnnxFile(skeleton, file.arrays)


@pytest.mark.parametrize("name", SPECS)
def test_probe_infers_the_shapes_the_whole_model_does(name: str) -> None:
    """The checker's probe (weights as typed inputs, constants kept) gives shape inference
    what the whole model gives it: every intermediate tensor's inferred type is the same."""
    graph = netspec.load(ROOT / "specs" / f"{name}.yaml")
    file, _ = export_onnx_file(graph, random_weights(graph), verify=False)
    whole = onnx.shape_inference.infer_shapes(filled(file), strict_mode=True)
    probe = onnx.shape_inference.infer_shapes(file.probe(), strict_mode=True)
    assert whole.graph.value_info, "nothing inferred"
    assert {v.name: v.type for v in probe.graph.value_info} == \
        {v.name: v.type for v in whole.graph.value_info}
    moved = {v.name for v in probe.graph.input} - {v.name for v in whole.graph.input}
    assert moved and moved <= set(file.arrays)


def _one_add(ir: int = 9, inputs: tuple[str, ...] = ("x",), n: int = 2048) -> OnnxFile:
    """x + W, W an initializer of n floats (large enough to become a probe input)."""
    vi = [helper.make_tensor_value_info(i, TensorProto.FLOAT, [1, n]) for i in inputs]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])
    graph = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"])], "g", vi, [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              ir_version=ir)
    t = model.graph.initializer.add()
    t.name, t.data_type = "W", TensorProto.FLOAT
    t.dims.extend([1, n])
    return OnnxFile(model, {"W": np.ones((1, n), np.float32)})


def test_check_agrees_with_the_whole_file_checker_on_initializer_rules() -> None:
    """IR 3 wants every initializer listed as a graph input; from IR 4 an initializer
    may also be an input (its default). The probe must not change either verdict."""
    for file, ok in [(_one_add(ir=3), False), (_one_add(ir=3, inputs=("x", "W")), True),
                     (_one_add(inputs=("x", "W")), True), (_one_add(), True)]:
        try:
            onnx.checker.check_model(file.tobytes(), full_check=True)
            whole = True
        except onnx.checker.ValidationError:
            whole = False
        assert whole is ok
        if ok:
            file.check()
        else:
            with pytest.raises(onnx.checker.ValidationError, match="not in graph input"):
                file.check()


def test_an_array_changed_after_the_export_is_checked_again() -> None:
    file = _one_add()
    file.arrays["W"] = np.ones((1, 2000), np.float32)  # dims still say 2048
    for use in (file.check, file.tobytes):
        with pytest.raises(AssertionError, match="does not fill"):
            use()


def test_a_skeleton_initializer_holds_no_values() -> None:
    """float_data (or any value field) beside the array would give the file two values
    for one tensor, which onnx's checker refuses: refused before that."""
    file = _one_add()
    file.skeleton.graph.initializer[0].float_data.append(1.0)
    with pytest.raises(AssertionError, match="float_data"):
        file.tobytes()
    with pytest.raises(onnx.checker.ValidationError, match="one and only one"):
        onnx.checker.check_model(filled(file).SerializeToString(), full_check=True)
