"""Weights on disk: safetensors only (never pickle), read and written as numpy arrays so
that exporting from a weight file needs no torch. The spec travels inside the file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from netspec._version import __version__
from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.io import atomic_write

SPEC_KEY = "netspec.spec"
SHA_KEY = "netspec.spec_sha256"
VERSION_KEY = "netspec.version"
#: the spec's vars as resolved (after --set), JSON: a checkpoint remembers them
VARS_KEY = "netspec.vars"


def spec_metadata(graph: Graph) -> dict[str, str]:
    return {
        SPEC_KEY: graph.spec_text,
        SHA_KEY: hashlib.sha256(graph.spec_text.encode("utf-8")).hexdigest(),
        VERSION_KEY: __version__,
        "netspec.name": graph.name,
        VARS_KEY: vars_json(graph.vars),
    }


def vars_json(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def recorded_vars(metadata: dict[str, str]) -> dict[str, Any] | None:
    """The vars a weights file was made with, or None when it does not say."""
    text = metadata.get(VARS_KEY)
    if not text:
        return None
    try:
        values = json.loads(text)
    except ValueError:
        return None
    return values if isinstance(values, dict) else None


#: numpy dtype → safetensors dtype name, for the files netspec writes itself
_ST_DTYPES = {"float32": "F32", "float64": "F64", "float16": "F16", "int64": "I64",
              "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def save_weights(path: str | Path, tensors: dict[str, np.ndarray],
                 metadata: dict[str, str], force: bool = True) -> Path:
    """Write a safetensors file into netspec's own temp file (atomic_write): the
    library's save_file would make a temp file of its own beside the target."""
    # np.ascontiguousarray would turn a 0-d tensor (BN's step counter) into shape [1]
    arrays = {k: np.require(v, requirements='C') for k, v in tensors.items()}
    if any(a.dtype.name not in _ST_DTYPES for a in arrays.values()):
        from safetensors.numpy import save

        return atomic_write(path, save(arrays, metadata=metadata), force=force)
    return atomic_write(path, lambda tmp: _write_safetensors(tmp, arrays, metadata),
                        force=force)


def _write_safetensors(tmp: Path, arrays: dict[str, np.ndarray],
                       metadata: dict[str, str]) -> None:
    """The safetensors format: a little-endian u64 header size, the JSON header (padded
    with spaces to 8 bytes), then each tensor's little-endian bytes in header order."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name in sorted(arrays):
        a = arrays[name]
        header[name] = {"dtype": _ST_DTYPES[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with tmp.open("wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for name in sorted(arrays):
            a = arrays[name]
            f.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())


def load_weights(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such weights file")
    try:
        with safe_open(str(p), framework="numpy") as f:
            meta = f.metadata() or {}
            names = list(f.keys())
            bf16 = {k for k in names if f.get_slice(k).get_dtype() == "BF16"}
            tensors = {k: f.get_tensor(k) for k in names if k not in bf16}
        if bf16:  # numpy has no bfloat16: read the bytes, widen to float32 (exact)
            tensors.update(_read_bf16(p, bf16))
        return {k: tensors[k] for k in names}, meta
    except (SafetensorError, OSError, ValueError) as e:
        try:
            with p.open("rb") as f:
                head = f.read(4)
        except OSError:
            head = b""
        if head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip, or a pickle
            raise UsageError(
                f"{p}: a pickled (torch.save) checkpoint, not safetensors; netspec never "
                "unpickles weights: convert it where you trust it, e.g. "
                "safetensors.torch.save_file(model.state_dict(), 'w.safetensors')") from None
        raise UsageError(f"{p}: not a readable safetensors file ({e})") from None


def _read_bf16(p: Path, names: set[str]) -> dict[str, np.ndarray]:
    """bfloat16 tensors of a safetensors file (already validated by safe_open) as
    float32: a bf16 number is the top half of the float32 with the same value."""
    with p.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        out = {}
        for k in sorted(names):
            start, end = header[k]["data_offsets"]
            f.seek(8 + size + start)
            raw = np.frombuffer(f.read(end - start), dtype="<u2")
            out[k] = (raw.astype(np.uint32) << 16).view(np.float32).reshape(
                header[k]["shape"])
    return out


def _listed(names: list[str], most: int = 5) -> str:
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def check_weights(graph: Graph, tensors: dict[str, np.ndarray], source: str) -> None:
    """Every tensor the Graph declares is there with its shape, and nothing else is.
    (``num_batches_tracked``, torch's BN step counter, is allowed and ignored.)"""
    want = {**graph.param_shapes(), **graph.buffer_shapes()}
    have = {k: tuple(v.shape) for k, v in tensors.items()
            if not k.endswith(".num_batches_tracked")}
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    wrong = [f"{k} {list(have[k])} (spec wants {list(want[k])})"
             for k in want if k in have and have[k] != tuple(want[k])]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected)}")
    if wrong:
        problems.append(f"wrong shape {', '.join(wrong)}")
    if problems:
        raise UsageError(f"{source}: weights do not match spec '{graph.name}': "
                         + "; ".join(problems))
    # values: floating point (an int8 or bool file is not trained weights), all finite
    # (an Inf passes any relative tolerance, a NaN fails it without saying why)
    ints = [f"{k} {tensors[k].dtype}" for k in want if tensors[k].dtype.kind != "f"]
    if ints:
        raise UsageError(f"{source}: weights must be floating point; "
                         f"{_listed(ints)}")
    bad = [k for k in want if not np.isfinite(tensors[k]).all()]
    if bad:
        raise UsageError(f"{source}: non-finite weights (NaN or Inf) in {_listed(bad)}")
