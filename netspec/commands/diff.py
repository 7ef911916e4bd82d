"""``netspec diff a.yaml b.yaml``: what changed between two specs, layer by layer; or one
spec at two settings (``netspec diff a.yaml --set-b width=2``). Exits as diff(1) does:
0 when they are the same, 1 when they differ, 2 for bad input."""

from __future__ import annotations

import argparse

from netspec.commands.common import parse_sets
from netspec.errors import VarError
from netspec.graph import Graph
from netspec.load import load


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="compare two specs, or one spec at two settings",
                       description="Compare two specs layer by layer (nodes matched by "
                       "name): added, removed and changed layers (kind, options, output "
                       "shape) with their parameter and MAC deltas, and the totals. With "
                       "one spec, compare it at the settings of --set-a and --set-b. Exit "
                       "status as diff(1): 0 the same, 1 different, 2 bad input. "
                       "No torch import.")
    p.add_argument("a", help="the first spec (YAML)")
    p.add_argument("b", nargs="?", default=None,
                   help="the second spec (YAML); default: the first one again")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="override a var on both sides (repeatable)")
    p.add_argument("--set-a", dest="sets_a", action="append", default=[],
                   metavar="NAME=VALUE", help="override a var of the first side only")
    p.add_argument("--set-b", dest="sets_b", action="append", default=[],
                   metavar="NAME=VALUE", help="override a var of the second side only")
    p.add_argument("--match", choices=("name", "order"), default="name",
                   help="pair layers by name (default), or by their place in the network "
                   "whatever their names: two specs of one network written apart (an "
                   "imported one and a hand-written one)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(run=run)


def _side(path: str, both: list[str], own: list[str], flag: str) -> Graph:
    sets = {**parse_sets(both), **parse_sets(own)}
    try:
        return load(path, **sets)
    except VarError as e:  # say which flag named it
        raise e.as_flag(flag if e.subject.split("=")[0].strip("'") in parse_sets(own)
                        else "--set") from None


def run(args: argparse.Namespace) -> int:
    from netspec.diff import FORMATS, diff

    a = _side(args.a, args.sets, args.sets_a, "--set-a")
    b = _side(args.b or args.a, args.sets, args.sets_b, "--set-b")
    d = diff(a, b, args.match)
    if args.b is None:  # one spec: tell the sides apart by their settings
        d.a = f"{args.a} [{' '.join(args.sets_a) or 'as written'}]"
        d.b = f"{args.a} [{' '.join(args.sets_b) or 'as written'}]"
    print(FORMATS[args.format](d))
    return 1 if d.changes or d.outputs[0] != d.outputs[1] else 0
