"""Weights on disk: safetensors only (never pickle), read and written as numpy arrays so
that exporting from a weight file needs no torch. The spec travels inside the file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from netspec import __version__
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


def save_weights(path: str | Path, tensors: dict[str, np.ndarray],
                 metadata: dict[str, str]) -> Path:
    from safetensors.numpy import save_file

    # np.ascontiguousarray would turn a 0-d tensor (BN's step counter) into shape [1]
    arrays = {k: np.require(v, requirements='C') for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(arrays, str(tmp), metadata=metadata))


def load_weights(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such weights file")
    try:
        with safe_open(str(p), framework="numpy") as f:
            meta = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
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
