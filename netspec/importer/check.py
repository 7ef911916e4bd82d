"""The written spec, proven to be the flat net: resolved as any spec is, its Graph compared
layer for layer with what the reader found, and the source's tensors laid out under the
Graph's names. Pure Python (the outputs are compared by the torch or ONNX side).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from netspec.count import count
from netspec.errors import NetspecError, SpecError, SpecErrors
from netspec.graph import Graph
from netspec.importer.flat import INPUT_ID, FlatNet, FlatNode, Unmappable
from netspec.importer.structure import Item
from netspec.importer.write import expansion_order
from netspec.load import loads
from netspec.names import INPUT


class ImportBug(NetspecError):
    """The written spec is not the source: a bug in netspec import (exit 1, nothing
    written)."""

    exit_code = 1


_COMMUTATIVE = {"add", "mul"}


def _same(a: Any, b: Any) -> bool:
    """Equal options, floats to a relative 1e-12 (a rate written as an expression
    over ``$i`` may differ from the source's arithmetic in the last bit)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(
            a, b, rel_tol=1e-12, abs_tol=1e-300)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _options(args: Any) -> dict[str, Any]:
    # a merge's references are its inputs, compared below
    return {k: v for k, v in args.canonical().items() if k != "from_"}


def resolve_written(text: str, file: str) -> Graph:
    try:
        return loads(text, file)
    except (SpecError, SpecErrors) as e:
        first = str(e).splitlines()[0]
        raise ImportBug(f"the written spec does not resolve: {first}") from None


def correspondence(net: FlatNet, tree: Sequence[Item], graph: Graph) -> dict[int, str]:
    """Each flat node's Graph node, after checking that they are the same layer: kind,
    options, shape, and inputs (in order; either order for add and mul)."""
    by_id = {n.id: n for n in net.nodes}
    order = expansion_order(tree)
    live = graph.live()  # a split's unused part is in the Graph, never computed
    layers = [n for n in graph.layers if n.name in live]
    if len(order) != len(layers):
        raise ImportBug(f"the written spec has {len(layers)} layers, the source "
                        f"{len(order)}")
    names: dict[int, str] = {INPUT_ID: INPUT}

    def flat_concat(n: Any) -> tuple[Any, ...] | None:
        return n.inputs if n.kind == "concat" else None

    def graph_concat(n: Any) -> tuple[Any, ...] | None:
        return n.inputs if n.op == "concat" else None

    for fid, node in zip(order, layers, strict=True):
        flat: FlatNode = by_id[fid]
        names[fid] = node.name
        assert flat.args is not None and node.args is not None
        problem = ""
        if node.op != flat.args.op:
            problem = f"is {node.op}, the source's {flat.args.op}"
        elif not _same(_options(node.args), _options(flat.args)):
            problem = f"has options {node.args.summary()}, the source's {flat.args.summary()}"
        elif getattr(node.args, "index", None) != getattr(flat.args, "index", None):
            problem = "is another part of its split"
        elif tuple(node.shape) != tuple(flat.shape):
            problem = f"has shape {list(node.shape)}, the source's {list(flat.shape)}"
        else:
            # concatenation is associative: DenseNet's cat(x, o0, o1) is the resolver's
            # cat(cat(x, o0), o1), so nested concats compare by what they join
            want = [names.get(i, "?") for i in _joined(flat.id, by_id, flat_concat)]
            got = _joined(node.name, graph.nodes, graph_concat)
            if (sorted(want) != sorted(got)) if node.op in _COMMUTATIVE else want != got:
                problem = f"reads {got}, the source's layer reads {want}"
        if problem:
            raise ImportBug(f"layer {node.name} (from {flat.path}) {problem}")
    return names


def _joined(key: Any, nodes: Any, concat_inputs: Any) -> list[Any]:
    """A node's inputs, each input that is itself a concatenation replaced by what it
    joins (for a concat; any other node's inputs as they are)."""
    own = concat_inputs(nodes[key])
    if own is None:
        return list(nodes[key].inputs)
    out: list[Any] = []
    for i in own:
        inner = concat_inputs(nodes[i]) if i in nodes else None
        out += _joined(i, nodes, concat_inputs) if inner is not None else [i]
    return out


def weights_for(net: FlatNet, graph: Graph, names: dict[int, str]) -> dict[str, np.ndarray]:
    """The source's tensors under the Graph's names, in its registration order."""
    flat_of = {name: fid for fid, name in names.items()}
    by_id = {n.id: n for n in net.nodes}
    out: dict[str, np.ndarray] = {}
    for node in graph.registration():
        assert node.args is not None
        ins = graph.input_shapes(node)
        want = {**node.args.param_shapes(ins), **node.args.buffer_shapes(ins)}
        if not want:
            continue
        flat = by_id[flat_of[node.name]]
        for tensor, shape in want.items():
            value = np.asarray(_numpy(net.source_tensors[flat.tensors[tensor]]))
            out[f"{node.name}.{tensor}"] = value.reshape(shape)
    return out


def _numpy(t: Any) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t
    t = t.detach().to("cpu")
    return (t.float() if t.is_floating_point() else t).numpy()


@dataclass(frozen=True)
class Coverage:
    params: int
    source: int

    def __str__(self) -> str:
        share = self.params / self.source if self.source else 1.0
        return f"{self.params:,} of the source's {self.source:,} parameters ({share:.1%})"


def check_count(net: FlatNet, graph: Graph) -> None:
    """netspec's count of the spec equals the source's sum of parameter sizes, and every
    source parameter is used by some layer."""
    total = sum(net.source_params.values())
    used = {s for n in net.nodes for s in n.tensors.values()}
    unused = [p for p in net.source_params if p not in used]
    if unused:
        modules = sorted({p.rpartition(".")[0] or p for p in unused})
        size = sum(net.source_params[p] for p in unused)
        shown = ", ".join(modules[:3]) + (f" and {len(modules) - 3} more" if len(modules) > 3
                                          else "")
        raise Unmappable(f"{shown}: {size:,} parameters the traced forward (eval mode) "
                         "never uses; a spec holds only the weights its layers compute with "
                         "(build the source without them: an auxiliary classifier off, "
                         "through --kw)")
    params = count(graph).params
    if params != total:
        raise ImportBug(f"the spec counts {params:,} parameters, the source has {total:,}")


def registration_matches(net: FlatNet, graph: Graph, names: dict[int, str]) -> bool:
    """Whether the spec registers the source's parameters in the source's own order (then
    the source's state dicts pair with it by position)."""
    flat_of = {name: fid for fid, name in names.items()}
    by_id = {n.id: n for n in net.nodes}
    ours: list[str] = []
    for node in graph.registration():
        assert node.args is not None
        params = node.args.param_shapes(graph.input_shapes(node))
        if params:
            ours += [by_id[flat_of[node.name]].tensors[t] for t in params]
    theirs = [p for p in net.source_params if p in set(ours)]
    return ours == theirs
