"""Pretrained weights from elsewhere → a netspec weights file.

Reads a ``.pth``/``.pt`` (``torch.load(weights_only=True, mmap=True)``: torch's
restricted loader, which rebuilds tensors and plain containers and refuses any other
pickled object — never plain unpickling), a ``.safetensors`` or an ``.npz``. Finds the
state dict at the top or under a common key (``state_dict``, ``model``, ``ema``…), drops
DDP's ``module.`` and torch.compile's ``_orig_mod.`` prefixes and BN step counters, then
pairs the tensors with the spec's: by name when every spec name is there, else by
position (the spec's tensors in the order torch registers them), every pair's shape
checked. A ``--map`` file renames source tensors first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.kinds import Shape
from netspec.kinds.base import fmt_shape

#: where checkpoints commonly keep the state dict, tried in this order
CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "ema", "model_ema",
                  "state_dict_ema", "module", "net", "network", "params")
#: prefixes wrappers add to every name: DDP/DataParallel, torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
SKIPPED_SUFFIX = ".num_batches_tracked"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAVE_HINT = ("save only the state dict where you trust the file: "
             "torch.save(model.state_dict(), 'weights.pth')")


@dataclass
class SpecTensor:
    name: str
    shape: Shape
    layer: str
    op: str


@dataclass
class Pairing:
    #: "name" or "position"
    how: str
    #: (source name, spec name) in the spec's order
    pairs: list[tuple[str, str]]
    #: where the state dict was found in the source ("" at the top)
    found_at: str = ""
    stripped: str = ""
    skipped: int = 0
    renamed: int = 0
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    def describe(self, shown: int = 4) -> list[str]:
        where = f" (state dict under '{self.found_at}')" if self.found_at else ""
        extra = []
        if self.stripped:
            extra.append(f"prefix '{self.stripped}' removed")
        if self.skipped:
            extra.append(f"{self.skipped} num_batches_tracked skipped")
        if self.renamed:
            extra.append(f"{self.renamed} renamed by --map")
        tail = f"; {', '.join(extra)}" if extra else ""
        n = len(self.pairs)
        if self.how == "name":
            lines = [f"paired {n} tensors by name{where}{tail}"]
            shown_pairs = self.pairs[:shown]
        else:
            same = sum(a == b for a, b in self.pairs)
            lines = [f"paired {n} tensors by position, every shape checked ({same} with the "
                     f"same name, {n - same} not){where}{tail}"]
            differ = [p for p in self.pairs if p[0] != p[1]]
            shown_pairs = (differ or self.pairs)[:shown]
        lines += [f"  {a} → {b}" for a, b in shown_pairs]
        rest = n - len(shown_pairs)
        if rest > 0:
            lines.append(f"  … {rest} more")
        return lines


def spec_tensors(graph: Graph) -> list[SpecTensor]:
    """The spec's tensors in torch's state_dict order: layer by layer in registration
    order, each layer's parameters then its buffers."""
    out: list[SpecTensor] = []
    for node in graph.registration():
        assert node.args is not None
        shapes = graph.input_shapes(node)
        for table in (node.args.param_shapes(shapes), node.args.buffer_shapes(shapes)):
            for key, shape in table.items():
                out.append(SpecTensor(f"{node.name}.{key}", tuple(shape), node.name, node.op))
    return out


# ------------------------------------------------------------------ reading


def _is_tensor_dict(obj: Any) -> bool:
    import torch

    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor | np.ndarray)
                    for k, v in obj.items()))


def find_state_dict(obj: Any, source: str) -> tuple[Mapping[str, Any], str]:
    """The state dict inside what a checkpoint file holds, and the key path to it."""
    todo: list[tuple[Any, str, int]] = [(obj, "", 0)]
    while todo:
        item, path, depth = todo.pop(0)
        if _is_tensor_dict(item):
            return item, path
        if isinstance(item, Mapping) and depth < 3:
            for key in CONTAINER_KEYS:
                if key in item:
                    todo.append((item[key], f"{path}.{key}" if path else key, depth + 1))
    if isinstance(obj, Mapping):
        keys = ", ".join(map(str, list(obj)[:8]))
        raise UsageError(f"{source}: no state dict found (a mapping of names to tensors, at "
                         f"the top or under {', '.join(CONTAINER_KEYS[:4])}…); its keys: "
                         f"{keys}")
    raise UsageError(f"{source}: holds a {type(obj).__name__}, not a state dict; {SAVE_HINT}")


def _read_torch(p: Path) -> Any:
    import pickle

    import torch

    try:
        try:
            return torch.load(p, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap can only be used" not in str(e):
                raise
            # torch.save's legacy (pre-1.6) format cannot be memory-mapped: read it whole,
            # through the same restricted loader
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # not an object refused: not a checkpoint
            detail = str(e).split("WeightsUnpickler error:", 1)[-1].strip()
            first = detail.splitlines()[0] if detail else "no data"
            raise UsageError(f"{p}: not a readable torch.save file ({first})") from None
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({m.group(1)})" if m else ""
        raise UsageError(f"{p}: holds a pickled Python object{what}, not just tensors: "
                         f"netspec reads only state dicts, which load safely; {SAVE_HINT}"
                         ) from None
    except (RuntimeError, ValueError, OSError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"{p}: not a readable torch.save file ({first})") from None


def _read_safetensors(p: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError) as e:
        raise UsageError(f"{p}: not a readable safetensors file ({e})") from None


def _read_npz(p: Path) -> dict[str, Any]:
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise UsageError(f"{p}: not a readable .npz file ({e})") from None


def read_source(path: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """A source file's state dict as float32 numpy arrays by name, and where it was."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such weights file")
    suffix = p.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        obj: Any = _read_torch(p)
    elif suffix == ".safetensors":
        obj = _read_safetensors(p)
    elif suffix == ".npz":
        obj = _read_npz(p)
    else:
        raise UsageError(f"{p}: unknown kind of weights file; netspec imports .pth/.pt "
                         "(state dicts), .safetensors and .npz")
    sd, where = find_state_dict(obj, str(p))
    out: dict[str, np.ndarray] = {}
    for key, value in sd.items():
        if isinstance(value, torch.Tensor):
            t = value.detach()
            value = (t.float() if t.is_floating_point() else t).numpy()
        out[key] = value
    return out, where


# ------------------------------------------------------------------ pairing


def read_map(path: str | Path) -> dict[str, str]:
    """A --map file: YAML (or JSON) ``source name: spec name``; a key ending in '.'
    renames every source name that starts with it (a prefix)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such --map file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UsageError(f"{p}: not a YAML mapping of renames ({str(e).splitlines()[0]})"
                         ) from None
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise UsageError(f"{p}: --map takes a mapping 'source name: spec name' (strings)")
    return data


def _rename(name: str, renames: dict[str, str]) -> str:
    if name in renames:
        return renames[name]
    prefixes = [k for k in renames if k.endswith(".") and name.startswith(k)]
    if prefixes:
        k = max(prefixes, key=len)
        return renames[k] + name[len(k):]
    return name


def _strip_wrappers(names: list[str]) -> str:
    for prefix in WRAPPER_PREFIXES:
        if names and all(n.startswith(prefix) for n in names):
            return prefix
    return ""


def pair(graph: Graph, source: dict[str, np.ndarray], origin: str,
         renames: dict[str, str] | None = None, found_at: str = "") -> Pairing:
    """Pair the source's tensors with the spec's, or raise one line naming the first
    tensor that does not fit and the spec layer it belongs to."""
    names = [n for n in source if not n.endswith(SKIPPED_SUFFIX)]
    skipped = len(source) - len(names)
    stripped = ""
    # wrappers nest (DDP around a compiled model): strip until none is left
    while (prefix := _strip_wrappers(names)):
        stripped += prefix
        names = [n[len(prefix):] for n in names]
    full = {n: stripped + n for n in names}  # stripped name → key in source
    renamed = 0
    if renames:
        new = {}
        for n in names:
            r = _rename(n, renames)
            renamed += r != n
            new[r] = full[n]
        if len(new) != len(names):
            raise UsageError(f"{origin}: the --map renames two tensors to the same name")
        full, names = new, list(new)
    want = spec_tensors(graph)
    arrays = {n: source[full[n]] for n in names}
    for n, a in arrays.items():
        if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
            raise UsageError(f"{origin}: tensor '{full[n]}' has dtype {a.dtype}; weights "
                             "are real numbers")

    def misfit(src: str, t: SpecTensor, how: str) -> UsageError:
        return UsageError(
            f"{origin}: tensor '{full[src]}' {fmt_shape(arrays[src].shape)} does not fit "
            f"'{t.name}' {fmt_shape(t.shape)} of spec layer {t.layer} ({t.op}), paired {how}")

    by_name = all(t.name in arrays for t in want) and len(arrays) == len(want)
    pairs: list[tuple[str, str]] = []
    if by_name:
        for t in want:
            if tuple(arrays[t.name].shape) != t.shape:
                raise misfit(t.name, t, "by name")
            pairs.append((t.name, t.name))
        how = "name"
    else:
        for i, t in enumerate(want):
            if i >= len(names):
                raise UsageError(
                    f"{origin}: {len(names)} tensors, spec '{graph.name}' has {len(want)}: "
                    f"nothing left for '{t.name}' {fmt_shape(t.shape)} of spec layer {t.layer} "
                    f"({t.op}) (paired by position: the names do not all match)")
            src = names[i]
            # a 0-d tensor saved as [1] by numpy writers, or a [1] saved as 0-d
            if tuple(arrays[src].shape) != t.shape and not (
                    arrays[src].size == 1 and int(np.prod(t.shape)) == 1):
                raise misfit(src, t, f"by position (#{i + 1})")
            pairs.append((src, t.name))
        if len(names) > len(want):
            extra = names[len(want)]
            raise UsageError(
                f"{origin}: {len(names)} tensors, spec '{graph.name}' has {len(want)}: "
                f"'{full[extra]}' {fmt_shape(arrays[extra].shape)} and "
                f"{len(names) - len(want) - 1} more are left over (paired by position: the "
                "names do not all match)")
        how = "position"
    shapes = {t.name: t.shape for t in want}
    tensors = {dst: np.ascontiguousarray(arrays[src], dtype=np.float32).reshape(shapes[dst])
               for src, dst in pairs}
    return Pairing(how, [(full[s], d) for s, d in pairs], found_at, stripped, skipped,
                   renamed, tensors)


def import_metadata(origin: str, p: Pairing) -> dict[str, str]:
    return {"netspec.import": json.dumps({"source": origin, "paired_by": p.how,
                                          "tensors": len(p.pairs),
                                          "found_at": p.found_at}, sort_keys=True)}
