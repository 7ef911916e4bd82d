"""Evaluating a spec's values: ``$`` expressions in place (recursively in lists), each
error positioned inside its expression, and the ``vars`` in order with the overrides a
caller gives (``load(path, width=8)``, ``--set width=8``)."""

from __future__ import annotations

from typing import Any

from netspec.entries import shown
from netspec.errors import SpecError, VarError, did_you_mean
from netspec.expr import ExprError, compile_expression, evaluate, is_expression
from netspec.spec import SpecModel
from netspec.yaml_loader import Document, Path


def value(doc: Document, v: Any, path: Path, env: dict[str, Any]) -> Any:
    """``v`` with its ``$`` expressions evaluated; an error points into the expression."""
    # is_expression and evaluate written out: a spec's every option passes here, in
    # every variant a search resolves
    if isinstance(v, str):
        if "$" not in v:
            return v
        try:
            return compile_expression(v)(env)
        except ExprError as e:
            raise SpecError(f"in {shown(v, True)}: {e}",
                            doc.expr_pos(path, e.offset)) from None
    if isinstance(v, list):
        return [value(doc, x, (*path, i), env) for i, x in enumerate(v)]
    return v


def _override(v: Any, env: dict[str, Any]) -> Any:
    """An override's value: it has no position in the document."""
    if is_expression(v):
        return evaluate(v, env)
    if isinstance(v, list):
        return [_override(x, env) for x in v]
    return v


def evaluate_vars(doc: Document, spec: SpecModel, overrides: dict[str, Any]) -> dict[str, Any]:
    """The spec's vars in order, each seeing the ones before it; an override replaces a
    var's value. A :class:`VarError` speaks of vars; the command line says ``--set``."""
    for name in overrides:
        if name not in spec.vars:
            known = ", ".join(spec.vars) or "none"
            raise VarError(shown(name), f"the spec has no var {shown(name, True)}"
                           f"{did_you_mean(name, spec.vars)} (its vars: {known})")
    env: dict[str, Any] = {}
    for name, v in spec.vars.items():
        if name in overrides:
            try:
                env[name] = _override(overrides[name], env)
            except ExprError as e:
                raise VarError(f"{name}={shown(str(overrides[name]))}", str(e)) from None
        else:
            env[name] = value(doc, v, ("vars", name), env)
    return env
