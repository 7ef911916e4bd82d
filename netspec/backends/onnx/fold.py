"""The folding pass: what remains of BatchNorm, layer scale and the training-only
layers (dropout, stochastic depth) at inference, decided once over the Graph and the
numpy weights, before any ONNX node is emitted. Which layers those are, and how a fold
goes, their kinds say — never their op names: ``running_stats`` (BN), ``training_only``
with ``inference_factor()`` (dropout, drop_path), ``channel_scale`` (layer scale),
``linear_map`` (what a per-channel scale folds into) with ``weight_out_axis`` (which
axis of its weight to scale) and ``input_fold_refusal()`` (whether a BN before it folds
exactly), and ``channel_repeat()`` (a layer the fold looks through: flatten).

At inference a BatchNorm is a fixed per-channel affine map y = s·x + t with
s = γ / sqrt(var + ε) and t = δ − mean·s, and dropout is the identity (inverted
scaling) or a multiplication by keep (classic scaling). Both fold into an adjacent
linear map exactly, so the exported model has no BatchNormalization or Dropout node:

- conv → BN, conv_transpose → BN, linear → BN (the BN is the producer's only consumer):
  scale the producer's output channels by s, bias ← bias·s + t;
- BN → conv with zero padding, BN → 1×1 stride-1 conv_transpose, BN → linear and
  BN → flatten → linear (the BN's output feeds only that layer): scale the consumer's
  input channels by s and add W·t to its bias. With padding the fold would be wrong at
  the borders, where the padded zeros were never shifted by t (each kind says when it
  refuses: ``input_fold_refusal()``);
- any other BN becomes one Mul and one Add with per-channel constants;
- inverted dropout and stochastic depth disappear; classic dropout multiplies the
  weight (not the bias) of the conv/linear it alone feeds by keep, or else becomes one Mul;
- a layer scale y = γ·x folds into the conv/linear before it when it is that layer's
  only reader (output channels scaled by γ, bias too); else it is one Mul.

The pass returns a :class:`Plan` (the tensors to emit, which nodes vanished into which,
and the fold report); it never modifies the weights it was given. Weights are scaled in
their own dtype (one rounding per fold); biases and BN constants are computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netspec.graph import INPUT, Graph, Node


@dataclass(frozen=True)
class FoldEntry:
    """Where one BatchNorm, layer scale or training-only layer went. ``action`` is one of
    folded (into ``into``), scale_shift (Mul+Add), removed, mul (one Mul)."""

    layer: str
    #: the layer's op: batchnorm, layer_scale, dropout, drop_path
    op: str
    action: str
    into: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "op": self.op, "action": self.action, "into": self.into,
                "reason": self.reason}


@dataclass
class Plan:
    #: every tensor to emit, by state_dict name, in the export's dtype (float32, or
    #: float16 for --precision fp16), folded where folds happened
    tensors: dict[str, np.ndarray]
    #: removed node → the node whose output now carries its value
    alias: dict[str, str] = field(default_factory=dict)
    #: BNs emitted as Mul+Add: per-channel (scale, shift)
    scale_shift: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: classic dropouts emitted as one Mul: the keep factor
    mul: dict[str, float] = field(default_factory=dict)
    #: layer scales that could not fold, emitted as one Mul by their γ
    scale: set[str] = field(default_factory=set)
    report: list[FoldEntry] = field(default_factory=list)

    def source(self, name: str) -> str:
        """The node whose output tensor stands for ``name``'s output after folding."""
        while name in self.alias:
            name = self.alias[name]
        return name


# ----------------------------------------------------------------- fold arithmetic
def bn_affine(mean: np.ndarray, var: np.ndarray, eps: float, gamma: np.ndarray | None = None,
              beta: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """BN at inference as y = s·x + t (float64)."""
    s = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    if gamma is not None:
        s = s * gamma.astype(np.float64)
    t = -mean.astype(np.float64) * s
    if beta is not None:
        t = t + beta.astype(np.float64)
    return s, t


def fold_after(w: np.ndarray, b: np.ndarray | None, s: np.ndarray, t: np.ndarray,
               groups: int = 1, out_axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """BN(s, t) applied to the output of a linear map with weight ``w`` (its output
    channels on ``out_axis``: the kind's ``weight_out_axis``): new (W, b).
    W keeps its dtype (one rounding of W·s); the bias is computed in float64."""
    s_w = s.astype(w.dtype)
    b = np.zeros(len(s)) if b is None else b.astype(np.float64)
    if out_axis == 1:
        # weight [C_in, C_out/g, …]: output channel g·(C_out/g)+j lives at [i∈g, j]
        c_in, c_out_g = w.shape[:2]
        wg = w.reshape(groups, c_in // groups, c_out_g, *w.shape[2:])
        w = (wg * s_w.reshape(groups, 1, c_out_g, *([1] * (w.ndim - 2)))).reshape(w.shape)
    elif out_axis == 0:  # weight [C_out, C_in/g, …]: output channel o at [o]
        w = w * s_w.reshape(-1, *([1] * (w.ndim - 1)))
    else:
        raise ValueError(f"a weight's output channels lie on axis 0 or 1, not {out_axis}")
    return w, b * s + t


def fold_before(w: np.ndarray, b: np.ndarray | None, s: np.ndarray, t: np.ndarray,
                groups: int = 1, out_axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """BN(s, t) applied to the input of a linear map with weight ``w`` (its output
    channels on ``out_axis``, its input channels on the other of the first two axes),
    where the kind's ``input_fold_refusal()`` found the fold exact (a conv without
    padding, a 1×1 stride-1 conv_transpose, a linear): new (W, b) with W' = W·s over
    input channels and b' = b + Σ W·t (in float64)."""
    s_w = s.astype(w.dtype)
    if out_axis == 0 and w.ndim == 2 and groups == 1:
        # [out, in]: one matrix product (the einsum below would sum in another order)
        b0 = np.zeros(w.shape[0]) if b is None else b.astype(np.float64)
        return w * s_w[None, :], b0 + w.astype(np.float64) @ t
    if out_axis == 0:
        # weight [C_out, C_in/g, …]; out channel o (group o // (C_out/g)) reads input
        # channels group·(C_in/g) … +C_in/g
        c_out, c_in_g = w.shape[:2]
        b0 = np.zeros(c_out) if b is None else b.astype(np.float64)
        wg = w.reshape(groups, c_out // groups, c_in_g, -1)
        shift = np.einsum("goik,gi->go", wg.astype(np.float64),
                          t.reshape(groups, c_in_g)).reshape(c_out)
        return (wg * s_w.reshape(groups, 1, c_in_g, 1)).reshape(w.shape), b0 + shift
    if out_axis == 1:
        # weight [C_in, C_out/g, 1, 1]: each output position gets exactly one tap
        c_in, c_out_g = w.shape[:2]
        if w[0, 0].size != 1:
            raise ValueError(f"a BN folds into the input of a [C_in, C_out/g, …] weight only "
                             f"with one tap, not {list(w.shape[2:])}")
        b0 = np.zeros(c_out_g * groups) if b is None else b.astype(np.float64)
        wg = w.reshape(groups, c_in // groups, c_out_g).astype(np.float64)
        shift = np.einsum("gij,gi->gj", wg, t.reshape(groups, c_in // groups)).reshape(-1)
        return w * s_w.reshape(-1, *([1] * (w.ndim - 1))), b0 + shift
    raise ValueError(f"a weight's output channels lie on axis 0 or 1, not {out_axis}")


# ----------------------------------------------------------------- the pass
class _Folder:
    def __init__(self, graph: Graph, weights: dict[str, np.ndarray],
                 dtype: Any = np.float32) -> None:
        self.g = graph
        self.w = weights
        #: the dtype of the emitted tensors; for float16 every fold is done in float64
        #: and rounded once, at the end (a float32 intermediate would round twice)
        self.dtype = np.dtype(dtype)
        self.compute = np.float64 if self.dtype == np.float16 else np.float32
        self.plan = Plan(tensors={})
        #: tensors changed by folds
        self.work: dict[str, np.ndarray] = {}
        #: consumers in the graph as it stands after the folds so far
        self.users: dict[str, list[str]] = graph.consumers()

    # tensors of a layer, as currently folded
    def get(self, node: str, key: str) -> np.ndarray | None:
        name = f"{node}.{key}"
        if name in self.work:
            return self.work[name]
        value = self.w.get(name)
        # fold in float32 at least, whatever the file stored (float16…)
        return None if value is None else value.astype(self.compute, copy=False)

    def put(self, node: str, w: np.ndarray, b: np.ndarray) -> None:
        self.work[f"{node}.weight"] = w
        self.work[f"{node}.bias"] = b

    def remove(self, name: str, into: str) -> None:
        """``name`` vanishes: its output is ``into``'s output, its consumers are ``into``'s."""
        self.plan.alias[name] = into
        mine = self.users[into]
        i = mine.index(name)
        self.users[into] = mine[:i] + self.users[name] + mine[i + 1:]
        self.users[name] = []

    def is_output(self, name: str) -> bool:
        return any(self.plan.source(o) == name for o in self.g.outputs)

    def linear_map(self, name: str) -> bool:
        args = self.g[name].args if name != INPUT else None
        return args is not None and args.linear_map

    def fold(self, formula: Any, name: str, s: np.ndarray, t: np.ndarray) -> None:
        """``fold_after`` or ``fold_before`` into linear map ``name``, on the axes its
        kind's ``weight_out_axis`` names."""
        args: Any = self.g[name].args
        w, b = formula(self.get(name, "weight"), self.get(name, "bias"), s, t,
                       getattr(args, "groups", 1), args.weight_out_axis)
        self.put(name, w, b)

    def run(self) -> Plan:
        # dropouts last to first, so that a dropout feeding a removed one sees past it
        for node in reversed(self.g.layers):
            if node.args is not None and node.args.training_only:
                self.dropout(node)
        for node in self.g.layers:
            if node.args is not None and node.args.running_stats:
                self.batchnorm(node)
            elif node.args is not None and node.args.channel_scale:
                self.layer_scale(node)
        order = {name: i for i, name in enumerate(self.g.nodes)}
        self.plan.report.sort(key=lambda e: order[e.layer])  # in spec order
        self.finish()
        return self.plan

    # -------------------------------------------------------------- dropout
    def dropout(self, node: Node) -> None:
        """Any training-only layer: gone, or its constant factor folded or multiplied."""
        args: Any = node.args
        keep = float(args.inference_factor())
        x = node.inputs[0]
        if keep == 1.0:
            why = args.inference_note()
            self.remove(node.name, x)
            self.plan.report.append(FoldEntry(node.name, node.op, "removed", None, why))
            return
        users = self.users[node.name]
        head = f"classic dropout multiplies by keep={keep:g} at inference"
        if len(users) == 1 and self.linear_map(users[0]) and not self.is_output(node.name):
            (c,) = users
            w = self.get(c, "weight")
            assert w is not None
            self.work[f"{c}.weight"] = w * np.asarray(keep, dtype=w.dtype)
            self.remove(node.name, x)
            self.plan.report.append(FoldEntry(
                node.name, "dropout", "folded", c,
                f"{head}; it feeds only {self.g[c].op} '{c}', whose weight (not bias) is "
                f"scaled by keep"))
            return
        self.plan.mul[node.name] = keep
        self.plan.report.append(FoldEntry(node.name, "dropout", "mul", None,
                                          f"{head}; {self._feeds(users)}: one Mul"))

    # -------------------------------------------------------------- batchnorm
    def batchnorm(self, node: Node) -> None:
        args: Any = node.args
        s, t = bn_affine(self.w[f"{node.name}.running_mean"], self.w[f"{node.name}.running_var"],
                         args.eps, self.w.get(f"{node.name}.weight"),
                         self.w.get(f"{node.name}.bias"))
        x = self.plan.source(node.inputs[0])
        users = self.users
        why_not: list[str] = []

        # 1. into the producer: conv/linear → BN, the BN its only consumer
        p = self.g[x] if x != INPUT else None
        # a producer that is itself an output must keep its value: nothing folds into it
        if p is not None and self.linear_map(x) and users[x] == [node.name] \
                and not self.is_output(x):
            self.fold(fold_after, x, s, t)
            self.remove(node.name, x)
            self.plan.report.append(FoldEntry(
                node.name, "batchnorm", "folded", x,
                f"{p.op} → BN: the BN is the only consumer of '{x}'; its scale folds into "
                f"the weight's output channels and its shift into the bias"))
            return
        if p is None:
            why_not.append("its input is the network input")
        elif self.linear_map(x) and self.is_output(x):
            why_not.append(f"'{x}' is an output of the network")
        elif self.linear_map(x):
            others = [u for u in users[x] if u != node.name]
            why_not.append(f"'{x}' also feeds {', '.join(others)}")
        else:
            why_not.append(f"its input comes from {p.op} '{x}'")

        # 2. into the consumer: BN → conv (no padding) / linear / flatten → linear
        target = self._consumer_target(node, users, why_not)
        if target is not None:
            c, through = target
            s_in, t_in = s, t
            via = ""
            if through is not None:  # BN over [C, H, W] seen by a linear as C·H·W features
                n = self.g[through]
                repeat = n.args.channel_repeat(self.g.input_shapes(n))  # type: ignore[union-attr]
                s_in, t_in = np.repeat(s, repeat), np.repeat(t, repeat)
                via = f" through {n.op} '{through}'"
            self.fold(fold_before, c, s_in, t_in)
            self.remove(node.name, x)
            note = self.g[c].args.input_fold_note  # type: ignore[union-attr]
            self.plan.report.append(FoldEntry(
                node.name, "batchnorm", "folded", c,
                f"BN → {self.g[c].op}{via}: the BN's output feeds only '{c}'"
                + (f" ({note})" if note else "")
                + "; its scale folds into the weight's input channels and its shift "
                "into the bias"))
            return

        # 3. a per-channel Mul + Add
        self.plan.scale_shift[node.name] = (s, t)
        self.plan.report.append(FoldEntry(node.name, "batchnorm", "scale_shift", None,
                                          "; ".join(why_not) + ": one Mul and one Add"))

    # -------------------------------------------------------------- layer scale
    def layer_scale(self, node: Node) -> None:
        x = self.plan.source(node.inputs[0])
        gamma = self.w[f"{node.name}.weight"].reshape(-1).astype(np.float64)
        if self.linear_map(x) and self.users[x] == [node.name] and not self.is_output(x):
            self.fold(fold_after, x, gamma, np.zeros_like(gamma))
            self.remove(node.name, x)
            self.plan.report.append(FoldEntry(
                node.name, "layer_scale", "folded", x,
                f"{self.g[x].op} → layer scale: γ scales the output channels of '{x}' "
                "(weight and bias)"))
            return
        why = (f"its input comes from {self.g[x].op} '{x}'" if x != INPUT and
               not self.linear_map(x) else f"'{x}' is an output of the network"
               if x != INPUT and self.is_output(x) else f"'{x}' also feeds other layers"
               if x != INPUT else "its input is the network input")
        self.plan.scale.add(node.name)
        self.plan.report.append(FoldEntry(node.name, "layer_scale", "mul", None,
                                          f"{why}: one Mul by γ"))

    def _consumer_target(self, node: Node, users: dict[str, list[str]],
                         why_not: list[str]) -> tuple[str, str | None] | None:
        """The linear map a BN can fold into from its output side and the layer it looks
        through on the way (a flatten), or None (with why)."""
        mine = users[node.name]
        if self.is_output(node.name):
            why_not.append("it is the network's output")
            return None
        if len(mine) != 1:
            why_not.append(f"its output feeds {len(mine)} layers")
            return None
        c = self.g[mine[0]]
        ca: Any = c.args
        if ca.linear_map:
            refusal = ca.input_fold_refusal()
            if refusal is None:
                return c.name, None
            why_not.append(f"it feeds {c.op} '{c.name}' {refusal}")
            return None
        if ca.channel_repeat(self.g.input_shapes(c)) is not None:
            after = users[c.name]
            if len(after) == 1 and self.linear_map(after[0]) and not self.is_output(c.name):
                refusal = self.g[after[0]].args.input_fold_refusal()  # type: ignore[union-attr]
                if refusal is None:
                    return after[0], c.name
                why_not.append(f"it feeds {c.op} '{c.name}', then {self.g[after[0]].op} "
                               f"'{after[0]}' {refusal}")
                return None
            why_not.append(f"it feeds {c.op} '{c.name}' that does not feed one linear")
            return None
        why_not.append(f"it feeds {c.op} '{c.name}'")
        return None

    def _feeds(self, users: list[str]) -> str:
        if not users:
            return "it is the network's output"
        if len(users) > 1:
            return f"it feeds {len(users)} layers"
        return f"it feeds {self.g[users[0]].op} '{users[0]}'"

    # -------------------------------------------------------------- result
    def finish(self) -> None:
        """Every parameter but the BNs' and the folded layers', folded where folds
        happened, as float32."""
        gone = {n.name for n in self.g.layers if n.args is not None and n.args.running_stats}
        gone |= set(self.plan.alias)
        names = list(self.g.param_shapes()) + [k for k in self.work if k not in self.w]
        for name in dict.fromkeys(names):
            if name.rpartition(".")[0] in gone:
                continue
            value = self.work.get(name)
            if value is None:
                value = self.w[name]
            self.plan.tensors[name] = np.ascontiguousarray(value, dtype=self.dtype)
        for name, (s, t) in list(self.plan.scale_shift.items()):
            self.plan.scale_shift[name] = (s.astype(self.dtype), t.astype(self.dtype))


def plan_folds(graph: Graph, weights: dict[str, np.ndarray], dtype: Any = np.float32) -> Plan:
    """Decide where every BatchNorm and dropout goes; compute the folded tensors, in
    ``dtype`` (float16: folded in float64, rounded once)."""
    return _Folder(graph, weights, dtype).run()


def summarize(report: list[FoldEntry], graph: Graph) -> str:
    """One line: ``batchnorm: 20 (19 folded into conv, 1 into linear); dropout: 1 removed``."""
    parts = []
    for op in sorted({e.op for e in report}, key=lambda op: (op != "batchnorm", op)):
        entries = [e for e in report if e.op == op]
        if not entries:
            continue
        counts: dict[str, int] = {}
        for e in entries:
            key = (f"folded into {graph[e.into].op}" if e.action == "folded" and e.into
                   else {"scale_shift": "as Mul+Add", "mul": "as Mul"}.get(e.action, e.action))
            counts[key] = counts.get(key, 0) + 1
        parts.append(f"{op}: {len(entries)} ("
                     + ", ".join(f"{n} {k}" for k, n in counts.items()) + ")")
    return "; ".join(parts) if parts else "no batchnorm, layer scale or dropout to fold"
