"""``netspec graph spec.yaml -o net.svg|net.png|net.dot|net.mmd``: draw a spec.

DOT and Mermaid are written by netspec (netspec/render.py, pure Python); SVG and PNG are
made from the DOT text by Graphviz's ``dot`` program, when it is installed."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from netspec.commands.common import add_spec_args, load_graph
from netspec.errors import UsageError
from netspec.io import atomic_write, check_writable

DOT_TIMEOUT_S = 120


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="draw the network: DOT, Mermaid, SVG or PNG",
                       description="Draw a spec's Graph: one box per layer (name, kind, "
                       "output shape, parameters), one edge per input (skips dashed), "
                       "scopes as clusters. .dot and .mmd are written by netspec; .svg and "
                       ".png need Graphviz's dot program.")
    add_spec_args(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE.{svg,png,dot,mmd}",
                   help="the picture; its extension picks the format")
    p.add_argument("--depth", type=int, default=None, metavar="N",
                   help="collapse scopes deeper than N into one box (0: top level only; "
                   "default: the deepest level that keeps the picture readable)")
    p.add_argument("--unfold", action="store_true",
                   help="draw every copy of a repeat and every layer of a dense block "
                   "(default: each drawn once, labelled with the count)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from netspec.render import FOLDED_KINDS, FORMATS, readable_depth, to_dot, to_mermaid

    out = Path(args.output)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UsageError(f"{out}: unknown picture format {out.suffix or '(none)'!r}; "
                         f"use one of {', '.join(sorted(FORMATS))}")
    if args.depth is not None and args.depth < 0:
        raise UsageError("--depth must be 0 or more")
    check_writable(out)
    dot = None
    if fmt in ("svg", "png"):
        dot = shutil.which("dot")
        if dot is None:
            raise UsageError(f"{out}: {fmt.upper()} needs Graphviz's 'dot' program, which "
                             "is not on PATH (apt-get install graphviz / brew install "
                             "graphviz); or write .dot or .mmd, which need nothing")
    graph = load_graph(args)
    fold = not args.unfold
    depth = args.depth if args.depth is not None else readable_depth(graph, fold)
    if fmt == "mermaid":
        atomic_write(out, to_mermaid(graph, depth, fold).encode("utf-8"))
    elif fmt == "dot":
        atomic_write(out, to_dot(graph, depth, fold).encode("utf-8"))
    else:
        assert dot is not None
        import subprocess  # here, not at the top: every command imports this module

        try:
            proc = subprocess.run([dot, f"-T{fmt}"], input=to_dot(graph, depth, fold).encode(),
                                  capture_output=True, timeout=DOT_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise UsageError(f"{out}: Graphviz dot took more than {DOT_TIMEOUT_S} s; try "
                             "--depth to draw fewer boxes, or write .dot") from None
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip().splitlines()
            raise UsageError(f"{out}: Graphviz dot failed (exit {proc.returncode}): "
                             f"{msg[-1] if msg else 'no message'}")
        atomic_write(out, proc.stdout)
    folds = fold and any(sc.kind in FOLDED_KINDS for sc in graph.scopes.values())
    notes = ["repeats and dense blocks drawn once (--unfold: all)"] if folds else []
    if args.depth is None and depth is not None:
        notes.append(f"scopes below depth {depth} collapsed (--depth N to choose)")
    print(f"wrote {out}" + (f": {'; '.join(notes)}" if notes else ""))
    return 0
