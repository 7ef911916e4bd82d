"""The params report for people: the tree table and markdown add up to the Graph's own
tensors, and carry no terminal colour codes when piped."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

import netspec
from netspec.report import as_markdown, as_table

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def _tensor_total(graph: netspec.Graph) -> int:
    return sum(math.prod(s) for s in graph.param_shapes().values())


def _table_rows(text: str) -> list[list[str]]:
    """Rows between the header rule and the totals rule, cut where the rule's dashes are."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("layer "))
    spans = [m.span() for m in re.finditer(r"─+", lines[head + 1])]
    spans[-1] = (spans[-1][0], 10_000)
    end = next(i for i in range(head + 2, len(lines)) if set(lines[i]) == {"─"})
    # the first column keeps its leading spaces: they are part of the tree
    return [[line[a:b].rstrip() if a == 0 else line[a:b].strip() for a, b in spans]
            for line in lines[head + 2:end]]


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_tree_leaves_add_up_to_the_graph_tensors(spec: Path) -> None:
    graph = netspec.load(spec)
    text = as_table(graph)
    rows = _table_rows(text)
    assert len(rows) >= len(graph.layers)  # every layer, plus a row per scope
    leaf_names = {r[0].split(" ")[-1] for r in rows}
    assert rows[0][0] == graph.layers[0].name.split(".")[0]
    for node in graph.layers:
        assert node.name.rpartition(".")[2] in leaf_names
    # the scopes' rows are sums of their children: count each leaf once
    leaves = [r for r, nxt in zip(rows, [*rows[1:], None], strict=True)
              if nxt is None or _depth(nxt[0]) <= _depth(r[0])]
    assert sum(int(r[3].replace(",", "")) for r in leaves) == _tensor_total(graph)
    # and each scope's row is the sum of the rows directly under it
    for i, r in enumerate(rows):
        d = _depth(r[0])
        below = []
        for nxt in rows[i + 1:]:
            if _depth(nxt[0]) <= d:
                break
            if _depth(nxt[0]) == d + 1:
                below.append(int(nxt[3].replace(",", "")))
        if below:
            assert int(r[3].replace(",", "")) == sum(below), r
    total = re.search(r"^parameters\s+([\d,]+)", text, re.M)
    assert total and int(total.group(1).replace(",", "")) == _tensor_total(graph)


def _depth(label: str) -> int:
    return len(re.match(r"^[│├└─ ]*", label).group(0)) // 3  # type: ignore[union-attr]


@pytest.mark.parametrize("depth", [None, 0, 1])
def test_markdown_has_a_row_per_layer_and_the_totals(depth: int | None) -> None:
    graph = netspec.load(ROOT / "specs" / "resnet18.yaml")
    text = as_markdown(graph, depth)
    body = [line for line in text.splitlines() if line.startswith("| `")]
    if depth is None:
        assert len(body) == len(graph.layers)
    params = [int(line.split("|")[4].strip().replace(",", "")) for line in body]
    assert sum(params) == _tensor_total(graph) == 11_689_512
    assert "| parameters | 11,689,512 |" in text


def test_piped_table_is_plain_text() -> None:
    done = subprocess.run([sys.executable, "-m", "netspec", "params", "specs/resnet18.yaml"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    assert "\x1b[" not in done.stdout
    assert "└─ relu2" in done.stdout  # the tree is drawn all the same


def test_colour_only_when_asked() -> None:
    graph = netspec.load(ROOT / "specs" / "mlp.yaml")
    assert "\x1b[1m" in as_table(graph, color=True)
    assert "\x1b[" not in as_table(graph, color=False)
