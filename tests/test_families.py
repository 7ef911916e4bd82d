"""Families: kinds a spec names through one word and a ``kind`` — ``norm: batch``,
``act: silu``. Both go through the same code (resolve, lint, the JSON Schema), so what
holds for one is checked for both here; each member is the kind itself, compared with
the spec that writes that kind directly."""

from __future__ import annotations

import pytest

import netspec
from netspec.errors import SpecError, SpecErrors
from netspec.json_schema import spec_schema
from netspec.kinds import FAMILY_MEMBERS

HEAD = "netspec: 1\nname: f\ninput: [4, 6, 6]\n"


def _graph(text: str, **vars: object) -> list[tuple[object, ...]]:
    return [(n.name, n.op, n.args, n.shape) for n in netspec.loads(HEAD + text, **vars)]


def _error(text: str) -> str:
    with pytest.raises((SpecError, SpecErrors)) as e:
        netspec.loads(HEAD + text)
    return str(e.value)


@pytest.mark.parametrize("member", sorted(FAMILY_MEMBERS["act"]))
def test_act_names_each_activation(member: str) -> None:
    direct = _graph(f"layers:\n  - {member}\n")
    assert _graph(f"layers:\n  - act: {member}\n") == direct
    assert _graph(f"layers:\n  - act: {{kind: {member}}}\n") == direct
    assert _graph("vars: {a: relu}\nlayers:\n  - act: $a\n", a=member) == direct
    assert _graph(f"defaults:\n  act: {{kind: {member}}}\nlayers:\n  - act\n") == direct


def test_a_members_options_and_a_familys_defaults() -> None:
    assert _graph("layers:\n  - act: {kind: leaky_relu, slope: 0.2}\n") == \
        _graph("layers:\n  - leaky_relu: 0.2\n")
    text = ("defaults:\n  act: {kind: gelu, approximate: tanh}\nlayers:\n  - act\n"
            "  - act: relu\n")  # a default relu has no use for is left to gelu
    assert _graph(text) == _graph("layers:\n  - gelu: tanh\n  - relu\n")


@pytest.mark.parametrize(("family", "first"), [("norm", "batch"), ("act", "relu")])
def test_a_family_without_a_kind_is_one_positioned_line(family: str, first: str) -> None:
    members = list(FAMILY_MEMBERS[family])
    listed = f"{', '.join(members[:-1])} or {members[-1]}"
    assert _error(f"layers:\n  - {family}\n") == \
        f"<string>:5:5: {family} needs a kind: {listed} (e.g. '{family}: {first}')"


@pytest.mark.parametrize("family", ["norm", "act"])
def test_an_unknown_member_and_an_unknown_option(family: str) -> None:
    assert _error(f"layers:\n  - {family}: nope\n").startswith(
        f"<string>:5:{7 + len(family)}: unknown {family} kind 'nope'; expected one of: ")
    first = next(iter(FAMILY_MEMBERS[family]))
    assert f"<string>:5:{16 + len(family) + len(first)}: {family} {first}: unknown option " \
        "'wrong'" in _error(f"layers:\n  - {family}: {{kind: {first}, wrong: 1}}\n")


def test_the_schema_describes_every_family_alike() -> None:
    schema = spec_schema()
    layer = schema["$defs"]["layer"]["anyOf"][1]["properties"]
    for family, members in FAMILY_MEMBERS.items():
        assert layer[family]["anyOf"][0] == {"enum": list(members)}
        props = schema["$defs"][family]["properties"]
        assert props["kind"] == {"enum": list(members)}
        for cls in members.values():
            assert set(cls.option_names()) <= set(props)
