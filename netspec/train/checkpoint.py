"""Checkpoints: the weights file, and the resume state beside it — safetensors both,
never pickle (``torch.save`` / ``torch.load`` would run code from the file).

``ckpt.safetensors`` is an ordinary netspec weights file (``netspec export`` and
``check_weights`` read it) whose metadata adds the epoch, the metrics, how the BN
statistics were made and how the data was split. ``ckpt.state.safetensors`` holds what
``--resume`` needs to continue exactly: the optimizer's tensors flattened to
``optim.<param index>.<name>``, each rank's RNG state as uint8 tensors, and as JSON
metadata the epoch, the step (the whole scheduler state: see schedule.py), the
optimizer's non-tensor state and param groups, the fp16 loss scaler and the settings.
Both are written atomically; the state first, so a crash between the two leaves a
weights file and a state that disagree on the epoch, which resuming detects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.preprocess import CLASS_NAMES_KEY, PREPROCESS_KEY
from netspec.weights import SHA_KEY, load_weights, save_weights, spec_metadata

EPOCH_KEY = "netspec.epoch"
METRICS_KEY = "netspec.metrics"
DATA_KEY = "netspec.data"
TRAIN_KEY = "netspec.train"
VARS_KEY = "netspec.vars"
STATE_KEY = "netspec.state"
STATE_FORMAT = 1


def state_path(ckpt: str | Path) -> Path:
    """``run.safetensors`` → ``run.state.safetensors`` (beside it)."""
    p = Path(ckpt)
    stem = p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.name
    return p.with_name(f"{stem}.state.safetensors")


def checkpoint_metadata(graph: Graph, *, epoch: int, metrics: dict[str, Any],
                        bn_stats: str, data: dict[str, Any],
                        train: dict[str, Any]) -> dict[str, str]:
    # safetensors metadata is str → str: structured values go in as JSON
    images = {}  # an image folder's preprocessing and class names, for export and run
    if "preprocess" in data:
        images[PREPROCESS_KEY] = data["preprocess"]
    if "class_names" in data:
        images[CLASS_NAMES_KEY] = json.dumps(data["class_names"])
    return {
        **images,
        **spec_metadata(graph),
        VARS_KEY: json.dumps(graph.vars, sort_keys=True, default=str),
        EPOCH_KEY: str(epoch),
        METRICS_KEY: json.dumps(metrics, sort_keys=True),
        "netspec.bn_stats": bn_stats,
        DATA_KEY: json.dumps(data, sort_keys=True),
        TRAIN_KEY: json.dumps(train, sort_keys=True),
    }


def save_checkpoint(path: str | Path, weights: dict[str, np.ndarray],
                    metadata: dict[str, str]) -> Path:
    return save_weights(path, weights, metadata)


def _numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().to("cpu")
    if t.dtype == torch.bfloat16:  # numpy has no bf16; no optimizer here keeps any
        raise TypeError("bf16 optimizer state cannot be stored as numpy")
    return t.numpy().copy()


def flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """An optimizer state_dict as (tensors by flat name, the JSON-able rest)."""
    tensors: dict[str, np.ndarray] = {}
    rest: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = _numpy(value)
            else:  # e.g. SGD's momentum_buffer is None before the first step
                rest.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "state": rest}


def unflatten_optimizer(tensors: dict[str, np.ndarray], meta: dict[str, Any]
                        ) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for pid, entry in meta["state"].items():
        state.setdefault(int(pid), {}).update(entry)
    for name, arr in tensors.items():
        if not name.startswith("optim."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = torch.from_numpy(np.array(arr))
    return {"state": state, "param_groups": meta["param_groups"]}


@dataclass
class TrainState:
    epoch: int
    step: int
    world: int
    config: dict[str, Any]
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None
    #: per rank: {"torch": uint8 tensor, "cuda": uint8 tensor (when on a GPU)}
    rng: list[dict[str, torch.Tensor]]
    spec_sha256: str


def save_state(path: str | Path, st: TrainState) -> Path:
    tensors, opt_meta = flatten_optimizer(st.optimizer)
    for rank, states in enumerate(st.rng):
        for kind, t in states.items():
            tensors[f"rng.{kind}.{rank}"] = _numpy(t)
    meta = {
        "format": STATE_FORMAT, "epoch": st.epoch, "step": st.step, "world": st.world,
        "config": st.config, "optimizer": opt_meta, "scaler": st.scaler,
    }
    return save_weights(path, tensors, {STATE_KEY: json.dumps(meta),
                                        SHA_KEY: st.spec_sha256})


def load_state(path: str | Path) -> TrainState:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no resume state (it is written beside the checkpoint by "
                         "netspec train; without it the run cannot continue exactly)")
    tensors, raw = load_weights(p)
    try:
        meta = json.loads(raw[STATE_KEY])
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"format {meta.get('format')}")
    except (KeyError, ValueError) as e:
        raise UsageError(f"{p}: not a netspec train state ({e})") from None
    rng: list[dict[str, torch.Tensor]] = [{} for _ in range(meta["world"])]
    for name, arr in tensors.items():
        if name.startswith("rng."):
            _, kind, rank = name.split(".")
            rng[int(rank)][kind] = torch.from_numpy(np.array(arr))
    return TrainState(epoch=meta["epoch"], step=meta["step"], world=meta["world"],
                      config=meta["config"],
                      optimizer=unflatten_optimizer(tensors, meta["optimizer"]),
                      scaler=meta["scaler"], rng=rng, spec_sha256=raw.get(SHA_KEY, ""))
