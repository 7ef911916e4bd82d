"""Writing files so that a failed or interrupted command never leaves a partial file:
write a temporary file beside the target, flush it to disk, then rename it over."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspec.errors import UsageError


def check_writable(path: str | Path, force: bool = True) -> Path:
    """Refuse before any work is done: an existing file without ``force``, a missing folder."""
    p = Path(path)
    if p.exists() and p.is_dir():
        raise UsageError(f"{p}: is a directory")
    if p.exists() and not force:
        raise UsageError(f"{p}: exists; pass --force to replace it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{p}: folder {parent} does not exist")
    return p


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[Path], None] | bytes) -> Path:
    """Write ``path`` atomically. ``write`` is the bytes, or a function that writes the
    file it is given (for libraries that want a path, like safetensors)."""
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                    dir=target.parent if str(target.parent) else ".")
    tmp = Path(tmp_name)
    try:
        if isinstance(write, bytes):
            with os.fdopen(fd, "wb") as f:
                f.write(write)
                f.flush()
                os.fsync(f.fileno())
        else:
            os.close(fd)
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would,
        # or the mode of the file it replaces
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else _default_mode())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def save_arrays(path: str | Path, value: Any) -> Path:
    """Write one numpy array as .npy, or a dict of them (a model's several outputs, by
    name) as .npz — atomically, never pickled."""
    import io

    import numpy as np

    buf = io.BytesIO()
    if isinstance(value, dict):
        np.savez(buf, **value)
    else:
        np.save(buf, value, allow_pickle=False)
    return atomic_write(path, buf.getvalue())
