"""Pictures of a Graph: Graphviz DOT and Mermaid text, written by netspec itself.

Pure Python (no torch, no Graphviz): ``netspec graph`` turns the DOT text into SVG or PNG
with Graphviz's ``dot`` program when it is installed.

What is drawn:

- one box per node — name, kind (with the options that differ from their defaults),
  output shape and parameter count; with ``depth``, every scope deeper than ``depth``
  collapses into one box (its label, its last node's shape, the sum of its parameters),
  as in ``netspec params --depth``;
- one edge per input of a node (``node.inputs``): residual, dense and named skips are
  ordinary edges into a merge node. An edge is a *skip* (drawn dashed) when its source is
  not the node just before its target in Graph order, i.e. it jumps over nodes;
- scopes (block uses, repeats, dense blocks, shortcuts) as DOT clusters / Mermaid
  subgraphs, nested, labelled with ``graph.scopes``.

When scopes collapse, the edges between two boxes are **deduplicated**: one edge per pair
of boxes, whatever the number of tensors that flow between their members; edges inside a
box disappear. At full depth there is exactly one box per node and one edge per input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netspec.count import node_counts
from netspec.graph import INPUT, Graph
from netspec.kinds import fmt_shape


@dataclass
class Box:
    key: str        # the node name, or the collapsed scope's path
    kind: str
    shape: tuple[int, ...]
    params: int
    index: int      # position of its first node in Graph order
    last: int       # position of its last node in Graph order
    nodes: int = 1

    @property
    def scope(self) -> str:
        return self.key.rpartition(".")[0]


@dataclass
class Picture:
    """The boxes, edges and clusters to draw; both writers read only this."""

    name: str
    boxes: dict[str, Box]
    edges: list[tuple[str, str, bool]]          # (source box, target box, is_skip)
    clusters: dict[str, str] = field(default_factory=dict)   # scope path -> label


def _group(name: str, depth: int | None) -> str:
    parts = name.split(".")
    if depth is not None and len(parts) > depth + 1:
        return ".".join(parts[: depth + 1])
    return name


def picture(graph: Graph, depth: int | None = None) -> Picture:
    if depth is not None and depth < 0:
        raise ValueError("depth must be 0 or more")
    order = {name: i for i, name in enumerate(graph.nodes)}
    counts = {c.node.name: c.params for c in node_counts(graph)}
    boxes: dict[str, Box] = {}
    box_of: dict[str, str] = {}
    for node in graph:
        key = _group(node.name, depth)
        box_of[node.name] = key
        i = order[node.name]
        if key != node.name:            # a collapsed scope
            box = boxes.get(key)
            if box is None:
                scope = graph.scopes.get(key)
                box = boxes[key] = Box(key, scope.label if scope else "group", node.shape,
                                       0, i, i, 0)
            box.params += counts.get(node.name, 0)
            box.shape = node.shape
            box.last = i
            box.nodes += 1
            continue
        if node.op == INPUT or node.args is None:
            kind = "input"
        else:
            summary = node.args.summary()
            op = node.args.display()
            kind = f"{op}({summary})" if summary else op
        boxes[key] = Box(key, kind, node.shape, counts.get(node.name, 0), i, i)

    if graph.output_names != ("output",):  # outputs the spec named: say which
        for node_name, name in zip(graph.outputs, graph.output_names, strict=True):
            boxes[box_of[node_name]].kind += f" ⇒ output {name}"

    edges: list[tuple[str, str, bool]] = []
    seen: set[tuple[str, str]] = set()
    for node in graph:
        for src in node.inputs:
            a, b = box_of[src], box_of[node.name]
            if a == b:
                continue
            if depth is None or len(boxes) == len(graph):
                skip = order[src] != order[node.name] - 1
            else:
                if (a, b) in seen:
                    continue
                seen.add((a, b))
                skip = boxes[a].last != boxes[b].index - 1
            edges.append((a, b, skip))

    clusters: dict[str, str] = {}
    for box in boxes.values():
        parts = box.key.split(".")
        for k in range(1, len(parts)):
            path = ".".join(parts[:k])
            if path not in clusters:
                scope = graph.scopes.get(path)
                clusters[path] = scope.label if scope else path
    return Picture(graph.name, boxes, edges, clusters)


def _lines(box: Box) -> list[str]:
    params = f"{box.params:,} params" if box.params else "no params"
    if box.nodes > 1:
        params += f" · {box.nodes} layers"
    kind = box.kind if len(box.kind) <= 48 else box.kind[:47] + "…"
    return [box.key, kind, f"{fmt_shape(box.shape)} · {params}"]


def _children(pic: Picture) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Boxes directly inside each cluster ('' = top level), and sub-clusters of each."""
    boxes_in: dict[str, list[str]] = {"": []}
    subs: dict[str, list[str]] = {"": []}
    for path in pic.clusters:
        boxes_in.setdefault(path, [])
        subs.setdefault(path, [])
        subs.setdefault(path.rpartition(".")[0], []).append(path)
    for key, box in pic.boxes.items():
        boxes_in[box.scope].append(key)
    return boxes_in, subs


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph, depth: int | None = None) -> str:
    pic = picture(graph, depth)
    boxes_in, subs = _children(pic)
    out = [
        f"digraph {_dot_str(pic.name)} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fillcolor="#f7f7f7", '
        'fontname="Helvetica", fontsize=10];',
        '  edge [color="#555555"];',
    ]
    ids = {path: f"cluster_{i}" for i, path in enumerate(pic.clusters)}

    def emit(path: str, indent: str) -> None:
        for key in boxes_in[path]:
            label = "\\n".join(s.replace("\\", "\\\\").replace('"', '\\"')
                               for s in _lines(pic.boxes[key]))
            fill = ', fillcolor="#dde8f5"' if pic.boxes[key].nodes > 1 else ""
            out.append(f'{indent}{_dot_str(key)} [label="{label}"{fill}];')
        for sub in subs[path]:
            out.append(f"{indent}subgraph {ids[sub]} {{")
            label = f"{sub}: {pic.clusters[sub]}" if pic.clusters[sub] != sub else sub
            out.append(f'{indent}  label={_dot_str(label)}; style="rounded,dashed"; '
                       'color="#8899aa"; fontname="Helvetica"; fontsize=10;')
            emit(sub, indent + "  ")
            out.append(f"{indent}}}")

    emit("", "  ")
    for a, b, skip in pic.edges:
        style = ' [style=dashed, color="#c0392b"]' if skip else ""
        out.append(f"  {_dot_str(a)} -> {_dot_str(b)}{style};")
    out.append("}")
    return "\n".join(out) + "\n"


def _mmd_str(text: str) -> str:
    return (text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;")
            .replace(">", "#gt;"))


def to_mermaid(graph: Graph, depth: int | None = None) -> str:
    pic = picture(graph, depth)
    boxes_in, subs = _children(pic)
    ids = {key: f"n{i}" for i, key in enumerate(pic.boxes)}
    cids = {path: f"s{i}" for i, path in enumerate(pic.clusters)}
    out = ["flowchart TB"]

    def emit(path: str, indent: str) -> None:
        for key in boxes_in[path]:
            label = "<br/>".join(_mmd_str(s) for s in _lines(pic.boxes[key]))
            out.append(f'{indent}{ids[key]}["{label}"]')
        for sub in subs[path]:
            label = f"{sub}: {pic.clusters[sub]}" if pic.clusters[sub] != sub else sub
            out.append(f'{indent}subgraph {cids[sub]}["{_mmd_str(label)}"]')
            emit(sub, indent + "  ")
            out.append(f"{indent}end")

    emit("", "  ")
    for a, b, skip in pic.edges:
        out.append(f"  {ids[a]} {'-.->' if skip else '-->'} {ids[b]}")
    return "\n".join(out) + "\n"


FORMATS = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".svg": "svg", ".png": "png"}
