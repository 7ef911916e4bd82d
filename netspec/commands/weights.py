"""``netspec weights import SPEC SOURCE -o OUT.safetensors [--write-map MAP.yaml]``:
pretrained weights from a state dict (.pth/.pt read with torch's restricted loader,
.safetensors, .npz) into a netspec weights file whose metadata carries the spec and its
vars, and the pairing as a --map file. How tensors are found and paired:
netspec/weights_import.py and netspec/weights_structure.py."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from netspec.commands.common import add_spec_args, load_graph
from netspec.errors import UsageError
from netspec.io import check_writable


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="import pretrained weights (state dicts) for a spec",
                       description="Weights files made elsewhere, for a spec.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = actions.add_parser(
        "import", help="a state dict (.pth/.pt, .safetensors, .npz) → OUT.safetensors",
        description="Read a state dict (at the top of the file or under state_dict, model, "
        "ema…; DDP's 'module.' prefixes removed; .pth/.pt through torch.load(weights_only="
        "True), which refuses pickled objects; an .npz bounded from its headers before it "
        "is inflated), pair its tensors with the spec's after the renames of --map — by "
        "name when every name matches; else by position from a file that keeps the order "
        "tensors registered in (.pth/.pt, .npz); else, from a .safetensors file, which "
        "keeps none, by structure: the one way the module paths, numbered modules and "
        "shapes fit the spec's layer order (refused, naming two tensors, where several "
        "fit and the names do not say which) — every shape checked, and write them with "
        "the spec and its vars in the metadata. Values are converted to float32 (said); "
        "NaN, infinity, values beyond float32 and integers float32 would round are "
        "refused.")
    add_spec_args(imp)
    imp.add_argument("source", metavar="SOURCE", help="the .pth/.pt, .safetensors or .npz")
    imp.add_argument("-o", "--output", metavar="OUT.safetensors",
                     help="the weights file to write (needed unless --write-map is given)")
    imp.add_argument("--map", metavar="FILE.yaml",
                     help="renames 'source name: spec name' (a key ending in '.' renames a "
                     "prefix), applied before pairing")
    imp.add_argument("--write-map", metavar="FILE.yaml",
                     help="write the pairing as a --map file (every source name: its spec "
                     "name) to check, edit and pass back with --map")
    imp.add_argument("--force", action="store_true", help="replace the outputs if they exist")
    imp.set_defaults(run=run_import)


def _outputs(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """The weights file and the --map file to write, each checked before any work."""
    if args.output is None and args.write_map is None:
        raise UsageError("weights import: give -o OUT.safetensors, --write-map FILE.yaml, "
                         "or both")
    inputs = [args.spec, args.source, args.map]
    out = check_writable(args.output, args.force, inputs=inputs) if args.output else None
    map_out = check_writable(args.write_map, args.force, inputs=inputs) \
        if args.write_map else None
    if out is not None and map_out is not None and \
            os.path.abspath(out) == os.path.abspath(map_out):
        raise UsageError(f"{out}: given as both -o and --write-map")
    return out, map_out


def run_import(args: argparse.Namespace) -> int:
    from netspec.io import atomic_write
    from netspec.weights import save_weights, spec_metadata
    from netspec.weights_import import import_metadata, map_text, pair, read_map, read_source

    out, map_out = _outputs(args)  # before any work
    graph = load_graph(args)
    renames = read_map(args.map) if args.map else None
    pairing = pair(graph, read_source(args.source), args.source, renames)
    for line in pairing.describe():
        print(line)
    if map_out is not None:
        atomic_write(map_out, map_text(pairing, args.source, graph).encode("utf-8"),
                     force=args.force)
        print(f"wrote {map_out} (the pairing as a --map file, {len(pairing.pairs)} names)")
    if out is not None:
        save_weights(out, pairing.tensors, {**spec_metadata(graph),
                                            **import_metadata(args.source, pairing)},
                     force=args.force)
        print(f"wrote {out} ({graph.name}, {len(pairing.tensors)} tensors)")
    return 0
