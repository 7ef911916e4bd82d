"""Counting without building: parameters, buffers and MACs from the Graph alone. The
totals (``Counts``, ``count``) are netspec/totals.py's, below the Graph, whose
``params()`` returns them; here each layer's count with its formula, for the reports."""

from __future__ import annotations

from dataclasses import dataclass

from netspec.graph import Graph, Node
from netspec.totals import Counts, count, input_shapes, total

__all__ = ["Counts", "NodeCount", "count", "node_count", "node_counts", "total"]


@dataclass(frozen=True)
class NodeCount:
    node: Node
    params: int
    buffers: int
    macs: int
    formula: str | None


def node_count(graph: Graph, node: Node) -> NodeCount:
    assert node.args is not None
    ins = input_shapes(graph, node)
    return NodeCount(
        node=node,
        params=total(node.args.param_shapes(ins)),
        buffers=total(node.args.buffer_shapes(ins)),
        macs=node.args.macs(ins, node.shape),
        formula=node.args.formula(ins),
    )


def node_counts(graph: Graph) -> list[NodeCount]:
    return [node_count(graph, n) for n in graph.layers]
