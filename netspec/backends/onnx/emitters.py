"""One emitter per netspec op: ``EMITTERS[op](builder, node)`` appends the ONNX operators
that compute ``node`` at inference. Shapes are those of the Graph (batch axis first in
ONNX); folded layers never reach an emitter (see fold.py), so ``batchnorm``,
``layer_scale`` and ``dropout`` here are only the leftovers that could not fold: a
Mul+Add, a Mul; ``drop_path`` never reaches one (it is the identity at inference).
Which operator is used at which opset is explained in opset.py. Constants take the
builder's float dtype (float16 for --precision fp16); with ``b.dynamic`` (symbolic H, W,
dynamic.py) no emitter bakes the spec's height or width into a shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import helper

from netspec.backends.onnx import opset as ops
from netspec.backends.onnx.builder import Builder
from netspec.graph import Node
from netspec.kinds.conv import pair
from netspec.kinds.pool import WindowPool
from netspec.kinds.window import relative_position_index, shifted_regions

Emitter = Callable[[Builder, Node], None]


def _args(node: Node) -> Any:
    assert node.args is not None
    return node.args


def _channel_shape(node: Node) -> tuple[int, ...]:
    """Per-channel constants broadcast as [C, 1, 1] over [N, C, H, W], as [F] over [N, F]."""
    c = node.shape[0]
    return (c, 1, 1) if len(node.shape) == 3 else (c,)


def _in_shape(b: Builder, node: Node) -> tuple[int, ...]:
    return b.graph[node.inputs[0]].shape


def _gamma(b: Builder, node: Node, key: str, fill: float, shape: tuple[int, ...]) -> str:
    """γ (or δ) reshaped to ``shape`` under its state_dict name, or constant ``fill``
    where the layer has no affine parameters."""
    name = f"{node.name}.{key}"
    if name in b.plan.tensors:
        return b.const(name, b.plan.tensors[name].reshape(shape))
    return b.const(f"{node.name}/{'ones' if fill == 1 else 'zeros'}", np.full(shape, fill))


# ------------------------------------------------------------------ linear maps
def conv(b: Builder, node: Node) -> None:
    a = _args(node)
    pad = a.padding
    ins = [*b.inputs(node), b.param(node, "weight")]
    bias = b.param(node, "bias")  # present when the spec has one or a BN folded in
    if bias:
        ins.append(bias)
    b.op("Conv", ins, b.out(node), node.name, kernel_shape=list(pair(a.k)),
         strides=list(pair(a.stride)), pads=[pad[0], pad[1], pad[0], pad[1]],
         dilations=list(pair(a.dilation)), group=a.groups)


def conv_transpose(b: Builder, node: Node) -> None:
    a = _args(node)
    pad = pair(a.pad)
    ins = [*b.inputs(node), b.param(node, "weight")]
    bias = b.param(node, "bias")
    if bias:
        ins.append(bias)
    b.op("ConvTranspose", ins, b.out(node), node.name, kernel_shape=list(pair(a.k)),
         strides=list(pair(a.stride)), pads=[pad[0], pad[1], pad[0], pad[1]],
         output_padding=list(pair(a.output_pad)), dilations=list(pair(a.dilation)),
         group=a.groups)


def _matmul_t(b: Builder, node: Node, x: str, out: str, name: str, weight: str,
              bias: str | None = None, rows: slice = slice(None), tag: str = "") -> str:
    """x · Wᵀ (+ b) over the last axis, for inputs of any rank (Gemm takes only [N, F]):
    W is rows ``rows`` of ``node.weight``, its transpose one initializer (``tag`` names
    the part)."""
    w = b.plan.tensors[f"{node.name}.{weight}"][rows]
    wt = b.const(f"{node.name}.{weight}{tag}/T", np.ascontiguousarray(w.T))
    bn = f"{node.name}.{bias}" if bias else ""
    if bn not in b.plan.tensors:
        return b.op("MatMul", [x, wt], out, name)
    y = b.op("MatMul", [x, wt], f"{name}/matmul", f"{name}/matmul")
    return b.op("Add", [y, b.const(f"{bn}{tag}", b.plan.tensors[bn][rows])], out, name)


def linear(b: Builder, node: Node) -> None:
    if len(node.shape) == 2:  # tokens: the same map on each token, [N, D] · Wᵀ
        _matmul_t(b, node, b.inputs(node)[0], b.out(node), node.name, "weight", "bias")
        return
    if _args(node).over == "channels":
        # the same map at each position is a 1×1 convolution: weight [out, C, 1, 1]
        name = f"{node.name}.weight"
        w = b.const(f"{name}/1x1", b.plan.tensors[name][:, :, None, None])
        ins = [*b.inputs(node), w]
        bias = b.param(node, "bias")
        if bias:
            ins.append(bias)
        b.op("Conv", ins, b.out(node), node.name, kernel_shape=[1, 1])
        return
    # Gemm with transB keeps torch's [out, in] weight as is
    ins = [*b.inputs(node), b.param(node, "weight")]
    bias = b.param(node, "bias")
    if bias:
        ins.append(bias)
    b.op("Gemm", ins, b.out(node), node.name, transB=1)


# ------------------------------------------------------------------ normalisation
def batchnorm(b: Builder, node: Node) -> None:
    """A BN that could not fold: y = x·s + t, s and t per channel (fold.bn_affine)."""
    s, t = b.plan.scale_shift[node.name]
    shape = _channel_shape(node)
    b.chain(node, [
        ("Mul", ["_", b.const(f"{node.name}.scale", s.reshape(shape))], {}),
        ("Add", ["_", b.const(f"{node.name}.shift", t.reshape(shape))], {}),
    ])


def _group_norm(b: Builder, node: Node, groups: int, eps: float, affine: bool) -> None:
    """Normalise over groups of channels and space, then per-channel γ, δ."""
    c, h, w = node.shape
    if b.opset >= ops.GROUPNORM_OPSET:
        # without affine parameters _gamma gives ones and zeros
        ins = [*b.inputs(node), _gamma(b, node, "weight", 1.0, (c,)),
               _gamma(b, node, "bias", 0.0, (c,))]
        b.op("GroupNormalization", ins, b.out(node), node.name, num_groups=groups,
             epsilon=eps)
        return
    # InstanceNormalization over [N, G, C/G·H·W] normalises each group of each sample
    steps: list[tuple[str, list[str], dict[str, Any]]] = [
        ("Reshape", ["_", b.const(f"{node.name}/grouped", [0, groups, -1], np.int64)], {}),
        ("InstanceNormalization", ["_", b.const(f"{node.name}/ones", np.ones(groups)),
                                   b.const(f"{node.name}/zeros", np.zeros(groups))],
         {"epsilon": eps}),
        ("Reshape", ["_", _same_shape(b, node, [0, c, h, w])], {}),
    ]
    if affine:
        steps += [("Mul", ["_", _gamma(b, node, "weight", 1.0, (c, 1, 1))], {}),
                  ("Add", ["_", _gamma(b, node, "bias", 0.0, (c, 1, 1))], {})]
    b.chain(node, steps)


def _same_shape(b: Builder, node: Node, static: list[int]) -> str:
    """A Reshape target: ``static`` at a fixed size; with symbolic H, W the shape of the
    layer's input, read at run time (Shape)."""
    if not b.dynamic:
        return b.const(f"{node.name}/shape", static, np.int64)
    return b.op("Shape", b.inputs(node)[:1], f"{node.name}/shape", f"{node.name}/shape")


def _mean(b: Builder, node: Node, x: str, axes: list[int], key: str) -> str:
    """ReduceMean of ``x`` over ``axes`` (kept): axes as an input from opset 18, an
    attribute before."""
    n = f"{node.name}/{key}"
    if b.opset >= ops.REDUCE_AXES_INPUT_OPSET:
        return b.op("ReduceMean", [x, b.const(f"{n}/axes", axes, np.int64)], n, n, keepdims=1)
    return b.op("ReduceMean", [x], n, n, axes=axes, keepdims=1)


def _layernorm_ops(b: Builder, node: Node, axes: list[int], affine: bool,
                   gshape: tuple[int, ...]) -> None:
    """Layer norm before LayerNormalization (opset 17): (x − mean) / √(var + ε) · γ + δ
    over ``axes``, with the biased variance, as torch; γ, δ shaped ``gshape``."""
    (x,) = b.inputs(node)
    n = node.name
    d = b.op("Sub", [x, _mean(b, node, x, axes, "mean")], f"{n}/centred", f"{n}/centred")
    sq = b.op("Mul", [d, d], f"{n}/square", f"{n}/square")
    steps: list[tuple[str, list[str], dict[str, Any]]] = [
        ("Add", [_mean(b, node, sq, axes, "var"), b.const(f"{n}/eps", _args(node).eps)], {}),
        ("Sqrt", ["_"], {}), ("Div", [d, "_"], {})]
    if affine:
        steps += [("Mul", ["_", _gamma(b, node, "weight", 1.0, gshape)], {}),
                  ("Add", ["_", _gamma(b, node, "bias", 0.0, gshape)], {})]
    b.chain(node, steps)


def layernorm(b: Builder, node: Node) -> None:
    a = _args(node)
    shape = node.shape
    if len(shape) == 2:  # tokens: each over its D features, γ, δ [D]
        d, affine = shape[1], a.affine != "none"
        if b.opset < ops.LAYERNORM_OPSET:
            _layernorm_ops(b, node, [2], affine, (d,))
            return
        ln = [_gamma(b, node, "weight", 1.0, (d,))]
        if affine:
            ln.append(_gamma(b, node, "bias", 0.0, (d,)))
        b.op("LayerNormalization", [*b.inputs(node), *ln], b.out(node), node.name, axis=-1,
             epsilon=a.eps)
        return
    if len(shape) == 3 and a.over == "channels" and b.opset < ops.LAYERNORM_OPSET:
        # over the channels at each position, on [N, C, H, W] as it is: no transposes
        _layernorm_ops(b, node, [1], a.affine != "none", (shape[0], 1, 1))
        return
    if len(shape) == 3 and a.over == "channels":
        # over the channels at each position: normalise the last axis of [N, H, W, C]
        c = shape[0]
        ln = [_gamma(b, node, "weight", 1.0, (c,))]
        if a.affine != "none":
            ln.append(_gamma(b, node, "bias", 0.0, (c,)))
        b.chain(node, [("Transpose", ["_"], {"perm": [0, 2, 3, 1]}),
                       ("LayerNormalization", ["_", *ln], {"axis": -1, "epsilon": a.eps}),
                       ("Transpose", ["_"], {"perm": [0, 3, 1, 2]})])
        return
    if len(shape) == 3 and a.affine != "element":
        # per-channel γ, δ on [C, H, W]: torch's GroupNorm(1, C)
        _group_norm(b, node, 1, a.eps, a.affine == "channel")
        return
    # over every non-batch axis with γ, δ shaped like them ([F], or [C, H, W] per element)
    if b.opset < ops.LAYERNORM_OPSET:
        _layernorm_ops(b, node, list(range(1, len(shape) + 1)), a.affine != "none", shape)
        return
    ins = [*b.inputs(node), _gamma(b, node, "weight", 1.0, shape)]
    if a.affine != "none":
        ins.append(_gamma(b, node, "bias", 0.0, shape))
    b.op("LayerNormalization", ins, b.out(node), node.name, axis=1, epsilon=a.eps)


def instancenorm(b: Builder, node: Node) -> None:
    a = _args(node)
    c = node.shape[0]
    b.op("InstanceNormalization", [*b.inputs(node), _gamma(b, node, "weight", 1.0, (c,)),
                                   _gamma(b, node, "bias", 0.0, (c,))],
         b.out(node), node.name, epsilon=a.eps)


def groupnorm(b: Builder, node: Node) -> None:
    a = _args(node)
    _group_norm(b, node, a.groups, a.eps, a.affine)


def _reduce_mean(b: Builder, node: Node, axes: list[int]) -> tuple[str, list[str], dict]:
    if b.opset >= ops.REDUCE_AXES_INPUT_OPSET:
        return ("ReduceMean", ["_", b.const(f"{node.name}/axes", axes, np.int64)],
                {"keepdims": 1})
    return ("ReduceMean", ["_"], {"axes": axes, "keepdims": 1})


def rmsnorm(b: Builder, node: Node) -> None:
    """h / sqrt(mean(h²) + ε) · γ, the mean over channels (per position) or over
    channels and space."""
    a = _args(node)
    (x,) = b.inputs(node)
    cshape = _channel_shape(node)
    whole = len(node.shape) == 1 or a.over == "channels+space"
    if whole and b.opset >= ops.RMSNORM_OPSET:
        b.op("RMSNormalization", [x, _gamma(b, node, "weight", 1.0, cshape)], b.out(node),
             node.name, axis=1, epsilon=a.eps)
        return
    axes = [1, 2, 3] if len(node.shape) == 3 and whole else [1]
    steps = [
        ("Mul", [x, x], {}),
        _reduce_mean(b, node, axes),
        ("Add", ["_", b.const(f"{node.name}/eps", a.eps)], {}),
        ("Sqrt", ["_"], {}),
        ("Div", [x, "_"], {}),
    ]
    if a.affine:
        steps.append(("Mul", ["_", _gamma(b, node, "weight", 1.0, cshape)], {}))
    b.chain(node, steps)


def dropout(b: Builder, node: Node) -> None:
    """A classic dropout that could not fold: multiply by keep."""
    b.chain(node, [("Mul", ["_", b.const(f"{node.name}/keep", b.plan.mul[node.name])], {})])


def drop_path(b: Builder, node: Node) -> None:
    raise AssertionError(f"{node.name}: stochastic depth is removed by the fold pass")


def layer_scale(b: Builder, node: Node) -> None:
    """A layer scale that could not fold into the layer before it: one Mul by γ (a 1-D
    γ on a map as [C, 1, 1])."""
    name = f"{node.name}.weight"
    gamma = b.plan.tensors[name]
    if len(node.shape) == 3 and gamma.ndim == 1:
        g = b.const(f"{name}/c11", gamma.reshape(-1, 1, 1))
    else:
        g = b.param(node, "weight")  # type: ignore[assignment]
    b.op("Mul", [*b.inputs(node), g], b.out(node), node.name)


# ------------------------------------------------------------------ activations
def _unary(op_type: str, **attrs: Any) -> Emitter:
    def emit(b: Builder, node: Node) -> None:
        b.op(op_type, b.inputs(node), b.out(node), node.name, **attrs)

    emit.__name__ = op_type.lower()
    return emit


def relu6(b: Builder, node: Node) -> None:
    b.op("Clip", [*b.inputs(node), b.const(f"{node.name}/min", 0.0),
                  b.const(f"{node.name}/max", 6.0)], b.out(node), node.name)


def leaky_relu(b: Builder, node: Node) -> None:
    b.op("LeakyRelu", b.inputs(node), b.out(node), node.name, alpha=float(_args(node).slope))


def gelu(b: Builder, node: Node) -> None:
    approximate = _args(node).approximate
    if b.opset >= ops.GELU_OPSET:
        b.op("Gelu", b.inputs(node), b.out(node), node.name, approximate=approximate)
        return
    (x,) = b.inputs(node)

    def c(key: str, v: float) -> str:
        return b.const(f"{node.name}/{key}", v)

    if approximate == "none":  # 0.5·x·(1 + erf(x/√2)), as torch
        inner = [("Mul", [x, c("rsqrt2", 1 / math.sqrt(2))], {}), ("Erf", ["_"], {})]
    else:  # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        inner = [("Mul", [x, x], {}), ("Mul", ["_", x], {}),
                 ("Mul", ["_", c("k3", 0.044715)], {}), ("Add", [x, "_"], {}),
                 ("Mul", ["_", c("sqrt2pi", math.sqrt(2 / math.pi))], {}), ("Tanh", ["_"], {})]
    b.chain(node, [*inner, ("Add", ["_", c("one", 1.0)], {}), ("Mul", [x, "_"], {}),
                   ("Mul", ["_", c("half", 0.5)], {})])


def silu(b: Builder, node: Node) -> None:
    (x,) = b.inputs(node)
    b.chain(node, [("Sigmoid", [x], {}), ("Mul", [x, "_"], {})])


def mish(b: Builder, node: Node) -> None:
    if b.opset >= ops.MISH_OPSET:
        b.op("Mish", b.inputs(node), b.out(node), node.name)
        return
    (x,) = b.inputs(node)  # x·tanh(softplus(x)), as torch defines it
    b.chain(node, [("Softplus", [x], {}), ("Tanh", ["_"], {}), ("Mul", [x, "_"], {})])


def hardswish(b: Builder, node: Node) -> None:
    if b.opset >= ops.HARDSWISH_OPSET:
        b.op("HardSwish", b.inputs(node), b.out(node), node.name)
        return
    (x,) = b.inputs(node)  # x · relu6(x + 3) / 6 = x · HardSigmoid(x; 1/6, 1/2)
    b.chain(node, [("HardSigmoid", [x], {"alpha": 1 / 6, "beta": 0.5}), ("Mul", [x, "_"], {})])


def softmax(b: Builder, node: Node) -> None:
    """Over the channels. Before opset 13 Softmax flattens every axis from ``axis`` on,
    so over [N, C, H, W] it would normalise C·H·W values together: the channels go last
    (NHWC) where the flattened tail is C alone, and come back."""
    if b.opset >= ops.SOFTMAX_ONE_AXIS_OPSET or len(node.shape) == 1:
        b.op("Softmax", b.inputs(node), b.out(node), node.name, axis=1)
        return
    b.chain(node, [("Transpose", ["_"], {"perm": [0, 2, 3, 1]}),
                   ("Softmax", ["_"], {"axis": 3}),
                   ("Transpose", ["_"], {"perm": [0, 3, 1, 2]})])


def hardsigmoid(b: Builder, node: Node) -> None:
    # torch: relu6(x + 3) / 6 = clip(x/6 + 1/2, 0, 1)
    b.op("HardSigmoid", b.inputs(node), b.out(node), node.name, alpha=1 / 6, beta=0.5)


def elu(b: Builder, node: Node) -> None:
    b.op("Elu", b.inputs(node), b.out(node), node.name, alpha=float(_args(node).alpha))


def softplus(b: Builder, node: Node) -> None:
    """torch's: x where β·x > threshold, else Softplus(β·x) / β. ONNX's Softplus has no β
    and no threshold, so both are written out: exact on either side of the threshold."""
    a = _args(node)
    (x,) = b.inputs(node)

    def c(key: str, v: float) -> str:
        return b.const(f"{node.name}/{key}", v)

    def step(key: str, op_type: str, ins: list[str]) -> str:
        return b.op(op_type, ins, f"{node.name}/{key}", f"{node.name}/{key}")

    scaled = x if a.beta == 1 else step("scaled", "Mul", [x, c("beta", a.beta)])
    soft = step("softplus", "Softplus", [scaled])
    if a.beta != 1:
        soft = step("divided", "Div", [soft, c("beta_", a.beta)])
    above = step("above", "Greater", [scaled, c("threshold", a.threshold)])
    b.op("Where", [above, x, soft], b.out(node), node.name)


def prelu(b: Builder, node: Node) -> None:
    # the slopes broadcast over [N, C, H, W] as [C, 1, 1] (or [1]), over [N, F] as [F]
    name = f"{node.name}.weight"
    slopes = b.plan.tensors[name]
    shape = _channel_shape(node) if slopes.size > 1 else (1,)
    b.op("PRelu", [*b.inputs(node), b.const(name, slopes.reshape(shape))], b.out(node),
         node.name)


def shuffle(b: Builder, node: Node) -> None:
    """[N, C, H, W] → [N, g, C/g, H·W] → swap the two channel axes → [N, C, H, W]
    (the positions flattened, so only the final Reshape needs H and W)."""
    c, h, w = node.shape
    g = _args(node).groups
    b.chain(node, [
        ("Reshape", ["_", b.const(f"{node.name}/grouped", [0, g, c // g, -1], np.int64)], {}),
        ("Transpose", ["_"], {"perm": [0, 2, 1, 3]}),
        ("Reshape", ["_", _same_shape(b, node, [0, c, h, w])], {}),
    ])


def split(b: Builder, node: Node) -> None:
    """One Split for all the parts of one split (emitted with the first part that is
    computed); the other parts' nodes emit nothing, their tensors are its outputs."""
    a = _args(node)
    scope = node.scope
    src = b.graph[node.inputs[0]].shape
    sizes = a.part_sizes(src[0])
    key = f"split:{scope or node.name}"
    if key in b.emitted:
        return
    b.emitted.add(key)
    parts = [f"{scope}.{i}" if scope else str(i) for i in range(len(sizes))]
    outs = [b.tensor(p) if p in b.graph.nodes else f"{node.name}/unused{i}"
            for i, p in enumerate(parts)]
    if b.opset >= ops.SPLIT_SIZES_INPUT_OPSET:
        b.nodes.append(helper.make_node(
            "Split", [*b.inputs(node), b.const(f"{scope or node.name}/sizes", sizes, np.int64)],
            outs, name=scope or node.name, axis=1))
        return
    # before 13 the sizes are an attribute
    b.nodes.append(helper.make_node("Split", b.inputs(node), outs, name=scope or node.name,
                                    axis=1, split=list(sizes)))


# ------------------------------------------------------------------ tokens
def _i64(b: Builder, name: str, v: Any) -> str:
    return b.const(name, v, np.int64)


def tokens(b: Builder, node: Node) -> None:
    """[B, C, H, W] → [B, C, H·W] → [B, H·W, C] (H·W read at run time: -1)."""
    c = node.shape[1]
    b.chain(node, [("Reshape", ["_", _i64(b, f"{node.name}/shape", [0, c, -1])], {}),
                   ("Transpose", ["_"], {"perm": [0, 2, 1]})])


def to_map(b: Builder, node: Node) -> None:
    """[B, H·W, D] → [B, D, H·W] → [B, D, H, W]."""
    b.chain(node, [("Transpose", ["_"], {"perm": [0, 2, 1]}),
                   ("Reshape", ["_", _i64(b, f"{node.name}/shape", [0, *node.shape])], {})])


def _batch_shape(b: Builder, node: Node, x: str, rest: list[int]) -> str:
    """[B, *rest] as a shape tensor, B read from ``x`` at run time."""
    n = node.name
    shape = b.op("Shape", [x], f"{n}/xshape", f"{n}/xshape")
    batch = b.op("Slice", [shape, _i64(b, f"{n}/0", [0]), _i64(b, f"{n}/1", [1])],
                 f"{n}/batch", f"{n}/batch")
    return b.op("Concat", [batch, _i64(b, f"{n}/rest", rest)], f"{n}/shape", f"{n}/shape",
                axis=0)


def class_token(b: Builder, node: Node) -> None:
    """Concat([the token expanded to [B, 1, D], x]) along the tokens."""
    (x,) = b.inputs(node)
    tok = b.param(node, "token")
    assert tok is not None
    n = node.name
    expanded = b.op("Expand", [tok, _batch_shape(b, node, x, [1, node.shape[1]])],
                    f"{n}/expand", f"{n}/expand")
    b.op("Concat", [expanded, x], b.out(node), n, axis=1)


def pos_embed(b: Builder, node: Node) -> None:
    b.op("Add", [*b.inputs(node), b.param(node, "weight")], b.out(node), node.name)


def select(b: Builder, node: Node) -> None:
    """One token: Gather on the token axis with a scalar index (the axis goes); the mean
    of all: ReduceMean over it, not kept."""
    a = _args(node)
    (x,) = b.inputs(node)
    if a.token != "mean":
        index = b.const(f"{node.name}/index", a.token, np.int64, scalar=True)
        b.op("Gather", [x, index], b.out(node), node.name, axis=1)
    elif b.opset >= ops.REDUCE_AXES_INPUT_OPSET:
        b.op("ReduceMean", [x, _i64(b, f"{node.name}/axes", [1])], b.out(node), node.name,
             keepdims=0)
    else:
        b.op("ReduceMean", [x], b.out(node), node.name, axes=[1], keepdims=0)


def _slice(b: Builder, x: str, name: str, axis: int, start: int, stop: int) -> str:
    return b.op("Slice", [x, _i64(b, f"{name}/starts", [start]), _i64(b, f"{name}/ends", [stop]),
                          _i64(b, f"{name}/axes", [axis])], name, name)


def attention(b: Builder, node: Node) -> None:
    """softmax(q·kᵀ / √key_dim)·v per head. q, k, v come from one MatMul by the qkv
    weight (or are the input, without projections), sliced and laid out [B, heads, N, d]
    by Reshape and Transpose; then ONNX's Attention (opset 23), or MatMul, Softmax and
    MatMul; the heads joined by Transpose and Reshape, then the output projection."""
    a = _args(node)
    x_shape = _in_shape(b, node)
    d = a.features(x_shape)[1]
    hd, kd = a.sizes(d)
    h, n = a.heads, node.name
    (x,) = b.inputs(node)
    if len(x_shape) == 3:  # a map's positions as tokens
        x = b.op("Reshape", [x, _i64(b, f"{n}/flat/shape", [0, d, -1])], f"{n}/flat",
                 f"{n}/flat")
        x = b.op("Transpose", [x], f"{n}/tokens", f"{n}/tokens", perm=[0, 2, 1])
    qkv = (_matmul_t(b, node, x, f"{n}/qkv", f"{n}/qkv", "qkv.weight", "qkv.bias")
           if a.project else x)
    per = 2 * kd + hd
    parts = {"q": (0, kd), "k": (kd, 2 * kd), "v": (2 * kd, per)}
    heads: dict[str, str] = {}
    if a.layout == "heads":  # [B, N, h, per] → [B, h, N, per], then each head's slices
        t = b.op("Reshape", [qkv, _i64(b, f"{n}/heads/shape", [0, -1, h, per])],
                 f"{n}/by_head", f"{n}/by_head")
        t = b.op("Transpose", [t], f"{n}/by_head/t", f"{n}/by_head/t", perm=[0, 2, 1, 3])
        for key, (lo, hi) in parts.items():
            heads[key] = _slice(b, t, f"{n}/{key}", 3, lo, hi)
    else:  # [q | k | v] along the features, heads consecutive in each
        for key, (lo, hi) in parts.items():
            part = _slice(b, qkv, f"{n}/{key}", 2, h * lo, h * hi)
            part = b.op("Reshape", [part, _i64(b, f"{n}/{key}/heads", [0, -1, h, hi - lo])],
                        f"{n}/{key}/split", f"{n}/{key}/split")
            heads[key] = b.op("Transpose", [part], f"{n}/{key}/t", f"{n}/{key}/t",
                              perm=[0, 2, 1, 3])
    q, k, v = heads["q"], heads["k"], heads["v"]  # [B, h, N, d]
    if b.opset >= ops.ATTENTION_OPSET:
        o = b.op("Attention", [q, k, v], f"{n}/attended", f"{n}/attended",
                 scale=1 / math.sqrt(kd))
    else:
        q = b.op("Mul", [q, b.const(f"{n}/scale", 1 / math.sqrt(kd))], f"{n}/qs", f"{n}/qs")
        kt = b.op("Transpose", [k], f"{n}/kt", f"{n}/kt", perm=[0, 1, 3, 2])
        s_ = b.op("MatMul", [q, kt], f"{n}/scores", f"{n}/scores")
        # the last axis: before opset 13 Softmax flattens from ``axis`` on, the same here
        p = b.op("Softmax", [s_], f"{n}/weights", f"{n}/weights", axis=3)
        o = b.op("MatMul", [p, v], f"{n}/attended", f"{n}/attended")
    o = b.op("Transpose", [o], f"{n}/joined", f"{n}/joined", perm=[0, 2, 1, 3])
    join = _i64(b, f"{n}/join", [0, -1, h * hd])
    if len(x_shape) == 2 and not a.project:  # the joined heads are the output
        b.op("Reshape", [o, join], b.out(node), n)
        return
    o = b.op("Reshape", [o, join], f"{n}/heads", f"{n}/heads")
    _project_out(b, node, o, x_shape)


def _project_out(b: Builder, node: Node, o: str, x_shape: tuple[int, ...]) -> None:
    """The joined heads [B, N, heads·d] · proj (the layer's, when it has one), as
    tokens, or laid back out as the map."""
    n = node.name
    if len(x_shape) == 2:
        _matmul_t(b, node, o, b.out(node), n, "proj.weight", "proj.bias")
        return
    if _args(node).project:
        o = _matmul_t(b, node, o, f"{n}/proj", f"{n}/proj", "proj.weight", "proj.bias")
    o = b.op("Transpose", [o], f"{n}/map", f"{n}/map", perm=[0, 2, 1])
    c = node.shape[0]
    if b.dynamic:  # [B, C_out, H, W], H and W read from the input at run time
        hw = _slice(b, b.op("Shape", b.inputs(node)[:1], f"{n}/in_shape", f"{n}/in_shape"),
                    f"{n}/hw", 0, 2, 4)
        shape = b.op("Concat", [_i64(b, f"{n}/bc", [0, c]), hw], f"{n}/shape", f"{n}/shape",
                     axis=0)
    else:
        shape = _i64(b, f"{n}/shape", [0, *node.shape])
    b.op("Reshape", [o, shape], b.out(node), n)


# ------------------------------------------------------------------ Swin
def window_attention(b: Builder, node: Node) -> None:
    """torchvision's shifted-window attention on [B, C, H, W]: padded to whole windows
    (Concat with zeros, bottom then right: netspec never emits Pad), rolled by −shift
    (Slice and Concat), cut into windows (Reshape, Transpose, Reshape to [B·windows, n,
    C]); q, k, v from the qkv MatMul, per head; MatMul(q·head_dim^−½, kᵀ) plus one
    constant, the relative position bias with the shifted windows' −100 mask already
    added ([windows, heads, n, n], or [1, heads, n, n] unshifted); Softmax; MatMul(·v);
    the heads joined and projected; the windows put back, rolled back, cropped. The same
    form at every opset (ONNX's Attention takes one mask for all the batch, not one per
    window). The spec's size is baked in: dynamic.py refuses --dynamic-size here."""
    a = _args(node)
    c, h, w = _in_shape(b, node)
    (hp, wp), (sh, sw) = a.layout(h, w)
    wh, ww = pair(a.window)
    heads, n = a.heads, node.name
    hd, size, windows = c // heads, wh * ww, hp * wp // (wh * ww)
    (x,) = b.inputs(node)

    def step(op_type: str, ins: list[str], key: str, **attrs: Any) -> str:
        return b.op(op_type, ins, f"{n}/{key}", f"{n}/{key}", **attrs)

    def cut(t: str, key: str, axis: int, start: int, stop: int, out: str | None = None
            ) -> str:
        ins = [t, _i64(b, f"{n}/{key}/starts", [start]), _i64(b, f"{n}/{key}/ends", [stop]),
               _i64(b, f"{n}/{key}/axes", [axis])]
        return b.op("Slice", ins, out or f"{n}/{key}", f"{n}/{key}")

    if (hp, wp) != (h, w):  # zeros [B, C, rows, W] below, then [B, C, Hp, cols] right
        batch = cut(step("Shape", [x], "xshape"), "batch", 0, 0, 1)
        zero = b.const(f"{n}/zero", np.zeros((1, 1, 1, 1)))
        for axis, rows, rest in ((2, hp - h, [c, hp - h, w]), (3, wp - w, [c, hp, wp - w])):
            if rows:
                shape = step("Concat", [batch, _i64(b, f"{n}/pad{axis}/rest", rest)],
                             f"pad{axis}/shape", axis=0)
                zeros = step("Expand", [zero, shape], f"pad{axis}/zeros")
                x = step("Concat", [x, zeros], f"pad{axis}", axis=axis)

    def roll(t: str, key: str, axis: int, length: int, by: int, out: str | None = None
             ) -> str:
        """torch.roll by −``by``: the part from ``by`` on, then the first ``by``."""
        parts = [cut(t, f"{key}/tail", axis, by, length), cut(t, f"{key}/head", axis, 0, by)]
        return b.op("Concat", parts, out or f"{n}/{key}", f"{n}/{key}", axis=axis)

    if sh:
        x = roll(x, "shift_h", 2, hp, sh)
    if sw:
        x = roll(x, "shift_w", 3, wp, sw)
    # [B, C, Hp/wh, wh, Wp/ww, ww] → [B, Hp/wh, Wp/ww, wh, ww, C] → [B·windows, n, C]
    x = step("Reshape", [x, _i64(b, f"{n}/grid/shape", [0, c, hp // wh, wh, wp // ww, ww])],
             "grid")
    x = step("Transpose", [x], "windows/t", perm=[0, 2, 4, 3, 5, 1])
    x = step("Reshape", [x, _i64(b, f"{n}/windows/shape", [-1, size, c])], "windows")
    qkv = _matmul_t(b, node, x, f"{n}/qkv", f"{n}/qkv", "qkv.weight", "qkv.bias")
    qkv_heads = {}
    for i, key in enumerate("qkv"):
        part = cut(qkv, key, 2, i * c, (i + 1) * c)
        part = step("Reshape", [part, _i64(b, f"{n}/{key}/heads", [0, -1, heads, hd])],
                    f"{key}/split")
        qkv_heads[key] = step("Transpose", [part], f"{key}/t", perm=[0, 2, 1, 3])
    q = step("Mul", [qkv_heads["q"], b.const(f"{n}/scale", hd ** -0.5)], "qs")
    kt = step("Transpose", [qkv_heads["k"]], "kt", perm=[0, 1, 3, 2])
    scores = step("MatMul", [q, kt], "scores")
    bias = _window_bias(b, node, (hp, wp), (sh, sw))
    if sh or sw:  # one mask per window: the windows get an axis of their own
        scores = step("Reshape", [scores, _i64(b, f"{n}/by_window/shape",
                                               [-1, windows, heads, size, size])], "by_window")
        scores = step("Add", [scores, bias], "biased/windows")
        scores = step("Reshape", [scores, _i64(b, f"{n}/biased/shape",
                                               [-1, heads, size, size])], "biased")
    else:
        scores = step("Add", [scores, bias], "biased")
    weights = step("Softmax", [scores], "weights", axis=3)  # the last axis at every opset
    o = step("MatMul", [weights, qkv_heads["v"]], "attended")
    o = step("Transpose", [o], "joined", perm=[0, 2, 1, 3])
    o = step("Reshape", [o, _i64(b, f"{n}/heads/shape", [-1, size, c])], "heads")
    o = _matmul_t(b, node, o, f"{n}/proj", f"{n}/proj", "proj.weight", "proj.bias")
    # back: [B, Hp/wh, Wp/ww, wh, ww, C] → [B, C, Hp/wh, wh, Wp/ww, ww] → [B, C, Hp, Wp]
    o = step("Reshape", [o, _i64(b, f"{n}/ungrid/shape",
                                 [-1, hp // wh, wp // ww, wh, ww, c])], "ungrid")
    o = step("Transpose", [o], "map/t", perm=[0, 5, 1, 3, 2, 4])
    tail = [k for k, on in (("h", sh), ("w", sw), ("crop", (hp, wp) != (h, w))) if on]
    last = b.out(node)
    o = b.op("Reshape", [o, _i64(b, f"{n}/map/shape", [0, c, hp, wp])],
             last if not tail else f"{n}/map", f"{n}/map")
    if sh:
        o = roll(o, "unshift_h", 2, hp, hp - sh, last if tail[-1] == "h" else None)
    if sw:
        o = roll(o, "unshift_w", 3, wp, wp - sw, last if tail[-1] == "w" else None)
    if (hp, wp) != (h, w):
        ins = [o, _i64(b, f"{n}/crop/starts", [0, 0]), _i64(b, f"{n}/crop/ends", [h, w]),
               _i64(b, f"{n}/crop/axes", [2, 3])]
        b.op("Slice", ins, last, f"{n}/crop")


def _window_bias(b: Builder, node: Node, padded: tuple[int, int],
                 shift: tuple[int, int]) -> str:
    """The constant added to every window's scores: each head's relative position bias
    (the table's rows the index names, [heads, n, n]), plus, for shifted windows, −100
    between positions from different regions: [windows, heads, n, n], else [1, heads,
    n, n]. Summed in float64, rounded once to the model's dtype."""
    a = _args(node)
    window = pair(a.window)
    size = window[0] * window[1]
    table = b.plan.tensors[f"{node.name}.relative_position_bias_table"].astype(np.float64)
    index = np.asarray(relative_position_index(window))
    bias = table[index].reshape(size, size, -1).transpose(2, 0, 1)[None]
    if any(shift):
        hp, wp = padded
        regions = np.asarray(shifted_regions(padded, window, shift))
        # [Hp/wh, wh, Wp/ww, ww] → [windows, n], each window's positions row by row
        regions = regions.reshape(hp // window[0], window[0], wp // window[1], window[1])
        regions = regions.transpose(0, 2, 1, 3).reshape(-1, size)
        apart = regions[:, None, :] != regions[:, :, None]
        bias = bias + np.where(apart, -100.0, 0.0)[:, None]
    return b.const(f"{node.name}/bias", bias)


def patch_merge(b: Builder, node: Node) -> None:
    """x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2] (strided Slices, to
    the end of each axis: any even size), concatenated along the channels."""
    (x,) = b.inputs(node)
    n, end = node.name, np.iinfo(np.int64).max
    parts = []
    for i, (dh, dw) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
        ins = [x, _i64(b, f"{n}/{i}/starts", [dh, dw]), _i64(b, f"{n}/{i}/ends", [end, end]),
               _i64(b, f"{n}/{i}/axes", [2, 3]), _i64(b, f"{n}/{i}/steps", [2, 2])]
        parts.append(b.op("Slice", ins, f"{n}/{i}", f"{n}/{i}"))
    b.op("Concat", parts, b.out(node), n, axis=1)


# ------------------------------------------------------------------ pooling
def _ceil_mode(b: Builder, node: Node, a: WindowPool, dilation: tuple[int, int]) -> int:
    """torch drops a last ceil-mode window that would start in the right padding; ONNX's
    shape rule does not. Whenever that happens torch's size is the floor size, so we
    emit ceil_mode only where ceil and floor really differ and torch keeps the window."""
    if b.dynamic:  # dynamic.py admits only ceil pools that never drop a window
        return int(bool(a.ceil))
    _, h, w = _in_shape(b, node)
    k, s, p = pair(a.k), a.strides, pair(a.pad)
    floor = tuple((n + 2 * pi - di * (ki - 1) - 1) // si + 1
                  for n, ki, si, pi, di in zip((h, w), k, s, p, dilation, strict=True))
    return 0 if tuple(node.shape[1:]) == floor else 1


def _window_attrs(a: WindowPool) -> dict[str, Any]:
    p = pair(a.pad)
    return {"kernel_shape": list(pair(a.k)), "strides": list(a.strides),
            "pads": [p[0], p[1], p[0], p[1]]}


def maxpool(b: Builder, node: Node) -> None:
    a = _args(node)
    d = pair(a.dilation)
    b.op("MaxPool", b.inputs(node), b.out(node), node.name, **_window_attrs(a),
         dilations=list(d), ceil_mode=_ceil_mode(b, node, a, d))


def avgpool(b: Builder, node: Node) -> None:
    a = _args(node)
    b.op("AveragePool", b.inputs(node), b.out(node), node.name, **_window_attrs(a),
         ceil_mode=_ceil_mode(b, node, a, (1, 1)), count_include_pad=int(a.count_pad))


def _adaptive_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in]: row i averages torch's window floor(i·n/o) … ceil((i+1)·n/o)."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avgpool(b: Builder, node: Node) -> None:
    _, h, w = _in_shape(b, node)
    _, oh, ow = node.shape
    if b.dynamic or (oh, ow) == (1, 1):
        # one window, whatever the size (dynamic.py refuses any other output size)
        b.op("GlobalAveragePool", b.inputs(node), b.out(node), node.name)
        return
    if h % oh == 0 and w % ow == 0:  # equal windows: a plain AveragePool
        k = [h // oh, w // ow]
        b.op("AveragePool", b.inputs(node), b.out(node), node.name, kernel_shape=k, strides=k)
        return
    # unequal (overlapping) windows: exactly torch's averages as two matrix products,
    # x·A_wᵀ over the width, then A_h·(…) over the height
    b.chain(node, [
        ("MatMul", ["_", b.const(f"{node.name}/cols", _adaptive_matrix(w, ow).T)], {}),
        ("MatMul", [b.const(f"{node.name}/rows", _adaptive_matrix(h, oh)), "_"], {}),
    ])


# ------------------------------------------------------------------ layout, merges
def upsample(b: Builder, node: Node) -> None:
    a = _args(node)
    s = float(a.scale)
    attrs: dict[str, Any] = (
        # torch nearest: source index floor(dst / scale)
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
         "nearest_mode": "floor"} if a.mode == "nearest"
        # torch bilinear, align_corners=False
        else {"mode": "linear", "coordinate_transformation_mode": "half_pixel"})
    # roi is unused by these modes, but an input before opset 13: an empty tensor then
    roi = b.const(f"{node.name}/roi", [], np.float32) \
        if b.opset < ops.RESIZE_ROI_OPTIONAL_OPSET else ""
    # scales are float32 whatever the model's dtype
    b.op("Resize", [*b.inputs(node), roi,
                    b.const(f"{node.name}/scales", [1, 1, s, s], np.float32)],
         b.out(node), node.name, **attrs)


def dfl(b: Builder, node: Node) -> None:
    """[N, 4·bins, H, W] → [N, 4, bins, H, W] → softmax over the bins → Σ p_k·k."""
    bins = _args(node).bins
    _, h, w = b.graph[node.inputs[0]].shape
    # the positions flattened ([N, 4, bins, H·W]), so only the last Reshape needs H, W
    weight = b.plan.tensors[f"{node.name}.weight"].reshape(1, 1, bins, 1)
    axes = [2]
    reduce: tuple[str, list[str], dict[str, Any]] = (
        ("ReduceSum", ["_", b.const(f"{node.name}/axes", axes, np.int64)], {"keepdims": 0})
        if b.opset >= ops.REDUCESUM_AXES_INPUT_OPSET
        else ("ReduceSum", ["_"], {"axes": axes, "keepdims": 0}))
    # before opset 13 Softmax flattens every axis from ``axis`` on: the bins go last
    softmax: list[tuple[str, list[str], dict[str, Any]]] = (
        [("Softmax", ["_"], {"axis": 2})] if b.opset >= ops.SOFTMAX_ONE_AXIS_OPSET else
        [("Transpose", ["_"], {"perm": [0, 1, 3, 2]}), ("Softmax", ["_"], {"axis": 3}),
         ("Transpose", ["_"], {"perm": [0, 1, 3, 2]})])
    if b.dynamic:  # [N, 4, H, W]: the input's H, W read at run time
        x = b.inputs(node)[0]
        n = node.name
        hw = b.op("Slice", [b.op("Shape", [x], f"{n}/inshape", f"{n}/inshape"),
                            b.const(f"{n}/from", [2], np.int64),
                            b.const(f"{n}/to", [4], np.int64)], f"{n}/hw", f"{n}/hw")
        out_shape = b.op("Concat", [b.const(f"{n}/lead", [0, 4], np.int64), hw],
                         f"{n}/outshape", f"{n}/outshape", axis=0)
    else:
        out_shape = b.const(f"{node.name}/outshape", [0, 4, h, w], np.int64)
    b.chain(node, [
        ("Reshape", ["_", b.const(f"{node.name}/bins", [0, 4, bins, -1], np.int64)], {}),
        *softmax,
        ("Mul", ["_", b.const(f"{node.name}.weight", weight)], {}),
        reduce,
        ("Reshape", ["_", out_shape], {}),
    ])


def add(b: Builder, node: Node) -> None:
    ins = b.inputs(node)
    b.op("Add" if len(ins) == 2 else "Sum", ins, b.out(node), node.name)


def mul(b: Builder, node: Node) -> None:
    # Mul broadcasts as numpy does, which is the kind's rule
    ins = b.inputs(node)
    b.chain(node, [("Mul", [ins[0], x], {}) if i == 0 else ("Mul", ["_", x], {})
                   for i, x in enumerate(ins[1:])])


def concat(b: Builder, node: Node) -> None:
    b.op("Concat", b.inputs(node), b.out(node), node.name, axis=1)


EMITTERS: dict[str, Emitter] = {
    "tokens": tokens,
    "map": to_map,
    "class_token": class_token,
    "pos_embed": pos_embed,
    "select": select,
    "attention": attention,
    "window_attention": window_attention,
    "patch_merge": patch_merge,
    "conv": conv,
    "conv_transpose": conv_transpose,
    "linear": linear,
    "batchnorm": batchnorm,
    "layernorm": layernorm,
    "instancenorm": instancenorm,
    "groupnorm": groupnorm,
    "rmsnorm": rmsnorm,
    "dropout": dropout,
    "drop_path": drop_path,
    "layer_scale": layer_scale,
    "relu": _unary("Relu"),
    "relu6": relu6,
    "gelu": gelu,
    "silu": silu,
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "leaky_relu": leaky_relu,
    "hardswish": hardswish,
    "hardsigmoid": hardsigmoid,
    "mish": mish,
    "elu": elu,
    "softplus": softplus,
    "softmax": softmax,
    "prelu": prelu,
    "shuffle": shuffle,
    "split": split,
    "mul": mul,
    "dfl": dfl,
    "maxpool": maxpool,
    "avgpool": avgpool,
    "adaptive_avgpool": adaptive_avgpool,
    "global_avgpool": _unary("GlobalAveragePool"),
    "flatten": _unary("Flatten", axis=1),
    "upsample": upsample,
    "add": add,
    "concat": concat,
}
