"""The flat net → a tree of spec entries: layers, residuals, parallel branches, dense
blocks, gates, and block uses where the source's own modules repeat. Pure Python.

Two sources of structure are used together:

- **the source's module nesting**: a module that reads one tensor, returns one and whose
  layers run together is a candidate block use; the candidates of one class become uses of
  a block when there are at least two of them (netspec/importer/blocks.py then turns them
  into ``blocks:`` with args). Containers (nn.Sequential, ModuleList, ModuleDict) are
  never blocks themselves: their children are.
- **the dataflow**: in each layer list, where the current tensor is read by more than the
  next layer, the layers up to the first point where one tensor is left (the join) are a
  fork; by what the join is and how the branches look, that is a ``residual`` (one branch
  the identity or a shortcut), a ``parallel`` (n branches merged in order), a gate
  (``mul`` of the current tensor by what the branch computes: squeeze-and-excitation) or
  a ``dense`` block (DenseNet's concatenations). A fork that is none of these is written
  as plain layers with named references, which any wiring allows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from netspec.importer.flat import INPUT_ID, FlatNet, FlatNode, ScopeRef

# ---------------------------------------------------------------------------- the tree


@dataclass
class Item:
    """An entry of a layer list. ``reads``: the tensors it reads from outside itself;
    ``outs``: the tensors it makes that others may read (the last is the current one
    after it)."""

    reads: list[int]
    outs: list[int]

    @property
    def out(self) -> int:
        return self.outs[-1]


@dataclass
class Layer(Item):
    """One layer; for a split, every part (one node each)."""

    nodes: list[FlatNode] = field(default_factory=list)

    @property
    def node(self) -> FlatNode:
        return self.nodes[0]


@dataclass
class Residual(Item):
    body: list[Item] = field(default_factory=list)
    #: None: the identity
    shortcut: list[Item] | None = None
    merge: FlatNode | None = None
    #: the shortcut's layers run (and register) before the body's
    first: bool = False
    #: the shortcut is what ``shortcut: auto`` makes (nothing to write)
    auto: bool = False


@dataclass
class Parallel(Item):
    #: each branch's entries; None for an identity branch
    branches: list[list[Item] | None] = field(default_factory=list)
    merge: FlatNode | None = None


@dataclass
class Dense(Item):
    #: every layer's entries (each equal to the first's, when written)
    layers: list[list[Item]] = field(default_factory=list)
    #: the concatenations: before layers 1 … n−1, then the block's output
    merges: list[FlatNode] = field(default_factory=list)


@dataclass
class Use(Item):
    """A module of the source written as a use of a block."""

    scope: ScopeRef = field(default_factory=lambda: ScopeRef("", ""))
    body: list[Item] = field(default_factory=list)
    #: the channels (or features) of its input: ``$in`` inside the block
    c_in: int = 0
    #: filled by blocks.py: the block's name, this use's value of every arg, and those
    #: that differ from the arg's default (what the use writes)
    block: str = ""
    full_args: dict[str, object] = field(default_factory=dict)
    args: dict[str, object] = field(default_factory=dict)


# ---------------------------------------------------------------------------- scopes
@dataclass
class _Scope:
    ref: ScopeRef
    positions: list[int]


def _scopes(nodes: Sequence[FlatNode]) -> dict[str, _Scope]:
    out: dict[str, _Scope] = {}
    for pos, n in enumerate(nodes):
        for s in n.scopes:
            out.setdefault(s.path, _Scope(s, [])).positions.append(pos)
    return out


def _block_candidates(net: FlatNet, nodes: Sequence[FlatNode]) -> set[str]:
    """Scopes that can be one block use: not a container, their layers consecutive, one
    tensor in, their last layer's tensor the only one out; kept where their class has
    two such modules or more."""
    pos = {n.id: i for i, n in enumerate(nodes)}
    readers: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        for t in n.inputs:
            readers.setdefault(t, []).append(i)
    outputs = set(net.outputs)
    found: dict[str, _Scope] = {}
    for path, s in _scopes(nodes).items():
        if s.ref.container or not s.ref.cls:
            continue
        first, last = s.positions[0], s.positions[-1]
        if last - first + 1 != len(s.positions):
            continue
        inside = set(range(first, last + 1))
        entries = {t for i in inside for t in nodes[i].inputs if pos.get(t, -1) not in inside}
        exits = {nodes[i].id for i in inside
                 if nodes[i].id in outputs or any(r not in inside
                                                  for r in readers.get(nodes[i].id, ()))}
        last_node = nodes[last]
        if (len(entries) == 1 and exits == {last_node.id} and last_node.part is None
                and len(inside) >= 2):
            found[path] = s
    by_class = Counter(s.ref.cls for s in found.values())
    return {p for p, s in found.items() if by_class[s.ref.cls] >= 2}


# ---------------------------------------------------------------------------- units
def _units(nodes: Sequence[FlatNode], depth: int, blocks: set[str]) -> list[Item]:
    """The entries of a run of layers that share their first ``depth`` scopes: the layers
    of that scope itself, the block uses of its child scopes, and the contents of the
    child scopes that are not blocks, in order."""
    out: list[Item] = []
    i = 0
    while i < len(nodes):
        n = nodes[i]
        if len(n.scopes) <= depth:
            if n.split_group is not None:
                j = i
                while (j < len(nodes) and nodes[j].split_group == n.split_group
                       and len(nodes[j].scopes) <= depth):
                    j += 1
                parts = list(nodes[i:j])
                out.append(Layer(list(n.inputs), [p.id for p in parts], parts))
                i = j
                continue
            out.append(Layer(list(n.inputs), [n.id], [n]))
            i += 1
            continue
        child = n.scopes[depth]
        j = i
        while (j < len(nodes) and len(nodes[j].scopes) > depth
               and nodes[j].scopes[depth].path == child.path):
            j += 1
        run = nodes[i:j]
        if child.path in blocks:
            ids = {m.id for m in run}
            entry = next(t for m in run for t in m.inputs if t not in ids)
            out.append(Use([entry], [run[-1].id], scope=child,
                           body=_units(run, depth + 1, blocks)))
        else:
            out += _units(run, depth + 1, blocks)
        i = j
    return out


# ---------------------------------------------------------------------------- dataflow
class _Region:
    """One layer list being structured: its units in order and who reads what."""

    def __init__(self, units: list[Item], later: dict[int, int]) -> None:
        self.units = units
        # the position of the last unit that reads each tensor; ``later`` gives the
        # tensors read after this region (or returned), as a position past its end
        self.last_read: dict[int, int] = {}
        for i, u in enumerate(units):
            for t in u.reads:
                self.last_read[t] = i
        for t in later:
            self.last_read[t] = len(units)

    def join(self, start: int, cur: int) -> int | None:
        """The first position k ≥ start after which the only tensor still to be read
        is what unit k makes (and the current tensor ``cur`` no longer is)."""
        live = {cur} if self.last_read.get(cur, -1) >= start else set()
        for k in range(start, len(self.units)):
            u = self.units[k]
            live |= set(u.outs)
            live = {t for t in live if self.last_read.get(t, -1) > k}
            if live == {u.out} and self.last_read.get(u.out, -1) > k:
                return k
            if not live:
                return None
        return None


def structure(units: list[Item], entry: int, later: dict[int, int],
              shapes: dict[int, tuple[int, ...]]) -> list[Item]:
    """The entries of one layer list reading ``entry``, with forks written as constructs."""
    region = _Region(units, later)
    out: list[Item] = []
    cur, i = entry, 0
    while i < len(units):
        u = units[i]
        forked = sum(1 for v in units[i:] if cur in v.reads) > 1 or (
            cur in u.reads and region.last_read.get(cur, -1) > i)
        if forked:
            k = region.join(i, cur)
            if k is not None and k > i:
                made = _construct(units[i:k + 1], cur, shapes)
                if made is not None:
                    out += made
                    cur = units[k].out
                    i = k + 1
                    continue
        _recurse(u, shapes)
        out.append(u)
        cur = u.out
        i += 1
    return out


def _recurse(u: Item, shapes: dict[int, tuple[int, ...]]) -> None:
    if isinstance(u, Use):
        inner = {u.out: len(u.body)}
        u.body = structure(u.body, u.reads[0], inner, shapes)
        u.c_in = shapes[u.reads[0]][0]


def _ancestors(units: list[Item], target: int, entry: int) -> set[int] | None:
    """The positions of the units that ``target`` is computed from, back to ``entry``."""
    made = {t: i for i, u in enumerate(units) for t in u.outs}
    todo, seen = [target], set()
    while todo:
        t = todo.pop()
        if t == entry:
            continue
        if t not in made:
            return None  # reads something from before the fork
        i = made[t]
        if i not in seen:
            seen.add(i)
            todo += units[i].reads
    return seen


def _construct(sub: list[Item], cur: int, shapes: dict[int, tuple[int, ...]]
               ) -> list[Item] | None:
    join = sub[-1]
    if not isinstance(join, Layer) or join.node.kind not in ("add", "concat", "mul"):
        return None
    inner = sub[:-1]
    branches: list[set[int]] = []
    for t in join.reads:
        anc = _ancestors(inner, t, cur)
        if anc is None:
            return None
        branches.append(anc)
    disjoint = sum(len(b) for b in branches) == len(set().union(*branches)) == len(inner)
    if not disjoint or len(set(join.reads)) != len(join.reads):
        return _dense(sub, cur, shapes) if join.node.kind == "concat" else None

    def entries(b: set[int], end: int) -> list[Item]:
        return structure([inner[i] for i in sorted(b)], cur, {end: 0}, shapes)

    kind = join.node.kind
    reads = join.reads
    if kind == "mul":
        if len(reads) != 2 or cur not in reads:
            return None
        gate = reads[1 - reads.index(cur)]
        return [*entries(branches[reads.index(gate)], gate), join]
    if len(reads) == 2:
        if cur in reads:
            body_at = 1 - reads.index(cur)
            if kind == "concat" and body_at != 0:
                return [_parallel(join, branches, entries, cur)]
            r = Residual([cur], [join.out], entries(branches[body_at], reads[body_at]), None,
                         join.node)
            r.auto = _is_auto(r, shapes)
            return [r]
        if kind == "concat":  # two ways in, joined: branches rather than a shortcut
            return [_parallel(join, branches, entries, cur)]
        sizes = [len(b) for b in branches]
        body_at = 0 if sizes[0] >= sizes[1] else 1
        body, short = branches[body_at], branches[1 - body_at]
        r = Residual([cur], [join.out], entries(body, reads[body_at]),
                     entries(short, reads[1 - body_at]), join.node,
                     first=min(short) < min(body))
        r.auto = _is_auto(r, shapes)
        return [r]
    return [_parallel(join, branches, entries, cur)]


def _identity_fits(x: tuple[int, ...], y: tuple[int, ...], combine: str) -> bool:
    return x == y if combine == "add" else x[1:] == y[1:]


def _is_auto(r: Residual, shapes: dict[int, tuple[int, ...]]) -> bool:
    """Whether the shortcut is what ``shortcut: auto`` makes: the identity where the
    body keeps the shape; else a 1×1 conv with the body's stride (no bias after a norm)
    followed by a copy of the body's first norm."""
    from netspec.kinds.conv import Conv

    assert r.merge is not None
    x, y = shapes[r.reads[0]], shapes[r.body[-1].out]
    fits = _identity_fits(x, y, r.merge.kind)
    if r.shortcut is None or fits:
        return r.shortcut is None and fits
    layers = [s for s in r.shortcut if isinstance(s, Layer)]
    norm = next((n.node for n in walk(r.body) if isinstance(n, Layer)
                 and n.node.args is not None and n.node.args.is_norm), None)
    if len(layers) != len(r.shortcut) or len(layers) != (2 if norm else 1):
        return False
    conv = layers[0].node
    if (conv.kind != "conv" or conv.args is None or len(x) != 3
            or any(a % b for a, b in zip(x[1:], y[1:], strict=True))):
        return False
    s = [a // b for a, b in zip(x[1:], y[1:], strict=True)]
    want = Conv(out=y[0], k=1, stride=s[0] if s[0] == s[1] else (s[0], s[1]), pad=0,
                bias=norm is None)
    if conv.args.canonical() != want.canonical():
        return False
    return norm is None or (layers[1].node.args is not None and norm.args is not None
                            and layers[1].node.args.canonical() == norm.args.canonical())


def _parallel(join: Layer, branches: list[set[int]], entries: object, cur: int) -> Parallel:
    made = []
    for t, b in zip(join.reads, branches, strict=True):
        made.append(None if t == cur else entries(b, t))  # type: ignore[operator]
    return Parallel([cur], [join.out], made, join.node)


def _dense(sub: list[Item], cur: int, shapes: dict[int, tuple[int, ...]]) -> list[Item] | None:
    """DenseNet: layer i reads the concatenation of the block's input and every earlier
    layer's output (layer 0 the input itself); the block returns the concatenation of all:
    ``[L0…, cat(x, o0), L1…, cat(x, o0, o1), …, cat(x, o0 … on−1)]``."""
    layers: list[tuple[int, list[Item]]] = []
    merges: list[FlatNode] = []
    outs: list[int] = []
    start, body = cur, []
    for u in sub:
        if (isinstance(u, Layer) and u.node.kind == "concat" and body
                and u.reads == [cur, *outs, body[-1].out]):
            outs.append(body[-1].out)
            layers.append((start, body))
            merges.append(u.node)
            start, body = u.out, []
            continue
        body.append(u)
    if body or len(layers) < 1:
        return None  # the fork did not end in the concatenation of every layer
    for start, body in layers:
        made = {start}
        for u in body:
            if any(t not in made for t in u.reads):
                return None
            made.update(u.outs)
    bodies = [structure(body, start, {body[-1].out: 0}, shapes) for start, body in layers]
    return [Dense([cur], [merges[-1].id], layers=bodies, merges=merges)]


def build_tree(net: FlatNet) -> list[Item]:
    """The network's top-level entries."""
    nodes = net.nodes
    shapes: dict[int, tuple[int, ...]] = {INPUT_ID: net.input_shape}
    shapes.update({n.id: n.shape for n in nodes})
    units = _units(nodes, 0, _block_candidates(net, nodes))
    return structure(units, INPUT_ID, {o: 0 for o in net.outputs}, shapes)


def walk(items: Sequence[Item]) -> list[Item]:
    """Every item of a tree, depth first, parents before their contents."""
    out: list[Item] = []
    for it in items:
        out.append(it)
        for sub in children(it):
            out += walk(sub)
    return out


def written(items: Sequence[Item]) -> list[Item]:
    """The items a list's text writes, parents first: not the layers of a block use (its
    block writes them), not an automatic shortcut, one layer of a dense block for all."""
    out: list[Item] = []
    for it in items:
        out.append(it)
        if isinstance(it, Residual):
            out += written(it.body)
            if it.shortcut is not None and not it.auto:
                out += written(it.shortcut)
        elif isinstance(it, Parallel):
            for b in it.branches:
                out += written(b or [])
        elif isinstance(it, Dense):
            out += written(it.layers[0])
    return out


def children(it: Item) -> list[list[Item]]:
    if isinstance(it, Residual):
        return [it.body] + ([it.shortcut] if it.shortcut is not None else [])
    if isinstance(it, Parallel):
        return [b for b in it.branches if b is not None]
    if isinstance(it, Dense):
        return list(it.layers)
    if isinstance(it, Use):
        return [it.body]
    return []
