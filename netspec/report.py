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
        kind = f"{_kind(n.op, n.args)}({summary})" if summary else _kind(n.op, n.args)
        out.append(Row(n.name, kind, n.shape, c.params, c.buffers, c.macs, c.formula, n.note,
                       len(parts) - 1))
    return out


def _kind(op: str, args: Any) -> str:
    return f"norm {args.kind}" if op.endswith("norm") else op


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


def as_table(graph: Graph, depth: int | None = None) -> str:
    table = rows(graph, depth)
    header = ("layer", "kind", "output", "params", "MACs", "formula / note")
    body = []
    for r in table:
        formula = f"{r.formula} = {r.params:,}" if r.formula and r.params else (r.note or "")
        body.append((r.name, r.kind, fmt_shape(r.shape), f"{r.params:,}", _si(r.macs) if r.macs
                     else "0", formula))
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    widths[1] = min(widths[1], 40)

    def line(cells: tuple[str, ...]) -> str:
        out = []
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            if i in (3, 4):
                out.append(cell.rjust(w))
            elif i == len(cells) - 1:
                out.append(cell)
            else:
                out.append(cell[:w].ljust(w) if len(cell) <= w or i != 1 else cell[: w - 1] + "…")
        return "  ".join(out).rstrip()

    t = totals(graph)
    lines = [f"{graph.name}: {fmt_shape(graph.input_shape)} → {fmt_shape(graph.output_shape)} "
             f"({graph.task})", "", line(header), line(tuple("─" * w for w in widths))]
    lines += [line(b) for b in body]
    lines += [
        "",
        f"parameters   {t['params']:>16,}   (trainable {t['trainable']:,})",
        f"buffers      {t['buffers']:>16,}   (BN running mean and variance; not parameters)",
        f"MACs         {t['macs']:>16,}   ({_si(t['macs'])} per sample)",
        f"weights      {t['size_mb']['fp32']:>13,.2f} MB   at fp32; "
        f"{t['size_mb']['bf16']:,.2f} MB at bf16",
    ]
    return "\n".join(lines)


FORMATS = {"table": as_table, "json": as_json, "csv": as_csv}
