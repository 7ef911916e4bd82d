"""Data sets for training and calibration, checked against the spec up front.

Two sources: ``digits`` (scikit-learn's bundled 8×8 digits, no download) and an
``.npz`` file with arrays ``x`` and ``y``. Everything is loaded into memory as numpy:
the data sets this command is for fit easily, and indexing an in-memory array per batch
is much faster than a per-sample Dataset. Every problem a user can cause (shape, label
type, label range) is a UsageError here, before a model is built or a process group
joined, so every rank of a distributed run fails the same way at the same time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.kinds.base import fmt_shape
from netspec.train.splits import Data, Split, heldout_indices

DIGITS = "digits"
INSTALL_HINT = "pip install 'netspec[data]'"


def load_digits_arrays(graph: Graph) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8×8 digits scaled to [0, 1], shaped for the spec's input."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UsageError("--data digits needs scikit-learn, which is not installed: "
                         f"{INSTALL_HINT}") from None
    bunch = load_digits()
    # pixel values are counts 0…16 (of a 4×4 block of a 32×32 bitmap)
    x = (np.asarray(bunch.data, dtype=np.float32) / 16.0)
    y = np.asarray(bunch.target, dtype=np.int64)
    if graph.input_shape == (1, 8, 8):
        x = x.reshape(-1, 1, 8, 8)
    elif graph.input_shape != (64,):
        raise UsageError(f"--data digits: the images are [1, 8, 8] (or [64] flattened), "
                         f"but spec '{graph.name}' takes {fmt_shape(graph.input_shape)}")
    return x, y


def load_npz_arrays(path: str | Path, graph: Graph | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` of an .npz. With ``graph``, both shapes and x's dtype are checked
    against it from the .npy headers first, so a file that does not fit is refused
    before gigabytes are inflated."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such data file (--data takes 'digits' or a .npz file)")
    arrays = check_npz(p)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise UsageError(f"{p}: needs arrays 'x' and 'y' (np.savez(path, x=…, y=…)); "
                         f"it has {sorted(arrays) or 'none'}")
    if graph is not None:
        check_layout(*arrays["x"], arrays["y"][0], graph, str(p))
    try:
        # allow_pickle=False: an .npz may hold object arrays, which would unpickle code
        with np.load(p, allow_pickle=False) as z:
            return z["x"], z["y"]
    except (ValueError, OSError, EOFError) as e:
        raise UsageError(f"{p}: not a readable .npz file ({e})") from None


#: the most an .npz may hold uncompressed (the sum of its members' sizes); at most
#: half the machine's memory, too (``npz_limit``)
MAX_NPZ_BYTES = 16 * 2**30


def npz_limit() -> int:
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return MAX_NPZ_BYTES
    return min(MAX_NPZ_BYTES, memory // 2) if memory > 0 else MAX_NPZ_BYTES


#: how to make an .npz of training data, said when a file is not one
DATA_HINT = "save the data with np.savez(path, x=…, y=…)"


def check_npz(p: Path, limit: int | None = None, hint: str = DATA_HINT
              ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """An .npz is a zip: refuse anything else (an .npy, say; ``hint`` says how to make
    one) and, from the zip's own headers and before anything is inflated, one that would
    inflate past ``limit``; then each array's .npy header, which must not claim more
    than its member holds (numpy would allocate what it claims before reading). Returns
    each array's shape and dtype, from those headers."""
    import zipfile
    import zlib

    from netspec.npy import check_npy

    limit = npz_limit() if limit is None else limit
    try:
        with p.open("rb") as f:
            head = f.read(6)
        if head == b"\x93NUMPY":
            raise UsageError(f"{p}: a numpy .npy file, not an .npz; {hint}")
        if not zipfile.is_zipfile(p):
            raise UsageError(f"{p}: not an .npz file ({hint})")
        with zipfile.ZipFile(p) as z:
            members = z.infolist()
            total = sum(i.file_size for i in members)
            if total > limit:
                raise UsageError(f"{p}: inflates to {total:,} bytes, over the {limit:,} "
                                 "netspec loads into memory; nothing was read")
            arrays: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
            for info in members:
                if info.filename.endswith(".npy"):
                    with z.open(info) as member:
                        arrays[info.filename[:-4]] = check_npy(
                            member, info.file_size, f"{p}: array '{info.filename[:-4]}'")
            return arrays
    # what a damaged zip raises: its headers, an unknown compression method, a password
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError,
            NotImplementedError, RuntimeError) as e:
        raise UsageError(f"{p}: not a readable .npz file ({e})") from None


def check_layout(x_shape: tuple[int, ...], x_dtype: np.dtype, y_shape: tuple[int, ...],
                 graph: Graph, where: str) -> None:
    """x's dtype and both shapes against the spec: known from an .npz's headers, so
    a file that does not fit is refused before its data is read."""
    want_x = (*graph.input_shape,)
    if x_dtype.kind not in "fiu":
        raise UsageError(f"{where}: x has dtype {x_dtype}; inputs must be real numbers")
    if len(x_shape) != len(want_x) + 1 or tuple(x_shape[1:]) != want_x:
        raise UsageError(f"{where}: x has shape {fmt_shape(x_shape)}, spec '{graph.name}' "
                         f"takes [N, {fmt_shape(want_x)[1:]}")
    n = x_shape[0]
    if n < 2:
        raise UsageError(f"{where}: {n} sample(s); training needs at least 2")
    want_y = (n,) if graph.task == "classification" else (n, *graph.output_shape[1:])
    if tuple(y_shape) != want_y:
        raise UsageError(f"{where}: y has shape {fmt_shape(y_shape)}; {graph.task} with "
                         f"{n} samples needs {_labels(graph)} of shape "
                         f"{fmt_shape(want_y)}")


def _labels(graph: Graph) -> str:
    return "class indices" if graph.task == "classification" else "per-pixel class masks"


def check_arrays(x: np.ndarray, y: np.ndarray, graph: Graph, where: str) -> Split:
    """The arrays as a Split, or a one-line UsageError saying what does not fit the spec."""
    check_layout(x.shape, x.dtype, y.shape, graph, where)
    classes = graph.output_shape[0]
    if not np.issubdtype(y.dtype, np.integer):
        hint = ""
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            hint = " (they look whole: convert with y.astype(np.int64))"
        raise UsageError(f"{where}: labels y have dtype {y.dtype}; they must be integer "
                         f"{_labels(graph)} 0…{classes - 1}{hint}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= classes:
        bad = lo if lo < 0 else hi
        raise UsageError(f"{where}: label {bad} is outside 0…{classes - 1} (spec "
                         f"'{graph.name}' has {classes} classes)")
    xf = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(xf).all():
        raise UsageError(f"{where}: x holds NaN or infinite values")
    return Split(xf, np.ascontiguousarray(y, dtype=np.int64))


def load_source(source: str, graph: Graph) -> Split:
    if source == DIGITS:
        x, y = load_digits_arrays(graph)
    else:
        x, y = load_npz_arrays(source, graph)
    return check_arrays(x, y, graph, source)


def split_heldout(data: Split, fraction: float, seed: int) -> tuple[Split, Split | None]:
    """A seeded random split of arrays (see ``heldout_indices``)."""
    if fraction == 0:
        return data, None
    train, val = heldout_indices(len(data), fraction, seed)
    return Split(data.x[train], data.y[train]), Split(data.x[val], data.y[val])


def load_data(graph: Graph, data: str, *, val_data: str | None = None,
              val_fraction: float = 0.2, seed: int = 0, images: Any = None) -> Data:
    """The training and held-out splits: ``val_data`` when given, else a seeded
    ``val_fraction`` of ``data``. ``data`` may be an image folder; ``images`` are then
    its ImageOptions (train/images.py)."""
    if not 0 <= val_fraction < 1:
        raise UsageError(f"--val-fraction {val_fraction}: must be in [0, 1)")
    if Path(data).is_dir():  # an image folder: netspec/train/images.py
        from netspec.train.images import ImageOptions, load_image_data

        if val_data is not None:
            raise UsageError(f"--val-data with an image folder: put the held-out images in "
                             f"{data}/val/CLASS/ (or use --val-split)")
        return load_image_data(graph, data, images or ImageOptions(),
                               val_fraction=val_fraction, seed=seed)
    full = load_source(data, graph)
    source: dict[str, Any] = {"data": data, "val_data": val_data,
                              "val_fraction": val_fraction, "seed": seed}
    if val_data is not None:
        source["val_fraction"] = 0.0
        return Data(full, load_source(val_data, graph), source)
    train, heldout = split_heldout(full, val_fraction, seed)
    return Data(train, heldout, source)
