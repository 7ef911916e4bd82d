"""``--dynamic-size``: which specs may have a symbolic height and width, and the second
size an export is verified at.

A layer's output is *size-dependent* when its spatial axes follow the input's H, W.
Each kind says what it does with such an input (``LayerArgs.symbolic_size``):
convolutions, pools, upsampling, norms over channels and element-wise layers keep the
dependence and need nothing of the size; a global pool (or an adaptive pool to 1×1)
ends it; the rest give the reason they would bake the spec's size into the model (a
flatten's feature count C·H·W, an adaptive pool's windows, per-element γ, a ceil-mode
pool that may drop a window at some sizes). A spec is refused at the first such layer —
or, where a layer made a flat vector of the map, at the layer that then needs exactly
that many features (a linear, a norm: the one holding tensors of that size).
"""

from __future__ import annotations

from typing import Any

from netspec.errors import SpecError
from netspec.graph import INPUT, Graph, Node
from netspec.kinds.base import ENDS_SIZE, KEEPS_SIZE

HEIGHT, WIDTH, TOKENS = "height", "width", "tokens"


def size_dependent(graph: Graph) -> set[str]:
    """The nodes whose output's spatial axes follow the input's H, W; raises SpecError
    at the layer that fixes the size when the spec cannot have a symbolic one."""
    if len(graph.input_shape) != 3:
        raise SpecError(f"--dynamic-size: the input {list(graph.input_shape)} has no height "
                        "and width (it must be [C, H, W])")
    consumers = graph.consumers()
    live = graph.live()  # a layer no output reads is not exported, so fixes nothing
    dep = {INPUT}
    for node in graph.layers:
        if node.name not in live or not any(i in dep for i in node.inputs):
            continue
        assert node.args is not None
        rule = node.args.symbolic_size(graph.input_shapes(node), node.shape)
        if rule == ENDS_SIZE:
            continue
        if rule != KEEPS_SIZE:
            user = _needs_the_count(graph, node, consumers) if len(node.shape) == 1 else None
            if user is None:
                raise _refuse(node, rule)
            raise _refuse(user, f"takes exactly the {node.shape[0]:,} features of {node.op} "
                          f"'{node.name}', which {rule} (a global pool before the "
                          f"{node.op} would free it)")
        dep.add(node.name)
    return dep


def _needs_the_count(graph: Graph, flat: Node, consumers: dict[str, list[str]]
                     ) -> Node | None:
    """The layer to blame for ``flat``'s size-fixed vector: its one reader when that
    holds tensors sized by the count (a linear's weight, a norm's γ or running mean),
    else None (``flat`` is)."""
    users = consumers.get(flat.name, [])
    if len(users) != 1:
        return None
    nxt = graph[users[0]]
    assert nxt.args is not None
    inputs = graph.input_shapes(nxt)
    owned = {**nxt.args.param_shapes(inputs), **nxt.args.buffer_shapes(inputs)}
    return nxt if any(flat.shape[0] in shape for shape in owned.values()) else None


def _refuse(node: Node, why: str) -> SpecError:
    return SpecError(f"--dynamic-size: {node.op} '{node.name}' {why}; export this spec "
                     "at a fixed size (without --dynamic-size)", node.pos)


def second_size(graph: Graph) -> tuple[int, ...]:
    """The input shape of the second verification: twice the spec's H and W, so every
    divisibility the spec's size had (U-Net's four 2×2 pools) still holds."""
    c, h, w = graph.input_shape
    return (c, 2 * h, 2 * w)


def output_dims(graph: Graph, node: str, name: str, dep: set[str]) -> list[Any]:
    """An output's ONNX dims after the batch: symbolic H, W for a size-dependent output
    (named after the output: its size is the input's times a factor ONNX cannot state),
    and a symbolic token count for size-dependent tokens."""
    shape = list(graph[node].shape)
    if node in dep and len(shape) == 3:
        shape[1:] = [f"{name}_{HEIGHT}", f"{name}_{WIDTH}"]
    if node in dep and len(shape) == 2:
        shape[0] = f"{name}_{TOKENS}"
    return shape
