"""``netspec graph spec.yaml -o net.svg|net.png|net.dot|net.mmd``: draw a spec.

DOT and Mermaid are written by netspec (netspec/render.py, pure Python); SVG and PNG are
made from the DOT text by Graphviz's ``dot`` program, when it is installed."""

from __future__ import annotations

import argparse
import shutil
import subprocess
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
                   help="collapse scopes deeper than N into one box (0: top level only)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from netspec.render import FORMATS, to_dot, to_mermaid

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
    if fmt == "mermaid":
        atomic_write(out, to_mermaid(graph, args.depth).encode("utf-8"))
    elif fmt == "dot":
        atomic_write(out, to_dot(graph, args.depth).encode("utf-8"))
    else:
        assert dot is not None
        try:
            proc = subprocess.run([dot, f"-T{fmt}"], input=to_dot(graph, args.depth).encode(),
                                  capture_output=True, timeout=DOT_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise UsageError(f"{out}: Graphviz dot took more than {DOT_TIMEOUT_S} s; try "
                             "--depth to draw fewer boxes, or write .dot") from None
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip().splitlines()
            raise UsageError(f"{out}: Graphviz dot failed (exit {proc.returncode}): "
                             f"{msg[-1] if msg else 'no message'}")
        atomic_write(out, proc.stdout)
    print(f"wrote {out}")
    return 0
