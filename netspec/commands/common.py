"""Arguments several commands share: the spec path and ``--set name=value``."""

from __future__ import annotations

import argparse
import math
from typing import Any

import yaml

from netspec.entries import shown
from netspec.errors import NetspecError, SpecError, SpecErrors, UsageError
from netspec.expr import MAX_MAGNITUDE
from netspec.graph import Graph
from netspec.load import load


def add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="the spec file (YAML)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="override a var of the spec (repeatable)")


#: the longest ``--set`` value, and its deepest nesting of lists
MAX_SET_CHARS = 10_000
MAX_SET_DEPTH = 32


def parse_sets(sets: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in sets:
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise UsageError(f"--set {shown(item, True)}: expected NAME=VALUE")
        name = shown(name)
        if len(text) > MAX_SET_CHARS:
            raise UsageError(f"--set {name}: the value is longer than {MAX_SET_CHARS:,} "
                             "characters")
        # before YAML recurses into it: a deep nesting of brackets is refused unread
        if _bracket_depth(text) > MAX_SET_DEPTH:
            raise UsageError(f"--set {name}: the value is nested more than {MAX_SET_DEPTH} "
                             "deep")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        except RecursionError:  # block-style nesting the bracket count does not see
            raise UsageError(f"--set {name}: the value is nested more than {MAX_SET_DEPTH} "
                             "deep") from None
        except ValueError as e:  # int(): more digits than Python converts; a bad date
            if "digits" in str(e):
                raise UsageError(f"--set {name}: the number is too large (limit "
                                 f"{MAX_MAGNITUDE:.0e})") from None
            raise UsageError(f"--set {name}: cannot read the value: {e}") from None
        _check_set_value(name, value)
        out[name] = value
    return out


def _bracket_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in ``text`` (quotes not considered: an
    over-estimate only for a word full of brackets, which no var needs)."""
    depth = deepest = 0
    for c in text:
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(depth - 1, 0)
    return deepest


def _check_set_value(name: str, value: Any) -> None:
    """Numbers, words and (nested) lists of them; YAML aliases can make a list that
    contains itself, or billions of elements from a few bytes: both refused. Numbers are
    finite and bounded as an expression's values are."""
    todo, seen = [(value, 0)], 0
    while todo:
        v, depth = todo.pop()
        seen += 1
        if isinstance(v, dict | set):
            raise UsageError(f"--set {name}: a value is a number, a word or a list")
        if depth > MAX_SET_DEPTH or seen > 10_000:
            raise UsageError(f"--set {name}: the value is nested too deep or too large "
                             "(a recursive YAML alias?)")
        if isinstance(v, float) and not math.isfinite(v):
            raise UsageError(f"--set {name}: {v} is not a finite number")
        if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) > MAX_MAGNITUDE:
            raise UsageError(f"--set {name}: the number is too large (limit "
                             f"{MAX_MAGNITUDE:.0e})")
        if isinstance(v, list):
            todo.extend((x, depth + 1) for x in v)


def load_graph(args: argparse.Namespace) -> Graph:
    sets = parse_sets(args.sets)
    try:
        return load(args.spec, **sets)
    except (SpecError, SpecErrors) as err:
        raise blame_sets(err, args.spec, sets, args.sets) from None


def load_graph_for_weights(args: argparse.Namespace, tensors: dict[str, Any],
                           metadata: dict[str, str], source: str,
                           loaded: Graph | None = None) -> Graph:
    """The spec's Graph as the weights were made (their recorded vars; see
    netspec.checkpoint_vars), with a bad ``--set`` blamed on ``--set``. ``loaded``: the
    Graph :func:`load_graph` already gave for ``args``, resolved again only when the
    weights' vars differ."""
    from netspec.checkpoint_vars import graph_for_weights

    sets = parse_sets(args.sets)
    try:
        return graph_for_weights(args.spec, sets, tensors, metadata, source, loaded=loaded)
    except (SpecError, SpecErrors) as err:
        raise blame_sets(err, args.spec, sets, args.sets) from None


def blame_sets(err: SpecError | SpecErrors, spec: str, sets: dict[str, Any],
               given: list[str]) -> SpecError | SpecErrors:
    """An error in a spec loaded with ``--set``: where the spec loads with its own values,
    the ``--set`` values caused it (through however many vars, block args and
    expressions), and the message says so — it keeps the position where the value was
    used. Otherwise the error is the spec's own, unchanged."""
    if not sets:
        return err
    try:
        load(spec)
    except NetspecError:
        return err
    blame = " — from " + " ".join(f"--set {shown(g.strip())}" for g in given)
    errors = err.errors if isinstance(err, SpecErrors) else [err]
    for e in errors:
        e.message += blame
    return SpecErrors(errors) if isinstance(err, SpecErrors) else err


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
