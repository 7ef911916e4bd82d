"""An ONNX file → the flat net of netspec layers (``netspec import model.onnx``).

The file is untrusted input: a regular file of at most 2 GiB (protobuf's own limit),
external data only in files beside it (no absolute path, no ``..``, no link out of its
folder), every external range inside its file, at most 100,000 nodes. Then the nodes are
read in order, as the torch tracer reads fx nodes:

- constants (initializers, Constant nodes) and arithmetic on shapes are evaluated;
- a view (Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Identity) moves an index map,
  in which flatten and channel shuffle recognise themselves;
- element-wise ops on one tensor are kept as an expression until a layer needs the
  value, then recognised by what they compute (netspec/importer/elementwise.py);
- every other node is read by the kind that claims its op type
  (netspec/backends/onnx/readers.py).

BatchNorm already folded into a conv is simply a conv with a bias. Module scopes come
from node names (``/layer1/layer1.0/conv1/Conv``, torch's exporter; ``layer1.0.conv1``,
netspec's), so repeated structure is found as in a PyTorch module.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netspec.backends.onnx.readers import (
    CANONICAL,
    CHANNELS_LAST,
    OTHER,
    READERS,
    OIn,
    OnnxReader,
    ONode,
)
from netspec.errors import UsageError
from netspec.importer import movement
from netspec.importer.elementwise import OPS as ELEMENTWISE
from netspec.importer.elementwise import Expr, first_unknown, recognise
from netspec.importer.flat import (
    INPUT_ID,
    FlatNet,
    FlatNode,
    Mapped,
    ScopeRef,
    Unmappable,
    validated,
)
from netspec.kinds import OPS, Shape

#: protobuf cannot hold more in one message
MAX_FILE = 2 << 30
#: external data, all files together
MAX_EXTERNAL = 64 << 30
MAX_NODES = 100_000
_MOVES = {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}


# ---------------------------------------------------------------------------- loading
def _regular(p: Path, what: str) -> os.stat_result:
    try:
        st = os.stat(p)
    except OSError as e:
        raise UsageError(f"{p}: cannot read {what}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{p}: {what} is not a regular file")
    return st


def load_model(path: str | Path) -> Any:
    """The ModelProto, its external data checked and read; every problem one line."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    p = Path(path)
    if _regular(p, "the ONNX file").st_size > MAX_FILE:
        raise UsageError(f"{p}: larger than 2 GiB; an ONNX file keeps larger weights as "
                         "external data beside it")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"{p}: not an ONNX model ({first[:120]})") from None
    if len(model.graph.node) > MAX_NODES:
        raise UsageError(f"{p}: {len(model.graph.node):,} nodes, more than netspec reads "
                         f"({MAX_NODES:,})")
    folder = p.parent.resolve()
    total = 0
    for t in model.graph.initializer:
        if not uses_external_data(t):
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        where = (folder / loc).resolve()
        if (not loc or os.path.isabs(loc) or ".." in Path(loc).parts
                or folder not in where.parents):
            raise UsageError(f"{p}: tensor {t.name!r} keeps its data at {loc!r}, outside the "
                             "model's folder; netspec reads external data only beside it")
        size = _regular(where, f"the external data of {t.name!r}").st_size
        offset, length = int(info.get("offset", 0)), int(info.get("length", size))
        if offset < 0 or length < 0 or offset + length > size:
            raise UsageError(f"{p}: tensor {t.name!r}: its data range {offset}+{length} is "
                             f"past the end of {loc} ({size} bytes)")
        total += length
    if total > MAX_EXTERNAL:
        raise UsageError(f"{p}: {total:,} bytes of external data, more than netspec reads")
    if total:
        load_external_data_for_model(model, str(folder))
    return model


# ---------------------------------------------------------------------------- values
@dataclass
class _Value:
    node: int
    shape: Shape
    layout: str = CANONICAL
    index: np.ndarray | None = None

    def indices(self) -> np.ndarray:
        if self.index is not None:
            return self.index
        if self.layout == CHANNELS_LAST:
            return movement.channels_last(self.shape)
        return movement.identity(self.shape)


@dataclass
class _Lazy:
    """Element-wise ops on one traced tensor, not yet recognised."""

    expr: Expr
    x: _Value
    #: the scopes of the op that made it (the layer is made later, where it is read)
    scopes: tuple[ScopeRef, ...] = ()


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _scopes(name: str) -> tuple[str, tuple[ScopeRef, ...]]:
    """(the layer's module path, the scopes around it) from a node's name:
    ``/layer2/layer2.0/downsample/downsample.0/Conv`` (torch's exporter, each part the
    module's name under its parent's) or ``layer2.0.conv1`` / ``layer2.0.conv1/steps``
    (netspec's)."""
    if name.startswith("/"):
        parts = [s for s in name.split("/")[1:-1] if s]
        paths: list[str] = []
        prev = ""
        for part in parts:
            local = part[len(prev) + 1:] if prev and part.startswith(prev + ".") else part
            paths.append(f"{paths[-1]}.{local}" if paths else local)
            prev = part
    else:
        dotted = name.partition("/")[0]
        bits = dotted.split(".")
        paths = [".".join(bits[:i]) for i in range(1, len(bits) + 1)]
    if not paths:
        return name or "graph", ()
    # the name does not say whether its last part is the layer's own module (conv1's
    # Conv) or the module whose code ran a function (layer1.0's Add): it is a scope either
    # way, of one layer for a leaf module, which is never a block by itself
    return paths[-1], tuple(ScopeRef(p, _pseudo_class(p)) for p in paths)


def _pseudo_class(path: str) -> str:
    """ONNX keeps no classes: modules at the same place in repeated containers
    (``layer1.0``, ``layer3.1``) are taken for one class."""
    return "onnx:" + re.sub(r"\d+", "#", path)


class _Reader:
    def __init__(self, model: Any, name: str, origin: str, shape: Shape | None) -> None:
        from onnx import numpy_helper

        self.graph = model.graph
        self.values: dict[str, Any] = {}
        self.sources: dict[str, np.ndarray] = {}
        for t in self.graph.initializer:
            arr = numpy_helper.to_array(t)
            self.values[t.name] = arr
            self.sources[t.name] = arr
        self.const_origin: dict[str, str] = {n: n for n in self.sources}
        inputs = [i for i in self.graph.input if i.name not in self.values]
        if len(inputs) != 1:
            raise Unmappable(f"{name}: the graph takes {len(inputs)} inputs; netspec "
                             "networks take one")
        self.input_name = inputs[0].name
        self.input_shape = shape or self._declared_shape(inputs[0], name)
        self.values[self.input_name] = _Value(INPUT_ID, self.input_shape)
        self.net = FlatNet(name, origin, self.input_shape, [], ())
        self.shapes: dict[int, Shape] = {INPUT_ID: self.input_shape}
        self.splits = 0
        #: each element-wise expression made a layer once: id → (it, the layer's value)
        self.made: dict[int, tuple[_Lazy, _Value]] = {}
        self.path = name
        self.scopes: tuple[ScopeRef, ...] = ()
        self.by_op: dict[str, list[OnnxReader]] = {}
        for reader in READERS.values():
            for op in reader.ops:
                self.by_op.setdefault(op, []).append(reader)

    def _declared_shape(self, value: Any, name: str) -> Shape:
        dims = value.type.tensor_type.shape.dim
        sizes = [d.dim_value if d.HasField("dim_value") else None for d in dims][1:]
        if len(sizes) not in (1, 3) or None in sizes or not all(sizes):
            raise UsageError(f"{name}: the input's size is not fixed in the file "
                             f"({[d.dim_param or d.dim_value for d in dims]}); give --input")
        return tuple(int(s) for s in sizes)  # type: ignore[arg-type]

    # -------------------------------------------------------------- run
    def run(self) -> FlatNet:
        for node in self.graph.node:
            self.path, self.scopes = _scopes(node.name or node.output[0])
            outs = self._node(node)
            for name, value in zip(node.output, outs, strict=False):
                if name:
                    self.values[name] = value
        ids = []
        for out in self.graph.output:
            v = self._materialise(self.values[out.name], "the output")
            if not isinstance(v, _Value) or v.layout != CANONICAL:
                raise Unmappable(f"{out.name}: the output is not a tensor netspec computes in "
                                 "its own layout")
            ids.append(v.node)
        self.net.outputs = tuple(ids)
        return self.net

    def _node(self, node: Any) -> list[Any]:
        op = node.op_type
        attrs = _attrs(node)
        ins = [self.values[i] if i else None for i in node.input]
        if op == "Constant":
            from onnx import numpy_helper
            for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
                if key in attrs:
                    v = attrs[key]
                    arr = numpy_helper.to_array(v) if hasattr(v, "data_type") else np.asarray(v)
                    self.const_origin[node.output[0]] = node.output[0]
                    self.sources[node.output[0]] = arr
                    return [arr]
            raise Unmappable(f"{self.path}: Constant of an unsupported form")
        if not any(isinstance(v, _Value | _Lazy) for v in ins):
            return self._constant(node, op, attrs, ins)
        if op == "Shape":
            x = self._materialise(ins[0], "Shape")
            shape = np.array((1, *self._torch_shape(x)), dtype=np.int64)
            start, end = attrs.get("start", 0), attrs.get("end", None)
            return [shape[start:end]]
        if op in _MOVES:
            return [self._move(op, attrs, ins)]
        lazy = self._elementwise(op, attrs, ins)
        if lazy is not None:
            return [lazy]
        ins = [self._materialise(v, op) for v in ins]
        return self._read(node, op, attrs, ins)

    def _constant(self, node: Any, op: str, attrs: dict[str, Any], ins: list[Any]
                  ) -> list[Any]:
        """Shape arithmetic and constants: evaluated with numpy."""
        fns: dict[str, Callable[..., Any]] = {
            "Identity": lambda x: x,
            "Cast": lambda x: x.astype(_onnx_dtype(attrs["to"])),
            "Gather": lambda x, i: np.take(x, i, axis=attrs.get("axis", 0)),
            "Unsqueeze": lambda x, a=None: np.expand_dims(
                x, tuple(a if a is not None else attrs["axes"])),
            "Squeeze": lambda x, a=None: np.squeeze(
                x, tuple(a if a is not None else attrs.get("axes", ()))),
            "Concat": lambda *xs: np.concatenate(xs, axis=attrs.get("axis", 0)),
            "Reshape": lambda x, s: x.reshape([int(d) for d in s]),
            "Slice": lambda x, st, en, ax=None, sp=None: _slice(x, st, en, ax, sp),
            "Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
            "Div": lambda a, b: a // b if a.dtype.kind in "iu" else a / b,
            "Transpose": lambda x: np.transpose(x, attrs.get("perm")),
        }
        if op not in fns:
            raise Unmappable(f"{self.path}: {op} of constants has no netspec meaning")
        out = fns[op](*[v for v in ins if v is not None])
        if op in ("Identity", "Reshape", "Transpose", "Cast") and node.input[0] in \
                self.const_origin:
            # a weight seen through a view (torch's exporter shares equal ones by Identity)
            self.const_origin[node.output[0]] = self.const_origin[node.input[0]]
            self.sources.setdefault(node.output[0], np.asarray(out))
        return [np.asarray(out)]

    def _torch_shape(self, v: _Value) -> tuple[int, ...]:
        return tuple(v.indices().shape[1:])

    # -------------------------------------------------------------- views
    def _move(self, op: str, attrs: dict[str, Any], ins: list[Any]) -> Any:
        x = ins[0]
        if isinstance(x, _Lazy):
            x = self._materialise(x, op)
        assert isinstance(x, _Value)
        index = x.indices()
        if op == "Transpose":
            moved = index.transpose(attrs.get("perm", list(range(index.ndim))[::-1]))
        elif op == "Reshape":
            target = [int(d) for d in np.asarray(ins[1]).ravel()]
            if not attrs.get("allowzero", 0):
                target = [index.shape[i] if d == 0 else d for i, d in enumerate(target)]
            moved = index.reshape(target)
        elif op == "Flatten":
            axis = int(attrs.get("axis", 1)) % max(index.ndim, 1)
            moved = index.reshape(int(np.prod(index.shape[:axis])), -1)
        elif op == "Squeeze":
            axes = attrs.get("axes") if ins[1:2] == [None] or len(ins) < 2 else ins[1]
            moved = np.squeeze(index, tuple(int(a) for a in np.ravel(axes))) if axes is not \
                None else np.squeeze(index)
        elif op == "Unsqueeze":
            axes = attrs.get("axes") if len(ins) < 2 else ins[1]
            moved = np.expand_dims(index, tuple(int(a) for a in np.ravel(axes)))
        else:
            return x
        if moved.ndim == 0 or moved.shape[0] != 1:
            raise Unmappable(f"{self.path}: {op} mixes the batch axis with the others")
        return self._settle(_Value(x.node, x.shape, OTHER, moved))

    def _settle(self, v: _Value) -> _Value:
        assert v.index is not None
        if movement.is_identity(v.index, v.shape):
            return _Value(v.node, v.shape)
        if movement.is_channels_last(v.index, v.shape):
            return _Value(v.node, v.shape, CHANNELS_LAST)
        for op, reader in READERS.items():
            if reader.movement is not None:
                options = reader.movement(v.index, v.shape)
                if options is not None:
                    mapped = Mapped(OPS[op].spec_kind, options)
                    return self._add(mapped, [_Value(v.node, v.shape)])
        return v

    # -------------------------------------------------------------- element-wise
    def _elementwise(self, op: str, attrs: dict[str, Any], ins: list[Any]) -> _Lazy | None:
        if op not in ELEMENTWISE:
            return None
        roots = {id(self._root(v)): self._root(v) for v in ins
                 if isinstance(v, _Value | _Lazy)}
        scalars = all(v is None or isinstance(v, _Value | _Lazy) or
                      (isinstance(v, np.ndarray) and v.size == 1) for v in ins)
        if len(roots) != 1 or not scalars:
            return None
        root = next(iter(roots.values()))
        if op in ("Add", "Mul") and all(isinstance(v, _Value) for v in ins) and \
                len(ins) == 2 and ins[0] is not ins[1] and ins[0] != ins[1]:
            return None
        args = [None if isinstance(v, _Value) else v.expr if isinstance(v, _Lazy)
                else float(np.asarray(v).ravel()[0]) if v is not None else None
                for v in ins]
        if op == "Clip":
            args = args[:1] + [a for a in args[1:] if a is not None]
        return _Lazy(Expr(op, args, attrs, self.path), root, self.scopes)

    @staticmethod
    def _root(v: Any) -> _Value:
        return v.x if isinstance(v, _Lazy) else v

    def _materialise(self, v: Any, why: str) -> Any:
        if not isinstance(v, _Lazy):
            return v
        if id(v) in self.made:  # read by several layers: one activation
            return self.made[id(v)][1]
        out = self._recognised(v)
        self.made[id(v)] = (v, out)
        return out

    def _recognised(self, v: _Lazy) -> _Value:
        found = recognise(v.expr)
        if found is None:
            bad = first_unknown(v.expr)
            raise Unmappable(f"{bad.where}: {bad.op} has no netspec kind (nor does the "
                             "element-wise expression it is part of)")
        kind, options = found
        saved = self.path, self.scopes
        self.path, self.scopes = v.expr.where, v.scopes
        try:
            return self._add(Mapped(kind, options, keeps_layout=True), [v.x])
        finally:
            self.path, self.scopes = saved

    # -------------------------------------------------------------- layers
    def _in(self, v: Any) -> Any:
        if isinstance(v, _Value):
            producer = None if v.node == INPUT_ID else self.net.nodes[v.node]
            return OIn(v.shape, v.layout, producer)
        return v

    def _derive(self, name: str, arr: np.ndarray) -> str:
        self.sources[name] = arr
        return name

    def _read(self, node: Any, op: str, attrs: dict[str, Any], ins: list[Any]) -> list[Any]:
        names = [self.const_origin.get(i, i) for i in node.input]
        view = ONode(self.path, op, attrs, [self._in(v) for v in ins], names, self._derive)
        if op == "Add" and self._bias(view, ins):
            return [self._biased]
        for reader in self.by_op.get(op, []):
            assert reader.read is not None
            mapped = reader.read(view)
            if mapped is None:
                continue
            lookup = {id(o): v for o, v in zip(view.inputs, ins, strict=True)}
            inputs = [lookup[id(o)] for o in mapped.inputs] if mapped.inputs is not None \
                else [v for v in ins if isinstance(v, _Value)]
            if mapped.parts is not None:
                return self._split(mapped, inputs[0])
            if op == "Dropout":
                return [self._add(mapped, inputs), None]
            return [self._add(mapped, inputs)]
        raise Unmappable(f"{self.path}: {op} has no netspec kind")

    def _bias(self, view: ONode, ins: list[Any]) -> bool:
        """MatMul then Add of a constant: the linear's bias (torch's exporter writes
        nn.Linear so on a [N, …, C] tensor)."""
        for at in (0, 1):
            x, b = ins[at], ins[1 - at]
            if not (isinstance(x, _Value) and isinstance(b, np.ndarray)) or x.node == INPUT_ID:
                continue
            flat = self.net.nodes[x.node]
            # a linear's outputs: F, or on tokens [N, out] each token's out
            if flat.kind == "linear" and not flat.options["bias"] \
                    and b.size == flat.options["out"]:
                flat.options["bias"] = True
                flat.args = validated(flat.kind, flat.options)
                flat.tensors["bias"] = self._derive(view.names[1 - at] + "^flat", b.reshape(-1))
                self._biased = x
                return True
        return False

    def _add(self, mapped: Mapped, inputs: list[_Value]) -> _Value:
        layouts = {v.layout for v in inputs}
        if not mapped.keeps_layout and layouts - {CANONICAL}:
            raise Unmappable(f"{self.path}: {mapped.kind} reads a reshaped tensor")
        if len(layouts) > 1 or (OTHER in layouts and any(
                not np.array_equal(v.indices(), inputs[0].indices()) for v in inputs[1:])):
            raise Unmappable(f"{self.path}: {mapped.kind} of tensors in different layouts")
        flat = self._flat(mapped, inputs)
        if mapped.view is not None:
            index = movement.identity(flat.shape).reshape(mapped.view)
            return self._settle(_Value(flat.id, flat.shape, OTHER, index))
        layout = layouts.pop() if layouts else CANONICAL
        if layout == OTHER:
            return _Value(flat.id, flat.shape, OTHER, inputs[0].index)
        return _Value(flat.id, flat.shape, layout)

    def _flat(self, mapped: Mapped, inputs: Sequence[_Value],
              split: tuple[int, int] | None = None) -> FlatNode:
        flat = self.net.add(mapped, [v.node for v in inputs],
                            [self.shapes[v.node] for v in inputs], self.path, self.scopes,
                            self._tensor_shape, split=split)
        self.shapes[flat.id] = flat.shape
        return flat

    def _tensor_shape(self, name: str) -> Shape | None:
        arr = self.sources.get(name)
        return None if arr is None else tuple(arr.shape)

    def _split(self, mapped: Mapped, x: _Value) -> list[_Value]:
        self.splits += 1
        return [_Value(self._flat(mapped, [x], (self.splits, i)).id,
                       self.shapes[len(self.net.nodes) - 1])
                for i in range(len(mapped.parts or ()))]


def _mark_containers(net: FlatNet) -> None:
    """A scope whose children are numbered (``layer1.0``, ``layer1.1``) was a
    Sequential-like container: its children are the structure, as in a PyTorch module."""
    paths = {s.path for n in net.nodes for s in n.scopes}
    containers = {p.rpartition(".")[0] for p in paths if p.rpartition(".")[2].isdigit()}
    for n in net.nodes:
        n.scopes = tuple(ScopeRef(s.path, s.cls, s.path in containers) for s in n.scopes)


def _slice(x: np.ndarray, starts: Any, ends: Any, axes: Any = None, steps: Any = None
           ) -> np.ndarray:
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
        index[a] = slice(int(s), int(e), st)
    return x[tuple(index)]


def _onnx_dtype(to: int) -> Any:
    from onnx import helper
    return helper.tensor_dtype_to_np_dtype(to)


def flatten_onnx(path: str | Path, name: str | None, shape: Shape | None) -> FlatNet:
    model = load_model(path)
    reader = _Reader(model, name or Path(path).stem, str(path), shape)
    net = reader.run()
    _mark_containers(net)
    net.source_tensors = reader.sources
    # the file's own weights, as the layers use them, is its parameter count; a tensor
    # the file shares between layers (torch's exporter writes equal biases once) is a
    # copy per layer in the spec
    params: dict[str, int] = {}
    seen: set[str] = set()
    for n in net.nodes:
        assert n.args is not None
        ins = [reader.shapes[i] for i in n.inputs]
        for t, source in list(n.tensors.items()):
            if source in seen:
                copy = f"{source}@{n.id}"
                reader.sources[copy] = reader.sources[source]
                n.tensors[t] = source = copy
            seen.add(source)
        for t in n.args.param_shapes(ins):
            params[n.tensors[t]] = int(reader.sources[n.tensors[t]].size)
    net.source_params = params
    return net


def import_onnx(path: str, shape: Shape | None, name: str | None, file: str,
                header: Callable[[str, int], list[str]], tolerance: float) -> tuple[Any, Any]:
    """The imported spec and how its torch module, with the file's weights, agrees with
    onnxruntime running the file."""
    import onnxruntime as ort

    from netspec.agreement import agreement, random_inputs
    from netspec.backends.onnx.verify import torch_outputs
    from netspec.importer.pipeline import spec_from_flat

    net = flatten_onnx(path, name, shape)
    total = sum(net.source_params.values())
    imported = spec_from_flat(net, header(path, total), file)
    (x,) = random_inputs(imported.graph, [2])
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        theirs = session.run(None, feed)
    except Exception as e:  # onnxruntime's own errors: a file it cannot run at batch 2
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"{path}: onnxruntime cannot run it at batch 2 to compare "
                         f"({first[:160]}); export it with a dynamic batch axis") from None
    mine = torch_outputs(imported.graph, imported.weights, x)
    return imported, agreement(mine, [np.asarray(t, np.float32) for t in theirs], tolerance)
