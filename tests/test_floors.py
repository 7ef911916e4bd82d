"""The floors of the house: every module of netspec/ sits on one floor, and no import
points up a floor or closes a circle (type-only imports included).

The imports are read from the source with ``ast`` — top level, inside functions and
under ``if TYPE_CHECKING:`` alike — so a lazy import inside a function is an import
here too. ``FLOORS`` below is the one place that says which module sits where, by
package or module name; a module it does not place fails the test, so a new module
must be given a floor (docs/architecture.md, "Floors", says what each floor is for).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "netspec"

#: the floors, lowest first: a module may import modules on its own floor or below.
#: ``name.*`` places a package and everything under it; a plain name places that module
#: alone (``netspec`` is the package root, its ``__init__.py``). An exact name wins
#: over a ``.*`` entry, a longer ``.*`` over a shorter.
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", (
        "netspec.errors", "netspec.names", "netspec.expr", "netspec.kinds.*",
        "netspec._version",
        # leaf utilities that import only errors: atomic writes, .npy/.npz headers,
        # image preprocessing (Pillow, inside its functions)
        "netspec.io", "netspec.npy", "netspec.preprocess",
    )),
    ("front end", (
        "netspec.yaml_loader", "netspec.spec", "netspec.entries", "netspec.memo", "netspec.values",
        "netspec.lint", "netspec.structures", "netspec.resolve", "netspec.totals",
        "netspec.graph", "netspec.fit_ranges", "netspec.load", "netspec.json_schema",
    )),
    ("count", (
        "netspec.count", "netspec.memory", "netspec.report", "netspec.render",
        "netspec.diff", "netspec.fit",
        # torch-free readers of a Graph: weights files by its tensor names, the
        # agreement of two models' outputs, import's structure recovery
        "netspec.weights", "netspec.weights_structure", "netspec.checkpoint_vars",
        "netspec.agreement", "netspec.importer.*",
    )),
    ("backends", ("netspec.backends.*",)),
    ("training and data", (
        "netspec.train.*", "netspec.weights_import", "netspec.weights_api",
        "netspec.image_run",
    )),
    ("package API", ("netspec",)),
    ("commands", ("netspec.commands.*",)),
    ("cli", ("netspec.cli", "netspec.__main__")),
)

TORCH_BACKEND = "netspec.backends.torch"
ONNX_BACKEND = "netspec.backends.onnx"
#: the one module of the ONNX backend that may import the torch backend or torch (to
#: verify against torch); the torch backend imports nothing of the ONNX backend
ONNX_TO_TORCH_SEAM = "netspec.backends.onnx.verify"
#: what no module below the backends imports when it is imported (inside a function,
#: for a command that needs it, is allowed)
HEAVY = ("torch", "onnx", "onnxruntime")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # a module: a netspec module, or a top-level third-party name
    line: int
    top_level: bool  # runs when the module is imported (not in a function, not type-only)

    def __str__(self) -> str:
        return f"{self.source} (line {self.line}) imports {self.target}"


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, top: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import under ``node``, and whether it runs as the module is imported."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, top
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, False)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), False)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), top)
        else:
            yield from _walk(child, top)


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node, top in _walk(ast.parse(path.read_text(), str(path)), True):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:  # relative: from the package, up level - 1
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base_name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                base_name = node.module or ""
            # `from netspec import structures` imports a module; `from netspec import
            # build` the package root
            targets = [f"{base_name}.{a.name}" if f"{base_name}.{a.name}" in MODULES
                       else base_name for a in node.names]
        for target in dict.fromkeys(targets):
            if target == "netspec" or target.startswith("netspec."):
                found.append(Import(module, target, node.lineno, top))
            else:
                found.append(Import(module, target.partition(".")[0], node.lineno, top))
    return found


IMPORTS = {m: imports_of(m) for m in MODULES}


def _internal(imports: list[Import]) -> list[Import]:
    return [i for i in imports if i.target == "netspec" or i.target.startswith("netspec.")]


def floor_of(module: str) -> int:
    """The index in FLOORS of the module's floor; a module no entry places fails."""
    best: tuple[int, int] | None = None  # (specificity, floor)
    for floor, (_, entries) in enumerate(FLOORS):
        for entry in entries:
            if entry == module:
                return floor
            if entry.endswith(".*"):
                pkg = entry[:-2]
                if module == pkg or module.startswith(pkg + "."):
                    if best is None or len(pkg) > best[0]:
                        best = (len(pkg), floor)
    if best is None:
        pytest.fail(f"{module} is on no floor: place it in FLOORS (tests/test_floors.py) "
                    "and in docs/architecture.md's Floors")
    return best[1]


def name(floor: int) -> str:
    return FLOORS[floor][0]


def test_every_module_has_a_floor_and_every_entry_a_module() -> None:
    for module in MODULES:
        floor_of(module)
    for _, entries in FLOORS:
        for entry in entries:
            pkg = entry.removesuffix(".*")
            assert pkg in MODULES, f"FLOORS names {entry}, which is no module of netspec/"


def _doc_name(name: str) -> str:
    """docs/architecture.md's way of naming a module (``kinds/``, ``load``,
    ``netspec/__init__.py``) as FLOORS names it."""
    if name == "netspec/__init__.py":
        return "netspec"
    if name.endswith("/"):
        return "netspec." + name[:-1].replace("/", ".") + ".*"
    return "netspec." + name


def test_the_architecture_doc_draws_these_floors() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("\n## Floors\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| floor |")]
    drawn = [(floor.strip(), sorted(_doc_name(n) for n in re.findall(r"`([^`]+)`", names)))
             for floor, names in rows]
    assert drawn == [(floor, sorted(entries)) for floor, entries in FLOORS]


def test_every_import_names_a_module_of_netspec() -> None:
    unknown = [str(i) for imports in IMPORTS.values() for i in _internal(imports)
               if i.target not in MODULES]
    assert not unknown, "\n".join(unknown)


def test_no_import_points_up_a_floor() -> None:
    up = [f"{i}: {name(floor_of(i.source))} → {name(floor_of(i.target))}"
          for imports in IMPORTS.values() for i in _internal(imports)
          if i.target in MODULES and floor_of(i.target) > floor_of(i.source)]
    assert not up, "imports that point up a floor:\n" + "\n".join(up)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module that
    imports itself), by Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1 or node in edges.get(node, ()):
                    found.append(sorted(component))
    return found


def test_the_imports_close_no_circle() -> None:
    edges = {m: {i.target for i in _internal(IMPORTS[m]) if i.target in MODULES}
             for m in MODULES}
    circles = cycles(edges)
    lines = []
    for circle in circles:
        inside = set(circle)
        arrows = [str(i) for m in circle for i in _internal(IMPORTS[m]) if i.target in inside]
        lines.append(" ↔ ".join(circle) + ":\n  " + "\n  ".join(arrows))
    assert not circles, "import circles:\n" + "\n".join(lines)


def test_the_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_onnx_backend_reaches_torch_only_through_its_seam() -> None:
    """Outside verify.py the ONNX backend imports neither the torch backend nor torch
    itself; the torch backend imports nothing of the ONNX backend."""
    wrong = [str(i) for m, imports in IMPORTS.items() for i in imports
             if _in(m, ONNX_BACKEND) and m != ONNX_TO_TORCH_SEAM
             and (_in(i.target, TORCH_BACKEND) or i.target == "torch")]
    wrong += [str(i) for m, imports in IMPORTS.items() for i in imports
              if _in(m, TORCH_BACKEND) and _in(i.target, ONNX_BACKEND)]
    assert not wrong, (f"the backends import each other other than through "
                       f"{ONNX_TO_TORCH_SEAM}:\n" + "\n".join(wrong))


def test_below_the_backends_nothing_imports_torch_or_onnx_when_imported() -> None:
    """Static, for every module below the backends; tests/test_core.py checks the same
    at run time for the torch-free commands, in a fresh process each."""
    backends = next(i for i, (n, _) in enumerate(FLOORS) if n == "backends")
    heavy = [str(i) for m, imports in IMPORTS.items() if floor_of(m) < backends
             for i in imports if i.top_level and i.target in HEAVY]
    assert not heavy, "\n".join(heavy)


def test_the_reader_sees_every_form_of_import(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative imports, ``from netspec import x`` of a module and of a name, lazy and
    type-only imports: each read as an import of the right module."""
    source = tmp_path / "netspec" / "backends" / "onnx" / "probe.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from netspec import graph, build\n"
        "from . import wire\n"
        "from ..torch import layers\n"
        "from ...kinds import conv\n"
        "import torch\n"
        "if TYPE_CHECKING:\n"
        "    import onnx\n"
        "    from netspec.train.data import Data\n"
        "def f():\n"
        "    import onnxruntime\n"
        "    from netspec import cli\n")
    monkeypatch.setitem(MODULES, "netspec.backends.onnx.probe", source)
    got = {(i.target, i.top_level) for i in imports_of("netspec.backends.onnx.probe")}
    assert got == {("typing", True), ("netspec.graph", True), ("netspec", True),
                   ("netspec.backends.onnx.wire", True), ("netspec.backends.torch.layers", True),
                   ("netspec.kinds.conv", True), ("torch", True), ("onnx", False),
                   ("netspec.train.data", False), ("onnxruntime", False),
                   ("netspec.cli", False)}
