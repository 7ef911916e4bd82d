"""Counting without building: parameters, buffers and MACs from the Graph alone."""

from __future__ import annotations

from dataclasses import dataclass

from netspec.graph import Counts, Graph, Node, total


@dataclass(frozen=True)
class NodeCount:
    node: Node
    params: int
    buffers: int
    macs: int
    formula: str | None


def node_count(graph: Graph, node: Node) -> NodeCount:
    assert node.args is not None
    ins = graph.input_shapes(node)
    return NodeCount(
        node=node,
        params=total(node.args.param_shapes(ins)),
        buffers=total(node.args.buffer_shapes(ins)),
        macs=node.args.macs(ins, node.shape),
        formula=node.args.formula(ins),
    )


def node_counts(graph: Graph) -> list[NodeCount]:
    return [node_count(graph, n) for n in graph.layers]


def count(graph: Graph) -> Counts:
    rows = node_counts(graph)
    params = sum(r.params for r in rows)
    return Counts(
        params=params,
        trainable=params,
        buffers=sum(r.buffers for r in rows),
        macs=sum(r.macs for r in rows),
    )
