"""``netspec params spec.yaml``: count parameters, buffers and MACs without building."""

from __future__ import annotations

import argparse
import os
import sys

from netspec.commands.common import add_spec_args, load_graph
from netspec.errors import UsageError
from netspec.report import FORMATS, as_table


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="count parameters and MACs, layer by layer",
                       description="Count a spec's parameters, buffers and MACs exactly, "
                       "without building it (no torch import).")
    add_spec_args(p)
    p.add_argument("--depth", type=int, default=None, metavar="N",
                   help="collapse scopes deeper than N into one row (0: top level only)")
    p.add_argument("--format", choices=sorted(FORMATS), default="table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.depth is not None and args.depth < 0:
        raise UsageError("--depth must be 0 or more")
    graph = load_graph(args)
    if args.format == "table":
        # bold scopes and dim zero rows in a terminal; plain text when piped
        print(as_table(graph, args.depth, color=sys.stdout.isatty()
                       and "NO_COLOR" not in os.environ))
    else:
        print(FORMATS[args.format](graph, args.depth))
    return 0
