"""The .npy header, read before numpy allocates what it claims: an array of Python
objects (which would unpickle) or a header that claims more bytes than follow it is
refused in one line. Used for ``netspec run --input x.npy`` and for each array of an
.npz (``train --data``, ``weights import``)."""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
from numpy.lib import format as npformat

from netspec.errors import UsageError


def check_npy(f: BinaryIO, size: int, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Read the header at ``f``'s position (``size`` bytes from the start of the array
    file) and refuse, naming ``where``, what numpy should not be asked to load; else the
    array's shape and dtype. A header that is not one raises numpy's ValueError."""
    version = npformat.read_magic(f)
    read = npformat.read_array_header_1_0 if version == (1, 0) \
        else npformat.read_array_header_2_0
    shape, _, dtype = read(f)
    if dtype.hasobject:
        raise UsageError(f"{where}: holds Python objects (dtype {dtype}); netspec never "
                         "unpickles: save a numeric array")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = size - f.tell()
    if need > have:
        raise UsageError(f"{where}: its header claims shape {list(shape)} {dtype} "
                         f"({need:,} bytes) but the file holds {have:,}")
    return tuple(shape), dtype
