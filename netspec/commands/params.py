"""``netspec params spec.yaml``: count parameters, buffers and MACs without building."""

from __future__ import annotations

import argparse
import json
import os
import sys

from netspec.commands.common import add_spec_args, load_graph
from netspec.errors import UsageError
from netspec.memory import OPTIMIZER_STATES, memory_lines, step_memory
from netspec.report import FORMATS, as_json, as_table


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="count parameters and MACs, layer by layer",
                       description="Count a spec's parameters, buffers and MACs exactly, "
                       "without building it (no torch import).")
    add_spec_args(p)
    p.add_argument("--depth", type=int, default=None, metavar="N",
                   help="collapse scopes deeper than N into one row (0: top level only)")
    p.add_argument("--format", choices=sorted(FORMATS), default="table")
    p.add_argument("--batch", type=int, default=None, metavar="B",
                   help="add the memory of a training step at batch B (weights, gradients, "
                   "optimizer state, activations kept for backward) and of inference")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZER_STATES), default="adamw",
                   help="with --batch: whose state to count (default adamw)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="with --batch: activations at fp32, or bf16 under autocast")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.depth is not None and args.depth < 0:
        raise UsageError("--depth must be 0 or more")
    if args.batch is not None and args.batch < 1:
        raise UsageError("--batch must be 1 or more")
    graph = load_graph(args)
    memory = (step_memory(graph, args.batch, args.optimizer, args.precision)
              if args.batch is not None else None)
    if args.format == "table":
        # bold scopes and dim zero rows in a terminal; plain text when piped
        print(as_table(graph, args.depth, color=sys.stdout.isatty()
                       and "NO_COLOR" not in os.environ))
    elif args.format == "json" and memory is not None:
        doc = json.loads(as_json(graph, args.depth))
        doc["memory_bytes"] = memory.as_dict()
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(FORMATS[args.format](graph, args.depth))
    if memory is not None and args.format in ("table", "markdown"):
        print("\n" + "\n".join(memory_lines(memory)))
    elif memory is not None and args.format == "csv":
        print("\n".join(f"# {line}" for line in memory_lines(memory)))
    return 0
