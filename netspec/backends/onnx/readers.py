"""ONNX node → Graph op: how each kind recognises itself in an ONNX file (``netspec
import``). The inverse of emitters.py.

``READERS`` maps every op to an :class:`OnnxReader`: the ONNX op types it claims and a
function reading one node into the kind's spec options (or None: not this kind, ask the
next reader). The element-wise activations claim no op type: any chain of element-wise
ops on one tensor is kept as an expression and recognised by what it computes
(netspec/importer/elementwise.py), so SiLU is found in Sigmoid·Mul as in one node.
Kinds an inference graph cannot hold (stochastic depth) or that ONNX spells as generic
ops beyond recognition (DFL's decoding) claim nothing and say why.
tests/test_kinds_registry.py checks that every op has exactly one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netspec.importer import movement
from netspec.importer.elementwise import DEFINITIONS
from netspec.importer.flat import FlatNode, Mapped, Unmappable
from netspec.kinds import Shape
from netspec.kinds.conv import Conv

CANONICAL, CHANNELS_LAST, OTHER = "canonical", "channels_last", "other"


@dataclass
class OIn:
    """A traced tensor as a reader sees it: its netspec shape, its layout, the flat node
    whose output it is (None: the network's input)."""

    shape: Shape
    layout: str
    producer: FlatNode | None = None


@dataclass
class ONode:
    """One ONNX node as a reader sees it: inputs are OIn (traced), numpy arrays
    (constants) or None (an optional input left out); ``names`` their tensor names."""

    path: str
    op_type: str
    attrs: dict[str, Any]
    inputs: list[Any]
    names: list[str]
    #: register a derived constant (a transposed weight) and get its source name
    derive: Callable[[str, np.ndarray], str] = field(default=lambda n, a: n)

    @property
    def x(self) -> OIn:
        for v in self.inputs:
            if isinstance(v, OIn):
                return v
        raise Unmappable(f"{self.path}: {self.op_type} reads no traced tensor")

    def const(self, i: int) -> np.ndarray | None:
        v = self.inputs[i] if i < len(self.inputs) else None
        return v if isinstance(v, np.ndarray) else None

    def weight(self, i: int, what: str) -> tuple[np.ndarray, str]:
        w = self.const(i)
        if w is None:
            raise Unmappable(f"{self.path}: {self.op_type} with a computed {what}; netspec "
                             "layers own their weights")
        return w, self.names[i]


ReadFn = Callable[[ONode], "Mapped | None"]


@dataclass(frozen=True)
class OnnxReader:
    ops: tuple[str, ...] = ()
    read: ReadFn | None = None
    #: an element-wise activation, recognised by what it computes
    elementwise: bool = False
    #: a moving kind, recognised in an index map (netspec/importer/movement.py)
    movement: Callable[[np.ndarray, Shape], dict[str, Any] | None] | None = None
    #: why no ONNX op is read as this kind
    absent: str = ""


# ---------------------------------------------------------------------------- helpers
def _need(n: ONode, ok: bool, what: str) -> None:
    if not ok:
        raise Unmappable(f"{n.path}: {n.op_type} {what}, which netspec has no options for")


def _one(v: Any) -> Any:
    v = [int(x) for x in v]
    return v[0] if all(x == v[0] for x in v) else v


def _image(n: ONode) -> OIn:
    x = n.x
    _need(n, x.layout == CANONICAL and len(x.shape) == 3, f"on a {x.layout} {list(x.shape)} "
          "tensor")
    return x


def _pads(n: ONode, k: list[int]) -> Any:
    auto = n.attrs.get("auto_pad", "NOTSET")
    if auto == "VALID":
        return 0
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        _need(n, all(kk % 2 == 1 for kk in k) and _one(n.attrs.get("strides", [1])) == 1,
              f"pads {auto} unevenly")
        return _one([kk // 2 for kk in k])
    pads = list(n.attrs.get("pads", [0] * 2 * len(k)))
    half = len(pads) // 2
    _need(n, pads[:half] == pads[half:], f"pads unevenly ({pads})")
    return _one(pads[:half])


def _eps(v: float, default: float = 1e-5) -> dict[str, Any]:
    # ONNX stores ε as float32: 1e-5 arrives as 9.99999974e-06
    eps = float(np.format_float_positional(np.float32(v), unique=True, trim="-"))
    return {} if eps == default else {"eps": eps}


def _uniform(a: np.ndarray, default: float) -> float:
    flat = a.ravel()
    if flat.size == 0 or not np.all(flat == flat[0]):
        return default
    return float(np.format_float_positional(np.float32(flat[0]), unique=True, trim="-"))


# ---------------------------------------------------------------------------- layers
def read_conv(n: ONode) -> Mapped:
    _image(n)
    w, wname = n.weight(1, "weight")
    k = list(n.attrs.get("kernel_shape", w.shape[2:]))
    options: dict[str, Any] = {"out": int(w.shape[0]), "k": _one(k)}
    for key, attr in (("stride", "strides"), ("dilation", "dilations")):
        v = _one(n.attrs.get(attr, [1, 1]))
        if v != 1:
            options[key] = v
    pad = _pads(n, k)
    dflt = Conv(out=1, k=options["k"], dilation=options.get("dilation", 1)).padding
    if dflt != (tuple(pad) if isinstance(pad, list) else (pad, pad)):
        options["pad"] = pad
    if n.attrs.get("group", 1) != 1:
        options["groups"] = int(n.attrs["group"])
    bias = n.const(2)
    options["bias"] = bias is not None
    tensors = {"weight": wname}
    if bias is not None:
        tensors["bias"] = n.names[2]
    return Mapped("conv", options, tensors)


def read_conv_transpose(n: ONode) -> Mapped:
    _image(n)
    _need(n, "output_shape" not in n.attrs, "is given an output shape")
    w, wname = n.weight(1, "weight")
    group = int(n.attrs.get("group", 1))
    k = list(n.attrs.get("kernel_shape", w.shape[2:]))
    options: dict[str, Any] = {"out": int(w.shape[1]) * group, "k": _one(k)}
    for key, attr, dflt in (("stride", "strides", 1), ("dilation", "dilations", 1),
                            ("output_pad", "output_padding", 0)):
        v = _one(n.attrs.get(attr, [dflt, dflt]))
        if v != dflt:
            options[key] = v
    pad = _pads(n, k)
    if pad != 0:
        options["pad"] = pad
    if group != 1:
        options["groups"] = group
    options["bias"] = n.const(2) is not None
    tensors = {"weight": wname}
    if n.const(2) is not None:
        tensors["bias"] = n.names[2]
    return Mapped("conv_transpose", options, tensors)


def read_gemm(n: ONode) -> Mapped:
    x = n.x
    _need(n, x.layout == CANONICAL and len(x.shape) == 1, f"on a {list(x.shape)} tensor")
    _need(n, n.attrs.get("alpha", 1.0) == 1.0 and n.attrs.get("beta", 1.0) == 1.0
          and not n.attrs.get("transA", 0), "scales or transposes its input")
    w, wname = n.weight(1, "weight")
    if not n.attrs.get("transB", 0):
        wname = n.derive(wname + "^T", np.ascontiguousarray(w.T))
        w = w.T
    tensors = {"weight": wname}
    bias = n.const(2)
    if bias is not None:
        _need(n, bias.size == w.shape[0], f"adds a bias of shape {list(bias.shape)}")
        tensors["bias"] = n.derive(n.names[2] + "^flat", bias.reshape(-1)) \
            if bias.ndim != 1 else n.names[2]
    return Mapped("linear", {"out": int(w.shape[0]), "bias": bias is not None}, tensors)


def read_matmul(n: ONode) -> Mapped | None:
    """x·W with a constant W [in, out]: a linear without bias (an Add after it may give
    it one, see read_add)."""
    w = n.const(1)
    x = n.inputs[0]
    if w is None or not isinstance(x, OIn) or w.ndim != 2:
        return None
    if x.layout == CHANNELS_LAST:
        options: dict[str, Any] = {"out": int(w.shape[1]), "bias": False, "over": "channels"}
    else:  # [F] features, or each of [N, D] tokens
        _need(n, x.layout == CANONICAL and len(x.shape) in (1, 2), f"on a {list(x.shape)} tensor")
        options = {"out": int(w.shape[1]), "bias": False}
    wname = n.derive(n.names[1] + "^T", np.ascontiguousarray(w.T))
    return Mapped("linear", options, {"weight": wname}, inputs=[x], keeps_layout=True)


def read_batchnorm(n: ONode) -> Mapped:
    x = n.x
    _need(n, x.layout == CANONICAL and len(x.shape) in (1, 3), f"on a {x.layout} tensor")
    _need(n, not n.attrs.get("training_mode", 0), "is in training mode")
    for i, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")):
        n.weight(i, what)
    options: dict[str, Any] = {"kind": "batch", **_eps(n.attrs.get("epsilon", 1e-5))}
    momentum = round(1.0 - float(n.attrs.get("momentum", 0.9)), 7)
    if momentum != 0.1:
        options["momentum"] = momentum
    return Mapped("norm", options, {"weight": n.names[1], "bias": n.names[2],
                                    "running_mean": n.names[3], "running_var": n.names[4]})


def read_layernorm(n: ONode) -> Mapped:
    x = n.x
    axis = int(n.attrs.get("axis", -1))
    scale, sname = n.weight(1, "scale")
    options: dict[str, Any] = {"kind": "layer", **_eps(n.attrs.get("epsilon", 1e-5))}
    if x.layout == CHANNELS_LAST and axis in (-1, 3):
        options["over"] = "channels"
    elif x.layout == CANONICAL and len(x.shape) == 1 and axis in (-1, 1):
        pass
    elif x.layout == CANONICAL and len(x.shape) == 2 and axis in (-1, 2):
        pass  # each token over its D features
    elif x.layout == CANONICAL and len(x.shape) == 3 and axis == 1:
        options["affine"] = "element"
    else:
        raise Unmappable(f"{n.path}: LayerNormalization over axis {axis} of a {x.layout} "
                         f"{list(x.shape)} tensor has no netspec form")
    tensors = {"weight": sname}
    bias = n.const(2)
    if bias is None:  # no δ: netspec's layer norm has one, at 0
        tensors["bias"] = n.derive(sname + "^zero", np.zeros_like(scale))
    else:
        tensors["bias"] = n.names[2]
    return Mapped("norm", options, tensors, inputs=[x], keeps_layout=True)


def read_instancenorm(n: ONode) -> Mapped:
    _image(n)
    n.weight(1, "scale")
    n.weight(2, "bias")
    return Mapped("norm", {"kind": "instance", **_eps(n.attrs.get("epsilon", 1e-5))},
                  {"weight": n.names[1], "bias": n.names[2]})


def read_groupnorm(n: ONode) -> Mapped:
    x = _image(n)
    scale, _ = n.weight(1, "scale")
    _need(n, scale.size == x.shape[0], "has one scale per group (opset 18's form)")
    n.weight(2, "bias")
    return Mapped("norm", {"kind": "group", "groups": int(n.attrs["num_groups"]),
                           **_eps(n.attrs.get("epsilon", 1e-5))},
                  {"weight": n.names[1], "bias": n.names[2]})


def read_dropout(n: ONode) -> Mapped:
    _need(n, n.const(2) is None or not bool(n.const(2)), "is in training mode")
    ratio = n.const(1)
    p = float(ratio) if ratio is not None else float(n.attrs.get("ratio", 0.5))
    return Mapped("dropout", {"drop": p}, inputs=[n.x], keeps_layout=True)


def read_layer_scale(n: ONode) -> Mapped | None:
    """x · γ with γ a constant of one value per channel."""
    ins = n.inputs
    if len(ins) != 2 or [isinstance(v, np.ndarray) for v in ins].count(True) != 1:
        return None
    at = 0 if isinstance(ins[0], np.ndarray) else 1
    g, x = ins[at], ins[1 - at]
    if not isinstance(x, OIn):
        return None
    # the scaled axis: a map's channels, a vector's features, each token's D features
    c = x.shape[-1] if len(x.shape) == 2 else x.shape[0]
    image = x.layout == CANONICAL and len(x.shape) == 3 and g.shape in ((c, 1, 1), (1, c, 1, 1))
    flat = x.layout == CANONICAL and len(x.shape) == 1 and g.shape in ((c,), (1, c))
    tokens = x.layout == CANONICAL and len(x.shape) == 2 and g.shape in ((c,), (1, c), (1, 1, c))
    if g.size != c or c == 1 or not (image or flat or tokens):
        return None
    want = (c, 1, 1) if image else (c,)
    name = n.names[at] if g.shape == want else n.derive(n.names[at] + "^view", g.reshape(want))
    init = _uniform(g, 1e-6)
    return Mapped("layer_scale", {} if init == 1e-6 else {"init": init}, {"weight": name},
                  inputs=[x])


def read_softmax(n: ONode) -> Mapped:
    x = n.x
    axis = int(n.attrs.get("axis", -1))
    rank = len(x.shape) + 1
    ok = (x.layout == CANONICAL and axis % rank == 1) or (
        x.layout == CHANNELS_LAST and axis % rank == rank - 1)
    _need(n, ok, f"normalises over axis {axis} of a {x.layout} tensor")
    return Mapped("softmax", inputs=[x], keeps_layout=True)


def read_prelu(n: ONode) -> Mapped:
    x = n.x
    slope, sname = n.weight(1, "slope")
    options: dict[str, Any] = {}
    if slope.size > 1:
        _need(n, x.layout == CANONICAL and slope.size == x.shape[0],
              f"has slopes of shape {list(slope.shape)}")
        options["per_channel"] = True
    init = _uniform(slope, 0.25)
    if init != 0.25:
        options["init"] = init
    name = sname if slope.ndim == 1 else n.derive(sname + "^flat", slope.reshape(-1))
    return Mapped("prelu", options, {"weight": name}, inputs=[x],
                  keeps_layout=slope.size == 1)


def _window(n: ONode) -> dict[str, Any]:
    k = list(n.attrs["kernel_shape"])
    options: dict[str, Any] = {"k": _one(k)}
    stride = _one(n.attrs.get("strides", [1] * len(k)))
    if stride != options["k"]:
        options["stride"] = stride
    pad = _pads(n, k)
    if pad != 0:
        options["pad"] = pad
    if n.attrs.get("ceil_mode", 0):
        options["ceil"] = True
    return options


def read_maxpool(n: ONode) -> Mapped:
    _image(n)
    options = _window(n)
    dilation = _one(n.attrs.get("dilations", [1, 1]))
    if dilation != 1:
        options["dilation"] = dilation
    return Mapped("maxpool", options)


def read_avgpool(n: ONode) -> Mapped:
    _image(n)
    options = _window(n)
    # ONNX leaves the padding out of the average unless told; torch counts it
    if "pad" in options and not n.attrs.get("count_include_pad", 0):
        options["count_pad"] = False
    return Mapped("avgpool", options)


def read_global_avgpool(n: ONode) -> Mapped | None:
    if n.op_type == "ReduceMean" and (n.x.layout != CANONICAL or len(n.x.shape) != 3):
        return None  # the mean of tokens is select's
    x = _image(n)
    if n.op_type == "GlobalAveragePool":
        return Mapped("global_avgpool")
    axes = n.attrs.get("axes")
    if axes is None and n.const(1) is not None:
        axes = list(n.const(1))  # type: ignore[arg-type]
    if axes is None or sorted(int(a) % 4 for a in axes) != [2, 3]:
        return None
    keep = n.attrs.get("keepdims", 1)
    return Mapped("global_avgpool", view=None if keep else (1, x.shape[0]))


def read_upsample(n: ONode) -> Mapped:
    x = _image(n)
    scales = n.const(2) if n.op_type == "Resize" else n.const(1)
    sizes = n.const(3) if n.op_type == "Resize" else None
    if (scales is None or scales.size == 0) and sizes is not None:
        scales = sizes.astype(np.float64) / np.array([1, x.shape[0], *x.shape[1:]][-4:])
    _need(n, scales is not None and scales.size == 4, "resizes to a computed size")
    assert scales is not None
    s = [float(v) for v in scales.ravel()]
    _need(n, s[0] == s[1] == 1 and s[2] == s[3] and s[2].is_integer(),
          f"resizes by {s}")
    mode = n.attrs.get("mode", "nearest")
    coord = n.attrs.get("coordinate_transformation_mode", "half_pixel")
    if mode == "nearest":
        _need(n, n.attrs.get("nearest_mode", "round_prefer_floor") == "floor"
              and coord == "asymmetric", "rounds nearest differently from torch")
        return Mapped("upsample", {"scale": int(s[2])})
    _need(n, mode == "linear" and coord in ("half_pixel", "pytorch_half_pixel"),
          f"interpolates in mode {mode!r} ({coord})")
    return Mapped("upsample", {"scale": int(s[2]), "mode": "bilinear"})


def read_add(n: ONode) -> Mapped | None:
    ins = n.inputs
    if len(ins) != 2 or not all(isinstance(v, OIn) for v in ins):
        return None
    a, b = ins
    _need(n, a.shape == b.shape and a.layout == b.layout,
          f"adds {list(a.shape)} to {list(b.shape)} (netspec's add needs equal shapes)")
    return Mapped("add", inputs=[a, b], keeps_layout=True)


def read_mul(n: ONode) -> Mapped | None:
    ins = n.inputs
    if len(ins) != 2 or not all(isinstance(v, OIn) for v in ins):
        return None
    _need(n, all(v.layout == CANONICAL for v in ins), "multiplies permuted tensors")
    return Mapped("mul", inputs=list(ins))


def read_concat(n: ONode) -> Mapped:
    xs = n.inputs
    rank = len(xs[0].shape) + 1 if isinstance(xs[0], OIn) else 0
    _need(n, all(isinstance(x, OIn) and x.layout == CANONICAL for x in xs)
          and int(n.attrs.get("axis", 0)) % max(rank, 1) == 1,
          f"joins along axis {n.attrs.get('axis')}")
    return Mapped("concat", inputs=list(xs))


def read_split(n: ONode) -> Mapped:
    x = n.x
    rank = len(x.shape) + 1
    _need(n, x.layout == CANONICAL and int(n.attrs.get("axis", 0)) % rank == 1,
          f"splits along axis {n.attrs.get('axis', 0)}")
    sizes = n.const(1)
    if sizes is None:
        sizes = n.attrs.get("split")
    c = x.shape[0]
    if sizes is None:
        parts = int(n.attrs.get("num_outputs", 0)) or None
        _need(n, parts is not None, "splits into an unknown number of parts")
        assert parts is not None
        size = -(-c // parts)
        sizes = [min(size, c - i) for i in range(0, c, size)]
    sizes = [int(s) for s in np.asarray(sizes).ravel()]
    options = {"parts": len(sizes)} if len(set(sizes)) == 1 else {"sizes": sizes}
    return Mapped("split", options, inputs=[x], parts=sizes)


def _reduced_axes(n: ONode) -> list[int] | None:
    axes = n.attrs.get("axes")
    if axes is None and n.const(1) is not None:
        axes = list(np.asarray(n.const(1)).ravel())
    return None if axes is None else [int(a) for a in axes]


def read_select(n: ONode) -> Mapped | None:
    """One token: Gather along the tokens with a scalar index (netspec's export, torch's
    ``x[:, 0]``); the mean of the tokens: ReduceMean over axis 1."""
    x = n.x
    if x.layout != CANONICAL or len(x.shape) != 2:
        return None
    if n.op_type == "Gather":
        index = n.const(1)
        _need(n, index is not None and index.ndim == 0 and int(n.attrs.get("axis", 0)) % 3 == 1,
              "gathers other than one token by a constant scalar index")
        assert index is not None
        return Mapped("select", {"token": int(index)}, inputs=[x])
    axes = _reduced_axes(n)
    if axes is None or [a % 3 for a in axes] != [1]:
        return None
    keep = n.attrs.get("keepdims", 1)
    return Mapped("select", {"token": "mean"}, inputs=[x],
                  view=(1, 1, x.shape[1]) if keep else None)


def read_pos_embed(n: ONode) -> Mapped | None:
    """An Add of a [1, N, D] (or [N, D]) constant to [N, D] tokens."""
    ins = n.inputs
    if len(ins) != 2 or [isinstance(v, np.ndarray) for v in ins].count(True) != 1:
        return None
    at = 0 if isinstance(ins[0], np.ndarray) else 1
    w, x = ins[at], ins[1 - at]
    if not isinstance(x, OIn) or x.layout != CANONICAL or len(x.shape) != 2:
        return None
    want = (1, *x.shape)
    if w.shape not in (want, tuple(x.shape)):
        return None  # a bias or another constant: no kind
    name = n.names[at] if w.shape == want else n.derive(n.names[at] + "^view", w.reshape(want))
    return Mapped("pos_embed", {}, {"weight": name}, inputs=[x])


def _elementwise(kind: str) -> OnnxReader:
    assert kind in DEFINITIONS
    return OnnxReader(elementwise=True)


READERS: dict[str, OnnxReader] = {
    "conv": OnnxReader(("Conv",), read_conv),
    "conv_transpose": OnnxReader(("ConvTranspose",), read_conv_transpose),
    "linear": OnnxReader(("Gemm", "MatMul"),
                         lambda n: read_gemm(n) if n.op_type == "Gemm" else read_matmul(n)),
    "batchnorm": OnnxReader(("BatchNormalization",), read_batchnorm),
    "layernorm": OnnxReader(("LayerNormalization",), read_layernorm),
    "instancenorm": OnnxReader(("InstanceNormalization",), read_instancenorm),
    "groupnorm": OnnxReader(("GroupNormalization",), read_groupnorm),
    "rmsnorm": OnnxReader(absent="RMSNormalization (opset 23) is not read yet"),
    "dropout": OnnxReader(("Dropout",), read_dropout),
    "drop_path": OnnxReader(absent="an inference graph holds no stochastic depth"),
    "layer_scale": OnnxReader(("Mul",), read_layer_scale),
    "relu": _elementwise("relu"),
    "relu6": _elementwise("relu6"),
    "gelu": _elementwise("gelu"),
    "silu": _elementwise("silu"),
    "sigmoid": _elementwise("sigmoid"),
    "tanh": _elementwise("tanh"),
    "leaky_relu": _elementwise("leaky_relu"),
    "hardswish": _elementwise("hardswish"),
    "hardsigmoid": _elementwise("hardsigmoid"),
    "mish": _elementwise("mish"),
    "elu": _elementwise("elu"),
    "softplus": _elementwise("softplus"),
    "softmax": OnnxReader(("Softmax",), read_softmax),
    "prelu": OnnxReader(("PRelu",), read_prelu),
    "shuffle": OnnxReader(movement=movement.shuffle),
    "split": OnnxReader(("Split",), read_split),
    "mul": OnnxReader(("Mul",), read_mul),
    "dfl": OnnxReader(absent="DFL's decoding is several generic ops in ONNX"),
    "maxpool": OnnxReader(("MaxPool",), read_maxpool),
    "avgpool": OnnxReader(("AveragePool",), read_avgpool),
    "adaptive_avgpool": OnnxReader(absent="an ONNX file writes it as AveragePool or MatMuls"),
    "global_avgpool": OnnxReader(("GlobalAveragePool", "ReduceMean"), read_global_avgpool),
    "flatten": OnnxReader(movement=movement.flatten),
    "upsample": OnnxReader(("Resize", "Upsample"), read_upsample),
    "tokens": OnnxReader(movement=movement.tokens),
    "map": OnnxReader(movement=movement.to_map),
    "class_token": OnnxReader(absent=(
        "an ONNX file expands the token to the batch read at run time (Shape, Slice, Concat, "
        "Expand), and the reader evaluates Expand of constants nowhere: the Concat after it "
        "never sees the token as a constant")),
    "pos_embed": OnnxReader(("Add",), read_pos_embed),
    "select": OnnxReader(("Gather", "ReduceMean"), read_select, movement=movement.select),
    "attention": OnnxReader(absent=(
        "an ONNX file spells it as a dozen generic ops (MatMuls by slices of the qkv weight, "
        "Reshape and Transpose into heads, Mul by the scale, MatMul, Softmax, MatMul, "
        "Transpose, Reshape, MatMul), which no reader recognises as one pattern yet")),
    "window_attention": OnnxReader(absent=(
        "an ONNX file spells it as dozens of generic ops (Slice and Concat for the roll, "
        "Reshape and Transpose into windows and heads, MatMuls, the relative position bias "
        "and shift mask as one added constant, Softmax) and holds the gathered bias, not "
        "the table it came from: no reader recognises the pattern, and the table would "
        "have to be recovered from the constant")),
    "patch_merge": OnnxReader(absent=(
        "an ONNX file writes it as four strided Slices and a Concat, a pattern no reader "
        "recognises yet")),
    "add": OnnxReader(("Add",), read_add),
    "concat": OnnxReader(("Concat",), read_concat),
}
