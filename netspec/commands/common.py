"""Arguments several commands share: the spec path and ``--set name=value``."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.load import load


def add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="the spec file (YAML)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="override a var of the spec (repeatable)")


def parse_sets(sets: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in sets:
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise UsageError(f"--set {item!r}: expected NAME=VALUE")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        _check_set_value(name, value)
        out[name] = value
    return out


def _check_set_value(name: str, value: Any) -> None:
    """Numbers, words and (nested) lists of them; YAML aliases can make a list that
    contains itself, or billions of elements from a few bytes: both refused."""
    todo, seen = [(value, 0)], 0
    while todo:
        v, depth = todo.pop()
        seen += 1
        if isinstance(v, dict | set):
            raise UsageError(f"--set {name}: a value is a number, a word or a list")
        if depth > 32 or seen > 10_000:
            raise UsageError(f"--set {name}: the value is nested too deep or too large "
                             "(a recursive YAML alias?)")
        if isinstance(v, list):
            todo.extend((x, depth + 1) for x in v)


def load_graph(args: argparse.Namespace) -> Graph:
    return load(args.spec, **parse_sets(args.sets))


#: Building or training a network that needs more memory than this (weights, and the
#: activations of the batch the command runs: a forward pass, or a training step) needs
#: --allow-large. A fixed figure, not a share of this machine's RAM, so a spec gets the
#: same verdict on every machine (and in CI): the most a bundled spec needs is 12.4 GB
#: (yolov8n's training step at train's default batch of 64, AdamW; resnet50's is 5.9 GB).
LARGE_MODEL_BYTES = 16 * 10**9


def add_allow_large(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-large", action="store_true",
                   help=f"go on even when the estimate (`netspec params --batch`) is over "
                   f"{LARGE_MODEL_BYTES / 1e9:g} GB")


def check_size(graph: Graph, allow_large: bool, source: str, batch: int = 2,
               optimizer: str | None = None, precision: str = "fp32") -> None:
    """Refuse, before anything is allocated, a network too large to run by accident: the
    memory estimate of what the command does (netspec/memory.py) — a forward pass at
    ``batch``, or with an ``optimizer`` a training step."""
    from netspec.memory import step_memory

    m = step_memory(graph, batch, optimizer or "sgd", precision)
    need = m.training_total if optimizer else m.inference_total
    if need > LARGE_MODEL_BYTES and not allow_large:
        what = (f"a training step at batch {batch} ({optimizer}, {precision})" if optimizer
                else f"a forward pass at batch {batch}")
        raise UsageError(
            f"{source}: spec '{graph.name}' has {graph.params().params:,} parameters; "
            f"{what} needs about {need / 1e9:,.1f} GB (limit {LARGE_MODEL_BYTES / 1e9:g} GB, "
            f"see `netspec params --batch {batch}`); pass --allow-large to go on anyway")
