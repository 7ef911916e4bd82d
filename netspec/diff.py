"""Comparing two Graphs layer by layer (``netspec diff``). Pure Python.

Nodes are matched by name, or, with ``match="order"``, by their place in the network:
the two layer sequences are aligned as diff(1) aligns lines, on each layer's kind, options
and shape, so two specs of one network whose names differ (an imported spec and a
hand-written one) compare layer by layer. A node only in ``b`` is *added*, only in ``a``
*removed*; a node in both is *changed* when its kind, its options (``args.summary()``;
by order, the options as they compute: ``canonical()``) or its output shape differ. Each
entry carries its parameter and MAC delta (b − a); the totals are the whole networks'
deltas, which also count the layers whose own numbers moved because an input's shape
changed (those show as changed: their shape or their counts differ).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass
from typing import Any

from netspec.count import count, node_counts
from netspec.graph import INPUT, Graph, Node
from netspec.kinds import fmt_shape
from netspec.report import outputs_text


@dataclass
class Side:
    kind: str
    args: str
    shape: list[int]
    params: int
    macs: int
    #: the node's name (shown when nodes are matched by order and the names differ)
    name: str = ""
    #: the options as they compute (compared when matching by order)
    options: str = ""


@dataclass
class Change:
    name: str
    status: str                 # added | removed | changed
    a: Side | None
    b: Side | None
    what: list[str]             # which of kind, args, shape, params, macs differ

    @property
    def params_delta(self) -> int:
        return (self.b.params if self.b else 0) - (self.a.params if self.a else 0)

    @property
    def macs_delta(self) -> int:
        return (self.b.macs if self.b else 0) - (self.a.macs if self.a else 0)


@dataclass
class Diff:
    a: str
    b: str
    changes: list[Change]
    params: tuple[int, int]     # totals in a, b
    macs: tuple[int, int]
    outputs: tuple[str, str]    # what each network returns, as ``params`` shows it


def _sides(graph: Graph) -> dict[str, Side]:
    counts = {c.node.name: c for c in node_counts(graph)}
    out: dict[str, Side] = {}
    for node in graph:
        c = counts.get(node.name)
        out[node.name] = Side(_kind(node), node.args.summary() if node.args else "",
                              list(node.shape), c.params if c else 0, c.macs if c else 0,
                              node.name, _canonical(node))
    return out


def _canonical(node: Node) -> str:
    if node.args is None:
        return ""
    options: dict[str, Any] = {k: v for k, v in node.args.canonical().items() if k != "from_"}
    if hasattr(node.args, "index"):
        options["part"] = node.args.index
    return json.dumps(options, sort_keys=True, default=str)


def _kind(node: Node) -> str:
    if node.op == INPUT or node.args is None:
        return "input"
    return node.args.display()


def diff(a: Graph, b: Graph, match: str = "name") -> Diff:
    sa, sb = _sides(a), _sides(b)
    changes = _by_order(sa, sb) if match == "order" else _by_name(sa, sb)
    ca, cb = count(a), count(b)
    return Diff(a.spec_file or a.name, b.spec_file or b.name, changes,
                (ca.params, cb.params), (ca.macs, cb.macs), (outputs_text(a), outputs_text(b)))


_COMPARED = ("kind", "args", "shape", "params", "macs")


def _by_name(sa: dict[str, Side], sb: dict[str, Side]) -> list[Change]:
    changes: list[Change] = []
    # b's order, with each removed node placed after the b node that precedes it in a
    # each removed node goes after the last node before it in a that b still has (one
    # pass: removed runs keep a's order)
    after: dict[str | None, list[str]] = {}
    anchor: str | None = None
    for name in sa:
        if name in sb:
            anchor = name
        else:
            after.setdefault(anchor, []).append(name)
    order: list[str] = list(after.get(None, []))
    for name in sb:
        order.append(name)
        order += after.get(name, [])
    for name in order:
        x, y = sa.get(name), sb.get(name)
        if x is None:
            changes.append(Change(name, "added", None, y, []))
        elif y is None:
            changes.append(Change(name, "removed", x, None, []))
        else:
            what = [f for f in _COMPARED if getattr(x, f) != getattr(y, f)]
            if what:
                changes.append(Change(name, "changed", x, y, what))
    return changes


def _by_order(sa: dict[str, Side], sb: dict[str, Side]) -> list[Change]:
    """The layers aligned in network order on what they compute, names aside."""
    xs = [s for s in sa.values() if s.kind != "input"]
    ys = [s for s in sb.values() if s.kind != "input"]

    def key(s: Side) -> tuple[str, str, str]:
        return (s.kind, s.options, str(s.shape))

    changes: list[Change] = []
    matcher = difflib.SequenceMatcher(None, [key(s) for s in xs], [key(s) for s in ys],
                                      autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if op == "replace" else 0
        for x, y in zip(xs[i1:i1 + paired], ys[j1:j1 + paired], strict=True):
            what = [f for f in _COMPARED if f != "args" and getattr(x, f) != getattr(y, f)]
            if x.options != y.options:
                what.insert(1, "args")
            changes.append(Change(_pair_name(x, y), "changed", x, y, what))
        changes += [Change(x.name, "removed", x, None, []) for x in xs[i1 + paired:i2]]
        changes += [Change(y.name, "added", None, y, []) for y in ys[j1 + paired:j2]]
    return changes


def _pair_name(x: Side, y: Side) -> str:
    return x.name if x.name == y.name else f"{x.name} / {y.name}"


def _signed(n: int) -> str:
    return f"{n:+,}" if n else "0"


def _side_text(s: Side | None) -> str:
    if s is None:
        return "—"
    kind = f"{s.kind}({s.args})" if s.args else s.kind
    return f"{kind} → {fmt_shape(tuple(s.shape))}"


def as_table(d: Diff) -> str:
    if not d.changes:
        body = ["no layer differs"]
    else:
        header = ("", "layer", f"in {d.a}", f"in {d.b}", "Δ params", "Δ MACs")
        rows = [({"added": "+", "removed": "-", "changed": "~"}[c.status], c.name,
                 _side_text(c.a), _side_text(c.b), _signed(c.params_delta),
                 _signed(c.macs_delta)) for c in d.changes]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(c.rjust(w) if i >= 4 else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        body = [line(header), line(tuple("─" * w for w in widths)), *map(line, rows)]
    (pa, pb), (ma, mb) = d.params, d.macs
    n = {s: sum(c.status == s for c in d.changes) for s in ("added", "removed", "changed")}
    return "\n".join([
        f"{d.a} → {d.b}: {n['added']} added, {n['removed']} removed, {n['changed']} changed",
        "", *body, "",
        f"parameters  {pa:>14,} → {pb:>14,}   ({_signed(pb - pa)})",
        f"MACs        {ma:>14,} → {mb:>14,}   ({_signed(mb - ma)})",
        f"outputs     {d.outputs[0]} → {d.outputs[1]}"
        + ("" if d.outputs[0] != d.outputs[1] else "   (the same)"),
    ])


def as_json(d: Diff) -> str:
    doc = {
        "a": d.a, "b": d.b,
        "params": {"a": d.params[0], "b": d.params[1], "delta": d.params[1] - d.params[0]},
        "macs": {"a": d.macs[0], "b": d.macs[1], "delta": d.macs[1] - d.macs[0]},
        "outputs": {"a": d.outputs[0], "b": d.outputs[1]},
        "changes": [
            {"name": c.name, "status": c.status, "what": c.what,
             "a": asdict(c.a) if c.a else None, "b": asdict(c.b) if c.b else None,
             "params_delta": c.params_delta, "macs_delta": c.macs_delta}
            for c in d.changes
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


FORMATS = {"table": as_table, "json": as_json}
