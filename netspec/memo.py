"""What resolving a Document again reuses: the work on it that no var changes.

``netspec fit`` resolves one Document thousands of times with only vars changing. A
:class:`Memo` per Document keeps, across those resolves, how each entry's options are
laid out (its kind, the document path of each option), the entries' positions, and
the kind models validated from options that were the same last time (``norm: batch``,
``maxpool: {k: 3, stride: 2}``: most layers of a network).

Nothing kept can go stale or be changed by a caller: option values are read afresh
from the entry each time, a model is reused only for options equal in value and type,
and only when all its fields are immutable (a frozen model of scalars and tuples);
errors are never kept (a bad entry is read again, and raises again).
"""

from __future__ import annotations

import weakref
from collections.abc import Collection
from typing import Any, NamedTuple

from netspec.entries import Entry, parse_entry
from netspec.errors import Pos
from netspec.kinds import LayerArgs
from netspec.yaml_loader import Document, Path

#: the most models a Memo keeps: the layers whose options no var changes come first (the
#: first resolve), and a search's ever-new sizes must not grow it without bound
MAX_MODELS = 1024

#: option values whose equality is sameness (not float: -0.0 == 0.0; not bool beside
#: int without its type: True == 1)
_SCALARS = (int, str, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)


class _Layout(NamedTuple):
    """How an entry ``kind: value`` was read: what its kind and the paths of its options
    are. They stay so while the entry is the same (``is``) and has options of the same
    keys, or a value that fills the same shorthand option."""

    raw: dict[str, Any]
    kind: str
    kind_path: Path
    #: ``kind: {options}``: each option's path (only their keys are ever read, not
    #: their order); None for a shorthand
    paths: dict[str, Path] | None
    #: ``kind: value``: the option the value fills
    shorthand: str | None

    def entry(self, path: Path) -> Entry | None:
        """The entry at ``path`` with the values it holds now, or None when it no longer
        has this layout."""
        value = self.raw.get(self.kind) if len(self.raw) == 1 else None
        if self.paths is not None:
            if isinstance(value, dict) and value.keys() == self.paths.keys():
                return Entry(self.kind, dict(value), dict(self.paths), path, self.kind_path)
        elif value is not None and not isinstance(value, dict):
            assert self.shorthand is not None
            return Entry(self.kind, {self.shorthand: value}, {self.shorthand: self.kind_path},
                         path, self.kind_path)
        return None


class Memo:
    """One Document's reusable reads; see the module's docstring."""

    __slots__ = ("_layouts", "_models", "_positions")

    def __init__(self) -> None:
        self._layouts: dict[Path, _Layout] = {}
        self._positions: dict[Path, Pos] = {}
        #: (kind, options, their types) → the model validated from them
        self._models: dict[tuple[Any, ...], LayerArgs] = {}

    def entry(self, doc: Document, raw: Any, path: Path, structures: Collection[str],
              blocks: Collection[str]) -> Entry:
        """:func:`parse_entry`'s result, a new :class:`Entry` each time (the resolver
        takes ``as``, ``repeat``… off its args), with the layout of a ``kind: value``
        entry read once (see :class:`_Layout`)."""
        if not isinstance(raw, dict):  # a kind's name alone: nothing to keep
            return parse_entry(doc, raw, path, structures, blocks)
        layout = self._layouts.get(path)
        if layout is not None and layout.raw is raw:
            e = layout.entry(path)
            if e is not None:
                return e
        e = parse_entry(doc, raw, path, structures, blocks)
        value = raw[e.kind]
        if isinstance(value, dict):
            self._layouts[path] = _Layout(raw, e.kind, e.kind_path, dict(e.paths), None)
        elif value is not None:  # a shorthand: ``norm: batch`` is ``{kind: batch}``
            (shorthand,) = e.args
            self._layouts[path] = _Layout(raw, e.kind, e.kind_path, None, shorthand)
        return e

    def pos(self, doc: Document, path: Path) -> Pos:
        """``doc.pos(path)``, looked up once per path (a Document's positions are those
        of its text, which never changes)."""
        found = self._positions.get(path)
        if found is None:
            found = self._positions[path] = doc.pos(path)
        return found

    def validated(self, cls: type[LayerArgs], args: dict[str, Any]) -> LayerArgs:
        """``cls.model_validate(args)``: the model validated last time from the same
        options, when they are scalars and it is immutable (pydantic's validation is
        a tenth of a resolve)."""
        key = _options_key(cls, args)
        if key is None:
            return cls.model_validate(args)
        model = self._models.get(key)
        if model is None:
            model = cls.model_validate(args)  # raises for bad options: nothing kept
            if len(self._models) < MAX_MODELS and _immutable(model):
                self._models[key] = model
        return model


def _options_key(cls: type[LayerArgs], args: dict[str, Any]) -> tuple[Any, ...] | None:
    """``cls``, the options and their types, or None when one is not a scalar (a list,
    a float)."""
    types = tuple(map(type, args.values()))
    if not _SCALAR_TYPES.issuperset(types):
        return None
    return (cls, tuple(args.items()), types)


def _immutable(model: LayerArgs) -> bool:
    """Whether every field holds a value nothing can change (a list default cannot be
    shared between layers, or between the Graphs of two resolves), and the model has no
    private attributes (a frozen model's may still be set: a split's part index)."""
    if model.__pydantic_private__:
        return False
    return all(_frozen(v) for v in model.__dict__.values())


def _frozen(value: Any) -> bool:
    if type(value) is tuple:
        return all(_frozen(v) for v in value)
    return type(value) in _SCALARS or type(value) is float


_MEMOS: dict[int, Memo] = {}


def memo(doc: Document) -> Memo:
    """``doc``'s memo: made on first use, dropped when ``doc`` is garbage-collected
    (a Document is not hashable, so it is kept by identity)."""
    found = _MEMOS.get(id(doc))
    if found is None:
        found = _MEMOS[id(doc)] = Memo()
        weakref.finalize(doc, _MEMOS.pop, id(doc), None)
    return found
