"""From a spec file (or text) to the Graph: load → validate → resolve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netspec.errors import SpecErrors
from netspec.fit_ranges import spec_domains
from netspec.graph import Graph
from netspec.lint import check_defaults, lint_layers
from netspec.resolve import Resolver
from netspec.spec import validate_top_level
from netspec.yaml_loader import Document, load_file, load_text


def resolve_document(doc: Document, overrides: dict[str, Any] | None = None) -> Graph:
    spec = validate_top_level(doc)
    problems = check_defaults(doc, spec) + lint_layers(doc, spec) + spec_domains(doc, spec)[1]
    if problems:
        raise SpecErrors(problems)
    return Resolver(doc, spec, dict(overrides or {})).graph()


def load(path: str | Path, **vars: Any) -> Graph:
    """Load, validate and resolve a spec file; keyword arguments override its vars."""
    return resolve_document(load_file(path), vars)


def loads(text: str, file: str = "<string>", **vars: Any) -> Graph:
    """The same for spec text held in memory."""
    return resolve_document(load_text(text, file), vars)
