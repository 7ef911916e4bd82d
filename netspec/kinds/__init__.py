"""The registry of layer kinds: Graph op name → options model (with its rules and
traits).

Every module of this package is imported here, and defining a ``LayerArgs`` subclass
with an ``op`` registers it (``REGISTRY``), so a new kind is written in one place. Each
backend keeps one entry per op in its own map; tests/test_kinds_registry.py checks that
none is missing.
"""

import importlib
import pkgutil

from netspec.kinds.base import REGISTRY, LayerArgs, Shape, ShapeError, fmt_shape, numel

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

#: every op, in the order the kinds are defined
OPS: dict[str, type[LayerArgs]] = dict(REGISTRY)

#: kinds a spec may name, each with its members told apart by their ``kind`` option; a
#: kind with one member maps it under None. A family is a kind without None: one whose
#: members share a spec kind (``norm`` → batch, layer, …: each has a ``kind`` option), or
#: kinds that declare a ``family`` to be named through (``act`` → relu, gelu, …)
FAMILIES: dict[str, dict[str | None, type[LayerArgs]]] = {}
for _cls in OPS.values():
    if _cls.spec_kind == _cls.op:
        FAMILIES.setdefault(_cls.spec_kind, {})[None] = _cls
    else:
        FAMILIES.setdefault(_cls.spec_kind, {})[_cls.model_fields["kind"].default] = _cls
    if _cls.family is not None:
        FAMILIES.setdefault(_cls.family, {})[_cls.op] = _cls


#: the families alone: family → its members by their ``kind`` (``norm`` → batch, …)
FAMILY_MEMBERS: dict[str, dict[str, type[LayerArgs]]] = {
    kind: {str(k): c for k, c in members.items()}
    for kind, members in FAMILIES.items() if None not in members}


def family_members(kind: str) -> dict[str, type[LayerArgs]] | None:
    """A family's members by their ``kind``, or None when ``kind`` is a single kind (or
    none at all)."""
    return FAMILY_MEMBERS.get(kind)


#: kinds a spec names directly
SPEC_KINDS: tuple[str, ...] = tuple(sorted(FAMILIES))

#: norm kind name → class: ``norm: batch``
NORM_KINDS: dict[str, type[LayerArgs]] = FAMILY_MEMBERS["norm"]

#: what a spec may mean by a kind name it got wrong, beyond spelling (compared in lower
#: case, so PyTorch's class names hit too)
KIND_HINTS: dict[str, str] = {
    "batchnorm": "norm: batch", "bn": "norm: batch", "batch_norm": "norm: batch",
    "batchnorm2d": "norm: batch", "batchnorm1d": "norm: batch",
    "layernorm": "norm: layer", "layer_norm": "norm: layer", "ln": "norm: layer",
    "layernorm2d": "norm: {kind: layer, over: channels}",
    "groupnorm": "norm: {kind: group, groups: G}", "instancenorm": "norm: instance",
    "instancenorm2d": "norm: instance", "rmsnorm": "norm: rms", "dense_layer": "dense",
    "fc": "linear", "conv2d": "conv", "avg_pool": "avgpool", "max_pool": "maxpool",
    "maxpool2d": "maxpool", "avgpool2d": "avgpool", "convtranspose": "conv_transpose",
    "convtranspose2d": "conv_transpose", "deconv": "conv_transpose", "skip": "residual",
    "cat": "concat", "multiply": "mul", "hswish": "hardswish", "hsigmoid": "hardsigmoid",
    "swish": "silu", "stochastic_depth": "drop_path", "droppath": "drop_path",
    "channel_shuffle": "shuffle", "chunk": "split", "branches": "parallel",
    "adaptiveavgpool2d": "adaptive_avgpool", "gap": "global_avgpool",
}

__all__ = [
    "FAMILIES", "FAMILY_MEMBERS", "KIND_HINTS", "NORM_KINDS", "OPS", "REGISTRY", "SPEC_KINDS",
    "LayerArgs", "Shape", "ShapeError", "family_members", "fmt_shape", "numel",
]
