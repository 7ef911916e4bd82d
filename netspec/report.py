"""The parameter report: per-layer rows grouped by scope to a depth, and totals, as a
text table, JSON or CSV. Pure Python; numbers come from netspec.count."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from netspec.count import count, node_counts
from netspec.graph import Graph
from netspec.kinds import fmt_shape


@dataclass
class Row:
    name: str
    kind: str
    shape: tuple[int, ...]
    params: int
    buffers: int
    macs: int
    formula: str | None
    note: str
    depth: int


def rows(graph: Graph, depth: int | None = None) -> list[Row]:
    """One row per layer; with ``depth``, scopes below it collapse into one row each."""
    out: list[Row] = []
    by_name: dict[str, Row] = {}
    for c in node_counts(graph):
        n = c.node
        parts = n.name.split(".")
        if depth is not None and len(parts) > depth + 1:
            key = ".".join(parts[: depth + 1])
            row = by_name.get(key)
            if row is None:
                scope = graph.scopes.get(key)
                row = Row(key, scope.label if scope else "group", n.shape, 0, 0, 0, None, "",
                          depth)
                by_name[key] = row
                out.append(row)
            row.params += c.params
            row.buffers += c.buffers
            row.macs += c.macs
            row.shape = n.shape
            continue
        assert n.args is not None
        summary = n.args.summary()
        kind = f"{n.args.display()}({summary})" if summary else n.args.display()
        out.append(Row(n.name, kind, n.shape, c.params, c.buffers, c.macs, c.formula, n.note,
                       len(parts) - 1))
    return out


def plural(n: int, word: str) -> str:
    """``1 layer``, ``2 layers``, ``1,024 parameters``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def outputs_text(graph: Graph) -> str:
    """``[1000]``, or ``p3 [144, 80, 80], p4 […]`` for several named outputs."""
    if graph.output_names == ("output",):
        return fmt_shape(graph.output_shape)
    return ", ".join(f"{name} {fmt_shape(graph[node].shape)}"
                     for node, name in zip(graph.outputs, graph.output_names, strict=True))


def totals(graph: Graph) -> dict[str, Any]:
    c = count(graph)
    return {
        "params": c.params,
        "trainable": c.trainable,
        "buffers": c.buffers,
        "macs": c.macs,
        "size_mb": {"fp32": round(c.size_mb_fp32, 3), "bf16": round(c.size_mb_bf16, 3)},
    }


def as_json(graph: Graph, depth: int | None = None) -> str:
    doc = {
        "name": graph.name,
        "task": graph.task,
        "input": list(graph.input_shape),
        "output": list(graph.output_shape),
        "outputs": [{"name": name, "layer": node, "shape": list(graph[node].shape)}
                    for node, name in zip(graph.outputs, graph.output_names, strict=True)],
        **totals(graph),
        "layers": [
            {"name": r.name, "kind": r.kind, "shape": list(r.shape), "params": r.params,
             "buffers": r.buffers, "macs": r.macs, "formula": r.formula, "note": r.note or None}
            for r in rows(graph, depth)
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def as_csv(graph: Graph, depth: int | None = None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "kind", "shape", "params", "buffers", "macs", "formula", "note"])
    for r in rows(graph, depth):
        w.writerow([r.name, r.kind, fmt_shape(r.shape), r.params, r.buffers, r.macs,
                    r.formula or "", r.note])
    return buf.getvalue()


def _si(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return str(int(n))


@dataclass
class _Item:
    """A row of the tree: a layer, or a scope (block use, repeat, dense block…) that
    holds rows of its own unless ``--depth`` collapsed it."""

    name: str
    row: Row
    children: list[_Item]


def _tree(graph: Graph, depth: int | None) -> list[_Item]:
    top: list[_Item] = []
    scopes: dict[str, _Item] = {}
    for row in rows(graph, depth):
        parts = row.name.split(".")
        siblings = top
        for i in range(1, len(parts)):
            path = ".".join(parts[:i])
            item = scopes.get(path)
            if item is None:
                scope = graph.scopes.get(path)
                item = _Item(parts[i - 1], Row(path, scope.label if scope else "", row.shape,
                                               0, 0, 0, None, "", i - 1), [])
                scopes[path] = item
                siblings.append(item)
            item.row.params += row.params
            item.row.buffers += row.buffers
            item.row.macs += row.macs
            item.row.shape = row.shape
            siblings = item.children
        siblings.append(_Item(parts[-1], row, []))
    return top


def _lines(items: list[_Item], lead: str | None = None) -> list[tuple[str, Row, bool]]:
    """(label with tree lines, row, is a scope): top-level rows bare, as `tree` draws."""
    out = []
    for i, item in enumerate(items):
        last = i == len(items) - 1
        branch = "" if lead is None else lead + ("└─ " if last else "├─ ")
        out.append((branch + item.name, item.row, bool(item.children)))
        inner = "" if lead is None else lead + ("   " if last else "│  ")
        out += _lines(item.children, inner)
    return out


def as_table(graph: Graph, depth: int | None = None, color: bool = False) -> str:
    """The per-layer table with the scopes drawn as a tree and the totals set apart.
    ``color`` adds bold scopes and dim zeros (for terminals only)."""
    bold, dim, off = ("\033[1m", "\033[2m", "\033[0m") if color else ("", "", "")
    header = ("layer", "kind", "output", "params", "MACs", "formula / note")
    body: list[tuple[str, ...]] = []
    styles: list[str] = []
    for name, r, is_scope in _lines(_tree(graph, depth)):
        formula = f"{r.formula} = {r.params:,}" if r.formula and r.params else (r.note or "")
        body.append((name, r.kind, fmt_shape(r.shape), f"{r.params:,}",
                     _si(r.macs) if r.macs else "0", formula))
        styles.append(bold if is_scope else (dim if not r.params else ""))
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    widths[1] = min(widths[1], 40)

    def line(cells: tuple[str, ...]) -> str:
        out = []
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            if i in (3, 4):
                out.append(cell.rjust(w))
            elif i == len(cells) - 1:
                out.append(cell)
            elif len(cell) > w:
                out.append(cell[: w - 1] + "…")
            else:
                out.append(cell.ljust(w))
        return "  ".join(out).rstrip()

    t = totals(graph)
    rule = "─" * (sum(widths[:5]) + 8)
    lines = [f"{bold}{graph.name}{off}: {fmt_shape(graph.input_shape)} → "
             f"{outputs_text(graph)} ({graph.task})", "", line(header),
             line(tuple("─" * w for w in widths))]
    lines += [f"{style}{line(b)}{off if style else ''}" for b, style in zip(body, styles,
                                                                             strict=True)]
    lines += [
        rule,
        f"{bold}parameters{off}   {t['params']:>16,}   (trainable {t['trainable']:,})",
        f"buffers      {t['buffers']:>16,}"
        + ("   (BN running mean and variance; not parameters)" if t["buffers"] else ""),
        f"MACs         {t['macs']:>16,}   ({_si(t['macs'])} per sample)",
        f"weights      {t['size_mb']['fp32']:>13,.2f} MB   at fp32; "
        f"{t['size_mb']['bf16']:,.2f} MB at bf16",
    ]
    return "\n".join(lines)


def as_markdown(graph: Graph, depth: int | None = None) -> str:
    """A GitHub-flavoured markdown table, for READMEs."""
    t = totals(graph)
    lines = [f"**{graph.name}**: {fmt_shape(graph.input_shape)} → "
             f"{outputs_text(graph)} ({graph.task})", "",
             "| layer | kind | output | params | MACs | formula / note |",
             "|---|---|---|---:|---:|---|"]
    for r in rows(graph, depth):
        formula = f"{r.formula} = {r.params:,}" if r.formula and r.params else (r.note or "")
        cells = [f"`{r.name}`", r.kind, fmt_shape(r.shape), f"{r.params:,}",
                 _si(r.macs) if r.macs else "0", formula]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", "| total | |", "|---|---:|",
              f"| parameters | {t['params']:,} |",
              f"| trainable | {t['trainable']:,} |",
              f"| buffers (BN statistics) | {t['buffers']:,} |",
              f"| MACs per sample | {t['macs']:,} |",
              f"| weights at fp32 / bf16 | {t['size_mb']['fp32']:,.2f} MB / "
              f"{t['size_mb']['bf16']:,.2f} MB |"]
    return "\n".join(lines)


FORMATS = {"table": as_table, "json": as_json, "csv": as_csv, "markdown": as_markdown}
