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

from netspec.errors import NetspecError
from netspec.fit_ranges import Domain
from netspec.graph import Graph
from netspec.memory import step_memory
from netspec.resolve import Resolver
from netspec.spec import SpecModel
from netspec.values import evaluate_vars
from netspec.yaml_loader import Document

Number = int | float

#: variants one search may count (at a few ms a variant, 20,000 take about a minute)
MAX_VARIANTS = 20_000

#: the figures a budget may bound by counting; ``latency`` is measured by the command
COUNTED = ("params", "macs", "memory")


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
