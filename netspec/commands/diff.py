"""``netspec diff a.yaml b.yaml``: what changed between two specs, layer by layer."""

from __future__ import annotations

import argparse

from netspec.commands.common import parse_sets
from netspec.load import load


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="compare two specs layer by layer",
                       description="Compare two specs layer by layer (nodes matched by "
                       "name): added, removed and changed layers (kind, options, output "
                       "shape) with their parameter and MAC deltas, and the totals. "
                       "No torch import.")
    p.add_argument("a", help="the first spec (YAML)")
    p.add_argument("b", help="the second spec (YAML)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="override a var in both specs (repeatable)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from netspec.diff import FORMATS, diff

    sets = parse_sets(args.sets)
    print(FORMATS[args.format](diff(load(args.a, **sets), load(args.b, **sets))))
    return 0
