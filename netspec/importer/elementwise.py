"""Element-wise activations recognised by what they compute, whatever ops spell them.

An ONNX file writes SiLU as Sigmoid and Mul, GELU as Div, Erf, Add, Mul, Mul (or one Gelu
node from opset 20), hardswish as HardSigmoid and Mul before opset 14… Rather than a
pattern per spelling, the reader keeps any chain of element-wise ops on one tensor x
(with scalar constants) as an expression, and when a layer needs its value, evaluates it
on sample values of x and compares with each activation kind's definition here. Pure
numpy; each definition is written from the kind's formula in docs/spec-language.md, not
from netspec's own backends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netspec.kinds import FAMILIES

#: x where the activations are told apart: both sides of 0, past relu6's 6, near 0
SAMPLES = np.concatenate([np.linspace(-9.0, 9.0, 181), [-1e-3, 1e-3, 0.5, -0.5]])

_erf = np.vectorize(math.erf)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _softplus_of(beta: float, threshold: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.where(beta * x > threshold, x, _softplus(beta * x) / beta)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2)))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


#: kind → (options → the function it computes); the parameters come from the options
DEFINITIONS: dict[str, Callable[[dict[str, Any]], Callable[[np.ndarray], np.ndarray]]] = {
    "relu": lambda o: lambda x: np.maximum(x, 0.0),
    "relu6": lambda o: lambda x: np.clip(x, 0.0, 6.0),
    "sigmoid": lambda o: _sigmoid,
    "tanh": lambda o: np.tanh,
    "silu": lambda o: lambda x: x * _sigmoid(x),
    "gelu": lambda o: _gelu_tanh if o.get("approximate") == "tanh" else _gelu,
    "hardsigmoid": lambda o: lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "hardswish": lambda o: lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "mish": lambda o: lambda x: x * np.tanh(_softplus(x)),
    "elu": lambda o: lambda x: np.where(x > 0, x, o.get("alpha", 1.0) * np.expm1(np.minimum(x, 0))),
    "leaky_relu": lambda o: lambda x: np.where(x > 0, x, o.get("slope", 0.01) * x),
    "softplus": lambda o: _softplus_of(o.get("beta", 1.0), o.get("threshold", 20.0)),
}

#: the option sets tried for each kind when nothing names them (parameters come from a
#: single op's attributes when the expression is one op: LeakyRelu's alpha)
CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("relu", {}), ("relu6", {}), ("sigmoid", {}), ("tanh", {}), ("silu", {}), ("gelu", {}),
    ("gelu", {"approximate": "tanh"}), ("hardsigmoid", {}), ("hardswish", {}), ("mish", {}),
    ("elu", {}), ("leaky_relu", {}), ("softplus", {}),
)


@dataclass
class Expr:
    """An element-wise expression of one tensor: ``op`` over ``args`` (other Exprs, the
    tensor itself as None, or numbers), with the op's attributes."""

    op: str
    args: list[Any]
    attrs: dict[str, Any] = field(default_factory=dict)
    #: where it came from (a node name), for the refusal when nothing matches
    where: str = ""


def _clip(x: np.ndarray, lo: Any = None, hi: Any = None) -> np.ndarray:
    return np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi)


#: the ONNX element-wise ops an expression may hold, as numpy
OPS: dict[str, Callable[..., np.ndarray]] = {
    "Relu": lambda a, x: np.maximum(x, 0.0),
    "Clip": lambda a, x, lo=None, hi=None: _clip(x, a.get("min", lo), a.get("max", hi)),
    "Sigmoid": lambda a, x: _sigmoid(x),
    "Tanh": lambda a, x: np.tanh(x),
    "HardSigmoid": lambda a, x: np.clip(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0, 1),
    "HardSwish": lambda a, x: x * np.clip(x / 6.0 + 0.5, 0, 1),
    "Erf": lambda a, x: _erf(x),
    "Softplus": lambda a, x: _softplus(x),
    "Exp": lambda a, x: np.exp(x),
    "Neg": lambda a, x: -x,
    "Sqrt": lambda a, x: np.sqrt(np.abs(x)),
    "LeakyRelu": lambda a, x: np.where(x > 0, x, a.get("alpha", 0.01) * x),
    "Elu": lambda a, x: np.where(x > 0, x, a.get("alpha", 1.0) * np.expm1(np.minimum(x, 0))),
    "Gelu": lambda a, x: DEFINITIONS["gelu"]({"approximate": _approximate(a)})(x),
    "Mish": lambda a, x: x * np.tanh(_softplus(x)),
    "Add": lambda a, x, y: x + y,
    "Sub": lambda a, x, y: x - y,
    "Mul": lambda a, x, y: x * y,
    "Div": lambda a, x, y: x / y,
    "Pow": lambda a, x, y: np.power(x, y),
    "Greater": lambda a, x, y: x > y,
    "Where": lambda a, c, x, y: np.where(c, x, y),
}


def _approximate(attrs: dict[str, Any]) -> str:
    """Gelu's ``approximate`` (opset 20): onnx reads a string attribute as bytes."""
    v = attrs.get("approximate", "none")
    return v.decode() if isinstance(v, bytes) else str(v)


def evaluate(e: Any, x: np.ndarray) -> np.ndarray:
    if e is None:
        return x
    if not isinstance(e, Expr):
        return np.asarray(e, dtype=np.float64)
    with np.errstate(all="ignore"):
        return OPS[e.op](e.attrs, *(evaluate(a, x) for a in e.args))


def _single_options(e: Expr) -> dict[str, dict[str, Any]]:
    """Options a one-op expression names by its attributes."""
    if e.op == "LeakyRelu":
        return {"leaky_relu": {"slope": float(e.attrs.get("alpha", 0.01))}}
    if e.op == "Elu":
        return {"elu": {"alpha": float(e.attrs.get("alpha", 1.0))}}
    if e.op == "Gelu" and _approximate(e.attrs) != "none":
        return {"gelu": {"approximate": _approximate(e.attrs)}}
    return _softplus_options(e)


def _softplus_options(e: Expr) -> dict[str, dict[str, Any]]:
    """β and the threshold of torch's softplus written out as ONNX must write it:
    Where(Greater(β·x, threshold), x, Softplus(β·x) / β), β·x being x itself at β = 1."""
    if e.op != "Where" or len(e.args) != 3 or e.args[1] is not None:
        return {}
    cond = e.args[0]
    if not (isinstance(cond, Expr) and cond.op == "Greater" and len(cond.args) == 2
            and isinstance(cond.args[1], float)):
        return {}
    scaled = cond.args[0]
    if scaled is None:
        beta = 1.0
    elif (isinstance(scaled, Expr) and scaled.op == "Mul" and len(scaled.args) == 2
          and scaled.args[0] is None and isinstance(scaled.args[1], float)
          and scaled.args[1] > 0):
        beta = scaled.args[1]
    else:
        return {}
    return {"softplus": {"beta": beta, "threshold": cond.args[1]}}


def recognise(e: Expr) -> tuple[str, dict[str, Any]] | None:
    """The activation kind (and its options) the expression computes, if any."""
    got = evaluate(e, SAMPLES)
    named = _single_options(e)
    for kind, options in [*named.items(), *CANDIDATES]:
        want = DEFINITIONS[kind](options)(SAMPLES)
        if np.allclose(got, want, rtol=1e-5, atol=1e-6):
            # a default written out is left to the kind (slope 0.01, alpha 1)
            defaults = FAMILIES[kind][None].model_fields
            return kind, {k: v for k, v in options.items() if v != defaults[k].default}
    return None


def first_unknown(e: Expr) -> Expr:
    """The op to name in a refusal: the innermost op of the expression."""
    for a in e.args:
        if isinstance(a, Expr):
            return first_unknown(a)
    return e
