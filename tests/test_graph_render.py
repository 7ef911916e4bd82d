"""netspec graph (DOT, Mermaid, SVG via Graphviz) and netspec diff."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import netspec
from netspec.cli import main
from netspec.diff import diff
from netspec.render import to_dot, to_mermaid

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

DOT_NODE = re.compile(r'^\s*"((?:[^"\\]|\\.)+)" \[label=', re.M)
DOT_EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)+)" -> "((?:[^"\\]|\\.)+)"( \[style=dashed)?', re.M)
MMD_NODE = re.compile(r'^\s*(n\d+)\["', re.M)
MMD_EDGE = re.compile(r"^\s*(n\d+) (-->|-\.->) (n\d+)$", re.M)


def graph_edges(g: netspec.Graph) -> list[tuple[str, str]]:
    return [(i, n.name) for n in g for i in n.inputs]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_spec_draws_one_box_per_node_one_edge_per_input(path: Path) -> None:
    g = netspec.load(path)
    dot = to_dot(g)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    boxes = DOT_NODE.findall(dot)
    assert len(boxes) == len(set(boxes)) == len(g) and set(boxes) == set(g.nodes)
    assert sorted((a, b) for a, b, _ in DOT_EDGE.findall(dot)) == sorted(graph_edges(g))
    assert dot.count("{") == dot.count("}")
    mmd = to_mermaid(g)
    assert mmd.startswith("flowchart TB")
    assert len(MMD_NODE.findall(mmd)) == len(g)
    assert len(MMD_EDGE.findall(mmd)) == len(graph_edges(g))
    assert mmd.count("subgraph ") == len(re.findall(r"subgraph cluster_", dot))
    assert len(re.findall(r"^\s*end$", mmd, re.M)) == mmd.count("subgraph ")


def test_skip_edges_are_dashed_and_scopes_are_clusters() -> None:
    g = netspec.load(ROOT / "specs/resnet18.yaml")
    dot = to_dot(g)
    skips = {(a, b) for a, b, dashed in DOT_EDGE.findall(dot) if dashed}
    assert ("pool1", "layer1.0.add1") in skips             # the identity shortcut
    assert ("layer1.0.conv1", "layer1.0.bn1") not in skips
    assert "subgraph cluster_" in dot and 'label="layer1: basic × 2"' in dot
    assert "conv(out=64, k=7, stride=2, bias=False)" in dot and "9,408 params" in dot
    assert "-.->" in to_mermaid(g)


def test_depth_collapses_scopes_and_deduplicates_edges() -> None:
    g = netspec.load(ROOT / "specs/resnet18.yaml")
    full = DOT_NODE.findall(to_dot(g))
    d1 = to_dot(g, depth=1)
    boxes = DOT_NODE.findall(d1)
    assert len(boxes) < len(full)
    assert "layer2.0" in boxes and "layer2.0.conv1" not in boxes
    assert "230,144 params · 9 layers" in d1                 # summed like params --depth
    edges = [(a, b) for a, b, _ in DOT_EDGE.findall(d1)]
    assert len(edges) == len(set(edges))                     # deduplicated
    assert ("layer1.1", "layer2.0") in edges                 # one edge for two tensors
    d0 = DOT_NODE.findall(to_dot(g, depth=0))
    assert sorted(d0) == sorted(["input", "conv1", "bn1", "relu1", "pool1", "layer1",
                                 "layer2", "layer3", "layer4", "pool2", "flatten1", "fc"])
    assert "subgraph" not in to_dot(g, depth=0)


def test_cli_writes_dot_and_mermaid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "net.dot"
    assert main(["graph", str(ROOT / "specs/mlp.yaml"), "-o", str(out)]) == 0
    assert sorted(DOT_NODE.findall(out.read_text())) == sorted(netspec.load(
        ROOT / "specs/mlp.yaml").nodes)
    mmd = tmp_path / "net.mmd"
    assert main(["graph", str(ROOT / "specs/unet.yaml"), "-o", str(mmd), "--depth", "0",
                 "--set", "size=32"]) == 0
    assert "[3, 32, 32]" in mmd.read_text()
    assert main(["graph", str(ROOT / "specs/mlp.yaml"), "-o", str(tmp_path / "x.jpg")]) == 2
    assert "unknown picture format" in capsys.readouterr().err


def test_missing_dot_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    out = tmp_path / "net.svg"
    assert main(["graph", str(ROOT / "specs/mlp.yaml"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "dot" in err and "apt-get install graphviz" in err and "brew install graphviz" in err
    assert ".dot" in err and ".mmd" in err
    assert not out.exists()


def test_missing_dot_via_path(tmp_path: Path) -> None:
    """The same through a real process whose PATH holds only the python interpreter."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    proc = subprocess.run([str(bindir / "python"), "-m", "netspec", "graph",
                           str(ROOT / "specs/mlp.yaml"), "-o", str(tmp_path / "n.png")],
                          capture_output=True, text=True, env={"PATH": str(bindir)},
                          timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "apt-get install graphviz" in proc.stderr


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="Graphviz 'dot' is not installed (apt-get install graphviz); "
                    "only the real-SVG test needs it")
def test_real_svg_with_graphviz(tmp_path: Path) -> None:
    out = tmp_path / "net.svg"
    assert main(["graph", str(ROOT / "specs/resnet18.yaml"), "-o", str(out),
                 "--depth", "1"]) == 0
    svg = out.read_text()
    assert "<svg" in svg and "layer2.0" in svg
    png = tmp_path / "net.png"
    assert main(["graph", str(ROOT / "specs/digits_cnn.yaml"), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------- diff

BASE = """\
netspec: 1
name: small
input: [1, 8, 8]
layers:
  - conv: {out: 8, k: 3, as: c1}
  - relu
  - global_avgpool
  - flatten
  - dropout: {drop: 0.2, as: drop}
  - linear: {out: 10, as: fc}
"""
# conv widened 8 → 16, a layer added (c2), the dropout removed
OTHER = """\
netspec: 1
name: small
input: [1, 8, 8]
layers:
  - conv: {out: 16, k: 3, as: c1}
  - relu
  - conv: {out: 16, k: 1, as: c2}
  - global_avgpool
  - flatten
  - linear: {out: 10, as: fc}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_diff_widen_add_remove(tmp_path: Path) -> None:
    a, b = netspec.load(write(tmp_path, "a.yaml", BASE)), netspec.load(
        write(tmp_path, "b.yaml", OTHER))
    d = diff(a, b)
    by = {c.name: c for c in d.changes}
    assert by["c2"].status == "added" and by["c2"].params_delta == 16 * 16 + 16
    assert by["drop"].status == "removed" and by["drop"].params_delta == 0
    c1 = by["c1"]
    assert c1.status == "changed" and {"args", "shape", "params", "macs"} <= set(c1.what)
    assert c1.params_delta == (16 - 8) * (9 + 1)
    assert c1.macs_delta == (16 - 8) * 9 * 64
    assert by["fc"].status == "changed" and by["fc"].params_delta == 8 * 10
    assert d.params == (a.params().params, b.params().params)
    assert sum(c.params_delta for c in d.changes) == d.params[1] - d.params[0]
    assert sum(c.macs_delta for c in d.changes) == d.macs[1] - d.macs[0]
    assert "input" not in by and by["relu1"].what == ["shape"]   # unchanged: not listed
    assert [c.name for c in d.changes].index("drop") < [c.name for c in d.changes].index("fc")
    assert diff(a, a).changes == []


def test_diff_cli_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = write(tmp_path, "a.yaml", BASE), write(tmp_path, "b.yaml", OTHER)
    assert main(["diff", str(a), str(b)]) == 1  # as diff(1): they differ
    table = capsys.readouterr().out
    assert "1 added, 1 removed" in table
    assert re.search(r"^\+\s+c2\s", table, re.M) and re.search(r"^-\s+drop\s", table, re.M)
    assert "conv(out=8, k=3) → [8, 8, 8]" in table and "(+432)" in table
    assert main(["diff", str(a), str(b), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["params"]["delta"] == doc["params"]["b"] - doc["params"]["a"] > 0
    assert {c["name"]: c["status"] for c in doc["changes"]}["drop"] == "removed"
    assert main(["diff", str(a), str(a)]) == 0
    assert "no layer differs" in capsys.readouterr().out


def test_graph_and_diff_never_import_torch(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from netspec.cli import main
        assert main(["graph", {str(ROOT / "specs/resnet18.yaml")!r}, "-o",
                     {str(tmp_path / "r.dot")!r}]) == 0
        assert main(["diff", {str(ROOT / "specs/resnet18.yaml")!r},
                     {str(ROOT / "specs/resnet50.yaml")!r}]) == 1
        heavy = [m for m in ("torch", "onnx", "onnxruntime") if m in sys.modules]
        assert not heavy, heavy
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def test_diff_one_spec_at_two_settings(capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(ROOT / "specs/resnet18.yaml")
    assert main(["diff", spec, "--set-b", "width=32", "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert {c["name"]: c["status"] for c in doc["changes"]}["conv1"] == "changed"
    assert main(["diff", spec, "--set-a", "classes=10", "--set-b", "classes=10"]) == 0
    capsys.readouterr()
    assert main(["diff", spec, "--set-b", "widht=32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("--set-b widht: the spec has no var 'widht'") and "'width'" in err


def _longest_chain(edges: list[tuple[str, str]], boxes: list[str]) -> int:
    """Boxes on the longest path: the picture's height in ranks, as Graphviz lays it out."""
    rank = dict.fromkeys(boxes, 1)
    for _ in boxes:  # relax until stable (a DAG of at most len(boxes) ranks)
        changed = False
        for a, b in edges:
            if rank[a] + 1 > rank[b]:
                rank[b], changed = rank[a] + 1, True
        if not changed:
            break
    return max(rank.values())


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_default_picture_of_every_bundled_spec_is_readable(
        path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`netspec graph` with no options: repeats and dense blocks drawn once, scopes
    collapsed as needed — at most READABLE_BOXES boxes, so at most that many ranks tall
    (densenet121 unfolded is 428 boxes, 18,216 px tall)."""
    from netspec.render import READABLE_BOXES

    out = tmp_path / "p.dot"
    assert main(["graph", str(path), "-o", str(out)]) == 0
    folded = any(sc.kind in ("repeat", "dense") for sc in netspec.load(path).scopes.values())
    assert ("drawn once" in capsys.readouterr().out) == folded
    dot = out.read_text()
    boxes = DOT_NODE.findall(dot)
    edges = [(a, b) for a, b, _ in DOT_EDGE.findall(dot)]
    assert 0 < len(boxes) <= READABLE_BOXES, (path.stem, len(boxes))
    assert _longest_chain(edges, boxes) <= READABLE_BOXES
    assert all(a in boxes and b in boxes for a, b in edges)


def test_folding_draws_a_repeat_once_with_its_count() -> None:
    g = netspec.load(ROOT / "specs/resnet18.yaml")
    dot = to_dot(g, fold=True)
    boxes = set(DOT_NODE.findall(dot))
    assert "layer1.0.conv1" in boxes and not any(b.startswith("layer1.1.") for b in boxes)
    assert 'label="layer1: basic × 2 (drawn once)"' in dot
    # the stage's output still feeds the next stage, from the copy that is drawn
    edges = {(a, b) for a, b, _ in DOT_EDGE.findall(dot)}
    assert any(a.startswith("layer1.0.") and b.startswith("layer2.0.") for a, b in edges)
    dense = to_dot(netspec.load(ROOT / "specs/densenet121.yaml"), fold=True)
    assert "× 6" in dense and "(drawn once)" in dense
