"""The docs are the truth: every key the schema knows is documented, and the README's
commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from netspec.json_schema import spec_schema
from netspec.kinds import OPS, SPEC_KINDS

ROOT = Path(__file__).resolve().parent.parent
SPEC_DOC = (ROOT / "docs" / "spec-language.md").read_text()


def _properties(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            found.add(name)
            found |= _properties(sub)
        for value in schema.values():
            if isinstance(value, dict | list):
                found |= _properties(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= _properties(item)
    return found


def test_every_schema_property_is_documented() -> None:
    names = _properties(spec_schema())
    assert len(names) > 40  # the schema really was walked
    missing = sorted(n for n in names if f"`{n}`" not in SPEC_DOC)
    assert not missing, f"undocumented in docs/spec-language.md: {missing}"


def test_every_kind_is_documented() -> None:
    missing = [k for k in (*SPEC_KINDS, "residual", "dense") if f"`{k}`" not in SPEC_DOC
               and f"{k} —" not in SPEC_DOC]
    assert not missing


def test_every_norm_kind_and_op_reaches_the_docs() -> None:
    for op in OPS:
        kind = getattr(OPS[op].model_fields.get("kind"), "default", None)
        shown = f"`{kind}`" if OPS[op].spec_kind != op else op  # a family member by its kind
        assert shown in SPEC_DOC, op


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert block, "README must open with a bash block"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 3, "the README opens with the CPU-only torch and two commands"
    # where a reader meets it first, before anything installs torch's 3 GB CUDA build
    assert commands[0].startswith(
        "pip install torch --index-url https://download.pytorch.org/whl/cpu")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[2] in ci.splitlines()
    # and the torchvision round trip, in its own environment
    section = readme.split("## Testing against torchvision", 1)[1]
    tv = re.search(r"```bash\n(.*?)```", section, re.S)
    assert tv, "the torchvision section shows its command"
    (command,) = [line for line in tv.group(1).splitlines() if line.strip()]
    assert command in ci.splitlines()
    assert "NETSPEC_REQUIRE_TORCHVISION=1" in command
