"""The memory of a training step and of inference, from the Graph alone.

A training step holds the parameters, their gradients, the optimizer's state and the
activations autograd keeps for backward. What each layer keeps is its kind's rule
(``LayerArgs.saved_for_backward``); this module adds them up the way the torch backend
runs the graph — a ReLU or residual add in place writes into its input's memory
(``Graph.inplace_nodes``), a flatten or a split's part is a view of its input — so each
memory block is counted once, as torch's ``saved_tensors_hooks`` sees it when storages
are told apart, each in its dtype (under bf16 autocast each kind's ``autocast`` trait
says which; ``itemsizes``). tests/test_memory_kinds.py checks every kind against torch
to the byte, in fp32 and bf16; tests/test_memory.py whole networks.

Inference keeps nothing for backward: its peak is the largest set of activations alive
at once, each freed after its last reader.

Not counted: allocator rounding and caches, cuDNN/oneDNN workspaces, the transient
tensors inside a layer, and the gradients of activations during backward.
"""

from __future__ import annotations

from dataclasses import dataclass

from netspec.graph import Graph
from netspec.kinds import numel

#: optimizer → values of state it keeps per trained parameter (SGD: Nesterov momentum;
#: AdamW: the two moments)
OPTIMIZER_STATES = {"sgd": 1, "adamw": 2}
#: precision → bytes of a value computed in it. bf16 is CPU autocast: the weights, their
#: gradients and the optimizer's state stay float32, and each layer's activations take
#: the dtype its kind's ``autocast`` trait says (``itemsizes``); tests/test_memory.py
#: checks both precisions against torch on the CPU
ACTIVATION_BYTES = {"fp32": 4, "bf16": 2}
FLOAT32 = 4


@dataclass(frozen=True)
class StepMemory:
    """Bytes, for one training step at ``batch`` (and for inference at ``batch``)."""

    batch: int
    optimizer: str
    precision: str
    params: int
    grads: int
    optimizer_state: int
    #: buffers (BN running statistics)
    buffers: int
    #: what autograd keeps for backward
    activations: int
    #: the most activation memory alive at once in a forward pass without autograd
    inference_peak: int

    @property
    def training_total(self) -> int:
        return (self.params + self.grads + self.optimizer_state + self.buffers
                + self.activations)

    @property
    def inference_total(self) -> int:
        return self.params + self.buffers + self.inference_peak

    def as_dict(self) -> dict[str, int | str]:
        return {"batch": self.batch, "optimizer": self.optimizer,
                "precision": self.precision, "params": self.params, "grads": self.grads,
                "optimizer_state": self.optimizer_state, "buffers": self.buffers,
                "activations": self.activations, "training_total": self.training_total,
                "inference_peak": self.inference_peak,
                "inference_total": self.inference_total}


def _in_place(graph: Graph, size: dict[str, int]) -> set[str]:
    """The layers that write into their first input's memory: those the graph lets,
    but for a sum wider than that input (bf16 + float32: backends/torch's add_into)."""
    return {n for n in graph.inplace_nodes()
            if size[n] == size[graph[n].inputs[0]]}


def _storages(graph: Graph, size: dict[str, int]) -> dict[str, str]:
    """Node → the node whose output memory it lives in (itself, or where it runs in
    place or as a view, its first input's)."""
    inplace = _in_place(graph, size)
    home: dict[str, str] = {}
    for node in graph:
        shares = node.name in inplace or (node.args is not None and node.args.is_view())
        home[node.name] = home[node.inputs[0]] if shares else node.name
    return home


def itemsizes(graph: Graph, precision: str = "fp32") -> dict[str, int]:
    """Bytes per value of each node's output. In fp32 all are 4; under bf16 autocast the
    input arrives in float32, a ``lower`` kind's output is bf16, a ``widen`` kind's
    float32, a ``float`` kind's its input's, and any other kind's the widest of its
    inputs' (torch's type promotion: float32 + bf16 is float32)."""
    low = ACTIVATION_BYTES[precision]
    sizes: dict[str, int] = {}
    for node in graph:
        if node.args is None or low == FLOAT32:
            sizes[node.name] = FLOAT32
            continue
        rule = node.args.autocast
        ins = [sizes[i] for i in node.inputs]
        sizes[node.name] = (low if rule == "lower" else FLOAT32 if rule == "widen"
                            else ins[0] if rule == "float" else max(ins))
    return sizes


def needs_grad(graph: Graph) -> dict[str, bool]:
    """Node → whether autograd records it: the network's input needs no gradient, a
    layer's output does when one of its inputs does or it has trained parameters."""
    grad: dict[str, bool] = {}
    for node in graph:
        trained = (node.args is not None and not node.args.fixed_params
                   and bool(node.args.param_shapes(graph.input_shapes(node))))
        grad[node.name] = trained or any(grad[i] for i in node.inputs)
    return grad


def saved_activation_bytes(graph: Graph, batch: int, precision: str = "fp32") -> int:
    """The activations autograd keeps for one training step's backward, each memory
    block once, each in its dtype."""
    low = ACTIVATION_BYTES[precision]
    size = itemsizes(graph, precision)
    home = _storages(graph, size)
    inplace = _in_place(graph, size)
    kept: set[str] = set()
    extra = 0  # bytes per sample
    once = 0   # bytes whatever the batch (weights' bf16 copies, batch-wide statistics)
    live = graph.live()
    grad = needs_grad(graph)
    for node in graph.layers:
        if node.args is None or node.name not in live or not grad[node.name]:
            continue
        shapes = graph.input_shapes(node)
        rule = (node.args.saved_for_backward(shapes, node.shape) if low == FLOAT32
                else node.args.saved_under_autocast(shapes, node.shape))
        cast = node.args.autocast
        computes = low if cast == "lower" else FLOAT32 if cast == "float" else size[node.name]
        for i in rule.inputs:
            src = node.inputs[i]
            values = numel(graph[src].shape)
            if i == 0 and node.name in inplace:
                # it overwrites the input it needs: autograd keeps a copy of it first
                # (a ReLU6 in place: hardtanh_ clones its input)
                extra += values * size[src]
            elif size[src] != computes and cast in ("lower", "float"):
                # autocast (or the layer itself) casts the input first and keeps the
                # copy it computed with, not the input
                extra += values * computes
            else:
                kept.add(home[src])
        if rule.output:
            kept.add(home[node.name])
        for values, itemsize, per_sample in rule.extra:
            if per_sample:
                extra += values * (itemsize or computes)
            else:
                once += values * (itemsize or computes)
        input_grad = any(grad[i] for i in node.inputs)
        if cast == "lower" and low != FLOAT32 and (
                input_grad or not node.args.weights_kept_for_input_grad):
            # autocast casts the weights it multiplies by to bf16 and backward keeps them
            for name, shape in node.args.param_shapes(shapes).items():
                if name.rpartition(".")[2] == "weight":
                    once += numel(shape) * low
    blocks = sum(numel(graph[n].shape) * size[n] for n in kept)
    return (blocks + extra) * batch + once


def inference_peak_bytes(graph: Graph, batch: int, precision: str = "fp32") -> int:
    """The most activation memory alive at once in a forward pass without autograd,
    the input included: each block is freed after the last layer reading it."""
    size = itemsizes(graph, precision)
    home = _storages(graph, size)
    live_nodes = graph.live()
    last: dict[str, int] = {}
    order = [n for n in graph if n.name in live_nodes]
    for i, node in enumerate(order):
        for src in node.inputs:
            last[home[src]] = i
    for o in graph.outputs:
        last[home[o]] = len(order)
    # the blocks to free after each step, and a running total: going over every block
    # alive at each step was quadratic where thousands stay alive (a concat of m.*)
    frees: dict[int, list[str]] = {}
    alive: dict[str, int] = {}
    total = peak = 0
    for i, node in enumerate(order):
        block = home[node.name]
        if block not in alive:
            alive[block] = numel(node.shape) * batch * size[node.name]
            total += alive[block]
            frees.setdefault(max(i, last.get(block, i)), []).append(block)
        peak = max(peak, total)
        for b in frees.pop(i, ()):
            total -= alive.pop(b)
    return peak


def step_memory(graph: Graph, batch: int, optimizer: str = "adamw",
                precision: str = "fp32") -> StepMemory:
    counts = graph.params()
    return StepMemory(
        batch=batch, optimizer=optimizer, precision=precision,
        params=4 * counts.params,
        grads=4 * counts.trainable,
        optimizer_state=4 * counts.trainable * OPTIMIZER_STATES[optimizer],
        buffers=4 * counts.buffers,
        activations=saved_activation_bytes(graph, batch, precision),
        inference_peak=inference_peak_bytes(graph, batch, precision),
    )


def size_text(n: int) -> str:
    """Bytes in the unit that shows them: 896 B, 24.1 kB, 177.5 MB, 6.4 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} B"


def memory_lines(m: StepMemory) -> list[str]:
    """The estimate as ``netspec params --batch`` prints it."""
    per = OPTIMIZER_STATES[m.optimizer]
    rows = [
        ("weights", m.params, "fp32"),
        ("gradients", m.grads, "fp32, trainable parameters"),
        ("optimizer state", m.optimizer_state,
         f"{m.optimizer}: {per} value{'s' * (per != 1)} per trainable parameter"),
        ("buffers", m.buffers, "BN running statistics") if m.buffers else None,
        ("activations", m.activations, f"kept for backward, {m.precision}"),
    ]
    lines = [f"memory at batch {m.batch} (estimate; allocator overhead and workspaces "
             "not counted)", f"training step ({m.optimizer}, {m.precision}):"]
    lines += [f"  {name:<16}{size_text(n):>14}   {note}" for name, n, note in filter(None, rows)]
    lines.append(f"  {'total':<16}{size_text(m.training_total):>14}")
    lines.append(f"inference: activations at peak {size_text(m.inference_peak)}, with the weights "
                 f"{size_text(m.inference_total)}")
    return lines
