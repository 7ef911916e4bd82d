"""Block uses → ``blocks:`` with args, and consecutive uses → ``repeat:``. Pure Python.

The uses of one source class whose entries have the same structure (the same layers and
wiring, numbers aside) become one block; each number that differs between them becomes
an expression inside the block, found in this order: the same in every use (written as
it is); ``$in`` or a multiple of it (the use's input channels); a multiple of an arg
found before (``$c * 4``); ``$in`` times an arg; a schedule over the class's uses in
network order (stochastic depth's linearly growing rate: ``0.1 * $b / 17`` with ``b`` the
use's index); else a new arg, named after the option (``out`` → ``c``).

Then, in the network's own layer lists, consecutive uses of one block that each read the
previous one's output become one ``repeat:``, their args written over ``$i`` where they
follow it (the same, growing by a step, or different in the first copy only: a stage's
stride, ``2 - min($i, 1)``).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from netspec.importer.flat import FlatNet, FlatNode, kind_class
from netspec.importer.structure import (
    Dense,
    Item,
    Layer,
    Parallel,
    Residual,
    Use,
    walk,
    written,
)

#: what an option's differing values are called as a block arg
ARG_NAMES = {"out": "c", "drop": "drop", "stride": "stride", "k": "k", "groups": "groups",
             "parts": "parts", "n": "n"}


_ARG_ORDER = {"c": 0, "k": 1, "stride": 2, "groups": 3}


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@dataclass
class BlockDef:
    name: str
    cls: str
    #: the first use's entries: the block's layers, its numbers read through ``exprs``
    template: list[Item]
    #: (id of a template item, option or arg key) → what the block writes there
    exprs: dict[tuple[int, str], Any] = field(default_factory=dict)
    #: arg name → its default, or None when every use gives it
    args: dict[str, Any] = field(default_factory=dict)
    uses: list[Use] = field(default_factory=list)


@dataclass
class Repeat(Item):
    """``n`` consecutive uses of a block, each on the previous one's output."""

    uses: list[Use] = field(default_factory=list)
    #: arg → its value or an expression over ``$i``
    args: dict[str, Any] = field(default_factory=dict)
    name: str | None = None


# ---------------------------------------------------------------------------- templates
def full_options(n: FlatNode) -> dict[str, Any]:
    """Every option of the layer's kind, the ones its reader left out at their defaults:
    two uses of a block differ in a value, not in which options they write."""
    cls = kind_class(n.kind, n.options)
    out: dict[str, Any] = {}
    for option, info in cls.option_fields().items():
        if option == "from":
            continue
        if option in n.options:
            out[option] = n.options[option]
        elif not info.is_required():
            out[option] = info.get_default(call_default_factory=True)
    return out


def _slots(items: Sequence[Item]) -> list[tuple[Item, str, Any]]:
    """Every number the entries write, in a fixed order: (item, key, value)."""
    out: list[tuple[Item, str, Any]] = []
    for it in written(items):
        if isinstance(it, Layer):
            out += [(it, k, v) for k, v in sorted(full_options(it.node).items())
                    if is_number(v)]
        elif isinstance(it, Use):
            out += [(it, k, v) for k, v in sorted(it.full_args.items()) if is_number(v)]
        elif isinstance(it, Dense):
            out.append((it, "n", len(it.layers)))
    return out


def _shape(v: Any) -> Any:
    if is_number(v):
        return "#"
    if isinstance(v, list | tuple):
        return tuple(v)
    return v


def template_key(items: Sequence[Item], entry: int) -> tuple:
    """The entries' structure with their numbers left out, tensors by local index."""
    local: dict[int, Any] = {entry: "in"}

    def ref(t: int) -> Any:
        return local.get(t, "outside")

    def made(it: Item) -> None:
        for t in it.outs:
            local.setdefault(t, len(local))

    def key(items: Sequence[Item]) -> tuple:
        out: list[Any] = []
        for it in items:
            reads = tuple(ref(t) for t in it.reads)
            if isinstance(it, Layer):
                opts = tuple((k, _shape(v)) for k, v in sorted(full_options(it.node).items()))
                out.append(("layer", it.node.kind, opts, reads, len(it.nodes)))
            elif isinstance(it, Residual):
                short = "auto" if it.auto else None if it.shortcut is None else key(it.shortcut)
                out.append(("residual", reads, key(it.body), short,
                            it.merge.kind if it.merge else None, it.first and not it.auto))
            elif isinstance(it, Parallel):
                out.append(("parallel", reads, tuple(None if b is None else key(b)
                                                     for b in it.branches),
                            it.merge.kind if it.merge else None))
            elif isinstance(it, Dense):
                first = key(it.layers[0])
                rest = {key(b) for b in it.layers[1:]}
                out.append(("dense", reads, first, rest <= {first}))
            elif isinstance(it, Use):
                out.append(("use", it.block, tuple(sorted((k, _shape(v))
                                                          for k, v in it.full_args.items())),
                            reads))
            made(it)
        return tuple(out)

    return key(items)


def _depth(items: Sequence[Item], d: int = 0) -> dict[int, int]:
    """Each use's nesting depth among uses, by id."""
    from netspec.importer.structure import children
    out: dict[int, int] = {}
    for it in items:
        if isinstance(it, Use):
            out[id(it)] = d
        for sub in children(it):
            out.update(_depth(sub, d + (1 if isinstance(it, Use) else 0)))
    return out


def _snake(cls: str) -> str:
    """A block's name from its class (``Bottleneck`` → ``bottleneck``; an ONNX scope's
    ``layer#.#`` → ``layer``)."""
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", cls.rpartition(":")[2].rpartition(".")[2]
                       ) or re.findall(r"[A-Za-z_][A-Za-z0-9_]*", cls.rpartition(":")[2])
    name = (words[-1] if words else "block").lstrip("_")
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (
                i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    snake = "".join(out).strip("_") or "block"
    return snake if snake[0].isalpha() else f"block_{snake}"


# ---------------------------------------------------------------------------- args
def _ratio(v: list[Any], base: list[Any]) -> str | None:
    """``*r`` or ``//r`` when v is base times (or divided by) one whole number."""
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (*v, *base)):
        return None
    if any(b == 0 for b in base):
        return None
    if all(x % b == 0 for x, b in zip(v, base, strict=True)):
        r = {x // b for x, b in zip(v, base, strict=True)}
        if len(r) == 1:
            (n,) = r
            return "" if n == 1 else f" * {n}"
    if all(x and b % x == 0 for x, b in zip(v, base, strict=True)):
        r = {b // x for x, b in zip(v, base, strict=True)}
        if len(r) == 1:
            return f" // {r.pop()}"
    return None


def _schedule(v: list[float], index: list[int], count: int) -> str | None:
    """``P * $b / D``: a rate growing linearly with the use's index over its class (the
    stochastic depth of torchvision's EfficientNet and ConvNeXt), computed as they do."""
    if not all(isinstance(x, float) for x in v) or max(index) == 0:
        return None
    j = index.index(max(index))
    for d in (count - 1, count):
        if d <= 0:
            continue
        p = float(f"{v[j] * d / index[j]:.12g}")
        if all(p * i / d == x for x, i in zip(v, index, strict=True)):
            return f"{p!r} * $b / {d}"
    return None


class _Args:
    """The args of one block being made, and the values each use gives them."""

    def __init__(self, n: int) -> None:
        self.values: dict[str, list[Any]] = {}
        self.n = n

    def new(self, base: str, v: list[Any]) -> str:
        name, k = base, 2
        while name in self.values:
            name, k = f"{base}{k}", k + 1
        self.values[name] = v
        return name

    def find(self, v: list[Any], c_in: list[int], index: list[int], count: int,
             key: str) -> Any:
        if all(x == v[0] for x in v):
            return v[0]
        r = _ratio(v, c_in)
        if r is not None:
            return f"$in{r}"
        for name, a in self.values.items():
            r = _ratio(v, a)
            if r is not None:
                return f"${name}{r}"
        for name, a in self.values.items():
            if all(is_number(x) for x in a) and v == [ci * x for ci, x in
                                                      zip(c_in, a, strict=True)]:
                return f"$in * ${name}"
        sched = _schedule(v, index, count)
        if sched is not None:
            if "b" not in self.values:
                self.values["b"] = list(index)
            return sched
        return f"${self.new(ARG_NAMES.get(key, key), v)}"


def _define(name: str, uses: list[Use], index: dict[int, int], count: dict[str, int]
            ) -> BlockDef:
    first = uses[0]
    slots = [_slots(u.body) for u in uses]
    args = _Args(len(uses))
    c_in = [u.c_in for u in uses]
    order = [index[id(u)] for u in uses]
    exprs: dict[tuple[int, str], Any] = {}
    for s, (item, key, _value) in enumerate(slots[0]):
        v = [sl[s][2] for sl in slots]
        exprs[(id(item), key)] = args.find(v, c_in, order, count[first.scope.cls], key)
    block = BlockDef(name, first.scope.cls, first.body, exprs)
    # channels first, then the geometry, then the rest as found: (c, k, stride, …)
    ranked = sorted(args.values, key=lambda a: (_ARG_ORDER.get(a.rstrip("0123456789"), 9),
                                                list(args.values).index(a)))
    args.values = {a: args.values[a] for a in ranked}
    for arg, v in args.values.items():
        common, times = Counter(v).most_common(1)[0]
        # channels are what each use says (c: required), as a person writes a block;
        # a value most uses share is the default of any other arg (stride: 1)
        channels = arg.rstrip("0123456789") == "c"
        block.args[arg] = common if not channels and times >= 2 and times * 2 >= len(v) \
            else None
    for j, u in enumerate(uses):
        u.block = name
        u.full_args = {a: v[j] for a, v in args.values.items()}
        u.args = {a: x for a, x in u.full_args.items() if x != block.args[a]}
    block.uses = uses
    return block


def make_blocks(tree: list[Item]) -> dict[str, BlockDef]:
    """Block definitions for every use in the tree (the innermost first, since an outer
    block's numbers include its inner uses' args), filling each use's block and args."""
    uses = [it for it in walk(tree) if isinstance(it, Use)]
    depth = _depth(tree)
    index: dict[int, int] = {}
    count: Counter[str] = Counter()
    for u in uses:
        index[id(u)] = count[u.scope.cls]
        count[u.scope.cls] += 1
    blocks: dict[str, BlockDef] = {}
    taken: set[str] = set()
    for d in sorted({depth[id(u)] for u in uses}, reverse=True):
        groups: dict[tuple, list[Use]] = {}
        for u in uses:
            if depth[id(u)] == d:
                groups.setdefault((u.scope.cls, template_key(u.body, u.reads[0])), []).append(u)
        for (cls, _key), members in groups.items():
            base = _snake(cls)
            if not _free_block_name(base):
                base = f"{base}_block"  # YOLO's Conv: a block, not the kind conv
            name, k = base, 2
            while name in taken:
                name, k = f"{base}{k}", k + 1
            taken.add(name)
            blocks[name] = _define(name, members, index, dict(count))
    return blocks


def _free_block_name(name: str) -> bool:
    """Whether a block may be called ``name``: not a layer kind or a structure (the spec
    would use the kind), not a word YAML reads as a boolean or null (``- yes``)."""
    from netspec.kinds import SPEC_KINDS
    from netspec.structures import STRUCTURES
    from netspec.yaml_loader import load_text

    if name in SPEC_KINDS or name in STRUCTURES:
        return False
    return load_text(f"x: [{name}]", "<name>").data == {"x": [name]}


def inline_single_uses(items: list[Item], blocks: dict[str, BlockDef]) -> list[Item]:
    """The list with each use of a block used once replaced by its layers (a block used
    once is only a name for them), and those blocks dropped from ``blocks``."""
    from netspec.importer.structure import children
    out: list[Item] = []
    for it in items:
        for sub in children(it):
            sub[:] = inline_single_uses(sub, blocks)
        if isinstance(it, Use) and it.block in blocks and len(blocks[it.block].uses) == 1:
            del blocks[it.block]
        if isinstance(it, Use) and it.block not in blocks:
            out += it.body
        else:
            out.append(it)
    return out


# ---------------------------------------------------------------------------- repeats
def _over_i(v: list[Any]) -> Any:
    """A value per copy written over ``$i``, or None when it follows no simple rule."""
    if all(x == v[0] for x in v):
        return v[0]
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return None
    step = v[1] - v[0]
    arithmetic = all(b - a == step for a, b in itertools.pairwise(v))
    if arithmetic and step > 0:  # a count that grows: "$i + 3"
        i = "$i" if step == 1 else f"{step} * $i"
        return i if v[0] == 0 else f"{i} + {v[0]}"
    if len(set(v[1:])) == 1:  # the first copy differs: a stage's stride
        a, b = v[0], v[1]
        d = a - b
        m = "min($i, 1)" if abs(d) == 1 else f"{abs(d)} * min($i, 1)"
        return f"{a} - {m}" if d > 0 else f"{a} + {m}"
    if arithmetic:
        return f"{v[0]} - {-step} * $i"
    return None


def _run_args(uses: list[Use], defaults: dict[str, Any]) -> dict[str, Any] | None:
    names = sorted({a for u in uses for a in u.args})
    out: dict[str, Any] = {}
    for a in names:
        v = [u.args.get(a, defaults.get(a)) for u in uses]
        e = _over_i(v)
        if e is None:
            return None
        if e != defaults.get(a):
            out[a] = e
    return out


def make_repeats(items: list[Item], blocks: dict[str, BlockDef], net: FlatNet) -> list[Item]:
    """The list with each longest run of chained uses of one block as one ``Repeat``.

    A repeat names only its last output: a use whose output something besides the next
    use reads (a skip connection, a returned feature map) ends a run."""
    readers = {t: set(r) for t, r in net.consumers().items()}
    for t in net.outputs:
        readers.setdefault(t, set()).add(_RETURNED)
    return _repeats(items, blocks, readers)


#: a reader standing for the network's outputs
_RETURNED = -2


def _chained(prev: Item, nxt: Item, readers: dict[int, set[int]]) -> bool:
    """Whether ``nxt`` is a use of ``prev``'s block that reads ``prev``'s output and is
    its only reader."""
    return (isinstance(prev, Use) and isinstance(nxt, Use) and nxt.block == prev.block
            and nxt.reads == [prev.out]
            and nxt.scope.path.rpartition(".")[0] == prev.scope.path.rpartition(".")[0]
            and readers.get(prev.out, set()) <= _node_ids(nxt.body))


def _node_ids(items: Sequence[Item]) -> set[int]:
    """The flat nodes an entry list computes, merges included."""
    out: set[int] = set()
    for it in walk(items):
        if isinstance(it, Layer):
            out.update(n.id for n in it.nodes)
        elif isinstance(it, Residual | Parallel) and it.merge is not None:
            out.add(it.merge.id)
        elif isinstance(it, Dense):
            out.update(m.id for m in it.merges)
    return out


def _repeats(items: list[Item], blocks: dict[str, BlockDef], readers: dict[int, set[int]]
             ) -> list[Item]:
    out: list[Item] = []
    i = 0
    while i < len(items):
        u = items[i]
        if isinstance(u, Use):
            j = i + 1
            while j < len(items) and _chained(items[j - 1], items[j], readers):
                j += 1
            while j - i >= 2:
                run = [x for x in items[i:j] if isinstance(x, Use)]
                args = _run_args(run, blocks[u.block].args)
                if args is not None:
                    out.append(Repeat(list(u.reads), [run[-1].out], uses=run, args=args,
                                      name=_container_name(run)))
                    break
                j -= 1
            if j - i >= 2:
                i = j
                continue
        _repeats_inside(u, blocks, readers)
        out.append(u)
        i += 1
    return out


def _repeats_inside(it: Item, blocks: dict[str, BlockDef], readers: dict[int, set[int]]
                    ) -> None:
    """Repeats in the lists a construct holds (not in a block's layers: those are the
    same in every use of the block)."""
    if isinstance(it, Residual):
        it.body = _repeats(it.body, blocks, readers)
        if it.shortcut is not None:
            it.shortcut = _repeats(it.shortcut, blocks, readers)
    elif isinstance(it, Parallel):
        it.branches = [None if b is None else _repeats(b, blocks, readers)
                       for b in it.branches]


def _container_name(run: list[Use]) -> str | None:
    """The name of the container whose children the run is, all of them (``layer1``)."""
    parents = {u.scope.path.rpartition(".")[0] for u in run}
    locals_ = [u.scope.path.rpartition(".")[2] for u in run]
    if len(parents) != 1 or locals_ != [str(k) for k in range(len(run))]:
        return None
    return parents.pop() or None
