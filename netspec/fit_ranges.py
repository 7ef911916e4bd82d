"""The values ``netspec fit`` may give a var: a ``fit:`` entry of the spec (or a
``--vary NAME=MIN:MAX:STEP``) read into a :class:`Domain`, and the section's problems,
positioned, for ``netspec validate``. Front end: it reads the validated top level only."""

from __future__ import annotations

import math
from dataclasses import dataclass

from netspec.errors import SpecError, UsageError, did_you_mean
from netspec.spec import FitRange, SpecModel
from netspec.yaml_loader import Document

Number = int | float

#: values one var may take: beyond this a range's step is finer than a search can use
MAX_VALUES = 10_000


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
