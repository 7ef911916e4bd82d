"""What a data set is once loaded, shared by the array sources (train/data.py) and
image folders (train/images.py), which data.py dispatches to: the splits, and the seeded
held-out split both make."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from netspec.errors import UsageError


@dataclass(frozen=True)
class Split:
    """Inputs ``x`` (float32, [N, *input]) and integer labels ``y`` (int64, [N] or [N, H, W])."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Data:
    #: a Split in memory, or an ImageSplit (train/images.py) decoded batch by batch
    train: Any
    #: None when --val-fraction is 0 and no --val-data is given: nothing to evaluate on
    heldout: Split | None
    #: how the split was made (JSON-able): calibrate reproduces it from the checkpoint
    source: dict[str, Any]

    def describe(self) -> str:
        held = f", {len(self.heldout):,} held out" if self.heldout is not None else ""
        return f"{self.source['data']}: {len(self.train):,} for training{held}"


def heldout_indices(n: int, fraction: float, seed: int, flag: str = "--val-fraction",
                    what: str = "samples") -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) indices of a seeded random split, each in order: the same
    seed and fraction give the same held-out samples on every rank and in ``calibrate``,
    which re-creates the split from the checkpoint."""
    n_val = round(n * fraction)
    if n_val < 1 or n - n_val < 1:
        raise UsageError(f"{flag} {fraction}: leaves {n - n_val} of {n} {what} for "
                         f"training and {n_val} held out; both need at least 1")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
