"""From a flat net to a proven spec: structure, blocks, repeats, text, then the text
resolved and compared with the flat net, and the source's tensors under its names. Pure
Python; the torch and ONNX readers make the flat net, and compare the outputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from netspec.graph import Graph
from netspec.importer.blocks import inline_single_uses, make_blocks, make_repeats
from netspec.importer.check import (
    check_count,
    correspondence,
    registration_matches,
    resolve_written,
    weights_for,
)
from netspec.importer.flat import FlatNet, Unmappable, prune
from netspec.importer.structure import build_tree
from netspec.importer.write import spec_text


@dataclass
class Imported:
    text: str
    graph: Graph
    #: the source's tensors under the spec's names
    weights: dict[str, np.ndarray]
    net: FlatNet
    #: the spec registers the source's parameters in the source's order
    by_position: bool


def spec_from_flat(net: FlatNet, header: Sequence[str], file: str) -> Imported:
    prune(net)
    if len(set(net.outputs)) != len(net.outputs):
        raise Unmappable(f"{net.name}: returns one tensor more than once; a spec's "
                         "outputs are each a different tensor")
    if not net.nodes:
        raise Unmappable(f"{net.name}: returns its input unchanged; a spec needs a layer")
    tree = build_tree(net)
    blocks = make_blocks(tree)
    tree = make_repeats(inline_single_uses(tree, blocks), blocks, net)
    text = spec_text(net, tree, blocks, header)
    graph = resolve_written(text, file)
    names = correspondence(net, tree, graph)
    check_count(net, graph)
    return Imported(text, graph, weights_for(net, graph, names), net,
                    registration_matches(net, graph, names))
