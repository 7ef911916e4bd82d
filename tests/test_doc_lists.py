"""Lists written in prose (docstrings, the JSON Schema's descriptions, the docs) checked
against the code they describe, so adding a function, a structure or a torch-free
command without saying so fails here."""

from __future__ import annotations

import re
import types
from pathlib import Path

import netspec
import netspec.expr
from netspec.expr import FUNCTIONS
from netspec.json_schema import COMMON, EXPRESSION, spec_schema
from netspec.structures import STRUCTURES

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
LANGUAGE = (ROOT / "docs" / "spec-language.md").read_text()


def test_every_expression_function_is_listed_where_functions_are_listed() -> None:
    doc = netspec.expr.__doc__ or ""
    for name in FUNCTIONS:
        assert re.search(rf"\b{name}\b", doc), f"expr.py's docstring omits {name}"
        assert re.search(rf"\b{name}\b", EXPRESSION["description"]), name
        assert f"`{name}(" in LANGUAGE, f"spec-language.md omits {name}()"


def test_schema_structure_keys_are_the_expanders_keys() -> None:
    kinds = spec_schema()["$defs"]
    for name, structure in STRUCTURES.items():
        props = set(_find_props(kinds, name)) - set(COMMON)
        assert props == set(structure.keys), name


def _find_props(defs: dict, name: str) -> dict:
    """The properties of kind ``name``'s mapping, wherever the schema nests it."""
    stack = [defs]
    while stack:
        d = stack.pop()
        if isinstance(d, dict):
            if name in d and isinstance(d[name], dict) and "properties" in d[name]:
                return d[name]["properties"]
            stack.extend(d.values())
        elif isinstance(d, list):
            stack.extend(d)
    raise AssertionError(f"no schema for {name}")


def test_torch_free_commands_named_in_architecture_are_the_tested_ones() -> None:
    from test_core import TORCH_FREE_COMMANDS

    said = re.search(r"^`validate`.*?load only these modules", ARCHITECTURE, re.M | re.S)
    assert said, "architecture.md no longer says which commands are torch-free"
    named = set(re.findall(r"`(\w+)`", said.group(0)))
    assert named == set(TORCH_FREE_COMMANDS)


def test_package_namespace_is_its_api() -> None:
    """``from __future__ import annotations`` and typing names stay private."""
    public = {n for n in dir(netspec) if not n.startswith("_")
              and not isinstance(getattr(netspec, n), types.ModuleType)}
    assert public == set(netspec.__all__) - {"__version__"}
