"""``netspec fit spec.yaml --vary width,depth --params 10M``: the spec's vars solved to a
budget of parameters, MACs, training memory or latency, by counting every variant (the
search itself is netspec/fit.py; latency is measured in onnxruntime for the few
variants the count leaves)."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from typing import Any

from netspec.commands.common import add_spec_args, blame_sets, parse_sets
from netspec.entries import shown
from netspec.errors import SpecError, SpecErrors, UsageError
from netspec.fit import (
    COUNTED,
    MAX_VARIANTS,
    Budget,
    Counter,
    MemoryAt,
    Search,
    Variant,
    compound,
    family,
    grid,
    grid_size,
    search,
    written_vars,
)
from netspec.fit_ranges import Domain, domain_values, parse_vary, spec_domains
from netspec.io import atomic_write, check_writable
from netspec.load import load_text, resolve_document
from netspec.memory import OPTIMIZER_STATES, size_text
from netspec.yaml_loader import load_file

#: budget units: counts (params, MACs), bytes (decimal as netspec prints them, and
#: binary), and time
_COUNT_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_BYTE_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_TIME_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}  # → milliseconds
_AMOUNT = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ]*)\s*")

#: the latency search measures at most this many variants (a binary search over the
#: variants the count leaves, ordered by size)
MAX_MEASURED = 12


def amount(flag: str, units: dict[str, float], example: str) -> Any:
    """An argparse ``type``: a positive number with an optional unit of ``units``."""

    def parse(text: str) -> float:
        m = _AMOUNT.fullmatch(text)
        unit = m.group(2).lower() if m else ""
        if not m or unit not in units:
            known = ", ".join(u for u in units if u) or "none"
            raise UsageError(f"{flag} {text}: expected a number with a unit ({known}), "
                             f"e.g. {example}")
        value = float(m.group(1)) * units[unit]
        if not math.isfinite(value) or value <= 0:
            raise UsageError(f"{flag} {text}: must be a finite number above 0")
        return value

    return parse


class _Budget(argparse.Action):
    """Budgets keep the order they are given in: the first decides what "largest" is."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        budgets = [b for b in (namespace.budgets or []) if b.metric != self.dest]
        namespace.budgets = [*budgets, Budget(self.dest, values)]


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name, help="solve a spec's vars to a budget of params, MACs, memory or latency",
        description="Search the values of the vars named in --vary (their ranges from "
        "the spec's fit: section, or NAME=MIN:MAX[:STEP]) for the largest network within "
        "every budget given (largest by the first budget, then by MACs), or the smallest "
        "in one figure with --minimise. Every variant is counted exactly without being "
        "built; --latency is measured in onnxruntime on this machine for the few variants "
        "the count leaves.")
    add_spec_args(p)
    p.add_argument("--vary", action="append", default=[], metavar="VARS",
                   help="the vars to solve, comma-separated: NAME (its range from the "
                   "spec's fit:) or NAME=MIN:MAX[:STEP] (repeatable)")
    p.add_argument("--compound", metavar="VAR=C,...",
                   help="EfficientNet's compound scaling: each var is its value times C "
                   "to the power φ, and φ is solved (e.g. width=1.1,depth=1.2,"
                   "resolution=1.15)")
    p.add_argument("--phi", default="-3:8:0.05", metavar="MIN:MAX:STEP",
                   help="with --compound: the values of φ tried (default -3:8:0.05)")
    p.set_defaults(budgets=[])
    p.add_argument("--params", action=_Budget, metavar="N",
                   type=amount("--params", _COUNT_UNITS, "5M"),
                   help="at most N parameters (units k, M, G)")
    p.add_argument("--macs", action=_Budget, metavar="N",
                   type=amount("--macs", _COUNT_UNITS, "1G"),
                   help="at most N multiply-accumulates per image")
    p.add_argument("--memory", action=_Budget, metavar="BYTES",
                   type=amount("--memory", _BYTE_UNITS, "8GB"),
                   help="at most this much memory for a training step at --batch "
                   "(weights, gradients, optimizer state, saved activations)")
    p.add_argument("--latency", action=_Budget, metavar="TIME",
                   type=amount("--latency", _TIME_UNITS, "5ms"),
                   help="at most this median time per batch of --batch in onnxruntime "
                   "on this machine (measured)")
    p.add_argument("--batch", type=int, default=None, metavar="B",
                   help="the batch of --memory (required there) and --latency (default 1)")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZER_STATES), default="adamw",
                   help="with --memory: whose state to count (default adamw)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="with --memory: activations at fp32, or bf16 under autocast")
    p.add_argument("--minimise", "--minimize", choices=COUNTED, default=None,
                   help="the variant smallest in this figure, within the budgets")
    p.add_argument("--family", type=int, default=None, metavar="N",
                   help="N scales, like n/s/m/l/x: the first budget's targets spaced "
                   "evenly on a log scale up to it, each filled by the best variant")
    p.add_argument("-o", "--output", metavar="SPEC.yaml",
                   help="write the spec with the solved vars as its values")
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(run=run)


# --------------------------------------------------------------------------- the search
def _check_args(args: argparse.Namespace) -> None:
    if not args.budgets:
        raise UsageError("give at least one budget: --params, --macs, --memory or --latency")
    if not args.vary and not args.compound:
        raise UsageError("name the vars to solve: --vary width,depth (or --compound)")
    if args.vary and args.compound:
        raise UsageError("--compound solves its own vars; give --vary or --compound, "
                         "not both")
    metrics = {b.metric for b in args.budgets}
    if "memory" in metrics and args.batch is None:
        raise UsageError("--memory needs --batch: the memory of a training step grows "
                         "with the batch")
    if args.batch is not None and args.batch < 1:
        raise UsageError("--batch must be 1 or more")
    if args.family is not None and not 2 <= args.family <= 20:
        raise UsageError("--family must be from 2 to 20")
    if args.family is not None and args.output:
        raise UsageError("--family prints several variants and -o writes one: fit the "
                         "scale you want with its budget and -o")
    if args.family is not None and "latency" in metrics:
        raise UsageError("--family spaces counted budgets; give --params, --macs or "
                         "--memory first (latency is measured for one fit at a time)")
    if args.minimise and all(b.metric == "latency" for b in args.budgets):
        raise UsageError("--minimise needs a counted budget beside --latency")
    if args.minimise == "memory" and args.batch is None:
        raise UsageError("--minimise memory needs --batch")


def _vary(items: list[str], spec_ranges: dict[str, Domain], known: dict[str, Any]
          ) -> list[Domain]:
    out: dict[str, Domain] = {}
    for item in (x for group in items for x in _split_top(group)):
        name, rng = parse_vary(item)
        if name not in known:
            from netspec.errors import did_you_mean

            raise UsageError(f"--vary {shown(name)}: the spec has no var "
                             f"{shown(name, True)}{did_you_mean(name, known)} (its vars: "
                             f"{', '.join(known) or 'none'})")
        if name in out:
            raise UsageError(f"--vary {name}: named twice")
        if rng is not None:
            try:
                out[name] = Domain(name, domain_values(rng))
            except ValueError as e:
                raise UsageError(f"--vary {item}: {e}") from None
        elif name in spec_ranges:
            out[name] = spec_ranges[name]
        else:
            raise UsageError(f"--vary {name}: the spec's fit: section gives {name} no range; "
                             f"add one there ({name}: {{min: …, max: …, step: …}}) or write "
                             f"--vary {name}=MIN:MAX:STEP")
    return list(out.values())


def _split_top(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _coefficients(text: str, known: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in _split_top(text):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq:
            raise UsageError(f"--compound {item}: expected VAR=COEFFICIENT")
        if name not in known:
            raise UsageError(f"--compound {shown(name)}: the spec has no var "
                             f"{shown(name, True)} (its vars: {', '.join(known) or 'none'})")
        base = known[name]
        if isinstance(base, bool) or not isinstance(base, int | float) or base <= 0:
            raise UsageError(f"--compound {name}: its value {base!r} is not a number above "
                             "0 to scale")
        try:
            c = float(value)
        except ValueError:
            raise UsageError(f"--compound {item}: {value!r} is not a number") from None
        if not math.isfinite(c) or c <= 0:
            raise UsageError(f"--compound {item}: the coefficient must be above 0")
        out[name] = c
    if not out:
        raise UsageError("--compound: expected VAR=COEFFICIENT,…")
    return out


def _phis(text: str) -> list[float]:
    from netspec.spec import FitRange

    parts = text.split(":")
    try:
        lo, hi, step = (float(p) for p in parts)
        values = domain_values(FitRange(min=lo, max=hi, step=step))
    except ValueError as e:
        raise UsageError(f"--phi {text}: expected MIN:MAX:STEP with MIN ≤ MAX and STEP "
                         f"above 0 ({str(e).splitlines()[0]})") from None
    return [float(v) for v in values]


def _measure(counter: Counter, candidates: list[Variant], batch: int,
             limit: float) -> tuple[Variant | None, list[Variant]]:
    """The largest candidate whose measured latency is within ``limit`` (ms): a binary
    search along the candidates ordered by size, on the assumption that a larger one is
    never faster; at most MAX_MEASURED are measured."""
    from netspec.backends.onnx.latency import measure_latency

    ordered = sorted(candidates, key=lambda v: (v.macs, v.params))
    measured: dict[int, Variant] = {}

    def timed(i: int) -> Variant:
        if i not in measured:
            v = ordered[i]
            ms = measure_latency(counter.graph(v.point), batch)
            measured[i] = Variant(v.vars, v.params, v.macs, v.memory, ms)
        return measured[i]

    lo, hi, best = 0, len(ordered) - 1, None
    while lo <= hi and len(measured) < MAX_MEASURED:
        mid = (lo + hi) // 2
        if timed(mid).figure("latency") <= limit:
            best, lo = timed(mid), mid + 1
        else:
            hi = mid - 1
    return best, [measured[i] for i in sorted(measured)]


def _first_within(counter: Counter, candidates: list[Variant], batch: int,
                  limit: float) -> tuple[Variant | None, list[Variant]]:
    """With --minimise: the best candidate (smallest in that figure) whose measured
    latency is within ``limit``, trying them best first, at most MAX_MEASURED."""
    from netspec.backends.onnx.latency import measure_latency

    measured: list[Variant] = []
    for v in candidates[:MAX_MEASURED]:
        ms = measure_latency(counter.graph(v.point), batch)
        measured.append(Variant(v.vars, v.params, v.macs, v.memory, ms))
        if ms <= limit:
            return measured[-1], measured
    return None, measured


# ------------------------------------------------------------------------------- output
def _figure(metric: str, value: float) -> str:
    if metric == "memory":
        return size_text(int(value))
    if metric == "latency":
        return f"{value:.2f} ms"
    return f"{int(value):,}"


def _limit(b: Budget) -> str:
    return _figure(b.metric, b.limit)


def _table(spec_name: str, chosen: Variant, found: Search, budgets: list[Budget],
           base: dict[str, Any], seconds: float, measured: list[Variant],
           phi: float | None) -> str:
    what = (f"the smallest in {found.minimise}" if found.minimise
            else "the largest variant")
    lines = [f"{spec_name}: {what} within "
             + ", ".join(f"--{b.metric} {_limit(b)}" for b in budgets)
             + f" ({found.tried:,} variants counted in {seconds:.2f} s"
             + (f", {found.invalid:,} not valid" if found.invalid else "") + ")"]
    width = max(len(k) for k, _ in chosen.vars)
    for name, v in chosen.vars:
        lines.append(f"  {name:<{width}} = {v!r:<8} (was {base[name]!r})")
    if phi is not None:
        lines.append(f"  {'φ':<{width}} = {phi:g}")
    for metric in ("params", "macs", "memory", "latency"):
        value = getattr(chosen, metric)
        if value is None:
            continue
        b = next((b for b in budgets if b.metric == metric), None)
        against = (f"  ≤ {_limit(b)}  ({100 * value / b.limit:.1f}%)" if b else "")
        lines.append(f"  {metric:<8} {_figure(metric, value):>16}{against}")
    if measured:
        lines.append(f"  latency measured for {len(measured)} of the "
                     f"{len(found.feasible()):,} variants within the counted budgets")
    return "\n".join(lines)


def _family_table(spec_name: str, rows: list[Variant], found: Search, seconds: float) -> str:
    first = next(b for b in found.budgets if b.metric in COUNTED)
    lines = [f"{spec_name}: {len(rows)} scales up to --{first.metric} {_limit(first)} "
             f"({found.tried:,} variants counted in {seconds:.2f} s)"]
    names = [k for k, _ in rows[0].vars]
    head = "  ".join(f"{n:>10}" for n in names)
    metrics = [m for m in ("params", "macs", "memory") if getattr(rows[0], m) is not None]
    lines.append(f"  {'scale':<5}  {head}  " + "  ".join(f"{m:>16}" for m in metrics))
    for i, v in enumerate(rows):
        vals = "  ".join(f"{x!r:>10}" for _, x in v.vars)
        figs = "  ".join(f"{_figure(m, getattr(v, m)):>16}" for m in metrics)
        lines.append(f"  {i + 1:<5}  {vals}  {figs}")
    return "\n".join(lines)


def _as_dict(v: Variant) -> dict[str, Any]:
    out: dict[str, Any] = {"vars": dict(v.vars), "params": v.params, "macs": v.macs}
    if v.memory is not None:
        out["memory_bytes"] = v.memory
    if v.latency is not None:
        out["latency_ms"] = v.latency
    return out


def _none_meets(found: Search, budgets: list[Budget]) -> UsageError:
    flags = ", ".join(f"--{b.metric} {_limit(b)}" for b in budgets)
    near = found.nearest()
    if near is None:
        why = f" (the first problem: {found.problem})" if found.problem else ""
        return UsageError(f"no variant of the {found.tried:,} tried is a valid network{why}")
    figures = ", ".join(f"{_figure(b.metric, near.figure(b.metric))} {b.metric}"
                        for b in budgets if b.metric in COUNTED)
    return UsageError(f"no variant meets {flags}: the nearest has {figures} "
                      f"({', '.join(f'{k}={v}' for k, v in near.vars)})")


# ---------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    _check_args(args)
    budgets: list[Budget] = args.budgets
    out = check_writable(args.output, args.force, inputs=[args.spec]) if args.output else None
    sets = parse_sets(args.sets)
    doc = load_file(args.spec)
    try:
        resolve_document(doc, sets)  # the spec as given is valid, or its own error
    except (SpecError, SpecErrors) as err:
        raise blame_sets(err, args.spec, sets, args.sets) from None
    from netspec.spec import validate_top_level

    spec = validate_top_level(doc)
    metrics = {b.metric for b in budgets}
    memory = (MemoryAt(args.batch, args.optimizer, args.precision)
              if "memory" in metrics or args.minimise == "memory" else None)
    counter = Counter(doc, spec, sets, memory)
    base = counter.base()
    spec_ranges, _ = spec_domains(doc, spec)

    started = time.perf_counter()
    phis: dict[tuple, float] = {}
    if args.compound:
        coefficients = _coefficients(args.compound, base)
        points = compound(base, coefficients, spec_ranges, _phis(args.phi))
        phis = {tuple(p.items()): phi for phi, p in points}
        found = search(counter, (p for _, p in points), budgets, args.minimise)
    else:
        domains = _vary(args.vary, spec_ranges, base)
        size = grid_size(domains)
        if size > MAX_VARIANTS:
            raise UsageError(f"--vary gives {size:,} variants; the limit is "
                             f"{MAX_VARIANTS:,}: take larger steps or fewer vars")
        found = search(counter, grid(domains), budgets, args.minimise)
    seconds = time.perf_counter() - started

    if args.family is not None:
        rows = family(found, args.family)
        if not rows:
            raise _none_meets(found, budgets)
        if args.format == "json":
            print(json.dumps({"spec": spec.name, "tried": found.tried,
                              "invalid": found.invalid, "seconds": round(seconds, 3),
                              "family": [_as_dict(v) for v in rows]}, indent=2))
        else:
            print(_family_table(spec.name, rows, found, seconds))
        return 0

    candidates = found.feasible()
    if not candidates:
        raise _none_meets(found, budgets)
    chosen, measured = candidates[0], []
    latency = next((b for b in budgets if b.metric == "latency"), None)
    if latency is not None:
        measure = _first_within if args.minimise else _measure
        best, measured = measure(counter, candidates, args.batch or 1, latency.limit)
        if best is None:
            fastest = min(measured, key=lambda v: v.figure("latency"))
            raise UsageError(f"no variant meets --latency {_limit(latency)}: the fastest "
                             f"measured takes {fastest.figure('latency'):.2f} ms "
                             f"({', '.join(f'{k}={v}' for k, v in fastest.vars)})")
        chosen = best
    seconds = time.perf_counter() - started

    if out is not None:
        text = written_vars(doc, chosen.point)
        written = load_text(text, str(out))
        graph = resolve_document(written, sets)
        counts = graph.params()
        # the file must be what was reported: counted again from its own text
        if (counts.params, counts.macs) != (chosen.params, chosen.macs):
            # a bug of netspec's, never the user's: kept under python -O, unlike an assert
            raise RuntimeError(f"{out}: the written spec counts {counts.params:,} "
                               f"parameters, the variant {chosen.params:,}; nothing written")
        atomic_write(out, text.encode("utf-8"), force=args.force)

    if args.format == "json":
        doc_out: dict[str, Any] = {
            "spec": spec.name, **_as_dict(chosen),
            "budgets": {b.metric: b.limit for b in budgets},
            "tried": found.tried, "invalid": found.invalid, "seconds": round(seconds, 3)}
        if chosen.vars in phis:
            doc_out["phi"] = phis[chosen.vars]
        if measured:
            doc_out["measured"] = [_as_dict(v) for v in measured]
        if out is not None:
            doc_out["written"] = str(out)
        print(json.dumps(doc_out, indent=2, ensure_ascii=False))
    else:
        print(_table(spec.name, chosen, found, budgets, base, seconds, measured,
                     phis.get(chosen.vars)))
        if out is not None:
            print(f"{out}: written with these values")
    sys.stdout.flush()
    return 0
