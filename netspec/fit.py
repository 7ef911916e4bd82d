"""Solving a spec's vars to a budget (``netspec fit``), by counting, never building.

The spec is loaded, validated and linted once; each variant is the same document resolved
again with other values of the varied vars, and counted (a resnet50-sized variant takes a
few milliseconds, bench/RESULTS.md). The values a var may take are a :class:`Domain`: from
the spec's ``fit:`` section or from the command line. A search counts every point it is
given and keeps the valid ones; a point whose network is not valid (channels that no
longer divide into groups) is left out and said so, never a failure of the search.

Which variant wins: the one within every budget that is largest by the first budget's
figure (parameters, MACs or training memory), then by MACs, then by parameters; or, with
``minimise``, the one smallest in that figure. Latency is not counted here: the command
measures it in onnxruntime for the few variants this search leaves.

Pure Python: no torch, no onnx.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from netspec.errors import NetspecError, SpecError, UsageError, did_you_mean
from netspec.graph import Graph
from netspec.memory import step_memory
from netspec.resolve import Resolver
from netspec.spec import FitRange, SpecModel
from netspec.values import evaluate_vars
from netspec.yaml_loader import Document

Number = int | float

#: values one var may take, and variants one search may count: beyond these a range's
#: step is finer than a search can use (at ~2 ms a variant, 20,000 take 40 s)
MAX_VALUES = 10_000
MAX_VARIANTS = 20_000

#: the figures a budget may bound by counting; ``latency`` is measured by the command
COUNTED = ("params", "macs", "memory")


@dataclass(frozen=True)
class Domain:
    """The values ``netspec fit`` may give one var, in increasing order."""

    name: str
    values: tuple[Number, ...]


def _steps(lo: Number, hi: Number, step: Number) -> tuple[Number, ...]:
    """``lo, lo + step, …`` up to ``hi``; floats rounded to the step's own digits, so that
    0.1 + 0.2 is written 0.3."""
    n = math.floor((hi - lo) / step + 1e-9) + 1
    if n > MAX_VALUES:
        raise ValueError(f"gives {n:,} values; the limit is {MAX_VALUES:,}: take a larger step")
    if all(isinstance(v, int) for v in (lo, hi, step)):
        return tuple(lo + k * step for k in range(n))
    digits = max(_decimals(lo), _decimals(step))
    return tuple(round(lo + k * step, digits) for k in range(n))


def _decimals(x: Number) -> int:
    text = repr(float(x))
    return 0 if "e" in text else len(text.partition(".")[2].rstrip("0"))


def domain_values(r: FitRange) -> tuple[Number, ...]:
    """The values a ``fit:`` entry (or ``--vary name=MIN:MAX[:STEP]``) allows; a
    ValueError says what is wrong with it."""
    if r.values is not None:
        if r.min is not None or r.max is not None or r.step is not None or r.multiple:
            raise ValueError("give values, or min and max (with step or multiple), not both")
        if len(r.values) > MAX_VALUES:
            raise ValueError(f"has {len(r.values):,} values; the limit is {MAX_VALUES:,}")
        return tuple(sorted(set(r.values)))
    if r.min is None or r.max is None:
        raise ValueError("needs values, or min and max")
    if r.min > r.max:
        raise ValueError(f"min {r.min} is above max {r.max}")
    if r.step is not None and r.multiple is not None:
        raise ValueError("give step or multiple, not both")
    if r.multiple is not None:
        first = math.ceil(r.min / r.multiple) * r.multiple
        if first > r.max:
            raise ValueError(f"has no multiple of {r.multiple} from {r.min} to {r.max}")
        return _steps(first, math.floor(r.max / r.multiple) * r.multiple, r.multiple)
    if r.step is None:
        if isinstance(r.min, float) or isinstance(r.max, float):
            raise ValueError("a range of fractions needs a step")
        return _steps(r.min, r.max, 1)
    return _steps(r.min, r.max, r.step)


def spec_domains(doc: Document, spec: SpecModel) -> tuple[dict[str, Domain], list[SpecError]]:
    """The ``fit:`` section's domains, and a positioned problem for each entry that names
    no var or allows no value."""
    out: dict[str, Domain] = {}
    problems: list[SpecError] = []
    for name, r in spec.fit.items():
        if name not in spec.vars:
            problems.append(SpecError(
                f"fit: '{name}' is not a var{did_you_mean(name, spec.vars)} (the vars: "
                f"{', '.join(spec.vars) or 'none'})", doc.key(("fit", name))))
            continue
        try:
            out[name] = Domain(name, domain_values(r))
        except ValueError as e:
            problems.append(SpecError(f"fit: {name}: {e}", doc.pos(("fit", name))))
    return out, problems


def parse_vary(text: str) -> tuple[str, FitRange | None]:
    """One ``--vary`` item: ``width`` (its range from the spec) or ``width=16:256:8``."""
    name, eq, rng = text.partition("=")
    name = name.strip()
    if not name:
        raise UsageError(f"--vary {text!r}: expected NAME or NAME=MIN:MAX[:STEP]")
    if not eq:
        return name, None
    parts = rng.split(":")
    if len(parts) not in (2, 3):
        raise UsageError(f"--vary {name}={rng}: expected MIN:MAX or MIN:MAX:STEP")
    try:
        nums = [_number(p) for p in parts]
        return name, FitRange(min=nums[0], max=nums[1], step=nums[2] if len(nums) == 3 else None)
    except ValueError as e:
        raise UsageError(f"--vary {name}={rng}: {str(e).splitlines()[0]}") from None


def _number(text: str) -> Number:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


# ------------------------------------------------------------------------------ variants
@dataclass(frozen=True)
class Budget:
    metric: str  # params, macs, memory or latency
    limit: float


@dataclass(frozen=True)
class Variant:
    """One point of the search and its figures."""

    vars: tuple[tuple[str, Number], ...]
    params: int
    macs: int
    #: bytes of a training step, when a memory budget asks for it
    memory: int | None = None
    #: seconds per batch in onnxruntime, when measured
    latency: float | None = None

    def figure(self, metric: str) -> float:
        value = getattr(self, metric)
        assert value is not None, metric
        return value

    def within(self, budgets: Iterable[Budget]) -> bool:
        return all(self.figure(b.metric) <= b.limit for b in budgets
                   if b.metric in COUNTED or self.latency is not None)

    @property
    def point(self) -> dict[str, Number]:
        return dict(self.vars)


@dataclass(frozen=True)
class MemoryAt:
    """A training step's memory at this batch, optimizer and precision."""

    batch: int
    optimizer: str = "adamw"
    precision: str = "fp32"


class Counter:
    """Counts variants of one spec: the document is validated once, then resolved again
    for each point (the varied vars set, the others as the spec and ``--set`` give
    them). Points already counted are not counted again."""

    def __init__(self, doc: Document, spec: SpecModel, fixed: Mapping[str, Any],
                 memory: MemoryAt | None = None) -> None:
        self.doc = doc
        self.spec = spec
        self.fixed = dict(fixed)
        self.memory = memory
        self.seen: dict[tuple[tuple[str, Number], ...], Variant | NetspecError] = {}

    def graph(self, point: Mapping[str, Number]) -> Graph:
        return Resolver(self.doc, self.spec, {**self.fixed, **point}).graph()

    def __call__(self, point: Mapping[str, Number]) -> Variant | NetspecError:
        key = tuple(point.items())
        if key not in self.seen:
            try:
                graph = self.graph(point)
            except NetspecError as e:
                self.seen[key] = e
            else:
                counts = graph.params()
                mem = (step_memory(graph, self.memory.batch, self.memory.optimizer,
                                   self.memory.precision).training_total
                       if self.memory else None)
                self.seen[key] = Variant(key, counts.params, counts.macs, mem)
        return self.seen[key]

    def base(self) -> dict[str, Any]:
        """The vars' values as the spec and ``--set`` give them."""
        return evaluate_vars(self.doc, self.spec, self.fixed)


def grid(domains: Iterable[Domain]) -> Iterator[dict[str, Number]]:
    ds = list(domains)
    for values in itertools.product(*(d.values for d in ds)):
        yield {d.name: v for d, v in zip(ds, values, strict=True)}


def grid_size(domains: Iterable[Domain]) -> int:
    return math.prod(len(d.values) for d in domains)


def compound(base: Mapping[str, Number], coefficients: Mapping[str, float],
             domains: Mapping[str, Domain], phis: Iterable[float]) -> list[tuple[float, dict]]:
    """EfficientNet's compound scaling: at coefficient φ each var is its base value times
    its coefficient to the power φ; a var whose base is a whole number stays whole (the
    nearest value of its domain when it has one), a fraction is kept to 4 digits. Points
    outside a var's domain are left out, and so are repeats."""
    out: list[tuple[float, dict]] = []
    seen: set[tuple] = set()
    for phi in phis:
        point: dict[str, Number] = {}
        for name, c in coefficients.items():
            raw = base[name] * c ** phi
            d = domains.get(name)
            if isinstance(base[name], int) and not isinstance(base[name], bool):
                value: Number = (min(d.values, key=lambda v: abs(v - raw)) if d
                                 else round(raw))
            else:
                value = round(raw, 4)
            if d and not d.values[0] <= value <= d.values[-1]:
                break
            point[name] = value
        else:
            key = tuple(point.items())
            if key not in seen:
                seen.add(key)
                out.append((round(phi, 6), point))
    return out


# -------------------------------------------------------------------------------- search
@dataclass
class Search:
    """What a search counted and what it chose."""

    budgets: list[Budget]
    minimise: str | None
    valid: list[Variant] = field(default_factory=list)
    #: points whose network is not valid, with the first such problem
    invalid: int = 0
    problem: str | None = None

    @property
    def tried(self) -> int:
        return len(self.valid) + self.invalid

    def order(self, v: Variant) -> tuple[float, ...]:
        """Larger is better: the first counted budget's figure, then MACs, parameters."""
        first = next((b.metric for b in self.budgets if b.metric in COUNTED), "macs")
        key = (v.figure(first), v.macs, v.params)
        if self.minimise:
            return (-v.figure(self.minimise), *key)
        return key

    def feasible(self) -> list[Variant]:
        """The variants within every counted budget, best first."""
        ok = [v for v in self.valid if v.within(self.budgets)]
        return sorted(ok, key=self.order, reverse=True)

    def nearest(self) -> Variant | None:
        """The variant that comes closest to its budgets (the smallest worst ratio)."""
        counted = [b for b in self.budgets if b.metric in COUNTED]
        if not self.valid or not counted:
            return None
        return min(self.valid, key=lambda v: max(v.figure(b.metric) / b.limit
                                                 for b in counted))


def search(counter: Counter, points: Iterable[Mapping[str, Number]], budgets: list[Budget],
           minimise: str | None = None) -> Search:
    out = Search(budgets, minimise)
    for point in points:
        result = counter(point)
        if isinstance(result, Variant):
            out.valid.append(result)
        else:
            out.invalid += 1
            out.problem = out.problem or f"{_point(point)}: {str(result).splitlines()[0]}"
    return out


def family(found: Search, n: int) -> list[Variant]:
    """``n`` scales (like n/s/m/l/x): the first counted budget's targets spaced evenly on
    a log scale from the smallest valid variant's figure to the budget, each filled by
    the best variant within it (and within the other budgets). Distinct variants, in
    increasing size; fewer than ``n`` when the search space has fewer."""
    counted = [b for b in found.budgets if b.metric in COUNTED]
    ok = found.feasible()
    if not counted or not ok:
        return []
    first = counted[0]
    lo = min(v.figure(first.metric) for v in ok)
    hi = first.limit
    out: list[Variant] = []
    for k in range(n):
        target = lo * (hi / lo) ** (k / (n - 1)) if n > 1 and lo > 0 else hi
        best = next((v for v in ok if v.figure(first.metric) <= target * (1 + 1e-12)), None)
        if best is not None and best not in out:
            out.append(best)
    return sorted(out, key=found.order)


def _point(point: Mapping[str, Number]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def written_vars(doc: Document, values: Mapping[str, Number]) -> str:
    """The spec's text with these vars' values replaced where the spec writes them (its
    comments and layout kept)."""
    spans = sorted(((doc.spans[("vars", name)], v) for name, v in values.items()),
                   reverse=True)
    text = doc.text
    for (start, end), v in spans:
        text = text[:start] + _literal(v) + text[end:]
    return text


def _literal(v: Number) -> str:
    return repr(v) if isinstance(v, float) else str(v)
