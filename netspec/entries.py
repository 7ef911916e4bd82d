"""One layer entry of a spec, read into its kind and options: ``conv: {out: 64}``,
``relu``, ``norm: batch`` (a shorthand), with the document path of every option.

Shared by the resolver and by the lint pass, which reads every entry without
resolving anything.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from netspec.errors import SpecError, did_you_mean
from netspec.kinds import FAMILIES, KIND_HINTS, SPEC_KINDS, LayerArgs, family_members
from netspec.yaml_loader import Document, Path

#: keys any entry may carry beside its kind's own options
COMMON_KEYS = ("as", "repeat", "input", "register_before")


@dataclass
class Entry:
    """One layer entry of a spec, split into its kind and options, with positions."""

    kind: str
    args: dict[str, Any]
    #: where each option came from in the document (the layer, or ``defaults``)
    paths: dict[str, Path]
    path: Path
    kind_path: Path


def shown(text: str, quote: bool = False) -> str:
    """Text from the user as it goes into a one-line message: control characters (a form
    feed, a line separator) escaped, so the message stays one line."""
    if text.isprintable():
        return f"'{text}'" if quote else text
    return repr(text)


def describe(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"


def op_class(kind: str, args: dict[str, Any]) -> type[LayerArgs] | None:
    """The kind class a spec's kind name means (a family's member by its ``kind``)."""
    family = FAMILIES.get(kind)
    if family is None:
        return None
    if None in family:
        return family[None]
    return family.get(args.get("kind"), next(iter(family.values())))


def unknown_kind(doc: Document, e: Entry, others: Iterable[str]) -> SpecError:
    """``others``: the names beyond layer kinds a spec may use (structures, its blocks)."""
    choices = [*SPEC_KINDS, *others]
    if e.kind.lower() in KIND_HINTS:
        hint = f" (did you mean '{KIND_HINTS[e.kind.lower()]}'?)"
    else:
        hint = did_you_mean(e.kind, choices)
    return SpecError(f"unknown layer kind '{e.kind}'{hint}", doc.key(e.kind_path))


def parse_entry(doc: Document, raw: Any, path: Path, structures: Collection[str],
                blocks: Collection[str]) -> Entry:
    if isinstance(raw, str):
        return Entry(raw, {}, {}, path, path)
    if isinstance(raw, dict) and len(raw) == 1:
        ((kind, value),) = raw.items()
        kpath = (*path, kind)
        if value is None:
            return Entry(kind, {}, {}, path, kpath)
        if isinstance(value, dict):
            return Entry(kind, dict(value), {k: (*kpath, k) for k in value}, path, kpath)
        cls = op_class(kind, {})
        if cls is None and kind not in structures and kind not in blocks:
            raise unknown_kind(doc, Entry(kind, {}, {}, path, kpath), [*structures, *blocks])
        shorthand = "kind" if family_members(kind) else cls.shorthand if cls else None
        if shorthand:
            return Entry(kind, {shorthand: value}, {shorthand: kpath}, path, kpath)
        if cls is not None and cls.shorthand_refusal:
            raise SpecError(f"{kind}: {cls.shorthand_refusal}", doc.pos(kpath))
        raise SpecError(f"{kind} takes a mapping of options, not {describe(value)}",
                        doc.pos(kpath))
    if isinstance(raw, dict) and len(raw) > 1:
        keys = list(raw)
        inner = [k for k in keys[1:] if k in COMMON_KEYS]
        hint = (f"; put {', '.join(inner)} inside {keys[0]}'s options"
                if inner else "; write one layer per list item")
        raise SpecError(f"a layer is a mapping with one key (its kind), found "
                        f"{', '.join(keys)}{hint}", doc.key((*path, keys[1])))
    raise SpecError(f"a layer is a kind name or a one-key mapping, not {describe(raw)}",
                    doc.pos(path))
