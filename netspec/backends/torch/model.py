"""Graph → ``torch.fx.GraphModule``: the network as generated Python code.

Each Graph node becomes one fx node, in Graph order: a ``call_module`` whose target is
the node's dotted name (so module paths and state_dict keys are the Graph's names,
``layer1.0.conv1.weight``), or plain ``a + b`` / ``torch.cat`` for merges. fx
turns that into an ordinary ``forward`` — no loop over the Graph at run time — which
torch.compile(fullgraph=True), DDP and channels_last treat like hand-written code.

Registration order: parameters are registered in Graph node order, which is what
copying torchvision weights by position relies on. Two steps keep it: ``_root`` adds
each module (and each container on its path, created on first use) in node order, and
GraphModule's constructor then re-installs the call_module targets by walking the fx
graph's nodes — again node order, creating containers on first use. (Passing a dict of
modules instead would NOT do: GraphModule sorts dict targets by depth, which would put
``fc`` before ``layer1``.) tests/test_torch_backend.py checks the order on every spec.

ReLUs and residual adds run in place where that is invisible (see ``Graph.inplace_nodes``),
as torchvision's do; otherwise each is a fresh allocation, slower on CPU.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import fx, nn

from netspec.backends.torch.layers import FUNCTIONS, MODULES
from netspec.graph import INPUT, Graph

#: the fx node meta key naming the Graph node a value is the output of (tests, tools)
NODE_META = "netspec_node"

def _class_name(graph: Graph) -> str:
    words = re.split(r"[^0-9A-Za-z]+", graph.name)
    name = "".join(w[:1].upper() + w[1:] for w in words if w)
    return name if name and not name[0].isdigit() else f"Net{name}"


def _root(graph: Graph, inplace: set[str]) -> nn.Module:
    """A module holding every layer at its dotted name, registered in Graph order."""
    root = nn.Module()
    containers = {id(root)}
    for node in graph.registration():
        if node.op not in MODULES:
            continue
        assert node.args is not None
        *path, leaf = node.name.split(".")
        parent = root
        # Graph.lint (run by resolve) refused reserved names and layers inside layers
        for atom in path:
            child = parent._modules.get(atom)
            if child is None:
                child = nn.Module()
                containers.add(id(child))
                parent.add_module(atom, child)
            assert id(child) in containers, f"{node.name}: a layer inside a layer"
            parent = child
        assert leaf not in parent._modules, f"{node.name}: taken twice"
        module = MODULES[node.op](node.args, graph.input_shapes(node))
        if node.name in inplace:
            module.inplace = True  # type: ignore[assignment]
        parent.add_module(leaf, module)
    return root


def _fx_graph(graph: Graph, inplace: set[str]) -> fx.Graph:
    g = fx.Graph()
    env: dict[str, fx.Node] = {}
    live = graph.live()
    for node in graph:
        if node.name not in live and node.op != INPUT:
            continue  # held for its weights only: registered, never computed
        if node.op == INPUT:
            out = g.placeholder("x")
        elif node.op in MODULES:
            (src,) = node.inputs
            out = g.call_module(node.name, (env[src],))
        else:
            inputs = [env[i] for i in node.inputs]
            out = FUNCTIONS[node.op](g, inputs, node.args, graph.input_shapes(node),
                                     node.name in inplace)
            if out in inputs:  # a merge of one tensor is that tensor; keep its own name
                env[node.name] = out
                continue
        out.meta[NODE_META] = node.name
        env[node.name] = out
    outs = [env[o] for o in graph.outputs]
    g.output(outs[0] if len(outs) == 1 else tuple(outs))
    g.lint()
    return g


def _register_in_order(model: nn.Module, root: nn.Module, graph: Graph) -> None:
    """GraphModule installs the modules the forward calls, in the order it calls them.
    Install the layers it never calls (weights held for their own sake) and, where the
    spec registers a layer elsewhere (a block's own layer scale first), put each
    container's children back in registration order, so state_dicts follow the Graph."""
    live = graph.live()
    dead = [n for n in graph.layers if n.op in MODULES and n.name not in live]
    for node in dead:
        model.add_submodule(node.name, root.get_submodule(node.name))
    if graph.register_order is None and not dead:
        return
    order: dict[int, tuple[nn.Module, list[str]]] = {}
    for node in graph.registration():
        if node.op not in MODULES:
            continue
        parent = model
        for atom in node.name.split("."):
            _, names = order.setdefault(id(parent), (parent, []))
            if atom not in names:
                names.append(atom)
            parent = parent._modules[atom]  # type: ignore[assignment]
    for parent, names in order.values():
        rest = [k for k in parent._modules if k not in names]
        parent._modules = {k: parent._modules[k] for k in [*names, *rest]}


def graph_module(graph: Graph, inplace: bool = True) -> fx.GraphModule:
    """The nn.Module for ``graph``: parameters initialised by torch's defaults
    (γ = 1, δ = 0 for norms), on the current default device. ``inplace=False`` gives
    every op a fresh output (tests compare the two)."""
    # decided in the core, so the memory estimate counts what this backend runs
    where = graph.inplace_nodes() if inplace else set()
    root = _root(graph, where)
    model = fx.GraphModule(root, _fx_graph(graph, where), class_name=_class_name(graph))
    _register_in_order(model, root, graph)
    # a plain attribute: forward never reads it, so compile and DDP never see it. fx's
    # deepcopy (EMA copies, AveragedModel) rebuilds the module from its graph alone and
    # keeps only attributes listed under this meta key.
    model.netspec_graph = graph
    key: Any = getattr(torch.fx.graph_module, "_USER_PRESERVED_ATTRIBUTES_KEY", None)
    if key is not None:
        model.meta.setdefault(key, {})["netspec_graph"] = graph
    return model
