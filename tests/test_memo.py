"""Resolving one Document again with other vars (``netspec fit``) reuses what no var
changes (netspec/memo.py): it must never change a Graph or an error."""

from __future__ import annotations

import gc
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import netspec
from netspec import memo
from netspec.errors import NetspecError
from netspec.graph import Graph
from netspec.resolve import Resolver
from netspec.spec import validate_top_level
from netspec.yaml_loader import Document, load_file, load_text

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def resolve(doc: Document, **vars: Any) -> Graph:
    return Resolver(doc, validate_top_level(doc), vars).graph()


def outcome(doc: Document, **vars: Any) -> Graph | str:
    """The Graph, or the error's text."""
    try:
        return resolve(doc, **vars)
    except NetspecError as err:
        return str(err)


def variants(path: Path) -> list[dict[str, Any]]:
    """Each int var halved, doubled and set to 1 and 3, one at a time."""
    doc = load_file(path)
    out: list[dict[str, Any]] = [{}]
    for name, v in (doc.data.get("vars") or {}).items():
        if isinstance(v, int) and not isinstance(v, bool):
            out += [{name: max(1, v // 2)}, {name: v * 2}, {name: 1}, {name: 3}]
    return out


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_variant_of_one_document_is_what_a_fresh_load_gives(path: Path) -> None:
    doc = load_file(path)
    for vars in variants(path) * 2:  # twice: the second round all from the memo
        assert outcome(doc, **vars) == outcome(load_file(path), **vars), vars


SPEC = textwrap.dedent("""\
    netspec: 1
    name: t
    input: [4, 8, 8]
    vars: {o: 8, k: 3}
    defaults:
      conv: {bias: false}
    layers:
      - conv: {out: $o, k: $k}
      - norm: batch
      - relu
      - split: {parts: 2, as: x}
      - concat: {from: [x.0]}
      - global_avgpool
      - flatten
      - linear: {out: 10}
""")


def test_an_error_is_raised_again_and_true_is_not_one() -> None:
    text = SPEC.replace("split: {parts: 2, as: x}", "split: {parts: 1, as: x}").replace(
        "concat: {from: [x.0]}", "concat: {from: [x.0, x.0]}")
    doc = load_text(text, "t.yaml")
    assert isinstance(outcome(doc, o=1), Graph)
    fresh = outcome(load_text(text, "t.yaml"), o=True)
    assert isinstance(fresh, str) and "boolean" in fresh
    assert outcome(doc, o=True) == fresh
    assert outcome(doc, o=True) == fresh
    zero = outcome(load_text(text, "t.yaml"), o=0)
    assert isinstance(zero, str) and outcome(doc, o=0) == zero


def test_entries_are_read_as_they_are_now() -> None:
    doc = load_text(SPEC, "t.yaml")
    layers = doc.data["layers"]
    assert resolve(doc)["conv1"].args.out == 8
    layers[0]["conv"]["out"] = 6  # in place: the memo's layout holds, the value is new
    assert resolve(doc)["conv1"].args.out == 6
    layers[0]["conv"]["groups"] = 2  # another key: read again
    assert resolve(doc)["conv1"].args.groups == 2
    layers[1]["norm"] = "layer"  # a shorthand's value
    assert resolve(doc)["ln1"].op == "layernorm"
    layers[1] = {"norm": {"kind": "batch"}}  # another entry at the same path
    assert resolve(doc)["bn1"].op == "batchnorm"


def test_only_immutable_models_are_shared() -> None:
    doc = load_text(SPEC, "t.yaml")
    one, two = resolve(doc), resolve(doc, o=6)
    assert one["bn1"].args is two["bn1"].args  # frozen, scalars only: reused
    assert one["x.0"].args is not two["x.0"].args  # a split's part holds its index
    assert one["cat1"].args is not two["cat1"].args  # `from` is a list
    assert one["cat1"].args.from_ is not two["cat1"].args.from_


def test_a_memo_goes_with_its_document() -> None:
    doc = load_text(SPEC, "t.yaml")
    resolve(doc)
    key = id(doc)
    assert key in memo._MEMOS
    del doc
    gc.collect()
    assert key not in memo._MEMOS


def test_load_is_unchanged_by_an_earlier_resolve_of_the_same_text() -> None:
    first = netspec.loads(SPEC, "t.yaml", o=4)
    assert first == netspec.loads(SPEC, "t.yaml", o=4)


@pytest.mark.parametrize("spec", ["resnet50", "yolov8n", "efficientnet_b0"])
def test_export_reads_the_yaml_once_and_walks_each_entry_once(
        spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`netspec export`: the file is parsed once, and each entry written as a mapping is
    read into its kind and options once (lint reads it; resolve and every later stage
    take that reading from the Document's memo)."""
    import netspec.entries as entries
    import netspec.yaml_loader as yaml_loader
    from netspec.cli import main

    texts: list[str] = []
    parsed: dict[Any, int] = {}
    load_text, parse_entry = yaml_loader.load_text, entries.parse_entry

    def counting_load(text: str, *args: Any, **kw: Any) -> Document:
        texts.append(text)
        return load_text(text, *args, **kw)

    def counting_parse(doc: Document, raw: Any, path: Any, *args: Any) -> Any:
        if isinstance(raw, dict):
            parsed[path] = parsed.get(path, 0) + 1
        return parse_entry(doc, raw, path, *args)

    monkeypatch.setattr(yaml_loader, "load_text", counting_load)
    for module in list(sys.modules.values()):  # every name it is known by
        if getattr(module, "__name__", "").startswith("netspec") and \
                getattr(module, "parse_entry", None) is parse_entry:
            monkeypatch.setattr(module, "parse_entry", counting_parse)
    out = tmp_path / f"{spec}.onnx"
    assert main(["export", str(ROOT / "specs" / f"{spec}.yaml"), "-o", str(out),
                 "--no-verify"]) == 0
    assert len(texts) == 1
    assert parsed and set(parsed.values()) == {1}
