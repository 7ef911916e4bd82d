"""Hypothesis strategies that generate random *valid* netspec spec texts.

Two public strategies:

- ``spec_texts(named_skips=True)`` draws ``(text, expected_output_shape)``: a whole spec
  as YAML text, and the output shape (without the batch axis) the network must have.
  Specs cover every layer kind and option, vars with expressions, defaults, blocks with
  required and defaulted args used with ``repeat`` and ``$i``, residual blocks (identity,
  auto and explicit shortcuts, add and concat), dense blocks (concat and add) and named
  skips (``as:`` + ``add: [name]`` / ``concat: [name]``), on image ([C, H, W], C ≤ 8,
  H, W ≤ 16) or vector ([F]) inputs, with 1–8 top-level entries. ``named_skips=False``
  leaves named skips out.
- ``single_layer_specs()`` draws a :class:`SingleLayer`: one layer of a random kind on a
  random input, with the options it was given (after vars and ``defaults``; the kind's
  own defaults are *not* filled in), so a test can build the matching torch module itself.

Specs are valid by construction: the generator tracks the current shape as it goes
(with its own arithmetic, written from the documented semantics; tests compare graphs
against torch, not against this file). Channel counts and spatial sizes stay small
(C ≤ 32, H, W ≤ 32) so building and running the networks is fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd, prod
from typing import Any

import yaml
from hypothesis import strategies as st

from netspec.kinds import FAMILIES, NORM_KINDS, SPEC_KINDS, LayerArgs, ShapeError, family_members

Shape = tuple[int, ...]

MAX_IN_C = 8      # input channels
MAX_IN_HW = 16    # input height / width
MAX_IN_F = 16     # input features
MAX_OUT = 8       # ``out`` of conv / linear
MAX_CH = 32       # channels after merges
MAX_HW = 32       # spatial size at any point
MAX_F = 1024      # features after flatten / concat

#: kinds with a generator of their own below, which draws their options over their
#: whole range; every other kind the registry knows is drawn from its own ``samples``
#: (so a new kind is covered here without a line of this file)
DEDICATED = ("conv", "conv_transpose", "linear", "norm", "dropout", "gelu", "leaky_relu",
             "maxpool", "avgpool", "adaptive_avgpool", "global_avgpool", "flatten", "upsample")
#: merges read named tensors: drawn by ``skip`` where names are in sight
MERGES = tuple(k for k in SPEC_KINDS if FAMILIES[k].get(None) is not None
               and FAMILIES[k][None].arity is None)
#: the kinds drawn from the registry's samples
SAMPLED = tuple(k for k in SPEC_KINDS if k not in DEDICATED and k not in MERGES)
#: kinds that make one node (split makes one per part)
SINGLE_NODE = tuple(k for k in (*DEDICATED, *SAMPLED) if k != "split")
ACTIVATIONS = ("gelu", "leaky_relu")
NORM_FIELDS = {k: set(c.option_names()) for k, c in NORM_KINDS.items()}
#: a family's bare value is its kind (``act: silu``); a single kind's, its shorthand
SHORTHAND = {k: "kind" if family_members(k) else c.shorthand
             for k, f in FAMILIES.items() for c in f.values() if c.shorthand or family_members(k)}


def members(kind: str) -> list[tuple[str | None, type[LayerArgs]]]:
    """A spec kind's classes: a family's members with the ``kind`` that names each (``act``
    → relu, gelu, …), or the one class of a single kind (under None)."""
    return list(FAMILIES[kind].items())


def sampled_options(kind: str, shape: Shape) -> list[tuple[dict[str, Any], Shape]]:
    """The kind's declared samples that its own shape rule accepts on ``shape``, with
    the output shape each gives."""
    out = []
    for key, cls in members(kind):
        if len(shape) not in cls.ranks:
            continue
        for options in cls.samples:
            try:
                y = cls.model_validate(options).out_shape([shape])
            except (ShapeError, ValueError):
                continue
            if len(y) == 3 and (y[0] > MAX_CH or y[1] > MAX_HW or y[2] > MAX_HW):
                continue
            named = {} if key is None else {"kind": key}  # a family's member, by its kind
            out.append(({**named, **options}, y))
    return out

_MISSING: Any = object()


@dataclass(frozen=True)
class SingleLayer:
    """One layer on one input. ``kind`` is the spec kind (``norm`` for every norm, whose
    ``options["kind"]`` is always set); ``options`` holds what the spec gave, resolved."""

    text: str
    kind: str
    options: dict[str, Any]
    #: the layer's input: the network's, or with ``tokens_first`` the tokens of the
    #: network's [C, H, W] input (a spec's input is never tokens: ``tokens`` makes them)
    input_shape: Shape
    tokens_first: bool = False


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _conv_out(n: int, k: int, s: int, d: int, p: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _pool_out(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    return o


def _stride_between(n_in: int, n_out: int) -> int | None:
    for s in range(1, n_in + 1):
        if (n_in - 1) // s + 1 == n_out:
            return s
    return None


class Opts:
    """The options of one layer: what is written (``explicit``) and what applies
    (``eff``: written or inherited from the spec's ``defaults``)."""

    def __init__(self, gen: Gen, defaults_key: str, fields: set[str] | None = None) -> None:
        self.gen = gen
        preset = gen.defaults.get(defaults_key, {})
        self.preset = {k: v for k, v in preset.items() if fields is None or k in fields}
        self.explicit: dict[str, Any] = {}
        self.eff: dict[str, Any] = {}

    def take(self, key: str, strat: st.SearchStrategy[Any], default: Any = _MISSING,
             allowed: list[Any] | None = None) -> Any:
        """Draw a value for ``key``: inherit it from ``defaults``, leave it out (the kind's
        own ``default`` applies) or write it."""
        d = self.gen.d
        if key in self.preset and (allowed is None or self.preset[key] in allowed) \
                and d(st.booleans()):
            self.eff[key] = self.preset[key]
            return self.preset[key]
        if default is not _MISSING and key not in self.preset \
                and (allowed is None or default in allowed) and d(st.booleans()):
            return default
        v = d(strat if allowed is None else st.sampled_from(allowed))
        self.set(key, v)
        return v

    def set(self, key: str, v: Any) -> None:
        self.explicit[key] = v
        self.eff[key] = v

    def pair(self, key: str, a: int, b: int, default: Any = _MISSING) -> None:
        """Write a per-axis option as one int when it can, else [a, b]; maybe leave out."""
        if default is not _MISSING and a == b == default and key not in self.preset \
                and self.gen.d(st.booleans()):
            return
        self.set(key, a if a == b and self.gen.d(st.booleans()) else [a, b])


class Gen:
    """Draws one spec: vars, defaults, blocks and layers, tracking the shape."""

    def __init__(self, draw: Any, named_skips: bool = True) -> None:
        self.d = draw
        self.named_skips = named_skips
        self.vars: dict[str, Any] = {}
        self.var_text: dict[str, Any] = {}
        self.defaults: dict[str, dict[str, Any]] = {}
        self.defaults_text: dict[str, dict[str, Any]] = {}
        self.blocks: dict[str, dict[str, Any]] = {}
        self.names: dict[str, Shape] = {}
        #: the name of the current tensor, when the last top-level entry has one: a merge
        #: that names it takes its list as written
        self.current: str | None = None
        self.norm_log: list[tuple[str, dict[str, Any]]] = []

    # ------------------------------------------------------------------ values
    def draw_vars(self) -> None:
        d = self.d
        if d(st.booleans()):
            w = d(st.integers(1, 4))
            self.vars["w"], self.var_text["w"] = w, w
            if d(st.booleans()):
                self.vars["w2"], self.var_text["w2"] = 2 * w, "$w * 2"
        if d(st.booleans()):
            self.vars["flag"] = self.var_text["flag"] = d(st.booleans())
        if d(st.booleans()):
            self.vars["word"] = self.var_text["word"] = d(st.sampled_from(
                ["bilinear", "nearest", "channel", "element", "tanh", "none", "classic",
                 "batch", "layer", "rms", "channels+space"]))
        if d(st.booleans()):
            pair = [d(st.integers(1, 3)), d(st.integers(1, 3))]
            self.vars["hw"], self.var_text["hw"] = pair, list(pair)

    def int_text(self, v: int) -> Any:
        """An int as written: a literal, or an expression over the vars worth ``v``."""
        choices: list[Any] = [v]
        w = self.vars.get("w")
        if w is not None:
            if v == w:
                choices.append("$w")
            if v % w == 0 and v != w:
                choices.append(f"$w * {v // w}")
            if v > w:
                choices.append(f"$w + {v - w}")
            choices.append(f"max($w, {v})" if v >= w else f"min($w, {v})")
            choices.append(f"({v} * $w) // $w")
            choices.append(f"round($w * {v} / $w)")
            choices.append(f"{v} + $w % 1")
        w2 = self.vars.get("w2")
        if w2 is not None and v * 2 >= w2 and (v * 2 - w2) % 2 == 0:
            choices.append(f"$w2 // 2 + {v - w2 // 2}" if v != w2 // 2 else "$w2 // 2")
        return self.d(st.sampled_from(choices))

    def text(self, v: Any) -> Any:
        """Any option value as written, maybe through a var."""
        if isinstance(v, bool):
            if self.vars.get("flag") is v and self.d(st.booleans()):
                return "$flag"
            return v
        if isinstance(v, int):
            return self.int_text(v)
        if isinstance(v, str):
            if self.vars.get("word") == v and self.d(st.booleans()):
                return "$word"
            return v
        if isinstance(v, list):
            if self.vars.get("hw") == v and self.d(st.booleans()):
                return "$hw"
            return [self.text(x) for x in v]
        return v

    def draw_defaults(self, kinds: list[str] | None = None) -> None:
        d = self.d
        cands: dict[str, dict[str, st.SearchStrategy[Any]]] = {
            "conv": {"bias": st.booleans()},
            "conv_transpose": {"bias": st.booleans()},
            "linear": {"bias": st.booleans()},
            "norm": {"kind": st.sampled_from(["batch", "layer", "rms"]),
                     "affine": st.booleans(), "eps": st.sampled_from([1e-3, 1e-6]),
                     "momentum": st.sampled_from([0.2, None]),
                     "over": st.sampled_from(["channels", "channels+space"])},
            "dropout": {"scaling": st.sampled_from(["inverted", "classic"]),
                        "kind": st.sampled_from(["element", "channel"])},
            "maxpool": {"ceil": st.booleans()},
            "avgpool": {"ceil": st.booleans(), "count_pad": st.booleans()},
            "upsample": {"mode": st.sampled_from(["nearest", "bilinear"])},
            "leaky_relu": {"slope": st.sampled_from([0.0, 0.2])},
            "gelu": {"approximate": st.sampled_from(["none", "tanh"])},
        }
        pool = sorted(cands) if kinds is None else [k for k in kinds if k in cands]
        if not pool:
            return
        for kind in d(st.lists(st.sampled_from(pool), max_size=3, unique=True)):
            keys = d(st.lists(st.sampled_from(sorted(cands[kind])), min_size=1, unique=True))
            values = {k: d(cands[kind][k]) for k in keys}
            self.defaults[kind] = values
            self.defaults_text[kind] = {k: self.text(v) for k, v in values.items()}

    # ------------------------------------------------------------------ rendering
    def render(self, kind: str, o: Opts | dict[str, Any], extra: dict[str, Any] | None = None
               ) -> Any:
        explicit = o.explicit if isinstance(o, Opts) else o
        extra = extra or {}
        d = self.d
        if not explicit and not extra:
            return d(st.sampled_from([kind, {kind: None}, {kind: {}}]))
        written = {k: self.text(v) for k, v in explicit.items()}
        short = SHORTHAND.get(kind)
        if not extra and short is not None and list(written) == [short] and d(st.booleans()):
            return {kind: written[short]}
        return {kind: {**written, **extra}}

    # ------------------------------------------------------------------ leaf layers
    def leaf_kinds(self, shape: Shape, preserving: bool = False) -> list[str]:
        # inside a residual body tokens keep their count (a class token would change it)
        sampled = [k for k in SAMPLED
                   if any(not preserving or (len(y) == len(shape)
                                             and (len(y) != 2 or y[0] == shape[0]))
                          for _, y in sampled_options(k, shape))]
        if len(shape) == 1:
            return ["linear", "norm", "dropout", *ACTIVATIONS, "flatten", *sampled]
        if len(shape) == 2:  # tokens: what takes [N, D]
            return ["linear", "norm", "dropout", *ACTIVATIONS, *sampled]
        c, h, w = shape
        kinds = ["conv", "conv_transpose", "norm", "dropout", *ACTIVATIONS, "maxpool",
                 "avgpool", "adaptive_avgpool", "global_avgpool", *sampled]
        if not preserving and c * h * w <= MAX_F:
            kinds.append("flatten")
        if 2 * h <= MAX_HW and 2 * w <= MAX_HW:
            kinds.append("upsample")
        return kinds

    def leaf(self, kind: str, shape: Shape, norm_kinds: list[str] | None = None
             ) -> tuple[str, Opts, Shape]:
        """One layer of ``kind`` on ``shape``: (spec kind, its options, output shape)."""
        d = self.d
        if kind in ("conv", "conv_transpose"):
            return self._conv(kind, shape)
        if kind == "linear":
            o = Opts(self, "linear")
            out = o.take("out", st.integers(1, MAX_OUT))
            o.take("bias", st.booleans(), True)
            return kind, o, (shape[0], out) if len(shape) == 2 else (out,)
        if kind == "norm":
            return self._norm(shape, norm_kinds)
        if kind == "dropout":
            o = Opts(self, "dropout")
            if d(st.booleans()):
                o.set("drop", d(st.sampled_from([0.0, 0.1, 0.5, 0.9])))
            else:
                o.set("keep", d(st.sampled_from([0.25, 0.5, 0.8, 1.0])))
            o.take("kind", st.sampled_from(["element", "channel"]), "element",
                   allowed=["element", "channel"] if len(shape) == 3 else ["element"])
            o.take("scaling", st.sampled_from(["inverted", "classic"]), "inverted")
            return kind, o, shape
        if kind in ACTIVATIONS:
            o = Opts(self, kind)
            if kind == "gelu":
                o.take("approximate", st.sampled_from(["none", "tanh"]), "none")
            if kind == "leaky_relu":
                o.take("slope", st.sampled_from([0.0, 0.01, 0.2, 1.5]), 0.01)
            return kind, o, shape
        if kind in ("maxpool", "avgpool"):
            return self._pool(kind, shape)
        if kind == "adaptive_avgpool":
            o = Opts(self, kind)
            a, b = d(st.integers(1, 4)), d(st.integers(1, 4))
            o.pair("size", a, b)
            return kind, o, (shape[0], a, b)
        if kind == "global_avgpool":
            return kind, Opts(self, kind), (shape[0], 1, 1)
        if kind == "flatten":
            return kind, Opts(self, kind), (prod(shape),)
        if kind == "upsample":
            c, h, w = shape
            o = Opts(self, kind)
            top = min(MAX_HW // h, MAX_HW // w, 3)
            s = d(st.integers(2, top))
            o.set("scale", float(s) if d(st.booleans()) else s)
            o.take("mode", st.sampled_from(["nearest", "bilinear"]), "nearest")
            return kind, o, (c, h * s, w * s)
        if kind in SAMPLED:
            options, out = d(st.sampled_from(sampled_options(kind, shape)))
            o = Opts(self, kind, set())  # no defaults: a sample is valid as written
            for key, value in options.items():
                o.set(key, value)
            return kind, o, out
        raise AssertionError(kind)

    def _conv(self, kind: str, shape: Shape) -> tuple[str, Opts, Shape]:
        d = self.d
        c, h, w = shape
        o = Opts(self, kind)
        out = d(st.integers(1, MAX_OUT))
        o.set("out", out)
        transpose = kind == "conv_transpose"
        default_pad = not transpose and d(st.booleans())

        def combos(n: int) -> list[tuple[int, ...]]:
            found = []
            for k in range(1, 6 if not transpose else 5):
                for s in (1, 2):
                    for dil in (1, 2):
                        if transpose:
                            for p in range(3):
                                for op in range(s):  # onnxruntime: below stride
                                    size = (n - 1) * s - 2 * p + dil * (k - 1) + op + 1
                                    if 1 <= size <= MAX_HW:
                                        found.append((k, s, dil, p, op, size))
                        else:
                            for p in ([dil * (k - 1) // 2] if default_pad else range(3)):
                                size = _conv_out(n, k, s, dil, p)
                                if n + 2 * p - dil * (k - 1) - 1 >= 0 and 1 <= size <= MAX_HW:
                                    found.append((k, s, dil, p, 0, size))
            return found

        ch = d(st.sampled_from(combos(h)))
        cw_all = combos(w)
        cw = ch if ch in cw_all and d(st.booleans()) else d(st.sampled_from(cw_all))
        o.pair("k", ch[0], cw[0])
        o.pair("stride", ch[1], cw[1], 1)
        o.pair("dilation", ch[2], cw[2], 1)
        if transpose:
            o.pair("pad", ch[3], cw[3], 0)
            o.pair("output_pad", ch[4], cw[4], 0)
        elif not default_pad:
            o.pair("pad", ch[3], cw[3])
        o.take("groups", st.sampled_from(divisors(gcd(c, out))), 1)
        o.take("bias", st.booleans(), True)
        return kind, o, (out, ch[5], cw[5])

    def _pool(self, kind: str, shape: Shape) -> tuple[str, Opts, Shape]:
        d = self.d
        c, h, w = shape
        o = Opts(self, kind)
        ceil = o.take("ceil", st.booleans(), False)
        if kind == "avgpool":
            o.take("count_pad", st.booleans(), True)
        default_stride = d(st.booleans())

        def combos(n: int) -> list[tuple[int, ...]]:
            found = []
            for k in range(1, 5):
                for s in ([k] if default_stride else [1, 2, 3]):
                    for p in range(k // 2 + 1):
                        for dil in ((1, 2) if kind == "maxpool" else (1,)):
                            size = _pool_out(n, k, s, p, dil, ceil)
                            if 1 <= size <= MAX_HW and all(
                                    any(0 <= i * s - p + j * dil < n for j in range(k))
                                    for i in range(size)):  # no window of padding only
                                found.append((k, s, p, dil, size))
            return found

        ch = d(st.sampled_from(combos(h)))
        cw_all = combos(w)
        cw = ch if ch in cw_all and d(st.booleans()) else d(st.sampled_from(cw_all))
        o.pair("k", ch[0], cw[0])
        if not default_stride:
            o.pair("stride", ch[1], cw[1])
        o.pair("pad", ch[2], cw[2], 0)
        if kind == "maxpool":
            o.pair("dilation", ch[3], cw[3], 1)
        return kind, o, (c, ch[4], cw[4])

    def _norm(self, shape: Shape, kinds: list[str] | None = None) -> tuple[str, Opts, Shape]:
        d = self.d
        if kinds is None:
            kinds = ["batch", "layer", "rms"] + (["instance", "group"] if len(shape) == 3
                                                 else [])
        if len(shape) == 2:
            kinds = ["layer"]  # the one norm of tokens
        if len(shape) == 3 and shape[1] * shape[2] == 1:
            # instance statistics need more than one position (torch refuses [C, 1, 1])
            kinds = [k for k in kinds if k != "instance"]
            if shape[0] == 1:  # nor can layer or group norm average one value
                kinds = [k for k in kinds if k not in ("layer", "group")]
        k = d(st.sampled_from(kinds))
        o = Opts(self, "norm", NORM_FIELDS[k])
        o.take("kind", st.just(k), allowed=[k])
        o.eff["kind"] = k
        o.take("eps", st.sampled_from([1e-5, 1e-3, 0.1]), None)
        if k == "batch":
            o.take("momentum", st.sampled_from([0.1, 0.01, 0.5, 1.0, None]), 0.1)
        if k == "layer":
            over = "channels+space"
            if len(shape) == 3 and shape[0] > 1:
                over = o.take("over", st.sampled_from(["channels", "channels+space"]),
                              "channels+space")
            elif "over" in o.preset:  # a default this input cannot take: write it over
                o.set("over", "channels+space")
            modes: list[Any] = ["channel", "none", True, False]
            per_channel = over == "channels" or len(shape) == 2
            o.take("affine", st.sampled_from(modes if per_channel else [*modes, "element"]),
                   "channel", allowed=modes if per_channel else None)
        else:
            o.take("affine", st.booleans(), True)
        if k == "group":
            many = [g for g in divisors(shape[0]) if shape[0] // g * shape[1] * shape[2] > 1]
            o.set("groups", d(st.sampled_from(many)))
        if k == "rms":
            o.take("over", st.sampled_from(["channels", "channels+space"]), "channels")
        self.norm_log.append((k, dict(o.eff)))
        return "norm", o, shape

    # ------------------------------------------------------------------ entries
    def sequence(self, shape: Shape, lo: int, hi: int, depth: int, top: bool
                 ) -> tuple[list[Any], Shape]:
        items = []
        for _ in range(self.d(st.integers(lo, hi))):
            item, shape = self.entry(shape, depth, top)
            items.append(item)
        return items, shape

    def entry(self, shape: Shape, depth: int, top: bool) -> tuple[Any, Shape]:
        d = self.d
        choices = ["leaf", "leaf", "leaf", "repeat"]
        if depth < 2:
            # tokens have no dense block: concatenation joins channels, not features
            choices += ["residual", "dense"] if len(shape) != 2 else ["residual"]
        if any(b["rank"] == len(shape) for b in self.blocks.values()):
            choices.append("block")
        if top and self.named_skips and self._skip_targets(shape):
            choices.append("skip")
        choice = d(st.sampled_from(choices))
        name = None
        if top and self.named_skips and d(st.integers(0, 3)) == 0:
            name = f"tap{len(self.names)}"
        extra = {"as": name} if name else {}
        if choice == "leaf":
            kind = d(st.sampled_from(self.leaf_kinds(shape, preserving=not top)))
            spec_kind, o, out = self.leaf(kind, shape)
            item = self.render(spec_kind, o, extra)
        elif choice == "repeat":
            item, out = self.repeat(shape, extra)
        elif choice == "residual":
            item, out = self.residual(shape, depth, extra)
        elif choice == "dense":
            item, out = self.dense(shape, extra)
        elif choice == "block":
            item, out = self.use_block(shape, extra)
        else:
            item, out = self.skip(shape, extra)
        if name:
            self.names[name] = out
        if top:
            self.current = name
        return item, out

    def repeat(self, shape: Shape, extra: dict[str, Any]) -> tuple[Any, Shape]:
        d = self.d
        n = d(st.integers(1, 3))
        extra = {**extra, "repeat": self.int_text(n)}
        if d(st.booleans()) or len(shape) == 2:
            # a shape-preserving layer, n times over
            kind = d(st.sampled_from(["norm", "dropout", *ACTIVATIONS]))
            spec_kind, o, out = self.leaf(kind, shape)
            return {spec_kind: {**{k: self.text(v) for k, v in o.explicit.items()},
                                **extra}}, out
        opts: dict[str, Any] = {}
        a = d(st.integers(1, 4))
        out_text = d(st.sampled_from(
            [a, "$i + 1", f"$i + {a}"] + (["$w + $i"] if "w" in self.vars else [])))

        def out_at(i: int) -> int:
            if out_text == "$w + $i":
                return self.vars["w"] + i
            if isinstance(out_text, str):
                return i + (1 if out_text == "$i + 1" else a)
            return a

        if len(shape) == 1:
            opts["out"] = out_text
            if d(st.booleans()):
                opts["bias"] = d(st.booleans())
            return {"linear": {**opts, **extra}}, (out_at(n - 1),)
        _, h, w = shape
        k = d(st.sampled_from([1, 3, 5]))
        stride_text = d(st.sampled_from([None, 1, "2 - min($i, 1)", "1 + $i % 2"]))
        opts.update({"out": out_text, "k": k})
        if stride_text is not None:
            opts["stride"] = stride_text
        if d(st.booleans()):
            opts["bias"] = d(st.booleans())
        for i in range(n):
            s = {None: 1, 1: 1, "2 - min($i, 1)": 2 - min(i, 1), "1 + $i % 2": 1 + i % 2}[
                stride_text]
            h, w = (h - 1) // s + 1, (w - 1) // s + 1
        return {"conv": {**opts, **extra}}, (out_at(n - 1), h, w)

    def residual(self, shape: Shape, depth: int, extra: dict[str, Any]) -> tuple[Any, Shape]:
        d = self.d
        start = len(self.norm_log)
        body, y = self.sequence(shape, 1, 3, depth + 1, top=False)
        first_norm = self.norm_log[start] if len(self.norm_log) > start else None
        x = shape
        limit = MAX_CH if len(x) == 3 else MAX_F
        valid: list[tuple[str, str]] = []
        for combine in ("add", "concat") if len(x) != 2 else ("add",):
            fits = x == y if combine == "add" else x[1:] == y[1:]
            room = combine == "add" or (x[0] if fits else y[0]) + y[0] <= limit
            if fits and room:
                valid += [(combine, "identity"), (combine, "auto"), (combine, "omit")]
            elif room and self._auto_ok(x, y, first_norm):
                valid += [(combine, "auto"), (combine, "omit")]
            if combine == "add" or y[0] < limit:
                valid.append((combine, "explicit"))
        combine, shortcut = d(st.sampled_from(valid))
        opts: dict[str, Any] = {"body": body if len(body) > 1 or d(st.booleans()) else body[0]}
        fits = x == y if combine == "add" else x[1:] == y[1:]
        if shortcut == "explicit":
            sc, s_shape = self._explicit_shortcut(x, y, combine)
            opts["shortcut"] = sc
        else:
            if shortcut != "omit":
                opts["shortcut"] = shortcut
            s_shape = x if fits else y
        if combine == "concat" or d(st.booleans()):
            opts["combine"] = combine
        out = y if combine == "add" else (y[0] + s_shape[0], *y[1:])
        if combine == "add" and x == y and shortcut != "explicit" and d(st.integers(0, 3)) == 0:
            extra = {**extra, "repeat": d(st.integers(2, 3))}
        return {"residual": {**opts, **extra}}, out

    @staticmethod
    def _auto_ok(x: Shape, y: Shape, first_norm: tuple[str, dict[str, Any]] | None) -> bool:
        if len(x) != len(y) or len(x) == 2:  # no automatic projection of tokens
            return False
        if first_norm is not None and first_norm[0] == "group" \
                and y[0] % first_norm[1]["groups"]:
            return False
        if first_norm is not None and first_norm[0] == "instance" and prod(y[1:]) == 1:
            return False
        if len(x) == 1:
            return True
        return all(_stride_between(a, b) is not None for a, b in zip(x[1:], y[1:], strict=True))

    def _explicit_shortcut(self, x: Shape, y: Shape, combine: str) -> tuple[list[Any], Shape]:
        d = self.d
        limit = MAX_CH if len(x) == 3 else MAX_F
        out = y[0] if combine == "add" else d(st.integers(1, min(MAX_OUT, limit - y[0])))
        if len(x) == 1:
            return [{"linear": {"out": self.int_text(out)}}], (out,)
        if len(x) == 2:  # tokens (added only): each token's features projected to y's
            return [{"linear": {"out": self.int_text(y[1])}}], y
        strides = [_stride_between(a, b) for a, b in zip(x[1:], y[1:], strict=True)]
        layers: list[Any] = []
        conv: dict[str, Any] = {"out": self.int_text(out), "k": 1}
        if None in strides:
            layers.append({"adaptive_avgpool": {"size": [y[1], y[2]]}})
        elif strides != [1, 1] or d(st.booleans()):
            conv["stride"] = strides[0] if strides[0] == strides[1] else strides
        if ("conv" in self.defaults and "bias" in self.defaults["conv"]) or d(st.booleans()):
            conv["bias"] = d(st.booleans())
        layers.append({"conv": conv})
        if d(st.booleans()):
            layers.append({"norm": "batch"})
            self.norm_log.append(("batch", {"kind": "batch"}))
        return layers, (out, y[1], y[2])

    def dense(self, shape: Shape, extra: dict[str, Any]) -> tuple[Any, Shape]:
        d = self.d
        n = d(st.integers(1, 3))
        c = shape[0]
        limit = MAX_CH if len(shape) == 3 else MAX_F
        grow = (limit - c) // n
        combine = "add" if grow < 1 or d(st.booleans()) else "concat"
        g = c if combine == "add" else d(st.integers(1, min(4, grow)))
        body: list[Any] = []
        norm_kinds = ["batch", "layer", "rms"] + (
            ["instance"] if len(shape) == 3 and shape[1] * shape[2] > 1 else [])
        for _ in range(d(st.integers(0, 2))):
            kind = d(st.sampled_from(["norm", "dropout", *ACTIVATIONS]))
            spec_kind, o, _ = self.leaf(kind, shape, norm_kinds)
            body.append(self.render(spec_kind, o))
        if len(shape) == 3:
            core: dict[str, Any] = {"out": self.int_text(g), "k": d(st.sampled_from([1, 3]))}
            if d(st.booleans()):
                core["dilation"] = d(st.sampled_from([1, 2]))
            if d(st.booleans()):
                core["bias"] = d(st.booleans())
            body.append({"conv": core})
        else:
            body.append({"linear": {"out": self.int_text(g)}})
        if d(st.booleans()):
            body.append(d(st.sampled_from(list(ACTIVATIONS))))
        opts: dict[str, Any] = {"n": self.int_text(n),
                                "body": body if len(body) > 1 or d(st.booleans()) else body[0]}
        if combine == "add" or d(st.booleans()):
            opts["combine"] = combine
        out = shape if combine == "add" else (c + n * g, *shape[1:])
        return {"dense": {**opts, **extra}}, out

    def _skip_targets(self, shape: Shape) -> list[tuple[str, str]]:
        found = []
        for name, s in self.names.items():
            if s == shape:
                found.append(("add", name))
            if len(shape) == 2:
                continue  # tokens are only added: mul and concat take maps and features
            if s == shape or (len(s) == 3 and s == (shape[0], 1, 1)):  # a gate broadcasts
                found.append(("mul", name))
            if len(s) == len(shape) and s[1:] == shape[1:] \
                    and s[0] + shape[0] <= (MAX_CH if len(shape) == 3 else MAX_F):
                found.append(("concat", name))
        return found

    def skip(self, shape: Shape, extra: dict[str, Any]) -> tuple[Any, Shape]:
        d = self.d
        op, name = d(st.sampled_from(self._skip_targets(shape)))
        refs = [name]
        others = [n for o, n in self._skip_targets(shape) if o == op and n != name]
        if others and d(st.booleans()):
            refs.append(d(st.sampled_from(others)))
        if refs == [self.current]:  # only the current tensor: join it with itself
            refs = [name, name]
        # the current tensor comes first unless the list names it
        implicit = [] if self.current in refs else [shape[0]]
        if op == "concat":
            total = sum(implicit) + sum(self.names[r][0] for r in refs)
            if total > (MAX_CH if len(shape) == 3 else MAX_F):
                refs = [name, name] if name == self.current else [name]
                total = sum(implicit) + sum(self.names[r][0] for r in refs)
            out = (total, *shape[1:])
        else:
            out = shape
        if not extra and d(st.booleans()):
            return {op: refs}, out
        return {op: {"from": refs, **extra}}, out

    # ------------------------------------------------------------------ blocks
    def draw_blocks(self) -> None:
        d = self.d
        for name in ("blka", "blkb")[: d(st.integers(0, 2))]:
            rank = d(st.sampled_from([1, 3]))
            args: dict[str, Any] = {}
            c_default = d(st.sampled_from(
                ["required", "required", 4, "$in"] + (["$w * 2"] if "w" in self.vars else [])))
            args["c"] = c_default
            if rank == 3 and d(st.booleans()):
                args["s"] = d(st.sampled_from([1, 2]))
            if d(st.booleans()):
                args["p"] = d(st.sampled_from([0.1, 0.5]))
            templates = [self._template(rank, args, j)
                         for j in range(d(st.integers(1, 4)))]
            block: dict[str, Any] = {"rank": rank, "args": args, "templates": templates}
            self.blocks[name] = block

    def _template(self, rank: int, args: dict[str, Any], j: int) -> tuple[Any, Any]:
        """One layer of a block body, valid for any input: (as written, shape rule)."""
        d = self.d
        choices = ["layer", "norm", "act", "drop", "residual"]
        if rank == 3:
            choices.append("pool")
        if self.named_skips:
            choices.append("skip")
        choice = d(st.sampled_from(choices))
        exprs = ["$c", "$in", "max($c, $in)"] + (["$w"] if "w" in self.vars else []) + (
            ["$c * 2", "$c + 1"] if args["c"] != "$in" else [])
        e_text = d(st.sampled_from(exprs))

        def e_val(env: dict[str, Any]) -> int:
            c, i, w = env["c"], env["in"], self.vars.get("w")
            return {"$c": c, "$in": i, "$c * 2": 2 * c, "max($c, $in)": max(c, i),
                    "$c + 1": c + 1, "$w": w}[e_text]

        if choice == "layer":
            if rank == 1:
                return {"linear": {"out": e_text}}, lambda s, env: (e_val(env),)
            k = d(st.sampled_from([1, 3, 5]))
            strided = "s" in args and d(st.booleans())
            conv: dict[str, Any] = {"out": e_text, "k": k}
            if strided:
                conv["stride"] = "$s"
            if d(st.booleans()):
                conv["bias"] = "$flag" if "flag" in self.vars else False

            def conv_rule(s: Shape, env: dict[str, Any]) -> Shape:
                st_ = env["s"] if strided else 1
                return (e_val(env), (s[1] - 1) // st_ + 1, (s[2] - 1) // st_ + 1)

            return {"conv": conv}, conv_rule
        if choice == "norm":
            # a block may be used where H·W is 1 and its layers may make one channel: no
            # instance, layer or group norm, which refuse a single value to average
            # (top-level layers draw those where the shape allows)
            k = d(st.sampled_from(["batch", "rms"]))
            return {"norm": k}, lambda s, env: s
        if choice == "act":
            return d(st.sampled_from(list(ACTIVATIONS))), lambda s, env: s
        if choice == "drop":
            return {"dropout": {"drop": "$p" if "p" in args else 0.2}}, lambda s, env: s
        if choice == "pool":
            return {"maxpool": {"k": 3, "stride": 1, "pad": 1}}, lambda s, env: s
        if choice == "residual":
            body: list[Any]
            if rank == 1:
                body = [{"linear": {"out": "$c"}}]
            else:
                body = [{"conv": {"out": "$c", "k": 3}}, {"norm": "batch"}]
            res: dict[str, Any] = {"body": body}
            if d(st.booleans()):
                res["shortcut"] = "auto"
            return {"residual": res}, lambda s, env: (env["c"], *s[1:])
        # a named skip inside the block: names there are the block's own
        tap = f"t{j}"
        first = {"linear": {"out": "$c", "as": tap}} if rank == 1 else \
            {"conv": {"out": "$c", "k": 3, "as": tap}}
        return [first, "relu", {"add": [tap]}], lambda s, env: (env["c"], *s[1:])

    def block_defs(self) -> dict[str, Any]:
        out = {}
        for name, b in self.blocks.items():
            layers: list[Any] = []
            for text, _ in b["templates"]:
                layers.extend(text if isinstance(text, list) else [text])
            block: dict[str, Any] = {}
            if self.d(st.booleans()):
                block["description"] = f"block {name}"
            block["args"] = b["args"]
            block["layers"] = layers
            out[name] = block
        return out

    def use_block(self, shape: Shape, extra: dict[str, Any]) -> tuple[Any, Shape]:
        d = self.d
        name = d(st.sampled_from(sorted(n for n, b in self.blocks.items()
                                        if b["rank"] == len(shape))))
        b = self.blocks[name]
        n = d(st.integers(1, 3)) if d(st.booleans()) else None
        given: dict[str, Any] = {}
        c_val = d(st.integers(1, MAX_OUT))
        c_text: Any = self.int_text(c_val)
        if n is not None and d(st.booleans()):
            c_text = f"$i + {c_val}"
        if b["args"]["c"] == "required" or d(st.booleans()):
            given["c"] = c_text
        s_text: Any = None
        if "s" in b["args"] and d(st.booleans()):
            s_text = d(st.sampled_from([1, 2] + (["2 - min($i, 1)"] if n else [])))
            given["s"] = s_text
        if "p" in b["args"] and d(st.booleans()):
            given["p"] = d(st.sampled_from([0.0, 0.3]))
        for i in range(n or 1):
            env: dict[str, Any] = {"in": shape[0]}
            if "c" in given:
                env["c"] = c_val + i if c_text == f"$i + {c_val}" else c_val
            else:
                default = b["args"]["c"]
                env["c"] = {"$in": shape[0], "$w * 2": 2 * self.vars.get("w", 0)}.get(
                    default, default)
            if "s" in b["args"]:
                if s_text is None:
                    env["s"] = b["args"]["s"]
                else:
                    env["s"] = 2 - min(i, 1) if s_text == "2 - min($i, 1)" else s_text
            for _, rule in b["templates"]:
                shape = rule(shape, env)
        if n is not None:
            extra = {**extra, "repeat": n}
        if not given and not extra:
            return d(st.sampled_from([name, {name: None}])), shape
        return {name: {**given, **extra}}, shape

    # ------------------------------------------------------------------ the spec
    def input_shape(self) -> Shape:
        d = self.d
        if d(st.integers(0, 3)) == 0:
            return (d(st.integers(1, MAX_IN_F)),)
        return (d(st.integers(1, MAX_IN_C)), d(st.integers(1, MAX_IN_HW)),
                d(st.integers(1, MAX_IN_HW)))

    def document(self, shape: Shape, layers: list[Any], out: Shape) -> str:
        d = self.d
        doc: dict[str, Any] = {"netspec": 1, "name": d(st.sampled_from(["net", "t", "my-net"]))}
        if d(st.booleans()):
            doc["description"] = "generated"
        if d(st.booleans()) and len(out) != 2:
            doc["task"] = "classification" if len(out) == 1 else "segmentation"
        doc["input"] = [self.int_text(v) for v in shape]
        if self.var_text:
            doc["vars"] = self.var_text
        if self.defaults_text:
            doc["defaults"] = self.defaults_text
        if self.blocks:
            doc["blocks"] = self.block_defs()
        doc["layers"] = layers
        style = d(st.sampled_from([False, None, True]))
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=style, width=100,
                              allow_unicode=True)


@st.composite
def spec_texts(draw: Any, named_skips: bool = True) -> tuple[str, Shape]:
    """A random valid spec text and the output shape it must resolve to."""
    g = Gen(draw, named_skips)
    g.draw_vars()
    g.draw_defaults()
    shape = g.input_shape()
    g.draw_blocks()
    layers, out = g.sequence(shape, 1, 8, depth=0, top=True)
    return g.document(shape, layers, out), out


#: the ranks each spec kind takes, over its members
KIND_RANKS = {k: {r for _, c in members(k) for r in c.ranks} for k in SPEC_KINDS}
RANK1_KINDS = ("linear", "norm", "dropout", *ACTIVATIONS, "flatten",
               *(k for k in SAMPLED if any(1 in c.ranks for _, c in members(k))))
ALL_KINDS = SINGLE_NODE


@st.composite
def single_layer_specs(draw: Any, kinds: tuple[str, ...] = ALL_KINDS) -> SingleLayer:
    """One layer of a random kind (from ``kinds``) on a random input it accepts, maybe
    written through vars, shorthands and defaults."""
    g = Gen(draw)
    g.draw_vars()
    kind = draw(st.sampled_from(kinds))
    ranks = [1, 3] if kind in RANK1_KINDS and kind != "linear" else (
        [1] if kind == "linear" else [3] if 3 in KIND_RANKS[kind] else [])
    if 2 in KIND_RANKS[kind]:
        ranks.append(2)
    rank = draw(st.sampled_from(ranks))
    while True:  # an input the kind takes (a shuffle needs channels its groups divide)
        if rank == 1:
            shape: Shape = (draw(st.integers(1, MAX_IN_F)),)
        else:
            shape = (draw(st.integers(1, MAX_IN_C)), draw(st.integers(1, MAX_IN_HW)),
                     draw(st.integers(1, MAX_IN_HW)))
        seen = (shape[1] * shape[2], shape[0]) if rank == 2 else shape
        if kind not in SAMPLED or sampled_options(kind, seen):
            break
    g.draw_defaults([kind, "norm" if kind != "norm" else "conv"])
    spec_kind, o, out = g.leaf(kind, seen)
    extra = {"as": "layer"} if draw(st.booleans()) else {}
    layers = [g.render(spec_kind, o, extra)]
    if rank == 2:
        layers.insert(0, "tokens")
    return SingleLayer(g.document(shape, layers, out), spec_kind, dict(o.eff), seen, rank == 2)
