"""torch → Graph op: how each kind recognises itself in a PyTorch module (``netspec import``).

The inverse of layers.py: ``READERS`` maps every op to a :class:`Reader` that says which
module classes, functions and tensor methods it claims and reads a call of one of them
into the kind's spec options. Several readers may claim one target (``operator.mul`` is a
``mul`` of two tensors or a ``layer_scale`` by a parameter); the tracer asks each in turn
and the first that answers wins, so a reader answers None when the call is not its kind.
A reader raises :class:`Unmappable` when the call is its kind but in a form netspec has
no options for (a conv with reflect padding). tests/test_kinds_registry.py checks that
every op has exactly one entry.

Module classes are named by the class that defines their behaviour (its ``forward``), as
a qualified name, so torchvision's, timm's and Ultralytics' classes are recognised without
importing those libraries, and a subclass that keeps its base's forward is its base. A
class from outside torch is also known by its bare name wherever it is defined (a copy of
torchvision's StochasticDepth in a user's own code), its reader checking that it has the
attributes it reads.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from netspec.backends.torch.layers import add_into
from netspec.importer import movement
from netspec.importer.flat import Mapped, Unmappable
from netspec.kinds import Shape
from netspec.kinds.conv import Conv

#: how a traced tensor's memory relates to the netspec tensor it holds (batch first):
#: ``canonical`` [N, C, H, W] or [N, F]; ``channels_last`` [N, H, W, C] (ConvNeXt's
#: Permute → LayerNorm → Linear); ``other`` any view netspec has no layer for
CANONICAL, CHANNELS_LAST, OTHER = "canonical", "channels_last", "other"


@dataclass
class In:
    """A tensor argument as a reader sees it: the netspec shape it holds (no batch axis)
    and its layout; or, for a parameter the code reads directly (``self.layer_scale *
    x``), its source name and value."""

    shape: Shape
    layout: str = CANONICAL
    param: str | None = None
    value: torch.Tensor | None = None
    #: the parameter belongs to a module that has submodules: torch registers it before
    #: theirs (torchvision's ConvNeXt block holds its layer scale so)
    param_first: bool = False
    #: for a parameter: its own shape, before any view the code took of it (timm's
    #: ConvNeXt reads its 1-D gamma as ``gamma.reshape(1, -1, 1, 1)``)
    param_shape: Shape | None = None
    #: the traced value it stands for: two arguments that are one tensor have the same
    #: source (``attn(x, x, x)`` is self-attention); never compared by value
    source: Any = field(default=None, compare=False, repr=False)

    @property
    def is_param(self) -> bool:
        return self.param is not None


@dataclass
class Call:
    """One call the tracer met: a leaf module, a function or a tensor method."""

    path: str
    module: nn.Module | None
    target: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        """An argument of a function call, given by position ``i`` or by ``name``."""
        if name in self.kwargs:
            return self.kwargs[name]
        return self.args[i] if i < len(self.args) else default

    @property
    def tensors(self) -> list[In]:
        """The tensor arguments (a list argument's items included: ``torch.cat``)."""
        out: list[In] = []
        for a in (*self.args, *self.kwargs.values()):
            items = a if isinstance(a, list | tuple) else (a,)
            out += [x for x in items if isinstance(x, In)]
        return out

    @property
    def x(self) -> In:
        """The (first) tensor the call transforms."""
        ins = [t for t in self.tensors if not t.is_param]
        if not ins:
            raise Unmappable(f"{self.path}: {self.name} computes on constants only (the "
                             "module's own buffers or parameters, not a value from the "
                             "network's input), which no netspec layer does")
        return ins[0]

    @property
    def name(self) -> str:
        if self.module is not None:
            return type(self.module).__name__
        return getattr(self.target, "__name__", str(self.target))


ReadFn = Callable[[Call], "Mapped | None"]
#: (index map of a pending view, the source's netspec shape) → the kind's options, or
#: None when the view is not this kind
MovementFn = Callable[[torch.Tensor, Shape], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Reader:
    #: qualified names of the module classes (their behaviour class) this kind claims
    modules: tuple[str, ...] = ()
    #: functions (``call_function`` targets: the function, or for one from a library
    #: netspec does not import, its qualified name) and tensor method names it claims
    functions: tuple[Callable[..., Any] | str, ...] = ()
    methods: tuple[str, ...] = ()
    read: ReadFn | None = None
    #: for a kind that only moves values (flatten, shuffle): recognise it in a view
    movement: MovementFn | None = None
    #: whether a module of a claimed class is this kind's form: a class known by its
    #: bare name (timm's ``Attention``) that is something else in a user's code is then
    #: not a leaf, and is traced through
    fits: Callable[[nn.Module], bool] | None = None


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def behaviour_class(module: nn.Module) -> type:
    """The class whose ``forward`` the module runs: a subclass that keeps its base's
    forward behaves as that base."""
    for cls in type(module).__mro__:
        if "forward" in cls.__dict__:
            return cls
    return type(module)


# ---------------------------------------------------------------------------- helpers
def _one(v: Any) -> Any:
    """A pair as a spec writes it: one number when both are equal."""
    if isinstance(v, list | tuple):
        if len(v) == 1 or all(x == v[0] for x in v):
            return int(v[0])
        return [int(x) for x in v]
    return int(v)


def _need(call: Call, ok: bool, what: str) -> None:
    if not ok:
        raise Unmappable(f"{call.path}: {call.name} {what}, which netspec has no options for")


def _image(call: Call) -> In:
    x = call.x
    if x.layout != CANONICAL or len(x.shape) != 3:
        raise Unmappable(f"{call.path}: {call.name} on a {_described(x)} tensor; netspec "
                         "applies it to [C, H, W] maps")
    return x


def _tokens(call: Call) -> In:
    x = call.x
    if x.layout != CANONICAL or len(x.shape) != 2:
        raise Unmappable(f"{call.path}: {call.name} on a {_described(x)} tensor; netspec "
                         "applies it to [N, D] tokens")
    return x


def _described(x: In) -> str:
    if x.layout == CHANNELS_LAST:
        return "channels-last"
    if x.layout == OTHER:
        return "reshaped"
    return f"{len(x.shape)}-D"


def _weights(call: Call, *names: str) -> dict[str, str]:
    """The module's own tensors under netspec's names (the same names: weight, bias…)."""
    assert call.module is not None
    return {n: f"{call.path}.{n}" for n in names if getattr(call.module, n, None) is not None}


def _uniform(t: torch.Tensor | None, default: float) -> float:
    """A tensor's one value when all are equal (a fresh init), else ``default``."""
    if t is None or t.numel() == 0:
        return default
    flat = t.detach().flatten()
    if not bool((flat == flat[0]).all()):
        return default
    # the shortest decimal that is this value in the tensor's own precision: 1e-06,
    # not float32's 9.99999997e-07 widened
    kind = {torch.float16: np.float16, torch.float32: np.float32}.get(flat.dtype, np.float64)
    return float(np.format_float_positional(kind(flat[0].item()), unique=True, trim="-"))


def _elementwise(kind: str, options: Callable[[Call], dict[str, Any]] | None = None
                 ) -> ReadFn:
    def read(call: Call) -> Mapped:
        return Mapped(kind, options(call) if options else {}, inputs=[call.x],
                      keeps_layout=True)
    return read


# ---------------------------------------------------------------------------- convs
def _padding(call: Call, m: nn.Conv2d | nn.ConvTranspose2d) -> Any:
    _need(call, m.padding_mode == "zeros", f"pads with {m.padding_mode!r}")
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return 0
        # 'same' at stride 1: torch pads (d·(k−1))//2 before and the rest after
        total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size, strict=True)]
        _need(call, all(t % 2 == 0 for t in total), "pads 'same' unevenly")
        return _one([t // 2 for t in total])
    return _one(m.padding)


def read_conv(call: Call) -> Mapped:
    m = call.module
    assert isinstance(m, nn.Conv2d)
    _image(call)
    k = _one(m.kernel_size)
    options: dict[str, Any] = {"out": m.out_channels, "k": k}
    if _one(m.stride) != 1:
        options["stride"] = _one(m.stride)
    if _one(m.dilation) != 1:
        options["dilation"] = _one(m.dilation)
    pad = _padding(call, m)
    # written only where it is not the kind's own default, dilation·(k−1)//2
    if Conv(out=1, k=k, dilation=options.get("dilation", 1)).padding != tuple(
            pad if isinstance(pad, list) else (pad, pad)):
        options["pad"] = pad
    if m.groups != 1:
        options["groups"] = m.groups
    options["bias"] = m.bias is not None
    return Mapped("conv", options, _weights(call, "weight", "bias"))


def read_conv_transpose(call: Call) -> Mapped:
    m = call.module
    assert isinstance(m, nn.ConvTranspose2d)
    _image(call)
    options: dict[str, Any] = {"out": m.out_channels, "k": _one(m.kernel_size)}
    for name, value in (("stride", m.stride), ("pad", _padding(call, m)),
                        ("output_pad", m.output_padding), ("dilation", m.dilation)):
        if _one(value) != (1 if name in ("stride", "dilation") else 0):
            options[name] = _one(value)
    if m.groups != 1:
        options["groups"] = m.groups
    options["bias"] = m.bias is not None
    return Mapped("conv_transpose", options, _weights(call, "weight", "bias"))


def _read_linear_function(call: Call) -> Mapped:
    """``F.linear(x, weight, bias)`` with the module's own weight (timm's Linear)."""
    x = call.x
    weight, bias = call.arg(1, "weight"), call.arg(2, "bias")
    _need(call, isinstance(weight, In) and weight.is_param and weight.value is not None
          and (bias is None or (isinstance(bias, In) and bias.is_param)),
          "multiplies by a computed weight")
    assert isinstance(weight, In) and weight.value is not None and weight.param is not None
    options: dict[str, Any] = {"out": int(weight.value.shape[0]), "bias": bias is not None}
    if x.layout == CHANNELS_LAST:
        options["over"] = "channels"
    else:
        _need(call, x.layout == CANONICAL and len(x.shape) in (1, 2), f"reads a "
              f"{list(x.shape)} tensor (netspec's linear reads [F] features, [N, D] tokens "
              "or the channels of a map)")
    tensors = {"weight": weight.param}
    if isinstance(bias, In) and bias.param is not None:
        tensors["bias"] = bias.param
    return Mapped("linear", options, tensors, inputs=[x], keeps_layout=True)


def read_linear(call: Call) -> Mapped:
    m = call.module
    if m is None:
        return _read_linear_function(call)
    assert isinstance(m, nn.Linear)
    x = call.x
    options: dict[str, Any] = {"out": m.out_features, "bias": m.bias is not None}
    if qualname(behaviour_class(m)) == _NETSPEC + "LinearOverChannels":
        _image(call)
        options["over"] = "channels"
        return Mapped("linear", options, _weights(call, "weight", "bias"))
    if x.layout == CHANNELS_LAST:
        options["over"] = "channels"
    elif x.layout != CANONICAL or len(x.shape) not in (1, 2):
        raise Unmappable(f"{call.path}: Linear on a {_described(x)} tensor of "
                         f"{list(x.shape)}; netspec's linear reads [F] features, [N, D] "
                         "tokens, or the channels of a map")
    return Mapped("linear", options, _weights(call, "weight", "bias"), inputs=[x],
                  keeps_layout=True)


# ---------------------------------------------------------------------------- norms
def _eps(m: nn.Module, default: float = 1e-5) -> dict[str, Any]:
    """ε where it is not the kind's default (1e-5; rms norm's 1e-6)."""
    eps = getattr(m, "eps", default)
    if eps is None:  # nn.RMSNorm: the dtype's epsilon (float32 here)
        eps = torch.finfo(torch.float32).eps
    return {} if eps == default else {"eps": float(eps)}


def _read_batch_norm_function(call: Call) -> Mapped:
    """``F.batch_norm(x, mean, var, weight, bias, training, momentum, eps)`` with the
    statistics, γ and δ read as the module's own tensors (timm's BatchNormAct2d)."""
    x = call.x
    stats = [call.arg(i, n) for i, n in ((1, "running_mean"), (2, "running_var"),
                                         (3, "weight"), (4, "bias"))]
    _need(call, isinstance(stats[0], In) and stats[0].is_param and isinstance(stats[1], In)
          and stats[1].is_param, "normalises with batch statistics only")
    _need(call, x.layout == CANONICAL and len(x.shape) in (1, 3),
          f"normalises a {_described(x)} tensor")
    eps, momentum = float(call.arg(7, "eps", 1e-5)), call.arg(6, "momentum", 0.1)
    options: dict[str, Any] = {"kind": "batch", **({} if eps == 1e-5 else {"eps": eps})}
    if momentum != 0.1:
        options["momentum"] = float(momentum) if momentum else None
    names = ("running_mean", "running_var", "weight", "bias")
    tensors = {n: t.param for n, t in zip(names, stats, strict=True) if isinstance(t, In)}
    _need(call, ("weight" in tensors) == ("bias" in tensors), "has γ without δ")
    if "weight" not in tensors:
        options["affine"] = False
    return Mapped("norm", options, tensors, inputs=[x])  # type: ignore[arg-type]


def read_batchnorm(call: Call) -> Mapped:
    m = call.module
    if m is None:
        return _read_batch_norm_function(call)
    assert isinstance(m, nn.modules.batchnorm._BatchNorm)
    x = call.x
    _need(call, m.track_running_stats, "keeps no running statistics")
    _need(call, x.layout == CANONICAL and len(x.shape) in (1, 3),
          f"normalises a {_described(x)} tensor")
    options: dict[str, Any] = {"kind": "batch", **_eps(m)}
    if m.momentum != 0.1:
        options["momentum"] = m.momentum
    if not m.affine:
        options["affine"] = False
    return Mapped("norm", options, _weights(call, "weight", "bias", "running_mean",
                                           "running_var"))


#: the layer norms over the channels of an NCHW map, by class (they permute inside)
LAYERNORM2D = ("torchvision.models.convnext.LayerNorm2d", "timm.layers.norm.LayerNorm2d",
               "netspec.backends.torch.layers.LayerNormOverChannels")
#: netspec's own modules (layers.py), so a model netspec built imports back
_NETSPEC = "netspec.backends.torch.layers."


def _read_layer_norm_function(call: Call) -> Mapped:
    """``F.layer_norm(x, shape, weight, bias, eps)`` with γ, δ read as parameters."""
    x = call.x
    shape = tuple(call.arg(1, "normalized_shape"))
    weight, bias = call.arg(2, "weight"), call.arg(3, "bias")
    eps = float(call.arg(4, "eps", 1e-5))
    options: dict[str, Any] = {"kind": "layer", **({} if eps == 1e-5 else {"eps": eps})}
    if x.layout == CHANNELS_LAST and shape == (x.shape[0],):
        options["over"] = "channels"
    elif not (x.layout == CANONICAL and shape == tuple(x.shape[-1:]) and len(x.shape) in (1, 2)):
        raise Unmappable(f"{call.path}: layer_norm over {list(shape)} of a {_described(x)} "
                         "tensor has no netspec form")
    if weight is None:
        options["affine"] = "none"
        return Mapped("norm", options, inputs=[x], keeps_layout=True)
    _need(call, isinstance(weight, In) and weight.is_param and isinstance(bias, In)
          and bias.is_param, "normalises with computed γ, δ")
    return Mapped("norm", options, {"weight": weight.param, "bias": bias.param},
                  inputs=[x], keeps_layout=True)


def read_layernorm(call: Call) -> Mapped:
    """nn.LayerNorm over the channels of channels-last data or over a [F] vector; or over
    (C, H, W) with per-element γ, δ; torchvision's and timm's LayerNorm2d over the
    channels of an NCHW map."""
    m = call.module
    if m is None:
        return _read_layer_norm_function(call)
    if qualname(behaviour_class(m)) not in (qualname(nn.LayerNorm),):
        return read_layernorm2d(call)  # type: ignore[return-value]
    x = call.x
    _need(call, m.elementwise_affine == (m.bias is not None) or not m.elementwise_affine,
          "has γ without δ")
    shape = tuple(m.normalized_shape)
    options: dict[str, Any] = {"kind": "layer", **_eps(m)}
    if x.layout == CHANNELS_LAST and shape == (x.shape[0],):
        options["over"] = "channels"
    elif x.layout == CANONICAL and len(x.shape) in (1, 2) and shape == tuple(x.shape[-1:]):
        pass  # [F] features, or each token's D
    elif x.layout == CANONICAL and shape == tuple(x.shape) and len(shape) == 3:
        options["affine"] = "element"
    else:
        raise Unmappable(f"{call.path}: LayerNorm over {list(shape)} of a {_described(x)} "
                         f"{list(x.shape)} tensor has no netspec form")
    if not m.elementwise_affine:
        options["affine"] = "none"
    return Mapped("norm", options, _weights(call, "weight", "bias"), inputs=[x],
                  keeps_layout=True)


def read_layernorm2d(call: Call) -> Mapped | None:
    """torchvision's and timm's LayerNorm2d (and netspec's own): nn.LayerNorm over the
    channels of an NCHW map."""
    m = call.module
    if not isinstance(m, nn.LayerNorm):
        return None
    _image(call)
    options: dict[str, Any] = {"kind": "layer", "over": "channels", **_eps(m)}
    if not m.elementwise_affine:
        options["affine"] = "none"
    return Mapped("norm", options, _weights(call, "weight", "bias"))


def read_groupnorm(call: Call) -> Mapped:
    m = call.module
    assert isinstance(m, nn.GroupNorm)
    _image(call)
    if m.num_groups == 1:  # one group: a layer norm over channels and space (timm's GroupNorm1)
        options: dict[str, Any] = {"kind": "layer", **_eps(m)}
        if not m.affine:
            options["affine"] = "none"
        return Mapped("norm", options, _weights(call, "weight", "bias"))
    options = {"kind": "group", "groups": m.num_groups, **_eps(m)}
    if not m.affine:
        options["affine"] = False
    return Mapped("norm", options, _weights(call, "weight", "bias"))


def read_instancenorm(call: Call) -> Mapped:
    m = call.module
    assert isinstance(m, nn.InstanceNorm2d)
    _image(call)
    _need(call, not m.track_running_stats, "keeps running statistics")
    options: dict[str, Any] = {"kind": "instance", **_eps(m)}
    if not m.affine:
        options["affine"] = False
    return Mapped("norm", options, _weights(call, "weight", "bias"))


def read_rmsnorm(call: Call) -> Mapped:
    m = call.module
    x = call.x
    options: dict[str, Any] = {"kind": "rms", **_eps(m, 1e-6)}
    if qualname(behaviour_class(m)) == _NETSPEC + "RMSNorm":  # netspec's own, on NCHW too
        if m.over != "channels":
            options["over"] = m.over
        if m.weight is None:
            options["affine"] = False
        return Mapped("norm", options, _weights(call, "weight"), inputs=[x])
    shape = tuple(m.normalized_shape)
    if x.layout == CHANNELS_LAST and shape == (x.shape[0],):
        options["over"] = "channels"
    elif not (x.layout == CANONICAL and len(x.shape) == 1 and shape == tuple(x.shape)):
        raise Unmappable(f"{call.path}: RMSNorm over {list(shape)} of a {_described(x)} "
                         "tensor has no netspec form")
    if m.weight is None:
        options["affine"] = False
    return Mapped("norm", options, _weights(call, "weight"), inputs=[x], keeps_layout=True)


# ---------------------------------------------------------------------------- dropout
def read_dropout(call: Call) -> Mapped:
    m = call.module
    if m is not None and hasattr(m, "keep"):  # netspec's classic dropout
        options: dict[str, Any] = {"keep": float(m.keep), "scaling": "classic"}
        if m.channel:
            options["kind"] = "channel"
        return Mapped("dropout", options, inputs=[call.x], keeps_layout=True)
    if call.module is not None:
        p = float(call.module.p)
        channel = isinstance(call.module, nn.Dropout2d)
    else:
        p = float(call.arg(1, "p", 0.5))
        channel = call.target is F.dropout2d
    options = {"drop": p}
    if channel:
        options["kind"] = "channel"
    return Mapped("dropout", options, inputs=[call.x], keeps_layout=True)


def read_drop_path(call: Call) -> Mapped | None:
    m = call.module
    assert m is not None
    if not (hasattr(m, "p") or hasattr(m, "drop_prob")):
        return None  # a class of that name that is something else
    mode = getattr(m, "mode", "row")
    _need(call, mode == "row", f"drops in mode {mode!r}")
    _need(call, getattr(m, "scale_by_keep", True), "does not scale by keep")
    p = getattr(m, "p", None)
    if p is None:
        p = getattr(m, "drop_prob", 0.0)
    return Mapped("drop_path", {"drop": float(p)}, inputs=[call.x], keeps_layout=True)


# ---------------------------------------------------------------------------- activations
def _slope(call: Call) -> dict[str, Any]:
    slope = call.module.negative_slope if call.module else call.arg(1, "negative_slope", 0.01)
    return {} if slope == 0.01 else {"slope": float(slope)}


def _alpha(call: Call) -> dict[str, Any]:
    alpha = call.module.alpha if call.module else call.arg(1, "alpha", 1.0)
    return {} if alpha == 1.0 else {"alpha": float(alpha)}


def _beta_threshold(call: Call) -> dict[str, Any]:
    m = call.module
    beta = m.beta if m else call.arg(1, "beta", 1.0)
    threshold = m.threshold if m else call.arg(2, "threshold", 20.0)
    return ({} if beta == 1.0 else {"beta": float(beta)}) | \
        ({} if threshold == 20.0 else {"threshold": float(threshold)})


def _approximate(call: Call) -> dict[str, Any]:
    a = call.module.approximate if call.module else call.arg(1, "approximate", "none")
    return {} if a == "none" else {"approximate": a}


def read_relu6(call: Call) -> Mapped | None:
    m = call.module
    if isinstance(m, nn.Hardtanh) and (m.min_val, m.max_val) != (0.0, 6.0):
        return None  # a Hardtanh of other bounds: no kind
    return Mapped("relu6", inputs=[call.x], keeps_layout=True)


def read_softmax(call: Call) -> Mapped:
    x = call.x
    dim = call.module.dim if call.module else call.arg(1, "dim")
    rank = len(x.shape) + 1
    _need(call, x.layout == CANONICAL and dim is not None and dim % rank == 1,
          f"normalises over dim {dim} of a {_described(x)} tensor")
    return Mapped("softmax", inputs=[x])


def read_prelu(call: Call) -> Mapped:
    m = call.module
    assert isinstance(m, nn.PReLU)
    x = call.x
    options: dict[str, Any] = {}
    if m.num_parameters > 1:
        _need(call, x.layout == CANONICAL, "has one slope per channel of a permuted tensor")
        options["per_channel"] = True
    init = _uniform(m.weight, 0.25)
    if init != 0.25:
        options["init"] = init
    return Mapped("prelu", options, _weights(call, "weight"), inputs=[x],
                  keeps_layout=not options.get("per_channel"))


# ---------------------------------------------------------------------------- pools
def _window(call: Call, names: Sequence[str]) -> dict[str, Any]:
    """A pool's window options from its module or its function's arguments."""
    m = call.module
    get = (lambda i, n, d: getattr(m, n)) if m is not None else call.arg
    k = _one(get(1, names[0], None))
    stride = get(2, names[1], None)
    stride = k if stride is None or stride == [] or stride == () else _one(stride)
    options: dict[str, Any] = {"k": k}
    if stride != k:
        options["stride"] = stride
    pad = _one(get(3, names[2], 0))
    if pad != 0:
        options["pad"] = pad
    return options


def read_maxpool(call: Call) -> Mapped:
    _image(call)
    options = _window(call, ("kernel_size", "stride", "padding"))
    m = call.module
    dilation = _one(m.dilation if m is not None else call.arg(4, "dilation", 1))
    ceil = m.ceil_mode if m is not None else call.arg(5, "ceil_mode", False)
    indices = m.return_indices if m is not None else call.arg(6, "return_indices", False)
    _need(call, not indices, "returns indices")
    if dilation != 1:
        options["dilation"] = dilation
    if ceil:
        options["ceil"] = True
    return Mapped("maxpool", options)


def read_avgpool(call: Call) -> Mapped:
    _image(call)
    options = _window(call, ("kernel_size", "stride", "padding"))
    m = call.module
    ceil = m.ceil_mode if m is not None else call.arg(4, "ceil_mode", False)
    count = m.count_include_pad if m is not None else call.arg(5, "count_include_pad", True)
    divisor = m.divisor_override if m is not None else call.arg(6, "divisor_override")
    _need(call, divisor is None, "divides by a fixed number")
    if ceil:
        options["ceil"] = True
    if not count:
        options["count_pad"] = False
    return Mapped("avgpool", options)


def _adaptive_size(call: Call) -> tuple[int, int]:
    size = call.module.output_size if call.module is not None else call.arg(1, "output_size")
    size = (size, size) if isinstance(size, int) else tuple(size)
    _need(call, None not in size, "keeps an axis's size (None)")
    return (int(size[0]), int(size[1]))


def read_global_avgpool(call: Call) -> Mapped | None:
    if call.target in (torch.mean, "mean"):
        x = call.x
        dims = call.arg(1, "dim")
        keep = call.arg(2, "keepdim", False)
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        if x.layout != CANONICAL or len(x.shape) != 3 or {d % 4 for d in dims} != {2, 3}:
            return None
        c = x.shape[0]
        return Mapped("global_avgpool", inputs=[x], view=None if keep else (1, c))
    _image(call)
    return Mapped("global_avgpool") if _adaptive_size(call) == (1, 1) else None


def read_adaptive_avgpool(call: Call) -> Mapped | None:
    _image(call)
    size = _adaptive_size(call)
    if size == (1, 1):
        return None  # global_avgpool's
    return Mapped("adaptive_avgpool", {"size": _one(size)})


# ---------------------------------------------------------------------------- reshapes
def _on_numpy(recognise: Callable[[np.ndarray, Shape], dict[str, Any] | None]
              ) -> MovementFn:
    return lambda index, source: recognise(index.numpy(), source)


def read_shuffle(call: Call) -> Mapped:
    _image(call)
    groups = call.module.groups if call.module is not None else call.arg(1, "groups")
    return Mapped("shuffle", {"groups": int(groups)})


def read_upsample(call: Call) -> Mapped:
    x = _image(call)
    m = call.module
    if m is not None:
        size, scale, mode, corners = m.size, m.scale_factor, m.mode, m.align_corners
    else:
        size, scale = call.arg(1, "size"), call.arg(2, "scale_factor")
        mode, corners = call.arg(3, "mode", "nearest"), call.arg(4, "align_corners")
    if size is not None:
        size = (size, size) if isinstance(size, int) else tuple(size)
        ratios = {s / n for s, n in zip(size, x.shape[1:], strict=True)}
        _need(call, len(ratios) == 1, f"resizes to {list(size)}, not by one scale")
        scale = ratios.pop()
    scale = scale[0] if isinstance(scale, list | tuple) and len(set(scale)) == 1 else scale
    _need(call, isinstance(scale, int | float) and float(scale).is_integer(),
          f"resizes by {scale}")
    _need(call, mode in ("nearest", "bilinear") and not corners,
          f"interpolates in mode {mode!r}" + (" with align_corners" if corners else ""))
    options: dict[str, Any] = {"scale": int(scale)}
    if mode != "nearest":
        options["mode"] = mode
    return Mapped("upsample", options)


# ---------------------------------------------------------------------------- merges
def _tensor_pair(call: Call) -> tuple[In, In] | None:
    a, b = call.arg(0, "input"), call.arg(1, "other")
    if not (isinstance(a, In) and isinstance(b, In)):
        return None
    return a, b


def read_add(call: Call) -> Mapped | None:
    pair = _tensor_pair(call)
    if pair is None or any(t.is_param for t in pair):
        return None
    _need(call, call.arg(2, "alpha", 1) == 1, "scales its second term")
    a, b = pair
    _need(call, a.shape == b.shape and a.layout == b.layout,
          f"adds {list(a.shape)} to {list(b.shape)} (netspec's add needs equal shapes)")
    return Mapped("add", inputs=[a, b], keeps_layout=True)


def read_mul(call: Call) -> Mapped | None:
    pair = _tensor_pair(call)
    if pair is None or any(t.is_param for t in pair):
        return None
    a, b = pair
    _need(call, a.layout == b.layout == CANONICAL, "multiplies permuted tensors")
    return Mapped("mul", inputs=[a, b])


def read_concat(call: Call) -> Mapped:
    xs = list(call.arg(0, "tensors"))
    dim = call.arg(1, "dim", 0)
    rank = len(xs[0].shape) + 1
    _need(call, not any(isinstance(x, In) and x.is_param for x in xs),
          "joins a parameter to the traced tensors (other than a class token put first)")
    _need(call, all(isinstance(x, In) and x.layout == CANONICAL for x in xs)
          and dim % rank == 1, f"joins along dim {dim}")
    return Mapped("concat", inputs=xs)


def read_split(call: Call) -> Mapped:
    x = call.x
    rank = len(x.shape) + 1
    dim = call.arg(2 if call.target is not operator.getitem else 1, "dim", 0)
    _need(call, x.layout == CANONICAL and dim % rank == 1, f"splits along dim {dim}")
    c = x.shape[0]
    name = call.target if isinstance(call.target, str) else call.target.__name__
    if name == "chunk":
        n = int(call.arg(1, "chunks"))
        size = -(-c // n)
        sizes = [min(size, c - i) for i in range(0, c, size)]
    else:
        how = call.arg(1, "split_size_or_sections")
        if how is None:
            how = call.arg(1, "split_size")
        if isinstance(how, int):
            sizes = [min(how, c - i) for i in range(0, c, how)]
        else:
            sizes = [int(s) for s in how]
    options = {"parts": len(sizes)} if len(set(sizes)) == 1 else {"sizes": sizes}
    return Mapped("split", options, inputs=[x], parts=sizes)


# ---------------------------------------------------------------------------- others
def _per_channel(shape: Sequence[int], x: In) -> bool:
    """Whether a tensor of ``shape`` multiplied onto x scales each of its channels (a
    map's C, a token's D, a vector's F) by one value, as torch broadcasts it."""
    if x.layout == CHANNELS_LAST or len(x.shape) < 3:
        want: tuple[int, ...] = (x.shape[0] if x.layout == CHANNELS_LAST else x.shape[-1],)
    else:
        want = (x.shape[0], 1, 1)
    got = tuple(int(d) for d in shape)
    while len(got) > len(want) and got[0] == 1:  # leading ones broadcast over the batch
        got = got[1:]
    return got == want


def read_layer_scale(call: Call) -> Mapped | None:
    """``γ * x`` with γ a parameter of one value per channel (per feature of [F] features,
    per feature of each [N, D] token)."""
    options: dict[str, Any] = {}
    if call.module is not None:  # timm's LayerScale / LayerScale2d, netspec's own
        attr = "gamma" if hasattr(call.module, "gamma") else "weight"
        gamma = getattr(call.module, attr)
        x = call.x
        source = f"{call.path}.{attr}"
        own = tuple(gamma.shape)
        used = own
        if x.layout == CANONICAL and len(x.shape) == 3 and len(own) == 1:
            used = (*own, 1, 1)  # LayerScale2d views its [C] as [1, C, 1, 1], netspec's too
    else:
        pair = _tensor_pair(call)
        if pair is None or [t.is_param for t in pair].count(True) != 1:
            return None
        g, x = pair if pair[0].is_param else pair[::-1]
        gamma, source = g.value, g.param
        assert gamma is not None
        used = tuple(gamma.shape)
        own = g.param_shape or used
        if g.param_first:
            options["register_first"] = True
    assert gamma is not None and source is not None
    _need(call, _per_channel(used, x), f"multiplies a {_described(x)} {list(x.shape)} "
          f"tensor by a parameter of shape {list(used)}")
    if x.layout == CANONICAL and len(x.shape) == 3 and len(own) == 1:
        options["flat"] = True  # a 1-D γ on a map (timm's): the shape its weights pair by
    init = _uniform(gamma, 1e-6)
    if init != 1e-6:
        options = {"init": init, **options}
    return Mapped("layer_scale", options, {"weight": source}, inputs=[x], keeps_layout=True)


def read_dfl(call: Call) -> Mapped | None:
    m = call.module
    assert m is not None
    _image(call)
    if hasattr(m, "bins"):  # netspec's own
        return Mapped("dfl", {"bins": int(m.bins)}, _weights(call, "weight"))
    if not (hasattr(m, "c1") and isinstance(getattr(m, "conv", None), nn.Conv2d)):
        return None
    return Mapped("dfl", {"bins": int(m.c1)}, {"weight": f"{call.path}.conv.weight"})


# ---------------------------------------------------------------------------- tokens
#: netspec's own token modules (tokens.py), so a built model imports back
_NETSPEC_TOKENS = "netspec.backends.torch.tokens."


def read_tokens(call: Call) -> Mapped:
    """netspec's Tokens module; any other spelling (torchvision's reshape and permute) is
    an index map that movement.tokens recognises."""
    _image(call)
    return Mapped("tokens")


def read_to_map(call: Call) -> Mapped:
    m = call.module
    assert m is not None
    x = _tokens(call)
    return Mapped("map", {"size": [int(m.h), int(m.w)]}, inputs=[x])


def read_class_token(call: Call) -> Mapped | None:
    """netspec's ClassToken, or ``torch.cat([token.expand(n, -1, -1), x], dim=1)`` with
    the token a [1, 1, D] parameter (torchvision's and timm's ViT): the expand to the
    batch is the tracer's (at batch 1 it leaves the parameter as it is)."""
    if call.module is not None:
        x = _tokens(call)
        return Mapped("class_token", {}, _weights(call, "token"), inputs=[x])
    xs = call.arg(0, "tensors")
    if not isinstance(xs, list | tuple) or len(xs) != 2:
        return None
    tok, x = xs
    if not (isinstance(tok, In) and tok.is_param and isinstance(x, In) and not x.is_param):
        return None  # a concatenation (a parameter after the tokens is refused there)
    if x.layout != CANONICAL or len(x.shape) != 2:
        return None
    dim = call.arg(1, "dim", 0)
    d = x.shape[1]
    assert tok.value is not None
    _need(call, dim % 3 == 1 and tuple(tok.value.shape) == (1, 1, d),
          f"puts a parameter of shape {list(tok.value.shape)} before [N, D] = "
          f"{list(x.shape)} tokens along dim {dim}")
    # its init (torchvision's zeros, timm's N(0, 1e-6²)) cannot be told from trained
    # values: the spec says 0, the default; the weights carry the values
    options: dict[str, Any] = {"register_first": True} if tok.param_first else {}
    return Mapped("class_token", options, {"token": str(tok.param)}, inputs=[x])


def read_pos_embed(call: Call) -> Mapped | None:
    """netspec's PosEmbed, or ``x + pos_embedding`` with a [1, N, D] (or [N, D])
    parameter added to [N, D] tokens (torchvision's Encoder, timm's ViT)."""
    if call.module is not None:
        x = _tokens(call)
        return Mapped("pos_embed", {}, _weights(call, "weight"), inputs=[x])
    pair = _tensor_pair(call)
    if pair is None or [t.is_param for t in pair].count(True) != 1:
        return None
    p, x = pair if pair[0].is_param else pair[::-1]
    if x.layout != CANONICAL or len(x.shape) != 2:
        return None  # a parameter added to a map or features: no kind (add refuses)
    assert p.value is not None
    shape = tuple(p.value.shape)
    _need(call, call.arg(2, "alpha", 1) == 1 and shape in ((1, *x.shape), tuple(x.shape)),
          f"adds a parameter of shape {list(shape)} to {list(x.shape)} tokens (a position "
          "embedding is [1, N, D])")
    # timm's table is the model's own, registered before every submodule: first in the
    # spec too. torchvision's belongs to its Encoder, registered after the patch conv
    # as the spec's order has it already
    root = p.param_first and "." not in str(p.param)
    options: dict[str, Any] = {"register_first": True} if root else {}
    return Mapped("pos_embed", options, {"weight": str(p.param)}, inputs=[x])


def read_select(call: Call) -> Mapped | None:
    """netspec's Select, or ``x.mean(1)`` over the tokens; one token (``x[:, 0]``) is an
    index map that movement.select recognises."""
    if call.module is not None:
        x = _tokens(call)
        token = call.module.token
        return Mapped("select", {"token": token if token == "mean" else int(token)},
                      inputs=[x])
    x = call.x
    if x.layout != CANONICAL or len(x.shape) != 2:
        return None  # global_avgpool's, or nothing
    dims = call.arg(1, "dim")
    dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
    if [d % 3 for d in dims] != [1]:
        return None
    keep = call.arg(2, "keepdim", False)
    return Mapped("select", {"token": "mean"}, inputs=[x],
                  view=(1, 1, x.shape[1]) if keep else None)


def _attention_options(heads: int, d: int, head_dim: int, key_dim: int, qkv_bias: bool,
                       out_bias: bool, drop: float) -> dict[str, Any]:
    options: dict[str, Any] = {"heads": int(heads)}
    if d % heads or head_dim != d // heads:
        options["head_dim"] = int(head_dim)
    if key_dim != head_dim:
        options["key_dim"] = int(key_dim)
    if not qkv_bias:
        options["qkv_bias"] = False
    if not out_bias:
        options["out_bias"] = False
    if drop:
        options["drop"] = float(drop)
    return options


def _read_mha(call: Call) -> Mapped:
    """torch's nn.MultiheadAttention called as self-attention on [B, N, D] tokens:
    ``in_proj_weight`` is the kind's ``qkv.weight`` ([q | k | v], heads consecutive),
    ``out_proj`` its ``proj``."""
    m = call.module
    assert isinstance(m, nn.MultiheadAttention)
    _need(call, m.batch_first, "reads [sequence, batch, features] (batch_first=False; "
          "netspec's batch axis is first)")
    _need(call, m._qkv_same_embed_dim, f"projects keys and values from other sizes "
          f"(kdim={m.kdim}, vdim={m.vdim}, embed_dim={m.embed_dim})")
    _need(call, m.bias_k is None and m.bias_v is None, "adds learned key and value "
          "biases (add_bias_kv)")
    _need(call, not m.add_zero_attn, "attends to an added zero position (add_zero_attn)")
    q, k, v = call.arg(0, "query"), call.arg(1, "key"), call.arg(2, "value")
    _need(call, isinstance(q, In) and q.source is not None and all(
        isinstance(t, In) and t.source is q.source for t in (k, v)),
        "attends from one tensor to others (query, key and value are not one tensor)")
    assert isinstance(q, In)
    for i, name in ((3, "key_padding_mask"), (5, "attn_mask")):
        _need(call, call.arg(i, name) is None, f"masks the attention ({name})")
    _need(call, not call.arg(7, "is_causal", False), "masks the attention (is_causal)")
    _need(call, q.layout == CANONICAL and len(q.shape) == 2,
          f"attends over a {_described(q)} {list(q.shape)} tensor (netspec's attention "
          "reads [N, D] tokens)")
    d = int(m.embed_dim)
    qkv_bias = m.in_proj_bias is not None
    out_bias = m.out_proj.bias is not None
    options = _attention_options(m.num_heads, d, m.head_dim, m.head_dim, qkv_bias, out_bias,
                                 m.dropout)
    sources = {"qkv.weight": "in_proj_weight", "qkv.bias": "in_proj_bias",
               "proj.weight": "out_proj.weight", "proj.bias": "out_proj.bias"}
    tensors = {n: f"{call.path}.{s}" for n, s in sources.items()
               if (n != "qkv.bias" or qkv_bias) and (n != "proj.bias" or out_bias)}
    return Mapped("attention", options, tensors, inputs=[q],
                  extra_outputs=("its attention weights (the second output)",))


def _read_timm_attention(call: Call) -> Mapped:
    """timm's Attention (``qkv`` laid out [q | k | v], heads consecutive; ``proj``):
    without q/k norms, output norm or masks, projecting back to its input's size."""
    m = call.module
    assert m is not None
    x = call.x
    _need(call, x.layout == CANONICAL and len(x.shape) == 2,
          f"attends over a {_described(x)} {list(x.shape)} tensor (netspec's attention "
          "reads [N, D] tokens)")
    _need(call, call.arg(1, "attn_mask") is None and not call.arg(2, "is_causal", False),
          "masks the attention")
    for name, what in (("q_norm", "normalises the queries"), ("k_norm", "normalises the "
                       "keys"), ("norm", "normalises the heads' output")):
        sub = getattr(m, name, None)
        _need(call, sub is None or isinstance(sub, nn.Identity), f"{what} ({name})")
    proj_drop = float(getattr(getattr(m, "proj_drop", None), "p", 0.0))
    _need(call, proj_drop == 0, f"drops the projection's output (proj_drop {proj_drop})")
    heads, hd = int(m.num_heads), int(m.head_dim)
    qkv, proj = m.qkv, m.proj
    d = int(qkv.in_features)
    _need(call, qkv.out_features == 3 * heads * hd and proj.in_features == heads * hd,
          f"has a qkv of {qkv.out_features} rows for {heads} heads of {hd}")
    _need(call, proj.out_features == d, f"projects to {proj.out_features} features, not "
          f"back to its input's {d}")
    scale = float(getattr(m, "scale", hd ** -0.5))
    _need(call, math.isclose(scale, hd ** -0.5, rel_tol=1e-6), f"scales by {scale:g}, not "
          "1/√head_dim")
    drop = float(getattr(getattr(m, "attn_drop", None), "p", 0.0))
    options = _attention_options(heads, d, hd, hd, qkv.bias is not None,
                                 proj.bias is not None, drop)
    return Mapped("attention", options, _weights_of(call, "qkv.weight", "qkv.bias",
                                                   "proj.weight", "proj.bias"), inputs=[x])


def read_attention(call: Call) -> Mapped:
    m = call.module
    assert m is not None
    if isinstance(m, nn.MultiheadAttention):
        return _read_mha(call)
    if qualname(behaviour_class(m)) != _NETSPEC_TOKENS + "Attention":
        return _read_timm_attention(call)
    x = call.x  # netspec's own: tokens, or a map's positions
    _need(call, x.layout == CANONICAL and len(x.shape) in (2, 3), f"attends over a "
          f"{_described(x)} tensor")
    layout = {"layout": "heads"} if getattr(m, "per_head", False) else {}
    if m.qkv is None:  # project: false, q, k, v read from the input
        options: dict[str, Any] = {"heads": int(m.heads), "project": False}
        if m.key_dim != m.head_dim:  # else both are a third of each head's features
            options["key_dim"] = int(m.key_dim)
        if m.drop:
            options["drop"] = float(m.drop)
        return Mapped("attention", {**options, **layout}, inputs=[x])
    d = int(m.qkv.in_features)
    options = _attention_options(m.heads, d, m.head_dim, m.key_dim, m.qkv.bias is not None,
                                 m.proj.bias is not None, m.drop)
    return Mapped("attention", {**options, **layout},
                  _weights_of(call, "qkv.weight", "qkv.bias", "proj.weight", "proj.bias"),
                  inputs=[x])


def _weights_of(call: Call, *names: str) -> dict[str, str]:
    """The module's tensors at dotted paths (``qkv.weight``), those it has."""
    assert call.module is not None
    out = {}
    for n in names:
        owner, _, attr = n.rpartition(".")
        if getattr(call.module.get_submodule(owner), attr, None) is not None:
            out[n] = f"{call.path}.{n}"
    return out


def _attention_fits(m: nn.Module) -> bool:
    """nn.MultiheadAttention, netspec's Attention, or a module shaped as timm's: a
    Linear ``qkv`` and ``proj`` and its head count and size."""
    if isinstance(m, nn.MultiheadAttention):
        return True
    if qualname(behaviour_class(m)) == _NETSPEC_TOKENS + "Attention":
        return True  # with its projections or without (project: false)
    linears = isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(
        getattr(m, "proj", None), nn.Linear)
    return linears and isinstance(getattr(m, "num_heads", None), int) and isinstance(
        getattr(m, "head_dim", None), int)


# ---------------------------------------------------------------------------- Swin
#: netspec's own Swin modules (window.py), so a built model imports back
_NETSPEC_WINDOW = "netspec.backends.torch.window."


def read_window_attention(call: Call) -> Mapped:
    """netspec's WindowAttention on a [C, H, W] map, or torchvision's
    ShiftedWindowAttention (V1) on the channels-last view of one; torchvision's
    ``relative_position_index`` is no netspec tensor (it follows from the window)."""
    m = call.module
    assert m is not None
    x = call.x
    own = qualname(behaviour_class(m)) == _NETSPEC_WINDOW + "WindowAttention"
    layout = CANONICAL if own else CHANNELS_LAST
    _need(call, x.layout == layout and len(x.shape) == 3, f"attends in windows of a "
          f"{_described(x)} {list(x.shape)} tensor (netspec's window_attention reads a "
          "[C, H, W] map)")
    if own:
        window, shift, heads, drop = m.window, m.shift, m.heads, m.drop
    else:
        window, shift, heads = m.window_size, m.shift_size, m.num_heads
        drop = m.attention_dropout
        _need(call, not m.dropout, f"drops the projection's output (dropout {m.dropout})")
    def short(v: Sequence[int]) -> int | list[int]:  # a pair as the spec writes it
        return int(v[0]) if v[0] == v[1] else [int(a) for a in v]

    options: dict[str, Any] = {"heads": int(heads), "window": short(window)}
    if any(shift):
        options["shift"] = short(shift)
    if m.qkv.bias is None:
        options["qkv_bias"] = False
    if m.proj.bias is None:
        options["out_bias"] = False
    if drop:
        options["drop"] = float(drop)
    tensors = _weights_of(call, "relative_position_bias_table", "qkv.weight", "qkv.bias",
                          "proj.weight", "proj.bias")
    return Mapped("window_attention", options, tensors, inputs=[x], keeps_layout=not own)


def read_patch_merge(call: Call) -> Mapped:
    """netspec's PatchMerge on a [C, H, W] map, or torchvision's ``_patch_merging_pad``
    on the channels-last view of one: the same four 2×2 offsets, rows first, joined
    along the channels (torchvision pads an odd height or width with zeros first, which
    netspec's patch_merge does not)."""
    if call.module is not None:
        _image(call)
        return Mapped("patch_merge")
    x = call.x
    _need(call, x.layout == CHANNELS_LAST and len(x.shape) == 3,
          f"merges 2×2 patches of a {_described(x)} {list(x.shape)} tensor (netspec's "
          "patch_merge reads a [C, H, W] map, as Swin's channels-last view of one)")
    _, h, w = x.shape
    _need(call, h % 2 == 0 and w % 2 == 0, f"pads the odd-sized {h}×{w} map with zeros "
          "before merging")
    return Mapped("patch_merge", inputs=[x], keeps_layout=True)


READERS: dict[str, Reader] = {
    "conv": Reader(modules=(qualname(nn.Conv2d),), read=read_conv),
    "conv_transpose": Reader(modules=(qualname(nn.ConvTranspose2d),), read=read_conv_transpose),
    "linear": Reader(modules=(qualname(nn.Linear), _NETSPEC + "LinearOverChannels"),
                     functions=(F.linear,), read=read_linear),
    "batchnorm": Reader(modules=(qualname(nn.modules.batchnorm._BatchNorm),
                                 qualname(nn.SyncBatchNorm)), functions=(F.batch_norm,),
                        read=read_batchnorm),
    "layernorm": Reader(modules=(qualname(nn.LayerNorm), *LAYERNORM2D),
                        functions=(F.layer_norm,), read=read_layernorm),
    "instancenorm": Reader(modules=(qualname(nn.modules.instancenorm._InstanceNorm),),
                           read=read_instancenorm),
    "groupnorm": Reader(modules=(qualname(nn.GroupNorm),), read=read_groupnorm),
    "rmsnorm": Reader(modules=("torch.nn.modules.normalization.RMSNorm", _NETSPEC + "RMSNorm"),
                      read=read_rmsnorm),
    "dropout": Reader(modules=(qualname(nn.Dropout), qualname(nn.Dropout2d),
                               _NETSPEC + "ClassicDropout"),
                      functions=(F.dropout, F.dropout2d), read=read_dropout),
    "drop_path": Reader(modules=("torchvision.ops.stochastic_depth.StochasticDepth",
                                 "timm.layers.drop.DropPath", _NETSPEC + "DropPath"),
                        read=read_drop_path),
    "relu": Reader(modules=(qualname(nn.ReLU),), functions=(F.relu, torch.relu, F.relu_),
                   methods=("relu", "relu_"), read=_elementwise("relu")),
    "relu6": Reader(modules=(qualname(nn.Hardtanh),), functions=(F.relu6,), read=read_relu6),
    "gelu": Reader(modules=(qualname(nn.GELU),), functions=(F.gelu,),
                   read=_elementwise("gelu", _approximate)),
    "silu": Reader(modules=(qualname(nn.SiLU),), functions=(F.silu,),
                   read=_elementwise("silu")),
    "sigmoid": Reader(modules=(qualname(nn.Sigmoid),),
                      functions=(torch.sigmoid, F.sigmoid), methods=("sigmoid", "sigmoid_"),
                      read=_elementwise("sigmoid")),
    "tanh": Reader(modules=(qualname(nn.Tanh),), functions=(torch.tanh, F.tanh),
                   methods=("tanh",), read=_elementwise("tanh")),
    "leaky_relu": Reader(modules=(qualname(nn.LeakyReLU),), functions=(F.leaky_relu,),
                         read=_elementwise("leaky_relu", _slope)),
    "hardswish": Reader(modules=(qualname(nn.Hardswish),), functions=(F.hardswish,),
                        read=_elementwise("hardswish")),
    "hardsigmoid": Reader(modules=(qualname(nn.Hardsigmoid),), functions=(F.hardsigmoid,),
                          read=_elementwise("hardsigmoid")),
    "mish": Reader(modules=(qualname(nn.Mish),), functions=(F.mish,),
                   read=_elementwise("mish")),
    "elu": Reader(modules=(qualname(nn.ELU),), functions=(F.elu,),
                  read=_elementwise("elu", _alpha)),
    "softplus": Reader(modules=(qualname(nn.Softplus),), functions=(F.softplus,),
                       read=_elementwise("softplus", _beta_threshold)),
    "softmax": Reader(modules=(qualname(nn.Softmax),), functions=(F.softmax, torch.softmax),
                      methods=("softmax",), read=read_softmax),
    "prelu": Reader(modules=(qualname(nn.PReLU),), read=read_prelu),
    "shuffle": Reader(modules=(qualname(nn.ChannelShuffle),),
                      functions=(F.channel_shuffle, torch.channel_shuffle),
                      read=read_shuffle, movement=_on_numpy(movement.shuffle)),
    "layer_scale": Reader(modules=("timm.layers.layer_scale.LayerScale",
                                   "timm.layers.layer_scale.LayerScale2d",
                                   _NETSPEC + "LayerScale"),
                          functions=(operator.mul, torch.mul), methods=("mul",),
                          read=read_layer_scale),
    "dfl": Reader(modules=("ultralytics.nn.modules.block.DFL", _NETSPEC + "DFL"),
                  read=read_dfl),
    "maxpool": Reader(modules=(qualname(nn.MaxPool2d),), functions=(F.max_pool2d,),
                      read=read_maxpool),
    "avgpool": Reader(modules=(qualname(nn.AvgPool2d),), functions=(F.avg_pool2d,),
                      read=read_avgpool),
    "adaptive_avgpool": Reader(modules=(qualname(nn.AdaptiveAvgPool2d),),
                               functions=(F.adaptive_avg_pool2d,), read=read_adaptive_avgpool),
    # before adaptive_avgpool in the claims of AdaptiveAvgPool2d: a 1×1 one is global
    "global_avgpool": Reader(modules=(qualname(nn.AdaptiveAvgPool2d),),
                             functions=(F.adaptive_avg_pool2d, torch.mean), methods=("mean",),
                             read=read_global_avgpool),
    "flatten": Reader(movement=_on_numpy(movement.flatten)),
    "upsample": Reader(modules=(qualname(nn.Upsample),), functions=(F.interpolate,),
                       read=read_upsample),
    # before concat and add, which claim the same functions: a parameter put first or
    # added is a class token or a position embedding, never a concat or an add
    "tokens": Reader(modules=(_NETSPEC_TOKENS + "Tokens",), read=read_tokens,
                     movement=_on_numpy(movement.tokens)),
    "map": Reader(modules=(_NETSPEC_TOKENS + "ToMap",), read=read_to_map,
                  movement=_on_numpy(movement.to_map)),
    "class_token": Reader(modules=(_NETSPEC_TOKENS + "ClassToken",),
                          functions=(torch.cat, torch.concat), read=read_class_token),
    "pos_embed": Reader(modules=(_NETSPEC_TOKENS + "PosEmbed",),
                        functions=(operator.add, operator.iadd, torch.add),
                        methods=("add", "add_"), read=read_pos_embed),
    "select": Reader(modules=(_NETSPEC_TOKENS + "Select",), functions=(torch.mean,),
                     methods=("mean",), read=read_select, movement=_on_numpy(movement.select)),
    "attention": Reader(modules=(qualname(nn.MultiheadAttention), _NETSPEC_TOKENS + "Attention",
                                 "timm.layers.attention.Attention",
                                 "timm.models.vision_transformer.Attention"),
                        read=read_attention, fits=_attention_fits),
    "window_attention": Reader(modules=(_NETSPEC_WINDOW + "WindowAttention",
                                        "torchvision.models.swin_transformer."
                                        "ShiftedWindowAttention"),
                               read=read_window_attention),
    "patch_merge": Reader(modules=(_NETSPEC_WINDOW + "PatchMerge",),
                          functions=("torchvision.models.swin_transformer._patch_merging_pad",),
                          read=read_patch_merge),
    "add": Reader(functions=(operator.add, operator.iadd, torch.add, add_into),
                  methods=("add", "add_"), read=read_add),
    "concat": Reader(functions=(torch.cat, torch.concat), read=read_concat),
    "mul": Reader(functions=(operator.mul, torch.mul), methods=("mul",), read=read_mul),
    "split": Reader(functions=(torch.chunk, torch.split), methods=("chunk", "split"),
                    read=read_split),
}
