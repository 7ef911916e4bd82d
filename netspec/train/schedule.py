"""The learning rate as a pure function of the step: linear warm-up, then cosine decay.

A function of the global step rather than a torch LRScheduler object, so the whole
"scheduler state" is one integer in the resume state, and a resumed run computes the
same rate for the same step by construction.
"""

from __future__ import annotations

import math


def warmup_steps(total_steps: int, steps_per_epoch: int, warmup_epochs: float) -> int:
    """Warm-up length in steps. Capped at half the run: a short run still gets to decay."""
    return max(0, min(round(warmup_epochs * steps_per_epoch), total_steps // 2))


def lr_at(step: int, *, base_lr: float, total_steps: int, warmup: int) -> float:
    """The rate for optimizer step ``step`` (0-based).

    Warm-up ramps linearly to ``base_lr`` over ``warmup`` steps (from base_lr/warmup, not
    0, so the first step does something); the cosine then falls from ``base_lr`` to 0 at
    ``total_steps``.
    """
    if step < warmup:
        return base_lr * (step + 1) / warmup
    span = max(1, total_steps - warmup)
    t = min(1.0, (step - warmup) / span)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
