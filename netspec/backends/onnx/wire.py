"""An ONNX file written in pieces: the model's structure as a protobuf message, and each
weight straight from its numpy array.

``ModelProto.SerializeToString`` would first copy every weight into the message and then
all of them into one bytes object (resnet50: 102 MB, twice): a fifth of an export from a
weights file. Here the message holds each initializer without its ``raw_data``, and the
file is the protobuf encoding spliced by hand: the bytes are exactly those
``SerializeToString`` gives for the same model with the weights filled in (tested), so
any ONNX reader reads it.

The checker, too, is given the structure only: onnx's full checker (graph, operators,
types, shape inference) runs on a copy where each large float weight is a typed graph
input of its shape; small and integer constants (shapes, axes, which shape inference
reads) stay initializers. That a weight's bytes fill its shape is true by construction,
and checked here again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import Message
from onnx import GraphProto, ModelProto, TensorProto, helper

#: ModelProto.graph, GraphProto.initializer, TensorProto.raw_data (onnx.proto's numbers)
MODEL_GRAPH = ModelProto.DESCRIPTOR.fields_by_name["graph"].number
GRAPH_INITIALIZER = GraphProto.DESCRIPTOR.fields_by_name["initializer"].number
TENSOR_RAW_DATA = TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number
_LEN = 2  # protobuf's wire type of a length-delimited field

#: weights at least this large are checked as typed inputs (see the module's note)
CHECK_AS_INPUT_BYTES = 4096
#: what a skeleton's initializer holds; its data are the array
_SKELETON_FIELDS = {"dims", "data_type", "name"}
_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, length: int) -> bytes:
    """The key and length that open a length-delimited field of ``length`` bytes."""
    return _varint(number << 3 | _LEN) + _varint(length)


def _split(message: ModelProto | GraphProto, number: int) -> tuple[bytes, bytes]:
    """``message`` serialized without field ``number``: (the fields numbered below it,
    those above). protobuf writes fields in the order of their numbers, so the field's
    own encoding goes between the two."""
    head, tail = type(message)(), type(message)()
    for fd, value in message.ListFields():
        if fd.number == number:
            continue
        part = head if fd.number < number else tail
        if isinstance(value, Message):
            getattr(part, fd.name).CopyFrom(value)
        elif isinstance(value, (str, bytes, int, float)):
            setattr(part, fd.name, value)
        else:  # a repeated field
            getattr(part, fd.name).extend(value)
    return head.SerializeToString(), tail.SerializeToString()


class OnnxFile:
    """A model whose initializers' data are numpy arrays, not yet in the message.

    ``skeleton``: the ModelProto, each initializer with its name, type and dims only;
    ``arrays``: each initializer's data by name (C-contiguous, little-endian). The bytes
    are encoded from both as they are when asked for, and checked against each other
    then: an array changed after the export changes the file (``export_onnx_file``
    returns views of the weights it was given, not copies)."""

    def __init__(self, skeleton: ModelProto, arrays: dict[str, np.ndarray]) -> None:
        self.skeleton = skeleton
        self.arrays = arrays
        self._check_fill()

    def _check_fill(self) -> None:
        """Every initializer is a name, a type and dims in the skeleton, and an array in
        ONNX's layout that fills exactly that."""
        for t in self.skeleton.graph.initializer:
            stray = [fd.name for fd, _ in t.ListFields() if fd.name not in _SKELETON_FIELDS]
            if stray:
                raise AssertionError(f"initializer {t.name}: {', '.join(stray)} in the "
                                     "skeleton (its data belong in the array)")
            a = self.arrays[t.name]
            if not a.flags.c_contiguous or _big_endian(a.dtype):
                raise AssertionError(f"initializer {t.name}: the array is not C-contiguous "
                                     "little-endian")
            if tuple(t.dims) != a.shape or \
                    helper.np_dtype_to_tensor_dtype(a.dtype.newbyteorder("=")) != t.data_type:
                raise AssertionError(f"initializer {t.name}: {a.dtype}{list(a.shape)} does "
                                     f"not fill {list(t.dims)} of type {t.data_type}")

    def parts(self) -> list[bytes | memoryview]:
        """The file's bytes, in order; the weights as views of their arrays, not copies.
        Encoded from the skeleton as it is now (export sets the metadata after emitting)."""
        self._check_fill()
        model_head, model_tail = _split(self.skeleton, MODEL_GRAPH)
        graph_head, graph_tail = _split(self.skeleton.graph, GRAPH_INITIALIZER)
        tensors: list[bytes | memoryview] = []
        graph_size = len(graph_head) + len(graph_tail)
        for t in self.skeleton.graph.initializer:
            head = t.SerializeToString()
            data = memoryview(self.arrays[t.name].reshape(-1).view(np.uint8))
            raw = _field(TENSOR_RAW_DATA, data.nbytes)
            size = len(head) + len(raw) + data.nbytes
            opening = _field(GRAPH_INITIALIZER, size)
            tensors += [opening + head + raw, data]
            graph_size += len(opening) + size
        return [model_head, _field(MODEL_GRAPH, graph_size), graph_head, *tensors,
                graph_tail, model_tail]

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.parts())

    def write(self, path: str | Path) -> None:
        with open(path, "wb") as f:
            for part in self.parts():
                f.write(part)

    def tobytes(self) -> bytes:
        return b"".join(self.parts())

    def model(self) -> ModelProto:
        """The whole ModelProto, weights included (a copy)."""
        return ModelProto.FromString(self.tobytes())

    def check(self) -> None:
        """onnx's full checker on the structure (see the module's note); raises
        onnx.checker.ValidationError or onnx.shape_inference.InferenceError."""
        self._check_fill()
        if self.skeleton.ir_version < 4:
            # before IR 4 every initializer must also be a graph input, which the probe's
            # moved weights would satisfy by construction: check the whole model
            onnx.checker.check_model(self.tobytes(), full_check=True)
            return
        onnx.checker.check_model(self.probe(), full_check=True)

    def probe(self) -> ModelProto:
        """The model the checker is given: large float weights as typed graph inputs,
        every other initializer with its data."""
        probe = ModelProto()
        probe.CopyFrom(self.skeleton)
        kept = []
        inputs = {v.name for v in probe.graph.input}
        for t in probe.graph.initializer:
            if t.data_type in _FLOATS and self.arrays[t.name].nbytes >= CHECK_AS_INPUT_BYTES \
                    and t.name not in inputs:  # an input's default value stays as it is
                probe.graph.input.append(
                    helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
            else:
                small = TensorProto()
                small.CopyFrom(t)
                small.raw_data = self.arrays[t.name].tobytes()
                kept.append(small)
        del probe.graph.initializer[:]
        probe.graph.initializer.extend(kept)
        return probe


def _big_endian(dtype: np.dtype) -> bool:
    return dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big")


def little_endian(array: np.ndarray) -> np.ndarray:
    """``array`` C-contiguous in ONNX's byte order (little-endian) — a copy only when
    it is not already."""
    dtype = array.dtype.newbyteorder("<") if _big_endian(array.dtype) else array.dtype
    return np.ascontiguousarray(array, dtype=dtype)

