"""Writing files so that a failed or interrupted command never leaves a partial file:
write a temporary file beside the target, flush it to disk, then link it into place
(exclusive: it fails if the target appeared meanwhile) or, with ``--force``, rename it
over. Only a regular file (or a symlink to one) is ever replaced; a command's own inputs
never are."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from netspec.errors import UsageError

#: a temp file of netspec's naming this much older than now is left over from a killed
#: write, not one in progress: the next write to the same target removes it
STALE_TEMP_S = 60.0
#: the part of the target's name a temp file's name keeps (NAME_MAX is 255 bytes)
_TEMP_NAME_CHARS = 200


def _os_problem(p: Path, e: OSError) -> UsageError:
    """An OSError on a path the user gave, as one line."""
    return UsageError(f"{p}: cannot write: {e.strerror or e}")


def _special(st: os.stat_result) -> bool:
    return not stat.S_ISREG(st.st_mode)


def _same(a: Path, b: str | Path) -> bool:
    """Whether writing ``a`` would overwrite the file ``b`` (through any link)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # either is missing (``--data digits``): nothing to lose
        return False


def check_writable(path: str | Path, force: bool = True,
                   inputs: Iterable[str | Path | None] = (), probe: bool = True) -> Path:
    """Refuse before any work is done: a folder or special file (a device, a FIFO, a
    socket) at the path, an existing file without ``force``, one of the command's own
    ``inputs``, a missing folder, a path the system cannot take and, with ``probe``, a
    folder in which no file can be made (read-only, not ours)."""
    p = Path(path)
    for given in inputs:
        if given is not None and str(given) and _same(p, given):
            raise UsageError(f"{p}: is one of this command's inputs; write the output "
                             "elsewhere")
    try:
        st = os.stat(p)  # follows a symlink: what it points to must be a regular file
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise _os_problem(p, e) from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{p}: is a directory")
        if _special(st):
            raise UsageError(f"{p}: not a regular file; netspec writes only to regular "
                             "files")
        if not force:
            raise UsageError(f"{p}: exists; pass --force to replace it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{p}: folder {parent} does not exist")
    if probe:
        _probe_folder(p, parent)
    return p


def _probe_folder(p: Path, folder: Path) -> None:
    """Make and remove a temp file of netspec's naming in ``folder``: what a write will
    do first, so a read-only mount, a folder of someone else's or an ACL is refused
    before the work (os.access would say yes to root, and knows no read-only mounts
    over NFS)."""
    try:
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(p), suffix=".tmp", dir=folder)
    except OSError as e:
        raise _os_problem(p, e) from None
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:  # left for the next write's stale-temp clean-up
        pass


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _temp_prefix(target: Path) -> str:
    return f".{target.name[:_TEMP_NAME_CHARS]}."


def remove_stale_temps(target: Path) -> None:
    """Remove temp files of netspec's own naming for ``target`` (``.NAME.XXXXXXXX.tmp``)
    left by a killed write, unless one may still be in progress (recently modified)."""
    folder = target.parent if str(target.parent) else Path(".")
    prefix = _temp_prefix(target)
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        middle = name[len(prefix):-len(".tmp")]
        if not (name.startswith(prefix) and name.endswith(".tmp") and len(middle) == 8
                and middle.replace("_", "a").isalnum()):
            continue
        p = folder / name
        try:
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_TEMP_S:
                p.unlink()
        except OSError:
            pass


def atomic_write(path: str | Path, write: Callable[[Path], None] | bytes,
                 force: bool = True) -> Path:
    """Write ``path`` atomically. ``write`` is the bytes, or a function that writes the
    file it is given (for libraries that want a path). Without ``force`` the file must
    not exist when it is put in place (a write that raced this one wins); with it, a
    regular file there is replaced. Any OSError is one line (exit 2), the old file intact."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    tmp: Path | None = None
    done = False
    try:
        check_writable(target, force, probe=False)  # mkstemp below is the probe
        remove_stale_temps(target)
        fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp",
                                        dir=folder)
        tmp = Path(tmp_name)
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
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            mode = _default_mode()
        os.chmod(tmp, mode)
        check_writable(target, force, probe=False)  # again: something may have appeared
        if force:
            os.replace(tmp, target)
        else:
            _link_new(tmp, target)
        done = True
    except OSError as e:
        raise _os_problem(target, e) from None
    finally:
        if tmp is not None and not done:
            tmp.unlink(missing_ok=True)
    return target


def _link_new(tmp: Path, target: Path) -> None:
    """Put ``tmp`` in place as ``target`` only if nothing is there: a hard link fails
    when the target exists, where a rename would replace it."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise UsageError(f"{target}: exists; pass --force to replace it") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # no hard links on this file system: the best left is a check just before
        if os.path.lexists(target):
            raise UsageError(f"{target}: exists; pass --force to replace it") from None
        os.replace(tmp, target)
        return
    tmp.unlink()


def save_arrays(path: str | Path, value: Any, force: bool = True) -> Path:
    """Write one numpy array as .npy, or a dict of them (a model's several outputs, by
    name) as .npz — atomically, never pickled."""
    import io

    import numpy as np

    buf = io.BytesIO()
    if isinstance(value, dict):
        np.savez(buf, **value)
    else:
        np.save(buf, value, allow_pickle=False)
    return atomic_write(path, buf.getvalue(), force=force)
