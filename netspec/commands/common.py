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
        if isinstance(value, dict):
            raise UsageError(f"--set {name}: a value is a number, a word or a list")
        out[name] = value
    return out


def load_graph(args: argparse.Namespace) -> Graph:
    return load(args.spec, **parse_sets(args.sets))
