"""``--dynamic-size``: which specs may have a symbolic height and width, and the second
size an export is verified at.

A layer's output is *size-dependent* when its spatial axes follow the input's H, W.
Convolutions, pools, upsampling, norms over channels and element-wise layers keep that
and need nothing of the size; a global pool (or an adaptive pool to 1×1) ends it. A
spec is refused at the first layer that would bake the spec's size into the model:

- a flatten of a size-dependent [C, H, W]: the feature count C·H·W is the spec's; the
  error names the layer that then needs exactly that many (linear, norm), or the flatten;
- an adaptive pool to anything but 1×1: its windows are computed from the spec's H×W;
- a layer norm with per-element γ, δ over [C, H, W]: γ is shaped like the spec's size;
- a ceil-mode pool whose last window may start in the right padding at some size
  (stride + pad > dilated kernel): torch drops that window, ONNX's ceil_mode keeps it,
  and at a fixed size the emitter can tell which applies, with a symbolic one it cannot.
"""

from __future__ import annotations

from typing import Any

from netspec.errors import SpecError
from netspec.graph import INPUT, Graph, Node
from netspec.kinds.conv import pair

HEIGHT, WIDTH = "height", "width"


def _refuse(node: Node, why: str) -> SpecError:
    return SpecError(f"--dynamic-size: {node.op} '{node.name}' {why}; export this spec "
                     "at a fixed size (without --dynamic-size)", node.pos)


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
        a: Any = node.args
        if node.op == "global_avgpool" or (node.op == "adaptive_avgpool"
                                           and tuple(node.shape[1:]) == (1, 1)):
            continue
        if node.op == "adaptive_avgpool":
            raise _refuse(node, f"averages windows computed from the spec's size to give "
                          f"{list(node.shape[1:])}; only an adaptive pool to 1 (or a global "
                          "pool) works at any size")
        if node.op == "flatten":
            users = consumers.get(node.name, [])
            # the layer that needs exactly C·H·W features (linear, norm…), if one does
            nxt = graph[users[0]] if len(users) == 1 else None
            # a flatten or a training-only layer (gone at inference) passes the count on
            passes = nxt is not None and (nxt.op == "flatten" or (
                nxt.args is not None and nxt.args.training_only))
            fixer = nxt if nxt is not None and not passes else node
            c, h, w = graph[node.inputs[0]].shape
            raise _refuse(fixer, f"takes the {c}·{h}·{w} = {c * h * w:,} features that "
                          f"flatten '{node.name}' makes of a [{c}, H, W] map, a number fixed "
                          "by the spec's size (a global pool before the flatten would free it)"
                          if fixer is not node else
                          f"makes {c}·{h}·{w} features of a [{c}, H, W] map, a number fixed "
                          "by the spec's size")
        if node.op == "layernorm" and len(node.shape) == 3 and a.affine == "element":
            raise _refuse(node, f"has per-element γ, δ shaped {list(node.shape)}, the spec's "
                          "size")
        if node.op in ("maxpool", "avgpool") and a.ceil:
            k, s, p = pair(a.k), a.strides, pair(a.pad)
            d = a._dilation()
            if any(si + pi > di * (ki - 1) + 1 for ki, si, pi, di in zip(k, s, p, d, strict=True)):
                raise _refuse(node, "is a ceil-mode pool whose last window can start in the "
                              "padding at some sizes (torch drops it, ONNX keeps it)")
        dep.add(node.name)
    return dep


def second_size(graph: Graph) -> tuple[int, ...]:
    """The input shape of the second verification: twice the spec's H and W, so every
    divisibility the spec's size had (U-Net's four 2×2 pools) still holds."""
    c, h, w = graph.input_shape
    return (c, 2 * h, 2 * w)


def output_dims(graph: Graph, node: str, name: str, dep: set[str]) -> list[Any]:
    """An output's ONNX dims after the batch: symbolic H, W for a size-dependent output
    (named after the output: its size is the input's times a factor ONNX cannot state)."""
    shape = list(graph[node].shape)
    if node in dep and len(shape) == 3:
        shape[1:] = [f"{name}_{HEIGHT}", f"{name}_{WIDTH}"]
    return shape
