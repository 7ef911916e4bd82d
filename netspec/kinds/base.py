"""What every layer kind declares, in one place: its options, shape rule and tensors.

A kind is a frozen pydantic model of its options (``extra="forbid"``) plus four rules
over the shapes of its inputs (without the batch axis), and the traits backends and
passes ask about (is it a norm, may it run in place, does a fold go into it…) — so what a
kind *is* is answered here and nowhere else. Defining a subclass with an ``op`` registers
it (``REGISTRY``); netspec/kinds/__init__.py imports every module of this package.


- ``out_shape``: the output shape, or a :class:`ShapeError` that names the offending
  option, so resolve can point at it before any tensor exists;
- ``param_shapes`` / ``buffer_shapes``: every tensor the layer owns, by the name the
  torch backend registers it under (``weight``, ``bias``, ``running_mean``…). The
  parameter count is the sum of their sizes; backends are tested against these;
- ``macs``: multiply-accumulates per sample.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.fields import FieldInfo

Shape = tuple[int, ...]


def _int_not_bool(v: Any) -> Any:
    # pydantic's lax mode reads true as 1; in a spec that is always a mistake
    if isinstance(v, bool):
        raise ValueError("input should be a valid integer, not a boolean")
    return v


def _float_not_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("input should be a valid number, not a boolean")
    return v


Int = Annotated[int, BeforeValidator(_int_not_bool)]
PosInt = Annotated[int, BeforeValidator(_int_not_bool), Field(ge=1)]
NonNegInt = Annotated[int, BeforeValidator(_int_not_bool), Field(ge=0)]
#: every float option is finite: no option of any kind means anything at inf or nan
Float = Annotated[float, BeforeValidator(_float_not_bool), Field(allow_inf_nan=False)]


class ShapeError(ValueError):
    """An input shape this layer cannot take. ``field`` names the option to blame."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def fmt_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


@dataclass(frozen=True)
class Saved:
    """What autograd keeps of one layer for its backward while training, as the torch
    backend runs it (netspec/memory.py sums these over a graph, each storage once)."""

    #: which of its inputs it keeps (indices into its inputs)
    inputs: tuple[int, ...] = (0,)
    #: whether it keeps its output
    output: bool = False
    #: other tensors it makes and keeps (max-pool indices, dropout masks, BN statistics):
    #: (values per sample, or in all when not per_sample; bytes per value, or None for
    #: the activations' dtype; per_sample)
    extra: tuple[tuple[int, int | None, bool], ...] = ()


# No ``from __future__ import annotations`` in netspec/kinds or spec.py: pydantic would
# compile and evaluate every annotation string of every kind (and of LayerArgs, once per
# subclass) at import, a tenth of `netspec params`'s own time.

#: :meth:`LayerArgs.symbolic_size`'s two answers that are not a refusal
KEEPS_SIZE, ENDS_SIZE = "keeps the size", "ends the size"

#: every layer kind by its Graph op name, filled as the kind classes are defined
REGISTRY: "dict[str, type[LayerArgs]]" = {}


#: how messages name each rank of input
RANK_WORDS = {1: "[F] features", 2: "[N, D] tokens", 3: "[C, H, W] map"}


def check_rank(ranks: tuple[int, ...], x: Shape) -> Shape:
    """``x`` when a kind taking ``ranks`` takes it, else a ShapeError naming the
    conversion that would make it one (tokens and maps are converted only explicitly)."""
    if len(x) in ranks:
        return x
    want = " or ".join(RANK_WORDS[r] for r in ranks)
    got = RANK_WORDS.get(len(x), f"rank-{len(x)}")
    hint = ""
    if len(x) == 3 and 2 in ranks:
        hint = " (add tokens before it)"
    elif len(x) == 3 and 1 in ranks:
        hint = " (add flatten before it)"
    elif len(x) == 2 and 3 in ranks:
        hint = " (add map: [H, W] before it)"
    elif len(x) == 2 and 1 in ranks:
        hint = " (add select: 0 or select: mean before it)"
    # resolve puts the kind before it ("conv: takes a …")
    raise ShapeError(f"takes a {want} input, got {got} {fmt_shape(x)}{hint}")


class LayerArgs(BaseModel):
    """Base of every layer kind's options."""

    # defer_build: a kind's validator is built when a spec first uses it, not at import
    # (building all of them was most of `netspec params`'s time)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              defer_build=True)

    #: the Graph op name and the key backends dispatch on
    op: ClassVar[str]
    #: the name a spec writes: the op itself unless a family shares one (``norm``); a
    #: family's members are told apart by their ``kind`` option
    spec_kind: ClassVar[str]
    #: prefix of automatic names: conv1, bn2, …
    auto_name: ClassVar[str]
    #: a family a spec may also name this kind through, by its op: ``act: gelu`` (or
    #: ``act: {kind: gelu, approximate: tanh}``), so that a block or a default can choose
    #: the activation by a var (``act: $act``)
    family: ClassVar[str | None] = None
    #: the option a bare scalar or list fills: ``gelu: tanh`` → ``approximate: tanh``
    #: (a family's bare value is always its ``kind``: ``norm: batch``)
    shorthand: ClassVar[str | None] = None
    #: why a bare value is refused, when that needs more than "takes a mapping"
    shorthand_refusal: ClassVar[str | None] = None
    #: how many tensors flow in: 1, or None for merges (the current one plus references)
    arity: ClassVar[int | None] = 1
    #: ranks of input this kind accepts: 1 for [F], 2 for [N, D] tokens, 3 for
    #: [C, H, W]; resolve refuses any other before the shape rule runs
    ranks: ClassVar[tuple[int, ...]] = (1, 3)

    # ---- traits: what backends and passes need to know, declared by the kind
    #: a normalisation: its γ/δ stay out of weight decay, an automatic projection
    #: shortcut copies it, reports show it as ``norm <kind>``
    is_norm: ClassVar[bool] = False
    #: keeps running statistics for inference (BatchNorm): training, calibration and the
    #: ONNX fold treat these
    running_stats: ClassVar[bool] = False
    #: its parameters take weight decay (norms' γ/δ and PReLU slopes do not; biases
    #: never do, whatever the kind)
    decay: ClassVar[bool] = True
    #: its own tensors that stay out of weight decay though the rest decays (Swin's
    #: relative position table, a learned bias as timm's ``no_weight_decay`` keeps it)
    undecayed: ClassVar[frozenset[str]] = frozenset()
    #: what torch's autocast (bf16 on the CPU) makes of it, for the memory estimate:
    #: ``follow`` computes in its inputs' widest dtype; ``lower`` computes in bf16 and
    #: keeps a bf16 copy of each float32 input and weight it needs for backward (autocast's
    #: conv, linear, matmul, attention and prelu); ``widen`` joins a float32 tensor of its
    #: own element-wise, so its output is float32 (a learned token, a position table, a
    #: layer scale); ``float`` computes in float32, keeping a float32 copy of a bf16
    #: input, and returns its input's dtype (netspec's RMS norm)
    autocast: ClassVar[Literal["follow", "lower", "widen", "float"]] = "follow"
    #: a ``lower`` kind whose backward keeps its bf16 weights only to give its input a
    #: gradient (a matmul: linear), so not when its input needs none (the network's
    #: input); a convolution's keeps them always
    weights_kept_for_input_grad: ClassVar[bool] = False
    #: may overwrite its first input when nothing else reads it (ReLU, residual add)
    inplace_ok: ClassVar[bool] = False
    #: its output is a new tensor that no backward reads, so an in-place op may follow
    fresh_output: ClassVar[bool] = False
    #: a linear map with a ``weight`` (its channels on the axes ``weight_out_axis`` says)
    #: and a ``bias``: per-channel scales (BN, layer scale) fold into it
    linear_map: ClassVar[bool] = False
    #: for a ``linear_map`` kind, the axis of its ``weight`` that holds the output
    #: channels: 0 for [out, in/groups, …] (conv, linear), 1 for [in, out/groups, …]
    #: (conv_transpose). The other of the first two axes holds the input channels; with
    #: ``groups``, axis 0 spans all channels and axis 1 one group's. The ONNX fold scales
    #: this axis for a BN or layer scale after the layer, the other for a BN before it
    weight_out_axis: ClassVar[int] = 0
    #: for a ``linear_map`` kind, what the fold report adds when a BN before it folds
    #: into it: the condition ``input_fold_refusal()`` checked (conv: "no padding")
    input_fold_note: ClassVar[str] = ""
    #: its parameters hold fixed values (DFL's 0 … bins−1): counted, never trained; such
    #: a layer may feed no output (held for its weights), a learned one may not
    fixed_params: ClassVar[bool] = False
    #: y = γ·x with γ per channel (layer scale): folds into the linear map before it
    channel_scale: ClassVar[bool] = False
    #: acts only while training (dropout, stochastic depth): at inference it is a
    #: constant factor, ``inference_factor()`` (1: the identity), and export removes it
    training_only: ClassVar[bool] = False
    #: its output is a view of its first input (flatten, a split's part): no new memory;
    #: a kind whose options decide it says so in ``is_view()``
    view: ClassVar[bool] = False
    #: option sets that property tests draw from (the ones the kind may refuse for a given
    #: input shape are skipped by its own shape rule); every kind has at least one
    samples: ClassVar[tuple[dict[str, Any], ...]] = ({},)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        op = cls.__dict__.get("op")
        if op is None:
            return  # a shared base (_Norm, _Merge…), not a kind
        if op in REGISTRY and REGISTRY[op] is not cls:
            raise TypeError(f"two layer kinds claim op {op!r}")
        if not any("spec_kind" in c.__dict__ for c in cls.__mro__):
            cls.spec_kind = op
        REGISTRY[op] = cls

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The option keys a spec writes (aliases where a field has one: ``from``)."""
        return tuple(cls.option_fields())

    @classmethod
    def option_fields(cls) -> dict[str, FieldInfo]:
        """Each option key a spec writes → its field; computed once per kind (resolve and
        lint ask for every layer)."""
        cached = cls.__dict__.get("_option_fields")
        if cached is None:
            cached = {f.alias or n: f for n, f in cls.model_fields.items()}
            # set on the class itself, so a subclass computes its own
            type.__setattr__(cls, "_option_fields", cached)
        return cached

    @classmethod
    def accepts(cls, key: str) -> bool:
        """Whether ``key`` is an option of this kind, by its spec name or field name."""
        keys = cls.__dict__.get("_accepted")
        if keys is None:  # once per kind, as option_fields: resolve asks for every layer
            keys = frozenset(cls.option_fields()) | frozenset(cls.model_fields)
            type.__setattr__(cls, "_accepted", keys)
        return key in keys

    def registers_first(self) -> bool:
        """Whether its tensors register before the rest of its scope's (see LayerScale)."""
        return False

    def symbolic_size(self, inputs: Sequence[Shape], out: Shape) -> str:
        """Export with a symbolic input height and width (``--dynamic-size``), for a layer
        that reads a map whose H, W follow the input's: ``KEEPS_SIZE`` (its output's do
        too), ``ENDS_SIZE`` (its output no longer depends on them: a global pool), or,
        in words, why this layer would bake the spec's size into the model."""
        return KEEPS_SIZE

    def input_fold_refusal(self) -> str | None:
        """For a ``linear_map`` kind: None when a per-channel affine map y = s·x + t on
        its input folds exactly into its weight and bias (W·s over the input channels,
        b + Σ W·t); else why not, as the fold report words it after the layer's name (a
        conv with padding: at the borders the padded zeros were never shifted by t)."""
        return None

    def channel_repeat(self, inputs: Sequence[Shape]) -> int | None:
        """For a layer that only lays its input out anew, channel after channel, each
        channel's values becoming this many consecutive features (flatten: H·W): a
        per-channel affine map before it is a per-feature one after it, each channel's
        repeated, so the ONNX fold looks through it into the linear map it feeds. None
        (the default): it does not."""
        return None

    def inference_factor(self) -> float:
        """For a ``training_only`` kind: what it multiplies by at inference."""
        return 1.0

    def inference_note(self) -> str:
        """For a ``training_only`` kind: why it is gone at inference (the fold report)."""
        return f"{self.op} is the identity at inference"

    def display(self) -> str:
        """How reports name it: the op, or ``norm batch`` for a family member."""
        kind = getattr(self, "kind", None)
        return f"{self.spec_kind} {kind}" if self.spec_kind != self.op else self.op

    def check_input(self, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        return check_rank(self.ranks, x)

    def out_shape(self, inputs: Sequence[Shape]) -> Shape:
        return self.check_input(inputs)

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {}

    def buffer_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {}

    def macs(self, inputs: Sequence[Shape], out: Shape) -> int:
        return 0

    def saved_for_backward(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        """What autograd keeps for this layer's backward, in the torch backend (parameters
        aside: they are counted as parameters). Most layers keep their input (conv,
        linear, pools, most activations); a layer whose backward needs its output, or
        nothing, or more, says so."""
        return Saved()

    def saved_under_autocast(self, inputs: Sequence[Shape], out: Shape) -> Saved:
        """What it keeps under bf16 autocast, where that is more than its rule with
        each dtype followed (``extra``'s None sizes and the casts memory.py adds): the
        float32 and bf16 copies a layer makes inside itself."""
        return self.saved_for_backward(inputs, out)

    def is_view(self) -> bool:
        """Whether this layer's output is a view of its first input's memory."""
        return self.view

    def formula(self, inputs: Sequence[Shape]) -> str | None:
        """The parameter count in the textbook's terms, for layers that have one."""
        return None

    def canonical(self) -> dict[str, Any]:
        """The options with every default that depends on others filled in (a conv's
        pad, a pool's stride): two layers that compute the same have equal canonical
        options however they were written."""
        return self.model_dump()

    def summary(self) -> str:
        """The options that differ from their defaults, as ``k=3, stride=2``."""
        parts = []
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if value != info.get_default(call_default_factory=True):
                parts.append(f"{info.alias or name}={_short(value)}")
        return ", ".join(parts)


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
