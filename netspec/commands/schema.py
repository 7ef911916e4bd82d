"""``netspec schema``: the JSON Schema of the spec format, for editors."""

from __future__ import annotations

import argparse
import json

from netspec.json_schema import spec_schema


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="print the JSON Schema of the spec format",
                       description="Print the JSON Schema of netspec's spec format. Point your "
                       "editor's YAML language server at it to check specs as you type.")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(spec_schema(), indent=2))
    return 0
