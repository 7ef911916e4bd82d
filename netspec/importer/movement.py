"""Views recognised as layers: a layer kind that only moves values (flatten, channel
shuffle, a map's positions as tokens and back, one token out) is found in any code that
spells it, by comparing where the values end up.

A pending view is an *index map*: the source tensor's flat positions, moved the way the
code moved its values (batch axis first, batch 1). These functions say whether a map is
one of netspec's moving layers; the torch and ONNX readers both ask them (numpy only).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from netspec.kinds import Shape


def identity(source: Shape) -> np.ndarray:
    return np.arange(int(np.prod(source, dtype=np.int64))).reshape(1, *source)


def channels_last(source: Shape) -> np.ndarray:
    return identity(source).transpose(0, 2, 3, 1)


def is_identity(index: np.ndarray, source: Shape) -> bool:
    return index.shape == (1, *source) and bool(np.array_equal(index, identity(source)))


def is_channels_last(index: np.ndarray, source: Shape) -> bool:
    return (len(source) == 3 and index.shape == (1, *source[1:], source[0])
            and bool(np.array_equal(index, channels_last(source))))


def flatten(index: np.ndarray, source: Shape) -> dict[str, Any] | None:
    """A [C, H, W] map seen as its C·H·W features, in order."""
    if len(source) != 3 or index.shape != (1, index.size):
        return None
    return {} if bool(np.array_equal(index.ravel(), np.arange(index.size))) else None


def shuffle(index: np.ndarray, source: Shape) -> dict[str, Any] | None:
    """ShuffleNet's channel shuffle: the channels seen as [groups, C/groups], transposed
    (view → transpose → view, or a reshape and a Transpose in ONNX)."""
    if len(source) != 3 or index.shape != (1, *source):
        return None
    c = source[0]
    base = identity(source)
    for g in range(2, c):
        if c % g == 0:
            moved = base.reshape(1, g, c // g, *source[1:]).transpose(0, 2, 1, 3, 4)
            if np.array_equal(index, moved.reshape(base.shape)):
                return {"groups": g}
    return None


def tokens(index: np.ndarray, source: Shape) -> dict[str, Any] | None:
    """A [C, H, W] map as its H·W positions, each a token of its C channels, row by row
    (``x.flatten(2).transpose(1, 2)``; Reshape [0, C, -1] and Transpose in ONNX)."""
    if len(source) != 3:
        return None
    c, h, w = source
    if index.shape != (1, h * w, c):
        return None
    moved = identity(source).reshape(1, c, h * w).transpose(0, 2, 1)
    return {} if bool(np.array_equal(index, moved)) else None


def to_map(index: np.ndarray, source: Shape) -> dict[str, Any] | None:
    """Tokens [N, D] laid out as a [D, H, W] map, N = H·W row by row: the inverse of
    ``tokens``. H and W are where the code put them."""
    if len(source) != 2 or index.ndim != 4 or index.shape[:2] != (1, source[1]):
        return None
    n, d = source
    h, w = index.shape[2:]
    if h * w != n:
        return None
    moved = identity(source).transpose(0, 2, 1).reshape(1, d, h, w)
    return {"size": [int(h), int(w)]} if bool(np.array_equal(index, moved)) else None


def select(index: np.ndarray, source: Shape) -> dict[str, Any] | None:
    """One token of [N, D] (``x[:, 0]``; Gather in ONNX is read as a node): its D
    features."""
    if len(source) != 2 or index.shape != (1, source[1]):
        return None
    d = source[1]
    first = int(index.flat[0])
    if first % d != 0 or not bool(np.array_equal(index.ravel(), first + np.arange(d))):
        return None
    return {"token": first // d}
