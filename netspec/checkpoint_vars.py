"""Checkpoints remember their vars: a weights file records the vars its spec was
resolved with (``netspec.vars``), and the commands that read weights use them.

When the spec is the same text as the one the weights were made from and no ``--set``
is given, the recorded vars are applied (and a note says so); when the weights still do
not fit, the one-line error names the vars they were made with (``--set width=8``)
instead of a list of shape mismatches. Torch-free.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.load import load
from netspec.weights import SHA_KEY, check_weights, recorded_vars


def fmt_sets(values: dict[str, Any]) -> str:
    """``{"width": 8}`` → ``--set width=8`` (several joined by spaces)."""
    return " ".join(f"--set {k}={v}" for k, v in values.items())


def _differing(recorded: dict[str, Any], graph: Graph) -> dict[str, Any]:
    return {k: v for k, v in recorded.items() if k in graph.vars and graph.vars[k] != v}


def graph_for_weights(spec: str | Path, sets: dict[str, Any], tensors: dict[str, np.ndarray],
                      metadata: dict[str, str], source: str, *, quiet: bool = False,
                      loaded: Graph | None = None) -> Graph:
    """The Graph of ``spec`` that the weights were made for, with their tensors checked.

    Without ``sets``, and when ``metadata`` says the weights come from this very spec
    text, the vars recorded in them are used. Either way a mismatch is one line naming
    the recorded vars when they differ from the spec's. ``loaded``: ``spec`` already
    resolved with ``sets`` (not resolved again unless the recorded vars differ)."""
    graph = loaded if loaded is not None else load(spec, **sets)
    recorded = recorded_vars(metadata)
    if recorded:
        differ = _differing(recorded, graph)
        if differ and not sets and metadata.get(SHA_KEY) == graph.spec_sha256:
            graph = load(spec, **differ)
            if not quiet:
                print(f"note: using the vars recorded in {source}: {fmt_sets(differ)}",
                      file=sys.stderr)
    try:
        check_weights(graph, tensors, source)
    except UsageError:
        differ = _differing(recorded or {}, graph)
        if not differ:
            raise
        now = ", ".join(f"{k}={graph.vars[k]}" for k in differ)
        raise UsageError(f"{source}: the weights were made with {fmt_sets(differ)}, this "
                         f"spec resolves to {now}: pass {fmt_sets(differ)}") from None
    return graph
