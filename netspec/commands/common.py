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
