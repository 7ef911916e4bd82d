"""The spec file's top level, validated with pydantic, and pydantic errors as
positioned :class:`SpecError` s.

Layer entries are kept as plain data here: what a layer's options mean depends on vars,
defaults and block arguments, so each layer is validated against its kind's model
(netspec.kinds) during resolve, where those are known.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from netspec.errors import SpecError, did_you_mean
from netspec.yaml_loader import Document, Path

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REQUIRED = "required"

Scalar = int | float | bool | str | None
VarValue = Scalar | list[Scalar]


def _check_names(names: Mapping[str, Any], what: str) -> None:
    for name in names:
        if not IDENTIFIER.match(name):
            raise ValueError(f"{what} name '{name}' is not a valid name (letters, digits, _)")


class BlockDef(BaseModel):
    """A reusable block: ``args`` (``required`` or a default) and its layers."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    args: dict[str, VarValue] = Field(default_factory=dict)
    layers: Annotated[list[Any], Field(min_length=1)]

    @field_validator("args")
    @classmethod
    def _arg_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        _check_names(v, "arg")
        if "in" in v:
            raise ValueError("'in' is reserved: $in is the channel count of the block's input")
        return v


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    netspec: Literal[1] = Field(description="format version of the spec")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str | None = None
    task: Literal["classification", "segmentation"] | None = Field(
        default=None,
        description="inferred from the output shape when absent: [K] classification, "
        "[K, H, W] segmentation",
    )
    input: Annotated[list[int | str], Field(min_length=1, max_length=3)] = Field(
        description="input shape without the batch axis: [C, H, W], or [F]"
    )
    vars: dict[str, VarValue] = Field(default_factory=dict)
    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    blocks: dict[str, BlockDef] = Field(default_factory=dict)
    layers: Annotated[list[Any], Field(min_length=1)]

    @field_validator("vars")
    @classmethod
    def _var_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        _check_names(v, "var")
        if "in" in v:
            raise ValueError("'in' is reserved for the channel count of a block's input")
        return v

    @field_validator("blocks")
    @classmethod
    def _block_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        _check_names(v, "block")
        return v


def errors_from_pydantic(
    exc: ValidationError,
    doc: Document,
    base: Path = (),
    prefix: str = "",
    paths: Mapping[str, Path] | None = None,
    fields: Mapping[str, Any] | None = None,
) -> list[SpecError]:
    """Turn each pydantic error into a positioned SpecError.

    ``base`` is the document path the validated mapping sits at; ``paths`` overrides it
    per top-level key (a layer's options can come from the layer or from ``defaults``).
    """
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        head = str(loc[0]) if loc else ""
        where: Path = (
            (*paths[head], *loc[1:]) if paths and head in paths else (*base, *loc)
        )
        dotted = ".".join(str(p) for p in loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            known = list(fields or {})
            msg = f"unknown key '{loc[-1]}'{did_you_mean(str(loc[-1]), known)}"
            if known:
                msg += f"; expected one of: {', '.join(known)}"
            pos = doc.key(where)
        elif kind == "missing":
            msg = f"missing required key '{loc[-1]}'"
            pos = doc.pos(where[:-1])
        else:
            text = err["msg"]
            if text.startswith("Value error, "):
                text = text[len("Value error, "):]
            text = text[0].lower() + text[1:] if text else text
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            msg = f"{dotted}: {text}{shown}" if dotted else text
            pos = doc.pos(where)
        out.append(SpecError(prefix + msg, pos))
    return out


def validate_top_level(doc: Document) -> SpecModel:
    from netspec.errors import SpecErrors

    try:
        return SpecModel.model_validate(doc.data)
    except ValidationError as e:
        raise SpecErrors(errors_from_pydantic(e, doc, fields=SpecModel.model_fields)) from None


def is_required(value: Any) -> bool:
    return value == REQUIRED
