"""Numeric options checked as they are parsed: a value that could never take effect (a
tolerance of inf, an accuracy drop of over 100 points) or that a library would choke on
(a negative seed) is refused in netspec's one line before any work starts."""

from __future__ import annotations

import math
from collections.abc import Callable

from netspec.errors import UsageError

#: seeds every library takes (numpy's generators refuse negatives; 32 bits is what
#: DataLoader workers and most seeding code agree on)
SEED = {"least": 0, "most": 2**32 - 1}


def number(flag: str, kind: type[int] | type[float] = float, *, least: float | None = None,
           most: float | None = None, below: float | None = None,
           why: str = "") -> Callable[[str], float]:
    """An argparse ``type`` for ``flag``: the text as ``kind``, finite, within
    [``least``, ``most``] or [``least``, ``below``). Text that is no number is argparse's
    own error ("invalid int value"); a number out of range raises UsageError, which
    argparse passes on (it catches ValueError and TypeError only), so the message says
    what the range is and why."""

    def parse(text: str) -> float:
        value = kind(text)
        if ((isinstance(value, float) and not math.isfinite(value))
                or (least is not None and value < least)
                or (most is not None and value > most)
                or (below is not None and value >= below)):
            raise UsageError(f"{flag} {text}: must be {_range(kind, least, most, below)}"
                             f"{why}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value"
    return parse


def _range(kind: type, least: float | None, most: float | None, below: float | None) -> str:
    finite = "a finite number, " if kind is float else ""
    low = f"{least:,g}" if isinstance(least, float) else f"{least:,}"
    if below is not None:
        return f"{finite}at least {low} and below {below:,g}"
    if most is not None:
        return f"from {low} to {most:,}"
    return f"{finite}{low} or more" if least is not None else finite.rstrip(", ")
