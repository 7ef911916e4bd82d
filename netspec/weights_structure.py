"""Pairing a source's tensors with a spec's by structure, for a source that does not
keep the order its tensors registered in (a .safetensors file lists them by name).

A torch state dict is its module tree walked depth first: a module's own tensors, then
each child's, children in the order they were registered. The names carry that tree
(``layer1.0.conv1.weight``), and the order of numbered children (``features.2`` before
``features.10``: compared as numbers) but not of named ones (``conv1``, ``bn1``,
``layer1``). So the search is for the orders of named children under which the
source's tensors, laid out depth first, fit the spec's in the spec's order: every shape
equal, a module's own tensors whole spec layers (one, or several in a row: timm's ViT
holds its class token and position table as its own), a ``weight``, ``bias``,
``running_mean`` or ``running_var`` where the spec has the same. A kind's own
submodules (attention's ``qkv``, ``proj``) are layers of their own here.

Exactly one fitting pairing is taken. Where several fit (same-shaped modules whose
names say nothing), the names are asked next, as evidence: a source name equal to a
spec name pairs with it (a ``--map`` makes such names), and siblings numbered alike
(``bn1`` before ``bn2``, ``block1-0`` before ``block1-1``, ``a`` before ``b``) keep their
numbers' order — both, else the spec's names alone, else the numbering alone; and last,
with both, the names of the modules that hold the tensors where the two sides share
them (torchvision's ViT blocks begin and end with [D] tensors, so each block's norms
could shift by one; the spec's ``as: ln_1`` says which). One pairing under that evidence
is taken, and said to be; otherwise the pairing is refused, naming two tensors that
could trade places.

The search is a dynamic programme over (module, start position), with at most two
solutions kept per state (one is the answer, two are an ambiguity) and a bounded amount
of work."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from netspec.errors import UsageError
from netspec.kinds import Shape
from netspec.kinds.base import fmt_shape

#: the tensor names torch's own layers use, which the spec's kinds use too
ROLES = ("weight", "bias", "running_mean", "running_var")
#: names nest no deeper than this (the search recurses once per level)
MAX_NAME_PARTS = 64
#: steps of the search before it gives up (far above what any real network needs)
MAX_STEPS = 5_000_000


@dataclass
class SpecTensor:
    """One tensor of the spec, in the spec's order."""

    name: str
    shape: Shape
    layer: str
    op: str


@dataclass
class Outcome:
    #: source name for each spec position
    order: list[str]
    #: whether the names (evidence) were needed to choose among fitting pairings
    by_names: bool


@dataclass(eq=False)
class _Module:
    """A node of the source's module tree."""

    name: str
    leaves: list[int] = field(default_factory=list)
    children: dict[str, _Module] = field(default_factory=dict)
    size: int = 0
    digest: int = 0


class _TooMuch(Exception):
    """The search ran past MAX_STEPS."""


class Ambiguous(Exception):
    def __init__(self, first: list[int], second: list[int]) -> None:
        self.first, self.second = first, second


def _shape_key(shape: Shape) -> tuple[int, ...]:
    """A size-1 tensor fits a size-1 tensor whatever its rank (numpy writers save a 0-d
    tensor as [1], and back)."""
    return () if _size(shape) == 1 else tuple(shape)


def _size(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _role(name: str) -> str | None:
    last = name.rpartition(".")[2]
    return last if last in ROLES else None


def _leaf(name: str) -> str | None:
    """The name of the module that holds the tensor (``ln_1`` of ``….ln_1.weight``),
    unless it is a number (a repeat's copy, a Sequential's child: no name of its own)."""
    parts = name.split(".")
    return parts[-2] if len(parts) > 1 and not parts[-2].isdigit() else None


def _digest(key: tuple[int, ...]) -> int:
    # a multiset of shapes as the sum of their hashes (mod 2**64): equal multisets give
    # equal sums; a collision only costs a search that then fails
    return hash(key) & 0xFFFF_FFFF_FFFF_FFFF


_COUNTER = re.compile(r"\d+|(?<![A-Za-z])[A-Za-z](?![A-Za-z])")


def _template(name: str) -> tuple[str, tuple[Any, ...]] | None:
    """``bn1`` → ("bn#", (1,)); ``block1-0`` → ("block#-#", (1, 0)); ``a`` → ("@", ("a",));
    None for a name without a number or a lone letter in it."""
    counters: list[Any] = []

    def mark(m: re.Match[str]) -> str:
        text = m.group()
        counters.append(int(text) if text.isdigit() else text.lower())
        return "#" if text.isdigit() else "@"

    shape = _COUNTER.sub(mark, name)
    return (shape, tuple(counters)) if counters else None


def _hint_chains(names: list[str]) -> list[list[str]]:
    """Siblings numbered alike, each group in its numbers' order. A letter that varies
    counts only where the group's letters there run a, b, c… (q, k, v say nothing of
    an order)."""
    groups: dict[str, list[tuple[tuple[Any, ...], str]]] = {}
    for n in names:
        t = _template(n)
        if t is not None:
            groups.setdefault(t[0], []).append((t[1], n))
    chains = []
    for members in groups.values():
        if len(members) > 1 and all(_letters_count(members, j)
                                    for j in range(len(members[0][0]))):
            chains.append([n for _, n in sorted(members, key=lambda m: m[0])])
    return chains


def _letters_count(members: list[tuple[tuple[Any, ...], str]], j: int) -> bool:
    """Whether counter ``j`` of a group says an order: a number, one letter throughout
    (part of the name), or letters a, b, c… without a gap."""
    seen = sorted({key[j] for key, _ in members})
    if not isinstance(seen[0], str) or len(seen) == 1:
        return True
    return seen == [chr(ord("a") + i) for i in range(len(seen))]


class _Search:
    def __init__(self, names: Sequence[str], shapes: Sequence[Shape],
                 want: Sequence[SpecTensor], anchors: bool = False,
                 hints: bool = False, leaves: bool = False) -> None:
        self.names, self.want, self.hints = names, want, hints
        self.keys = [_shape_key(s) for s in shapes]
        self.want_keys = [_shape_key(t.shape) for t in want]
        self.roles = [_role(n) for n in names]
        self.want_roles = [_role(t.name) for t in want]
        # as evidence: the module names both sides use (torchvision's ``ln_1`` and the
        # spec's ``as: ln_1``) keep a tensor to a spec layer of the same name
        self.leaf = [_leaf(n) for n in names]
        self.want_leaf = [_leaf(t.name) for t in want]
        self.shared = set(self.leaf) & set(self.want_leaf) - {None} if leaves else set()
        prefix = [0]
        for k in self.want_keys:
            prefix.append((prefix[-1] + _digest(k)) & 0xFFFF_FFFF_FFFF_FFFF)
        self.prefix = prefix
        # each spec position's layer: where it starts and how many tensors it has
        self.layer_start: list[int] = []
        self.layer_size: dict[int, int] = {}
        for i, t in enumerate(want):
            start = self.layer_start[-1] if i and want[i - 1].layer == t.layer else i
            self.layer_start.append(start)
            self.layer_size[start] = self.layer_size.get(start, 0) + 1
        spec_index = {t.name: i for i, t in enumerate(want)}
        self.anchor = {}  # source tensor → spec position of the same name (and shape)
        if anchors:
            self.anchor = {i: spec_index[n] for i, n in enumerate(names)
                           if n in spec_index and self._fits(i, spec_index[n])}
        self.anchored = {p: i for i, p in self.anchor.items()}
        self.memo: dict[tuple[int, int], list[Any]] = {}
        self.steps = 0
        self.root = self._tree()

    # ------------------------------------------------------------------ the tree

    def _tree(self) -> _Module:
        root = _Module("")
        for i, name in enumerate(self.names):
            parts = name.split(".")
            if len(parts) > MAX_NAME_PARTS:
                raise UsageError(f"tensor '{name[:80]}…' has {len(parts)} dotted parts; "
                                 f"netspec pairs names of at most {MAX_NAME_PARTS}")
            node = root
            for depth, part in enumerate(parts[:-1]):
                node = node.children.setdefault(part, _Module(".".join(parts[:depth + 1])))
            node.leaves.append(i)
        # sizes and digests bottom up, without recursion (a hostile name list is deep)
        stack: list[tuple[_Module, bool]] = [(root, False)]
        while stack:
            node, done = stack.pop()
            if not done:
                stack.append((node, True))
                stack.extend((c, False) for c in node.children.values())
                continue
            node.size = len(node.leaves) + sum(c.size for c in node.children.values())
            node.digest = (sum(_digest(self.keys[i]) for i in node.leaves)
                           + sum(c.digest for c in node.children.values())) \
                & 0xFFFF_FFFF_FFFF_FFFF
        return root

    def _chains(self, node: _Module) -> list[list[_Module]]:
        """The children as chains whose order is fixed: the numbered ones (always), the
        ones numbered alike (as evidence), and each other one alone."""
        names = list(node.children)
        numbered = sorted((n for n in names if n.isdigit()), key=int)
        chains = [numbered] if numbered else []
        rest = [n for n in names if not n.isdigit()]
        if self.hints:
            hinted = _hint_chains(rest)
            chains += hinted
            taken = {n for c in hinted for n in c}
            rest = [n for n in rest if n not in taken]
        chains += [[n] for n in rest]
        return [[node.children[n] for n in chain] for chain in chains]

    # ------------------------------------------------------------------ the search

    def _tick(self, cost: int = 1) -> None:
        """Count work (a state of n chains costs n to make) and give up past MAX_STEPS."""
        self.steps += cost
        if self.steps > MAX_STEPS:
            raise _TooMuch

    def _fits(self, leaf: int, pos: int) -> bool:
        if self.keys[leaf] != self.want_keys[pos]:
            return False
        r, w = self.roles[leaf], self.want_roles[pos]
        if self.shared and self.leaf[leaf] != self.want_leaf[pos] and \
                self.leaf[leaf] in self.shared and self.want_leaf[pos] in self.shared:
            return False
        return r is None or w is None or r == w

    def _leaf_ok(self, leaf: int, pos: int) -> bool:
        return (self._fits(leaf, pos) and self.anchor.get(leaf, pos) == pos
                and self.anchored.get(pos, leaf) == leaf)

    def solve(self, node: _Module, start: int) -> list[Any]:
        """At most two ways to lay ``node``'s tensors out from spec position ``start``."""
        key = (id(node), start)
        if key in self.memo:
            return self.memo[key]
        self._tick()
        end = start + node.size
        out: list[Any] = []
        if end <= len(self.want) and \
                (self.prefix[end] - self.prefix[start]) & 0xFFFF_FFFF_FFFF_FFFF == node.digest:
            own = self._own(node, start)
            if own:
                rest = self._children(node, start + len(node.leaves))
                out = [(o, r) for o in own for r in rest][:2]
        self.memo[key] = out
        return out

    def _own(self, node: _Module, start: int) -> list[tuple[int, ...]]:
        """A module's own tensors are whole spec layers — one, or several in a row (timm's
        ViT holds its class token and position table as its own): at most two orders."""
        k = len(node.leaves)
        if k == 0:
            return [()]
        end = start + k
        if self.layer_start[start] != start or end > len(self.want) or (
                end < len(self.want) and self.layer_start[end] != end):
            return []
        found: list[tuple[int, ...]] = []
        todo: list[tuple[int, ...]] = [()]
        while todo and len(found) < 2:
            placed = todo.pop()
            if len(placed) == k:
                found.append(placed)
                continue
            self._tick()
            pos = start + len(placed)
            todo.extend((*placed, leaf) for leaf in reversed(node.leaves)
                        if leaf not in placed and self._leaf_ok(leaf, pos))
        return found

    def _children(self, node: _Module, start: int) -> list[Any]:
        """At most two ways to lay the children out one after another from ``start``,
        each chain's children in the chain's order."""
        chains = self._chains(node)
        if not chains:
            return [None]
        # states: how far along each chain, with the position reached and at most two
        # partial solutions, each a linked list (previous partial, child's solution)
        layer: dict[tuple[int, ...], tuple[int, list[Any]]] = {
            (0,) * len(chains): (start, [None])}
        for _ in range(len(node.children)):
            following: dict[tuple[int, ...], tuple[int, list[Any]]] = {}
            for state, (pos, partials) in layer.items():
                for i, chain in enumerate(chains):
                    if state[i] == len(chain):
                        continue
                    child = chain[state[i]]
                    self._tick(len(chains))
                    ways = self.solve(child, pos)
                    if not ways:
                        continue
                    nxt = (*state[:i], state[i] + 1, *state[i + 1:])
                    kept = following.setdefault(nxt, (pos + child.size, []))[1]
                    for p in partials:
                        for w in ways:
                            if len(kept) < 2:
                                kept.append((p, w))
            layer = following
        done = tuple(len(c) for c in chains)
        return layer[done][1] if done in layer else []


def _flatten(solution: Any) -> list[int]:
    """A solution (own tensors, linked list of children's solutions) as the source
    tensor at each spec position, without recursion."""
    out: list[int] = []
    todo = [solution]
    while todo:
        own, partial = todo.pop()
        out.extend(own)
        children = []
        while partial is not None:
            partial, child = partial
            children.append(child)
        todo.extend(children)  # the last child is pushed first, so popped last
    return out


def pair_by_structure(names: Sequence[str], shapes: Sequence[Shape],
                      want: Sequence[SpecTensor]) -> Outcome:
    """The one pairing of the source's tensors (``names`` with their ``shapes``) with
    ``want`` that the structure allows; raises Ambiguous (two pairings) or returns an
    Outcome whose order is empty when nothing fits."""
    if len(names) != len(want):
        return Outcome([], False)
    ways = _ways(_Search(names, shapes, want))
    if ways is not None and len(ways) < 2:
        return Outcome([names[i] for i in _flatten(ways[0])] if ways else [], False)
    # several fit (or too many to count): ask the names, both kinds of evidence, else
    # the spec's names (which a --map makes), else the numbering; each level's pairings
    # are among the shapes' own
    ambiguous = ways
    for anchors, hints, leaves in ((True, True, False), (True, False, False),
                                   (False, True, False), (True, True, True)):
        told = _ways(_Search(names, shapes, want, anchors=anchors, hints=hints,
                             leaves=leaves))
        if told is not None and len(told) == 1:
            return Outcome([names[i] for i in _flatten(told[0])], True)
        if told is not None and len(told) == 2 and (ambiguous is None or ambiguous is ways):
            ambiguous = told  # the pair the most evidence still leaves open
    if ambiguous is None or len(ambiguous) < 2:
        raise UsageError("too many ways to try to pair the tensors by structure (many "
                         "same-shaped modules whose names say nothing of their order); "
                         "pair them with a --map file")
    raise Ambiguous(_flatten(ambiguous[0]), _flatten(ambiguous[1]))


def _ways(search: _Search) -> list[Any] | None:
    """At most two pairings, or None when there are too many to count."""
    try:
        return search.solve(search.root, 0)
    except _TooMuch:
        return None


def ambiguity(origin: str, names: Sequence[str], shapes: Sequence[Shape],
              want: Sequence[SpecTensor], e: Ambiguous) -> UsageError:
    """One line naming two source tensors that fit the same spec tensor, the rest
    fitting either way, and how to say which is which."""
    p = next(i for i, (a, b) in enumerate(zip(e.first, e.second, strict=True)) if a != b)
    a, b, t = names[e.first[p]], names[e.second[p]], want[p]
    module = a.rpartition(".")[0]
    # a module's tensors stay together: rename the module (a --map key ending in '.')
    rename = f"'{module}.: {t.layer}.' renames the module" if module else f"'{a}: {t.name}'"
    return UsageError(
        f"{origin}: cannot tell '{a}' from '{b}' ({fmt_shape(shapes[e.first[p]])}): either "
        f"could be '{t.name}' of spec layer {t.layer} ({t.op}) and the rest still fits, "
        "and their names do not say which (the file keeps no order to pair by); say it in "
        f"a --map file ({rename}), or name the spec's layers as the source's are")


def misfit(origin: str, graph_name: str, names: Sequence[str], shapes: Sequence[Shape],
           want: Sequence[SpecTensor]) -> UsageError:
    """Why no pairing fits, in one line: a count or a shape the other side lacks, or
    (every shape there) a module structure that fits no order of the spec's layers."""
    how = "(paired by structure: the names do not all match and the file keeps no order)"
    have = Counter(_shape_key(s) for s in shapes)
    need = Counter(_shape_key(t.shape) for t in want)
    count = f"{len(names)} tensors, spec '{graph_name}' has {len(want)}: "
    lacking = next((t for t in want if need[_shape_key(t.shape)] > have[_shape_key(t.shape)]),
                   None)
    spare = next((i for i in sorted(range(len(names)), key=lambda i: _natural(names[i]))
                  if have[_shape_key(shapes[i])] > need[_shape_key(shapes[i])]), None)
    parts = []
    if lacking is not None:
        parts.append(f"no tensor of the source has the shape of '{lacking.name}' "
                     f"{fmt_shape(lacking.shape)} of spec layer {lacking.layer} "
                     f"({lacking.op})")
    if spare is not None:
        parts.append(f"'{names[spare]}' {fmt_shape(shapes[spare])} fits no tensor of the "
                     "spec")
    if parts:  # always, where the counts differ
        lead = count if len(names) != len(want) else ""
        return UsageError(f"{origin}: {lead}{', and '.join(parts)} {how}")
    return UsageError(
        f"{origin}: every shape of spec '{graph_name}' is there, but no order of the "
        "source's modules lays them out in the spec's layer order, each module's own "
        f"tensors one layer {how}; pair them with a --map file")


def _natural(name: str) -> list[Any]:
    """``layer1.10`` after ``layer1.9``: digit runs compared as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name)]
