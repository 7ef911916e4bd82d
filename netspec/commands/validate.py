"""``netspec validate spec.yaml``: check a spec without building anything."""

from __future__ import annotations

import argparse

from netspec.commands.common import add_spec_args, load_graph
from netspec.kinds import fmt_shape
from netspec.report import outputs_text, plural


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="check a spec: syntax, options, shapes",
                       description="Validate a spec and infer every layer's shape.")
    add_spec_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    g = load_graph(args)
    c = g.params()
    print(f"{args.spec}: ok — {g.name}, {plural(len(g.layers), 'layer')}, "
          f"{fmt_shape(g.input_shape)} → {outputs_text(g)}, {plural(c.params, 'parameter')}")
    return 0
