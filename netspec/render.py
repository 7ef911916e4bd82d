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
  subgraphs, nested, labelled with ``graph.scopes``;
- with ``fold`` (``netspec graph``'s default), each repeat and dense block drawn once —
  its first copy, in a cluster labelled with the count — and, unless a depth is given,
  scopes collapsed to the deepest level that keeps the picture within
  ``READABLE_BOXES`` boxes (``readable_depth``).

When scopes collapse, the edges between two boxes are **deduplicated**: one edge per pair
of boxes, whatever the number of tensors that flow between their members; edges inside a
box disappear. At full depth there is exactly one box per node and one edge per input.
"""

from __future__ import annotations

from collections.abc import Callable
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


#: scope kinds whose copies are alike: folded, they are drawn once
FOLDED_KINDS = ("repeat", "dense")


def _folder(graph: Graph) -> Callable[[str], str]:
    """Node name → the name it is drawn as when repeats and dense blocks are folded: copy
    ``i`` of a repeat (layer ``i`` of a dense block) as copy 0, a dense block's merges as
    its first merge."""
    folded = {p for p, sc in graph.scopes.items() if sc.kind in FOLDED_KINDS}
    first_merge: dict[str, str] = {}
    for name in graph.nodes:
        scope, _, leaf = name.rpartition(".")
        if scope in folded and not leaf.isdigit():
            first_merge.setdefault(scope, leaf)

    def fold(name: str) -> str:
        parts = name.split(".")
        for k in range(len(parts) - 1):
            if ".".join(parts[:k + 1]) in folded:
                nxt = parts[k + 1]
                if nxt.isdigit():
                    parts[k + 1] = "0"
                elif k + 2 == len(parts):  # a dense block's merge
                    parts[k + 1] = first_merge[".".join(parts[:k + 1])]
        return ".".join(parts)

    return fold


#: the most boxes a default picture has: about a screen-and-a-half of height per 20
#: boxes at Graphviz's default spacing; past it, the default depth collapses scopes
READABLE_BOXES = 60


def readable_depth(graph: Graph, fold: bool = True) -> int | None:
    """The deepest ``depth`` (None: every node) whose picture has at most
    ``READABLE_BOXES`` boxes; 0 when even that has more."""
    depth = max((n.name.count(".") for n in graph), default=0)
    if len(picture(graph, None, fold).boxes) <= READABLE_BOXES:
        return None
    for d in range(depth - 1, 0, -1):
        if len(picture(graph, d, fold).boxes) <= READABLE_BOXES:
            return d
    return 0


def picture(graph: Graph, depth: int | None = None, fold: bool = False) -> Picture:
    """The boxes and edges to draw. ``fold``: each repeat and dense block drawn once (its
    first copy, labelled with the count), so large nets stay readable."""
    if depth is not None and depth < 0:
        raise ValueError("depth must be 0 or more")
    order = {name: i for i, name in enumerate(graph.nodes)}
    counts = {c.node.name: c.params for c in node_counts(graph)}
    boxes: dict[str, Box] = {}
    box_of: dict[str, str] = {}
    folder = _folder(graph) if fold else None
    for node in graph:
        drawn = folder(node.name) if folder else node.name
        key = _group(drawn, depth)
        box_of[node.name] = key
        i = order[node.name]
        if drawn != node.name and key in boxes:  # a folded copy: drawn by copy 0
            continue
        if key != drawn:                 # a collapsed scope
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
    folded_edges: dict[tuple[str, str], bool] = {}
    for node in graph:
        for src in node.inputs:
            a, b = box_of[src], box_of[node.name]
            if a == b:
                continue
            if folder:
                if boxes[a].index >= boxes[b].index:
                    continue  # from one folded copy into the next
                # a skip unless one of the tensors it stands for comes straight before
                adjacent = order[src] == order[node.name] - 1
                folded_edges[(a, b)] = folded_edges.get((a, b), False) or adjacent
            elif depth is None or len(boxes) == len(graph):
                edges.append((a, b, order[src] != order[node.name] - 1))
            elif (a, b) not in seen:
                seen.add((a, b))
                edges.append((a, b, boxes[a].last != boxes[b].index - 1))
    edges += [(a, b, not adjacent) for (a, b), adjacent in folded_edges.items()]

    clusters: dict[str, str] = {}
    for box in boxes.values():
        parts = box.key.split(".")
        for k in range(1, len(parts)):
            path = ".".join(parts[:k])
            if path not in clusters:
                scope = graph.scopes.get(path)
                label = scope.label if scope else path
                if folder and scope and scope.kind in FOLDED_KINDS:
                    label += " (drawn once)"
                clusters[path] = label
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


def to_dot(graph: Graph, depth: int | None = None, fold: bool = False) -> str:
    pic = picture(graph, depth, fold)
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


def to_mermaid(graph: Graph, depth: int | None = None, fold: bool = False) -> str:
    pic = picture(graph, depth, fold)
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
