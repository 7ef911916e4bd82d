"""The tree of entries → spec text, as a person would write it. Pure Python.

- ``defaults:`` for each option most layers of a kind share (``conv: {bias: false}``);
  every other option only where it differs from the default in force;
- shorthands (``norm: batch``, ``shuffle: 2``), flow mappings one layer a line;
- ``as:`` where a later entry reads a tensor other than the current one, and where a
  layer with weights keeps the source's own name; references as the spec language
  writes them (``in``, ``name``, ``name.i``);
- blocks with their args, repeats with ``$i``.

Names are given as the resolver will see them: each scope's automatic names (conv1,
add2, shortcut…) are followed with the resolver's own :class:`~netspec.names.Namespace`,
so an explicit name never collides with one made earlier.

:func:`expansion_order` lists the flat nodes in the order the resolver will make them from
the text, which netspec/importer/check.py compares with the resolved Graph.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from netspec.importer.blocks import BlockDef, Repeat, is_number
from netspec.importer.flat import INPUT_ID, FlatNet, FlatNode, kind_class
from netspec.importer.structure import (
    Dense,
    Item,
    Layer,
    Parallel,
    Residual,
    Use,
    children,
    written,
)
from netspec.kinds import OPS
from netspec.names import Namespace, name_problem
from netspec.spec import IDENTIFIER

_PLAIN = re.compile(r"[A-Za-z_$][A-Za-z0-9_$ .*/+()-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def scalar(v: Any) -> str:
    """One value in YAML, read back as the same value by netspec's loader."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        text = repr(v)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:  # YAML 1.1 reads 1e-05 as a string
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(v, list | tuple):
        return "[" + ", ".join(scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {scalar(x)}" for k, x in v.items()) + "}"
    text = str(v)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS and text == text.strip():
        return text
    return json.dumps(text, ensure_ascii=False)


def _valid_name(name: str) -> bool:
    return bool(IDENTIFIER.fullmatch(name)) and name_problem(name, True) is None


def _field_default(cls: type, option: str) -> Any:
    info = cls.model_fields.get(option)
    if info is None or info.is_required():
        return _REQUIRED
    return info.get_default(call_default_factory=True)


_REQUIRED = object()


# ---------------------------------------------------------------------------- defaults
def find_defaults(layers: Iterable[FlatNode], written: dict[int, dict[str, Any]]
                  ) -> dict[str, dict[str, Any]]:
    """For each spec kind, the literal option values shared by more than half of its
    layers (the kind's own default aside: nothing to write)."""
    counts: dict[tuple[str, str], Counter[Any]] = {}
    totals: Counter[tuple[str, str]] = Counter()
    classes: dict[tuple[str, str], set[type]] = {}
    for n in layers:
        cls = kind_class(n.kind, n.options)
        opts = written.get(n.id, n.options)
        for option, info in cls.option_fields().items():
            if option in _OWN or info.is_required():
                continue  # what each layer says for itself
            totals[(n.kind, option)] += 1
            classes.setdefault((n.kind, option), set()).add(cls)
            if option in opts and not _is_expr(opts[option]):
                v = opts[option]
                counts.setdefault((n.kind, option), Counter())[json.dumps(v)] += 1
    out: dict[str, dict[str, Any]] = {}
    for (kind, option), c in counts.items():
        text, times = c.most_common(1)[0]
        value = json.loads(text)
        if all(_field_default(m, option) == value for m in classes[(kind, option)]):
            continue
        # "nearly every" layer: a default that half the layers override reads worse
        if times >= 3 and times >= 0.8 * totals[(kind, option)]:
            out.setdefault(kind, {})[option] = value
    return out


#: options a layer states for itself, never put in defaults: its geometry and rates
_OWN = {"kind", "from", "stride", "pad", "dilation", "groups", "k", "size", "out", "parts",
        "sizes", "scale", "drop", "keep", "init", "bins", "slope", "alpha", "output_pad",
        "register_first"}


def _is_expr(v: Any) -> bool:
    return isinstance(v, str) and "$" in v


# ---------------------------------------------------------------------------- the writer
@dataclass
class _List:
    """One layer list being written: its scope's names, its block input, the current
    tensor."""

    ns: Namespace
    entry: int
    cur: int
    #: the names of tensors in sight: id → reference text
    names: dict[int, str] = field(default_factory=dict)
    #: the network's own scope (where a name can be the source's module path itself)
    top: bool = False


class Writer:
    def __init__(self, net: FlatNet, tree: list[Item], blocks: dict[str, BlockDef]) -> None:
        self.net = net
        self.tree = tree
        self.blocks = blocks
        self.referenced: set[int] = set()
        self.exprs: dict[tuple[int, str], Any] = {}
        for b in blocks.values():
            self.exprs.update(b.exprs)
        self.lines: list[str] = []
        #: entries another entry of their list registers before (they need a name), the
        #: names they got, and the entries still to write with their register_before
        self._forced: set[int] = set()
        self._before_names: dict[int, str] = {}
        self._pending_before: dict[int, str] = {}
        self._last_of = {s.path: n.id for n in net.nodes for s in n.scopes}
        self._find_references(tree, INPUT_ID, INPUT_ID)
        if len(net.outputs) > 1:  # ``outputs:`` names each one
            self.referenced.update(t for t in net.outputs if t != INPUT_ID)
        # a block's layers are its first use's: what the network reads of that use (its
        # output) is no name inside the block
        self._top_references = self.referenced
        self._block_references: dict[str, set[int]] = {}
        for b in blocks.values():
            self.referenced = self._block_references[b.name] = set()
            self._find_references(b.template, b.uses[0].reads[0], b.uses[0].reads[0])
        self.referenced = self._top_references
        self.defaults = find_defaults(self._written_layers(), {})
        self.classes = self._classifier()

    def _classifier(self) -> FlatNode | None:
        """The linear that makes a classifier's one output, at the top: its ``out`` is the
        var ``classes``, as a person would write it (``--set classes=10``)."""
        if len(self.net.outputs) != 1:
            return None
        for it in self.tree:
            if isinstance(it, Layer) and it.out == self.net.outputs[0] \
                    and it.node.kind == "linear" and len(it.node.shape) == 1:
                return it.node
        return None

    # -------------------------------------------------------------- references
    def _find_references(self, items: Sequence[Item], entry: int, cur: int) -> None:
        for it in items:
            if isinstance(it, Layer) and _is_merge(it.node):
                wanted = list(it.reads) if cur in it.reads[1:] else (
                    it.reads[1:] if it.reads[0] == cur else it.reads)
            else:
                wanted = [] if not it.reads or it.reads[0] == cur else it.reads[:1]
            self.referenced.update(t for t in wanted if t != entry)
            start = it.reads[0] if it.reads else cur
            if isinstance(it, Residual):
                self._find_references(it.body, entry, start)
                if it.shortcut is not None:
                    self._find_references(it.shortcut, entry, start)
            elif isinstance(it, Parallel):
                for b in it.branches:
                    if b is not None:
                        self._find_references(b, entry, start)
            elif isinstance(it, Dense):
                self._find_references(it.layers[0], entry, start)
            cur = it.out

    def _written_layers(self) -> list[FlatNode]:
        """The layers the text writes (a block's once, a dense body once)."""
        out: list[FlatNode] = []
        lists: list[Sequence[Item]] = [self.tree, *(b.template for b in self.blocks.values())]
        for items in lists:
            for it in written(items):
                if isinstance(it, Layer) and not _is_merge(it.node):
                    out.append(it.node)
        return out

    # -------------------------------------------------------------- values
    def _value(self, item: Item, key: str, literal: Any) -> Any:
        return self.exprs.get((id(item), key), literal)

    def _options(self, it: Layer) -> dict[str, Any]:
        n = it.node
        cls = kind_class(n.kind, n.options)
        defaults = self.defaults.get(n.kind, {})
        out: dict[str, Any] = {}
        # a family's member first: norm: {kind: layer, …}
        for option in sorted(cls.option_names(), key=lambda o: o != "kind"):
            if option in ("from",):
                continue
            if n is self.classes and option == "out":
                value = "$classes"
            elif (id(it), option) in self.exprs:
                value = self.exprs[(id(it), option)]
            elif option in n.options:
                value = n.options[option]
            elif option in defaults:
                value = _field_default(cls, option)  # the kind's own, now not the default
            else:
                continue
            default = defaults.get(option, _field_default(cls, option))
            if option == "kind" or value != default:
                out[option] = value
        return out

    # -------------------------------------------------------------- names
    def _claim(self, lst: _List, it: Item, prefix: str) -> str | None:
        """The explicit name the entry gets (None: its automatic one), following the
        resolver's naming of this scope."""
        name = self._claimed(lst, it, prefix)
        if name is not None and id(it) in self._forced:
            self._before_names[id(it)] = name
        return name

    def _claimed(self, lst: _List, it: Item, prefix: str) -> str | None:
        wanted = self._wanted_name(it, prefix, lst)
        if wanted is not None and lst.ns.claim(wanted):
            return wanted
        if id(it) in self._forced and isinstance(it, Layer):
            # register_before names it: the source's name for it, or a new one
            local = self._exit_name(it.node)
            if local and _valid_name(local) and lst.ns.claim(local):
                return local
        if any(t in self.referenced for t in it.outs) or id(it) in self._forced:
            k = 1
            while not lst.ns.claim(f"y{k}"):
                k += 1
            return f"y{k}"
        lst.ns.taken.add(lst.ns.auto(prefix))  # as the resolver takes an automatic name
        return None

    def _wanted_name(self, it: Item, prefix: str, lst: _List) -> str | None:
        """The source's name for the entry, where it tells something: a layer with
        weights at the top whose module path is one name (``fc``: then the spec's names
        are the source's), a module written as a block use, a container written as a
        repeat, or what an entry another one reads was called."""
        referenced = any(t in self.referenced for t in it.outs)
        local: str | None = None
        if isinstance(it, Layer):
            n = it.node
            if lst.top and n.tensors and "." not in n.path and n.own_path:
                local = n.path
            elif lst.top and n.tensors and not n.own_path:
                local = self._parameter_name(n)
            if local is None and referenced:
                local = self._exit_name(n)
        elif isinstance(it, Use):
            if lst.top or referenced:
                local = it.scope.path.rpartition(".")[2]
        elif isinstance(it, Repeat):
            if lst.top and it.name:
                local = it.name.replace(".", "_")
        elif referenced and isinstance(it, Residual | Parallel | Dense):
            merge = it.merges[-1] if isinstance(it, Dense) else it.merge
            local = self._exit_name(merge) if merge is not None else None
        if not local or not _valid_name(local) or re.fullmatch(rf"{prefix}\d+", local):
            return None
        return local

    @staticmethod
    def _parameter_name(n: FlatNode) -> str | None:
        """A function's layer at the top that reads one parameter of the network itself
        (``self.gamma * x``): the parameter's name."""
        sources = set(n.tensors.values())
        if len(sources) == 1:
            (source,) = sources
            return source if "." not in source else None
        return None

    def _exit_name(self, n: FlatNode) -> str | None:
        """The layer's own name, or that of the innermost module it is the output of
        (ShuffleNet's ``branch2``). A function's layer is not named after the module whose
        code called it unless it makes that module's output."""
        if n.own_path and _valid_name(n.local):
            return n.local
        for s in reversed(n.scopes):
            local = s.path.rpartition(".")[2]
            if self._last_of.get(s.path) == n.id and _valid_name(local):
                return local
        return None

    def _ref(self, lst: _List, t: int) -> str:
        if t == lst.entry:
            return "in"
        return lst.names[t]

    def _name_outs(self, lst: _List, it: Item, name: str | None) -> None:
        if name is None:
            return
        if (isinstance(it, Layer) and len(it.nodes) > 1) or (
                isinstance(it, Layer) and it.node.part is not None):
            for n in it.nodes:
                lst.names[n.id] = f"{name}.{n.part}"
        else:
            lst.names[it.out] = name

    # -------------------------------------------------------------- entries
    def entries(self, items: Sequence[Item], lst: _List, indent: int) -> None:
        moves = self._register_moves(items)
        self._forced.update(id(t) for t in moves.values())
        for it in items:
            if id(it) in moves:  # its target, earlier in this list, is written and named
                self._pending_before[id(it)] = self._before_names[id(moves[id(it)])]
            self._entry(it, lst, indent)
            lst.cur = it.out

    def _register_moves(self, items: Sequence[Item]) -> dict[int, Item]:
        """The entries of this list that the source registers before an earlier entry of
        it (torchvision's PatchMerging creates ``reduction`` before the ``norm`` its
        forward runs first): entry id → that earlier entry, the first one whose tensors
        the source registers after this one's, written as ``register_before``. An entry
        is placed by its first tensor; the proof (``registration_matches``) says whether
        the order came out as the source's."""
        order = {p: i for i, p in enumerate(self.net.source_params)}

        def layers(it: Item) -> list[Layer]:
            if isinstance(it, Repeat):
                return [x for u in it.uses for x in layers(u)]
            inner = [x for sub in children(it) for y in sub for x in layers(y)]
            return [it, *inner] if isinstance(it, Layer) else inner

        def first(it: Item) -> int | None:
            if isinstance(it, Layer) and it.node.options.get("register_first"):
                return None  # a layer scale held first in its scope says so itself
            at = [order[t] for x in layers(it) for n in x.nodes
                  for t in n.tensors.values() if t in order]
            return min(at) if at else None

        moves: dict[int, Item] = {}
        seen: list[tuple[int, Item]] = []
        for it in items:
            mine = first(it)
            if mine is None:
                continue
            later = [other for at, other in seen if at > mine]
            if later and id(later[0]) not in moves:
                moves[id(it)] = later[0]
            seen.append((mine, it))
        return moves

    def _input(self, it: Item, lst: _List, keys: dict[str, Any]) -> None:
        if it.reads and it.reads[0] != lst.cur and not (
                isinstance(it, Layer) and _is_merge(it.node)):
            keys["input"] = self._ref(lst, it.reads[0])

    def _line(self, indent: int, text: str) -> None:
        self.lines.append(" " * indent + text)

    def _entry(self, it: Item, lst: _List, indent: int) -> None:
        if isinstance(it, Layer):
            self._layer(it, lst, indent)
        elif isinstance(it, Residual):
            self._residual(it, lst, indent)
        elif isinstance(it, Parallel):
            self._parallel(it, lst, indent)
        elif isinstance(it, Dense):
            self._dense(it, lst, indent)
        elif isinstance(it, Repeat):
            self._use(it.uses[0], lst, indent, it)
        elif isinstance(it, Use):
            self._use(it, lst, indent, None)

    def _layer(self, it: Layer, lst: _List, indent: int) -> None:
        n = it.node
        cls = kind_class(n.kind, n.options)
        keys: dict[str, Any] = {}
        if _is_merge(n):
            # a merge reads the current tensor, then its list; a list that names the
            # current tensor is taken as written; another first input comes by input:
            if lst.cur in it.reads[1:]:
                refs = list(it.reads)
            elif it.reads[0] == lst.cur:
                refs = it.reads[1:]
            else:
                keys["input"] = self._ref(lst, it.reads[0])
                refs = it.reads[1:]
            ref_texts = [self._ref(lst, t) for t in refs]
            name = self._claim(lst, it, cls.auto_name)
            if name:
                keys["as"] = name
            if keys:
                self._line(indent, f"- {n.kind}: {scalar({'from': ref_texts, **keys})}")
            else:
                self._line(indent, f"- {n.kind}: {scalar(ref_texts)}")
            self._name_outs(lst, it, name)
            return
        options = self._options(it)
        self._input(it, lst, keys)
        name = self._claim(lst, it, cls.auto_name)
        if name:
            keys["as"] = name
        if id(it) in self._pending_before:
            keys["register_before"] = self._pending_before.pop(id(it))
        self._name_outs(lst, it, name)
        opts = {**options, **keys}
        shorthand = cls.shorthand
        if not opts:
            self._line(indent, f"- {n.kind}")
        elif shorthand and list(opts) == [shorthand]:
            self._line(indent, f"- {n.kind}: {scalar(opts[shorthand])}")
        else:
            self._line(indent, f"- {n.kind}: {scalar(opts)}")

    def _tail(self, it: Item, lst: _List, indent: int, prefix: str, more: dict[str, Any]
              ) -> None:
        keys = dict(more)
        self._input(it, lst, keys)
        name = self._claim(lst, it, prefix)
        if name:
            keys["as"] = name
        if id(it) in self._pending_before:
            keys["register_before"] = self._pending_before.pop(id(it))
        for k, v in keys.items():
            self._line(indent + 4, f"{k}: {scalar(v)}")
        self._name_outs(lst, it, name)

    def _body(self, key: str, items: Sequence[Item], lst: _List, start: int, indent: int,
              ns: Namespace | None = None) -> None:
        self._line(indent + 4, f"{key}:")
        inner = _List(ns or lst.ns, lst.entry, start, lst.names if ns is None
                      else dict(lst.names), top=lst.top and ns is None)
        self.entries(items, inner, indent + 6)
        if ns is None:
            lst.names.update(inner.names)

    def _residual(self, it: Residual, lst: _List, indent: int) -> None:
        assert it.merge is not None
        self._line(indent, "- residual:")
        start = it.reads[0]
        self._body("body", it.body, lst, start, indent)
        more: dict[str, Any] = {}
        if it.shortcut is not None:
            lst.ns.numbered("shortcut")
            if not it.auto:
                self._body("shortcut", it.shortcut, lst, start, indent, Namespace())
        elif not it.auto:
            more["shortcut"] = "identity"
        if it.merge.kind != "add":
            more["combine"] = it.merge.kind
        if it.first and it.shortcut is not None:
            more["shortcut_first"] = True
        self._tail(it, lst, indent, OPS[it.merge.args.op].auto_name  # type: ignore[union-attr]
                   if it.merge.args else "add", more)

    def _parallel(self, it: Parallel, lst: _List, indent: int) -> None:
        assert it.merge is not None
        self._line(indent, "- parallel:")
        self._line(indent + 4, "branches:")
        for i, b in enumerate(it.branches):
            if b is None:
                self._line(indent + 6, "- identity")
                continue
            lst.ns.numbered("branch", start=i + 1)
            inner = _List(Namespace(), lst.entry, it.reads[0], dict(lst.names))
            self.lines.append(" " * (indent + 6) + "-")
            mark = len(self.lines)
            self.entries(b, inner, indent + 8)
            # "-" then its list on the next lines reads as "- - first…": one line less
            first = self.lines[mark].strip()
            del self.lines[mark - 1:mark + 1]
            self.lines.insert(mark - 1, " " * (indent + 6) + "- " + first)
        more = {} if it.merge.kind == "concat" else {"combine": it.merge.kind}
        self._tail(it, lst, indent, "cat" if it.merge.kind == "concat" else "add", more)

    def _dense(self, it: Dense, lst: _List, indent: int) -> None:
        self._line(indent, "- dense:")
        self._line(indent + 4, f"n: {self._value(it, 'n', len(it.layers))}")
        self._body("body", it.layers[0], lst, it.reads[0], indent, Namespace())
        self._tail(it, lst, indent, "dense", {})

    def _use(self, u: Use, lst: _List, indent: int, rep: Repeat | None) -> None:
        # every arg the use writes: in a block's layers, what the enclosing block says
        # (an expression of its args) even where this first use has the default
        defaults = self.blocks[u.block].args
        args = {a: self._value(u, a, v) for a, v in u.full_args.items()}
        args = {a: v for a, v in args.items() if v != defaults.get(a) or a not in defaults}
        if rep is not None:
            args = dict(rep.args)
            args["repeat"] = len(rep.uses)
        keys: dict[str, Any] = {}
        item: Item = rep if rep is not None else u
        self._input(item, lst, keys)
        name = self._claim(lst, item, u.block)
        if name:
            keys["as"] = name
        if id(item) in self._pending_before:
            keys["register_before"] = self._pending_before.pop(id(item))
        self._name_outs(lst, item, name)
        opts = {**args, **keys}
        self._line(indent, f"- {u.block}: {scalar(opts)}" if opts else f"- {u.block}")

    def _shape(self, t: int) -> tuple[int, ...]:
        if t == INPUT_ID:
            return self.net.input_shape
        return self._shapes[t]

    @property
    def _shapes(self) -> dict[int, tuple[int, ...]]:
        cached = getattr(self, "_shape_cache", None)
        if cached is None:
            cached = {n.id: n.shape for n in self.net.nodes}
            self._shape_cache = cached
        return cached

    # -------------------------------------------------------------- the whole text
    def text(self, header: Sequence[str]) -> str:
        self.lines = [f"# {h}" if h else "#" for h in header]
        self._line(0, "netspec: 1")
        self._line(0, f"name: {scalar(self.net.name)}")
        self._line(0, f"input: {scalar(list(self.net.input_shape))}")
        if len(self.net.outputs) > 1:
            self._line(0, "task: features")
        if self.classes is not None:
            self._line(0, f"vars: {{classes: {self.classes.options['out']}}}")
        if self.defaults:
            self.lines.append("")
            self._line(0, "defaults:")
            for kind, opts in self.defaults.items():
                self._line(2, f"{kind}: {scalar(opts)}")
        if self.blocks:
            self.lines.append("")
            self._line(0, "blocks:")
            for b in self.blocks.values():
                self._block(b)
        self.lines.append("")
        self._line(0, "layers:")
        top = _List(Namespace(), INPUT_ID, INPUT_ID, top=True)
        self.entries(self.tree, top, 2)
        if len(self.net.outputs) > 1:
            outs = [self._output_ref(top, t) for t in self.net.outputs]
            self._line(0, f"outputs: {scalar(outs)}")
        return "\n".join(self.lines) + "\n"

    def _output_ref(self, lst: _List, t: int) -> str:
        return "in" if t == INPUT_ID else lst.names.get(t, "")

    def _block(self, b: BlockDef) -> None:
        self._line(2, f"{b.name}:")
        self._line(4, f"description: {scalar(b.cls)}")
        if b.args:
            args = {a: "required" if d is None else d for a, d in b.args.items()}
            self._line(4, f"args: {scalar(args)}")
        self._line(4, "layers:")
        entry = b.uses[0].reads[0]
        self.referenced = self._block_references[b.name]
        self.entries(b.template, _List(Namespace(), entry, entry), 6)
        self.referenced = self._top_references


def _is_merge(n: FlatNode) -> bool:
    return OPS[n.args.op].arity is None if n.args is not None else False


# ---------------------------------------------------------------------------- order
def expansion_order(items: Sequence[Item]) -> list[int]:
    """The flat nodes in the order the resolver makes them from the written text."""
    out: list[int] = []
    for it in items:
        if isinstance(it, Layer):
            out += [n.id for n in it.nodes]
        elif isinstance(it, Residual):
            body, short = expansion_order(it.body), expansion_order(it.shortcut or [])
            out += (short + body) if it.first and short else (body + short)
            out.append(it.out)
        elif isinstance(it, Parallel):
            for b in it.branches:
                out += expansion_order(b or [])
            out.append(it.out)
        elif isinstance(it, Dense):
            for body, merge in zip(it.layers, it.merges, strict=True):
                out += expansion_order(body)
                out.append(merge.id)
        elif isinstance(it, Repeat):
            for u in it.uses:
                out += expansion_order(u.body)
        elif isinstance(it, Use):
            out += expansion_order(it.body)
    return out


def spec_text(net: FlatNet, tree: list[Item], blocks: dict[str, BlockDef],
              header: Sequence[str]) -> str:
    return Writer(net, tree, blocks).text(header)


__all__ = ["expansion_order", "find_defaults", "is_number", "scalar", "spec_text"]
