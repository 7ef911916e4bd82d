"""Problems found before resolving: in ``defaults`` and in every layer list at once
(malformed entries, unknown kinds, options and block args), so one run reports all of
them. Needs no shapes and no resolver: entries are read the way the resolver reads them
(netspec/entries.py), options checked against each kind's option names."""

from __future__ import annotations

from typing import Any

from netspec.entries import COMMON_KEYS, unknown_kind
from netspec.errors import SpecError, did_you_mean
from netspec.kinds import FAMILIES, SPEC_KINDS, family_members
from netspec.memo import memo
from netspec.spec import SpecModel
from netspec.structures import STRUCTURES
from netspec.yaml_loader import Document, Path


def check_defaults(doc: Document, spec: SpecModel) -> list[SpecError]:
    """Every ``defaults`` key names a kind, and every option in it exists for that kind."""
    errors = []
    for kind, options in spec.defaults.items():
        if kind in FAMILIES:
            fields = set().union(*(c.option_names() for c in FAMILIES[kind].values()))
            if family_members(kind):
                fields.add("kind")
        else:
            errors.append(SpecError(
                f"defaults: unknown layer kind '{kind}'{did_you_mean(kind, SPEC_KINDS)}",
                doc.key(("defaults", kind))))
            continue
        for key in options:
            if key not in fields:
                errors.append(SpecError(
                    f"defaults: {kind} has no option '{key}'{did_you_mean(key, fields)}",
                    doc.key(("defaults", kind, key))))
    for name in spec.blocks:
        if name in SPEC_KINDS or name in STRUCTURES:
            errors.append(SpecError(f"block name '{name}' is a built-in layer kind; "
                                    "choose another", doc.key(("blocks", name))))
    return errors


def lint_layers(doc: Document, spec: SpecModel) -> list[SpecError]:
    """Malformed entries, unknown kinds, options and block args in every layer list."""
    errors: list[SpecError] = []
    # through the Document's memo: the resolver then reads each entry's layout from it,
    # so the document's entries are walked once, here
    read = memo(doc).entry

    def walk(items: Any, path: Path) -> None:
        entries = items if isinstance(items, list) else [items]
        for i, raw in enumerate(entries):
            here = (*path, i) if isinstance(items, list) else path
            try:
                e = read(doc, raw, here, STRUCTURES, spec.blocks)
            except SpecError as err:
                errors.append(err)
                continue
            own = {k: v for k, v in e.args.items() if k not in COMMON_KEYS}
            if e.kind in spec.blocks:
                known: tuple[str, ...] | None = tuple(spec.blocks[e.kind].args)
                what = f"block '{e.kind}' has no arg"
            elif e.kind in STRUCTURES:
                structure = STRUCTURES[e.kind]
                known = structure.keys
                what = f"{e.kind}: unknown key"
                for key in structure.bodies:
                    if isinstance(own.get(key), list | dict) or (
                            key == "body" and isinstance(own.get(key), str)):
                        walk(own[key], e.paths[key])
                for key in structure.branch_lists:
                    if isinstance(own.get(key), list):
                        for j, branch in enumerate(own[key]):
                            if branch != "identity":
                                walk(branch, (*e.paths[key], j))
            elif (members := family_members(e.kind)) is not None:
                # a member chosen by an expression or a default is checked when resolved
                cls = members.get(str(own.get("kind")))
                known = (*dict.fromkeys((*cls.option_names(), "kind")),) if cls else None
                what = f"{e.kind} {own.get('kind')}: unknown option"
            elif e.kind in FAMILIES:
                known = FAMILIES[e.kind][None].option_names()
                what = f"{e.kind}: unknown option"
            else:
                errors.append(unknown_kind(doc, e, [*STRUCTURES, *spec.blocks]))
                continue
            if known is None:
                continue
            for key in own:
                if key not in known:
                    errors.append(SpecError(
                        f"{what} '{key}'{did_you_mean(key, known)}"
                        + (f"; expected one of: {', '.join(known)}" if known else ""),
                        doc.key(e.paths[key])))

    walk(spec.layers, ("layers",))
    for name, block in spec.blocks.items():
        walk(block.layers, ("blocks", name, "layers"))
    return errors
