"""Pretrained weights from elsewhere → a netspec weights file.

Reads a ``.pth``/``.pt`` (``torch.load(weights_only=True, mmap=True)``: torch's
restricted loader, which rebuilds tensors and plain containers and refuses any other
pickled object — never plain unpickling; a raw Python pickle is refused unread), a
``.safetensors`` or an ``.npz`` (bounded from its zip headers and each array's header
before anything is inflated). Finds the state dict at the top or under a common key
(``state_dict``, ``model``, ``ema``…), drops DDP's ``module.`` and torch.compile's
``_orig_mod.`` prefixes and BN step counters, then pairs the tensors with the spec's: by
name when every spec name is there; else, from a file that keeps the order tensors
registered in (torch.save, np.savez), by position (the spec's tensors in the order
torch registers them); from one that does not (safetensors), by structure
(netspec/weights_structure.py). Every pair's shape is checked. A ``--map`` file renames
source tensors first. Values are checked (finite, within float32, integers exact in
float32) and converted to float32, the conversions said.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.kinds.base import fmt_shape
from netspec.weights_structure import (
    Ambiguous,
    SpecTensor,
    ambiguity,
    misfit,
    pair_by_structure,
)

#: where checkpoints commonly keep the state dict, tried in this order
CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "ema", "model_ema",
                  "state_dict_ema", "module", "net", "network", "params")
#: prefixes wrappers add to every name: DDP/DataParallel, torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
SKIPPED_SUFFIX = ".num_batches_tracked"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAVE_HINT = ("where you trust the file, save a plain state dict: "
             "torch.save(model.state_dict(), 'weights.pth') or "
             "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')")
NPZ_HINT = "save the state dict with np.savez(path, **state_dict)"
#: torch.save's legacy format starts with this number, pickled (LONG1, 10 bytes)
LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
F32_MAX = float(np.finfo(np.float32).max)



@dataclass
class Source:
    """A state dict read from a file: numpy arrays by name, in the file's order."""

    tensors: dict[str, np.ndarray]
    #: where the state dict was found in the file ("" at the top)
    found_at: str = ""
    #: whether the file keeps the order the tensors registered in (a safetensors
    #: file lists them by name)
    ordered: bool = True
    #: tensors widened to float32 as read (numpy has no bfloat16): their dtype
    widened: dict[str, str] = field(default_factory=dict)


@dataclass
class Pairing:
    #: "name", "position" or "structure"
    how: str
    #: (source name, spec name) in the spec's order
    pairs: list[tuple[str, str]]
    #: where the state dict was found in the source ("" at the top)
    found_at: str = ""
    stripped: str = ""
    skipped: int = 0
    renamed: int = 0
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    #: by structure: whether the names chose among pairings the shapes allowed
    by_names: bool = False
    #: "float64 → float32" → how many tensors
    converted: dict[str, int] = field(default_factory=dict)
    #: (source name as --map reads it: prefixes removed, not renamed; spec name)
    map_pairs: list[tuple[str, str]] = field(default_factory=list)

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
        same = sum(a == b for a, b in self.pairs)
        if self.how == "name":
            lines = [f"paired {n} tensors by name{where}{tail}"]
            shown_pairs = self.pairs[:shown]
        else:
            if self.how == "position":
                lines = [f"paired {n} tensors by position, every shape checked ({same} with "
                         f"the same name, {n - same} not){where}{tail}"]
            else:
                told = (", and the names where the shapes allowed several ways (numbered "
                        "alike: bn1 before bn2; or the spec's own)" if self.by_names else "")
                lines = [f"paired {n} tensors by structure (the file keeps no order), every "
                         f"shape checked ({same} with the same name, {n - same} not)"
                         f"{where}{tail}",
                         "  one way fits the spec's layer order: by the module paths, the "
                         f"numbered modules and the shapes{told}"]
            differ = [p for p in self.pairs if p[0] != p[1]]
            shown_pairs = (differ or self.pairs)[:shown]
        lines += [f"  {a} → {b}" for a, b in shown_pairs]
        rest = n - len(shown_pairs)
        if rest > 0:
            lines.append(f"  … {rest} more")
        if self.converted:
            lines.append("converted to float32: " + ", ".join(
                f"{k} ({v} tensor{'s' * (v != 1)})" for k, v in self.converted.items()))
        return lines


def spec_tensors(graph: Graph) -> list[SpecTensor]:
    """The spec's tensors in torch's state_dict order: layer by layer in registration
    order, each layer's parameters then its buffers. A kind's own submodules (attention's
    ``qkv`` and ``proj``) are layers of their own here, as a source holds them: timm's
    in two child modules, torch's MultiheadAttention as its own ``in_proj_*`` and a child
    ``out_proj``."""
    out: list[SpecTensor] = []
    for node in graph.registration():
        assert node.args is not None
        shapes = graph.input_shapes(node)
        for table in (node.args.param_shapes(shapes), node.args.buffer_shapes(shapes)):
            for key, shape in table.items():
                part = key.rpartition(".")[0]
                layer = f"{node.name}.{part}" if part else node.name
                out.append(SpecTensor(f"{node.name}.{key}", tuple(shape), layer, node.op))
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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _pickled(p: Path, what: str) -> UsageError:
    """netspec's own refusal of a pickle: never torch's advice to load it unrestricted."""
    return UsageError(f"{p}: holds a pickled Python object{what} that netspec will not run "
                      f"(it reads only tensors in plain containers); {SAVE_HINT}")


def _read_torch(p: Path) -> Any:
    import pickle

    import torch

    try:
        with p.open("rb") as f:
            head = f.read(64)
    except OSError as e:
        raise UsageError(f"{p}: cannot read: {e.strerror or e}") from None
    legacy = LEGACY_MAGIC in head
    if not head.startswith(b"PK\x03\x04") and not legacy:
        if head.startswith(b"\x80"):  # a pickle stream that torch.save did not write
            raise _pickled(p, " (a raw Python pickle, not torch.save's format)")
        raise UsageError(f"{p}: not a readable torch.save file (neither its zip format nor "
                         "its legacy one)")
    try:
        # torch warns of pickle protocols it did not write (a legacy file saved with
        # protocol 4): nothing a user of netspec can act on
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # torch.save's legacy (pre-1.6) format cannot be memory-mapped: read it whole,
            # through the same restricted loader
            return torch.load(p, map_location="cpu", weights_only=True, mmap=not legacy)
    except pickle.UnpicklingError as e:
        if m := re.search(r"GLOBAL ([\w.]+)", str(e)):
            raise _pickled(p, f" ({m.group(1)})") from None
        # an opcode the restricted loader lacks (a legacy file of pickle protocol 4)
        detail = str(e).partition("WeightsUnpickler error:")[2].strip()
        what = f" ({detail.splitlines()[0]})" if detail else ""
        raise UsageError(f"{p}: its pickle is in a form torch's restricted loader cannot "
                         f"read{what}, and netspec never unpickles unrestricted; "
                         f"{SAVE_HINT}") from None
    except Exception as e:  # torch's readers on a damaged file raise many kinds
        detail = "" if "weights_only" in str(e) else f" ({_first_line(e)})"
        raise UsageError(f"{p}: not a readable torch.save file{detail}") from None


def _read_safetensors(p: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(p))
    except Exception as e:  # the library's parser on a damaged file raises many kinds
        raise UsageError(f"{p}: not a readable safetensors file ({_first_line(e)})") from None


def _read_npz(p: Path) -> dict[str, Any]:
    from netspec.train.data import check_npz

    check_npz(p, hint=NPZ_HINT)  # bounded from the headers before anything is inflated
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zipfile and numpy on a damaged file raise many kinds
        raise UsageError(f"{p}: not a readable .npz file ({_first_line(e)})") from None


def _as_numpy(name: str, value: Any, p: Path, widened: dict[str, str]) -> np.ndarray:
    """A tensor as a numpy array of its own dtype; bfloat16 and float8, which numpy has
    not, widened to float32 (exact) and noted in ``widened``."""
    import torch

    if not isinstance(value, torch.Tensor):
        return np.asarray(value)
    t = value.detach()
    try:
        if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32,
                                                     torch.float64):
            widened[name] = str(t.dtype).removeprefix("torch.")
            t = t.float()
        return t.cpu().numpy()
    except (TypeError, RuntimeError) as e:  # quantized, sparse: not plain weights
        raise UsageError(f"{p}: tensor '{name}' cannot be read as an array "
                         f"({_first_line(e)})") from None


def read_source(path: str | Path) -> Source:
    """A source file's state dict as numpy arrays by name, and where it was."""
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
    widened: dict[str, str] = {}
    tensors = {key: _as_numpy(key, value, p, widened) for key, value in sd.items()}
    return Source(tensors, where, ordered=suffix != ".safetensors", widened=widened)


# ------------------------------------------------------------------ pairing


def read_map(path: str | Path) -> dict[str, str]:
    """A --map file: YAML (or JSON) ``source name: spec name``; a key ending in '.'
    renames every source name that starts with it (a prefix). Read with the spec's
    bounds (size, nesting, aliases): a hostile file is one line, not a traceback."""
    from netspec.yaml_loader import load_file

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such --map file")
    data = load_file(p, what="--map").data
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise UsageError(f"{p}: --map takes a mapping 'source name: spec name' (strings)")
    return data


def map_text(pairing: Pairing, source: str, graph: Graph) -> str:
    """The pairing as a --map file: every source name with the spec name it pairs
    with, in the spec's order; read back, it pairs the same tensors by name."""
    import yaml

    head = (f"# netspec weights import --map: source tensor: spec tensor, for spec "
            f"{json.dumps(graph.name)} from {json.dumps(source)}\n"
            f"# paired by {pairing.how}; check it, edit it, pass it with --map\n")
    return head + yaml.safe_dump(dict(pairing.map_pairs), sort_keys=False,
                                 allow_unicode=True, width=1 << 16)


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


@dataclass
class _Names:
    """The source's names as pairing sees them: BN step counters left out, wrapper
    prefixes removed, --map applied."""

    names: list[str]
    #: name → the key it has in the source file
    key: dict[str, str]
    #: name → before --map (what a --map file's keys are)
    unmapped: dict[str, str]
    stripped: str
    skipped: int
    renamed: int


def _source_names(source: dict[str, np.ndarray], renames: dict[str, str] | None,
                  origin: str) -> _Names:
    names = [n for n in source if not n.endswith(SKIPPED_SUFFIX)]
    skipped = len(source) - len(names)
    stripped = ""
    # wrappers nest (DDP around a compiled model): strip until none is left
    while (prefix := _strip_wrappers(names)):
        stripped += prefix
        names = [n[len(prefix):] for n in names]
    unmapped = {n: n for n in names}
    renamed = 0
    if renames:
        new = {_rename(n, renames): n for n in names}
        if len(new) != len(names):
            raise UsageError(f"{origin}: the --map renames two tensors to the same name")
        renamed = sum(a != b for a, b in new.items())
        unmapped, names = new, list(new)
    return _Names(names, {n: stripped + unmapped[n] for n in names}, unmapped, stripped,
                  skipped, renamed)


def _check_dtypes(arrays: dict[str, np.ndarray], key: dict[str, str], origin: str) -> None:
    for n, a in arrays.items():
        if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
            raise UsageError(f"{origin}: tensor '{key[n]}' has dtype {a.dtype}; weights "
                             "are real numbers")


def _by_name(want: list[SpecTensor], arrays: dict[str, np.ndarray],
             misfit_: Any) -> list[tuple[str, str]]:
    pairs = []
    for t in want:
        if tuple(arrays[t.name].shape) != t.shape:
            raise misfit_(t.name, t, "by name")
        pairs.append((t.name, t.name))
    return pairs


def _fits(a: np.ndarray, t: SpecTensor) -> bool:
    # a 0-d tensor saved as [1] by numpy writers, or a [1] saved as 0-d
    return tuple(a.shape) == t.shape or (a.size == 1 and int(np.prod(t.shape)) == 1)


def _by_position(graph: Graph, want: list[SpecTensor], src: _Names,
                 arrays: dict[str, np.ndarray], origin: str,
                 misfit_: Any) -> list[tuple[str, str]]:
    names = src.names
    pairs = []
    for i, t in enumerate(want):
        if i >= len(names):
            raise UsageError(
                f"{origin}: {len(names)} tensors, spec '{graph.name}' has {len(want)}: "
                f"nothing left for '{t.name}' {fmt_shape(t.shape)} of spec layer {t.layer} "
                f"({t.op}) (paired by position: the names do not all match)")
        if not _fits(arrays[names[i]], t):
            raise misfit_(names[i], t, f"by position (#{i + 1})")
        pairs.append((names[i], t.name))
    if len(names) > len(want):
        extra = names[len(want)]
        raise UsageError(
            f"{origin}: {len(names)} tensors, spec '{graph.name}' has {len(want)}: "
            f"'{src.key[extra]}' {fmt_shape(arrays[extra].shape)} and "
            f"{len(names) - len(want) - 1} more are left over (paired by position: the "
            "names do not all match)")
    return pairs


def _by_structure(graph: Graph, want: list[SpecTensor], src: _Names,
                  arrays: dict[str, np.ndarray], origin: str) -> tuple[list[tuple[str, str]],
                                                                      bool]:
    shapes = [tuple(arrays[n].shape) for n in src.names]
    try:
        outcome = pair_by_structure(src.names, shapes, want)
    except Ambiguous as e:
        raise ambiguity(origin, [src.key[n] for n in src.names], shapes, want, e) from None
    if not outcome.order:
        raise misfit(origin, graph.name, [src.key[n] for n in src.names], shapes, want)
    return [(n, t.name) for n, t in zip(outcome.order, want, strict=True)], outcome.by_names


def pair(graph: Graph, source: Source | Mapping[str, np.ndarray], origin: str,
         renames: dict[str, str] | None = None) -> Pairing:
    """Pair the source's tensors with the spec's, or raise one line naming the first
    tensor that does not fit and the spec layer it belongs to (or, by structure, two
    tensors whose pairing the file cannot tell)."""
    if not isinstance(source, Source):
        source = Source(dict(source))
    src = _source_names(source.tensors, renames, origin)
    want = spec_tensors(graph)
    arrays = {n: source.tensors[src.key[n]] for n in src.names}
    _check_dtypes(arrays, src.key, origin)

    def misfit_(name: str, t: SpecTensor, how: str) -> UsageError:
        return UsageError(
            f"{origin}: tensor '{src.key[name]}' {fmt_shape(arrays[name].shape)} does not "
            f"fit '{t.name}' {fmt_shape(t.shape)} of spec layer {t.layer} ({t.op}), "
            f"paired {how}")

    by_names = False
    if all(t.name in arrays for t in want) and len(arrays) == len(want):
        how, pairs = "name", _by_name(want, arrays, misfit_)
    elif source.ordered:
        how, pairs = "position", _by_position(graph, want, src, arrays, origin, misfit_)
    else:
        how = "structure"
        pairs, by_names = _by_structure(graph, want, src, arrays, origin)
    converted: Counter[str] = Counter()
    shapes = {t.name: t.shape for t in want}
    tensors = {dst: _as_float32(arrays[n], src.key[n], origin, converted,
                                source.widened.get(src.key[n])).reshape(shapes[dst])
               for n, dst in pairs}
    return Pairing(how, [(src.key[n], d) for n, d in pairs], source.found_at, src.stripped,
                   src.skipped, src.renamed, tensors, by_names, dict(converted),
                   [(src.unmapped[n], d) for n, d in pairs])


# ------------------------------------------------------------------ values


def _as_float32(a: np.ndarray, name: str, origin: str, converted: Counter[str],
                widened: str | None = None) -> np.ndarray:
    """``a`` as C-contiguous float32, counting the conversion in ``converted``; refused
    (never changed silently) where a value is not finite, is beyond float32's range, or
    is an integer float32 would round."""
    what = f"{origin}: tensor '{name}' ({widened or a.dtype})"
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise UsageError(f"{what} holds NaN or infinite values; weights must be finite")
        if a.dtype.itemsize > 4 and a.size and (top := float(np.abs(a).max())) > F32_MAX:
            raise UsageError(f"{what} holds {top:.4g}, beyond the range of float32 "
                             f"(±{F32_MAX:.4g}), in which netspec keeps weights")
    elif (bad := _rounded_integer(a)) is not None:
        raise UsageError(f"{what} holds {bad}, which float32, in which netspec keeps "
                         f"weights, would round to {int(np.float32(bad))}")
    if widened:
        converted[f"{widened} → float32 (exact)"] += 1
    elif a.dtype != np.float32:
        exact = "" if a.dtype == np.float64 else " (exact)"
        converted[f"{a.dtype} → float32{exact}"] += 1
    return np.ascontiguousarray(a, dtype=np.float32)


#: every integer of at most this magnitude is exact in float32 (24-bit significand)
_F32_EXACT = 2**24


def _rounded_integer(a: np.ndarray) -> int | None:
    """The first value of an integer array that float32 cannot hold exactly, or None.
    An integer is exact in float32 when what is left after its trailing zero bits fits
    the 24-bit significand; computed in uint64, where nothing overflows."""
    if a.dtype.itemsize <= 2 or a.size == 0:
        return None
    mag = a.astype(np.uint64) if a.dtype.kind == "u" else \
        np.abs(a.astype(np.int64)).astype(np.uint64)  # |INT64_MIN| wraps to 2**63: right
    flat = mag.reshape(-1)
    big = np.flatnonzero(flat >= _F32_EXACT)
    if big.size == 0:
        return None
    m = flat[big]
    lowest_bit = m & (~m + np.uint64(1))
    rounded = big[(m // lowest_bit) >= _F32_EXACT]
    return int(a.reshape(-1)[rounded[0]]) if rounded.size else None


def import_metadata(origin: str, p: Pairing) -> dict[str, str]:
    return {"netspec.import": json.dumps({"source": origin, "paired_by": p.how,
                                          "tensors": len(p.pairs),
                                          "found_at": p.found_at}, sort_keys=True)}
