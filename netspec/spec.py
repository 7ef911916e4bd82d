"""The spec file's top level, validated with pydantic, and pydantic errors as
positioned :class:`SpecError` s.

Layer entries are kept as plain data here: what a layer's options mean depends on vars,
defaults and block arguments, so each layer is validated against its kind's model
(netspec.kinds) during resolve, where those are known.
"""

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from netspec.errors import SpecError, did_you_mean
from netspec.yaml_loader import Document, Path

#: a name: use with fullmatch (``$`` would also match before a final newline)
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
REQUIRED = "required"

Scalar = int | float | bool | str | None
VarValue = Scalar | list[Scalar]


class BlockDef(BaseModel):
    """A reusable block: ``args`` (``required`` or a default) and its layers."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    args: dict[str, VarValue] = Field(default_factory=dict)
    layers: Annotated[list[Any], Field(min_length=1)]



Number = int | float


class FitRange(BaseModel):
    """The values ``netspec fit`` may give one var: a list, or a range from ``min`` to
    ``max`` in steps of ``step`` (from ``min``) or on the multiples of ``multiple``."""

    model_config = ConfigDict(extra="forbid")

    values: Annotated[list[Number], Field(min_length=1)] | None = None
    min: Number | None = None
    max: Number | None = None
    step: Number | None = Field(default=None, gt=0)
    multiple: int | None = Field(default=None, gt=0)


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    netspec: Literal[1] = Field(description="format version of the spec")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str | None = None
    task: Literal["classification", "segmentation", "features"] | None = Field(
        default=None,
        description="inferred when absent: [K] classification, [K, H, W] segmentation, "
        "several outputs (or tokens [N, D]) features",
    )
    outputs: Annotated[list[str], Field(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="the layers whose values the network returns, in order (default: the "
        "last layer)",
    )
    input: Annotated[list[int | str], Field(min_length=1, max_length=3)] = Field(
        description="input shape without the batch axis: [C, H, W], or [F]"
    )
    vars: dict[str, VarValue] = Field(default_factory=dict)
    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    blocks: dict[str, BlockDef] = Field(default_factory=dict)
    fit: dict[str, FitRange] = Field(
        default_factory=dict,
        description="for netspec fit: the values each var may take (var name → range)",
    )
    layers: Annotated[list[Any], Field(min_length=1)]



def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Path, tuple[Any, ...]]:
    """Split a pydantic ``loc`` into the document path it names and the union-member tags
    pydantic adds (``int``, ``str``, ``list[...]``) that name no place in the document."""
    path: list[Any] = []
    tags: list[Any] = []
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
            path.append(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
            path.append(part)
        else:
            tags.append(part)
    return tuple(path), tuple(tags)


def _message(errs: list[dict[str, Any]]) -> str:
    texts = [e["msg"].removeprefix("Value error, ") for e in errs]
    plain = "Input should be a valid "
    if len(texts) > 1 and all(t.startswith(plain) and "," not in t for t in texts):
        kinds = [t[len(plain):].split(" ")[0] for t in texts]
        text = plain + ", ".join(kinds[:-1]) + " or " + kinds[-1]
    else:
        text = texts[0]
    return text[0].lower() + text[1:] if text else text


def errors_from_pydantic(
    exc: ValidationError,
    doc: Document,
    base: Path = (),
    prefix: str = "",
    paths: Mapping[str, Path] | None = None,
    fields: Mapping[str, Any] | None = None,
    data: Any = None,
) -> list[SpecError]:
    """Turn pydantic's errors into positioned SpecErrors, one per place in the document
    (a value that fits no member of a union gives pydantic one error per member).

    ``base`` is the document path the validated mapping sits at; ``paths`` overrides it
    per top-level key (a layer's options can come from the layer or from ``defaults``).
    ``fields`` are the keys the validated model knows, for unknown-key messages.
    """
    data = doc.data if data is None else data
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for err in exc.errors():
        loc, _ = _data_path(data, tuple(err["loc"]))
        if err["type"] in ("extra_forbidden", "missing"):
            loc = tuple(err["loc"])
        groups.setdefault(loc, []).append(err)
    out = []
    for loc, errs in groups.items():
        err = errs[0]
        head = str(loc[0]) if loc else ""
        where: Path = (*paths[head], *loc[1:]) if paths and head in paths else (*base, *loc)
        dotted = ".".join(str(p) for p in loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            known = list(_known_keys(loc, fields))
            msg = f"unknown key '{loc[-1]}'{did_you_mean(str(loc[-1]), known)}"
            if known:
                msg += f"; expected one of: {', '.join(known)}"
            pos = doc.key(where)
        elif kind == "missing":
            msg = f"missing required key '{loc[-1]}'"
            pos = doc.pos(where[:-1])
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            text = _message(errs)
            msg = f"{dotted}: {text}{shown}" if dotted else text
            pos = doc.pos(where)
        out.append(SpecError(prefix + msg, pos))
    return out


def _known_keys(loc: tuple[Any, ...], fields: Mapping[str, Any] | None) -> list[str]:
    if fields is SpecModel.model_fields and len(loc) == 3 and loc[0] == "blocks":
        return list(BlockDef.model_fields)
    if fields is SpecModel.model_fields and len(loc) == 3 and loc[0] == "fit":
        return list(FitRange.model_fields)
    return list(fields or {})


def validate_top_level(doc: Document) -> SpecModel:
    from netspec.errors import SpecErrors

    try:
        spec = SpecModel.model_validate(doc.data)
    except ValidationError as e:
        raise SpecErrors(errors_from_pydantic(e, doc, fields=SpecModel.model_fields)) from None
    problems = check_names(doc, spec)
    if problems:
        raise SpecErrors(problems)
    return spec


def check_names(doc: Document, spec: SpecModel) -> list[SpecError]:
    """Names of vars, blocks and block args are identifiers; ``in`` is reserved."""
    errors = []
    named: list[tuple[str, Path]] = [(n, ("vars", n)) for n in spec.vars]
    named += [(n, ("blocks", n)) for n in spec.blocks]
    named += [(a, ("blocks", b, "args", a)) for b, blk in spec.blocks.items() for a in blk.args]
    for name, path in named:
        what = {"vars": "var", "blocks": "block"}[str(path[0])] if len(path) == 2 else "arg"
        if not IDENTIFIER.fullmatch(name):
            errors.append(SpecError(f"{what} name '{name}' is not a valid name (letters, "
                                    "digits, _; not starting with a digit)", doc.key(path)))
        elif name == "in" and what != "block":
            errors.append(SpecError("'in' is reserved: $in is the channel count of a block's "
                                    "input", doc.key(path)))
    return errors


def is_required(value: Any) -> bool:
    return value == REQUIRED
