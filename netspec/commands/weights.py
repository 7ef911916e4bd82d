"""``netspec weights import SPEC SOURCE -o OUT.safetensors``: pretrained weights from a
state dict (.pth/.pt read with torch's restricted loader, .safetensors, .npz) into a
netspec weights file whose metadata carries the spec and its vars. How tensors are
found and paired: netspec/weights_import.py."""

from __future__ import annotations

import argparse

from netspec.commands.common import add_spec_args, load_graph
from netspec.io import check_writable


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="import pretrained weights (state dicts) for a spec",
                       description="Weights files made elsewhere, for a spec.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = actions.add_parser(
        "import", help="a state dict (.pth/.pt, .safetensors, .npz) → OUT.safetensors",
        description="Read a state dict (at the top of the file or under state_dict, model, "
        "ema…; DDP's 'module.' prefixes removed; .pth/.pt through torch.load(weights_only="
        "True), which refuses pickled objects), pair its tensors with the spec's — by name "
        "when every name matches, else by position with every shape checked, after the "
        "renames of --map — and write them with the spec and its vars in the metadata.")
    add_spec_args(imp)
    imp.add_argument("source", metavar="SOURCE", help="the .pth/.pt, .safetensors or .npz")
    imp.add_argument("-o", "--output", required=True, metavar="OUT.safetensors")
    imp.add_argument("--map", metavar="FILE.yaml",
                     help="renames 'source name: spec name' (a key ending in '.' renames a "
                     "prefix), applied before pairing")
    imp.add_argument("--force", action="store_true", help="replace the output if it exists")
    imp.set_defaults(run=run_import)


def run_import(args: argparse.Namespace) -> int:
    from netspec.weights import save_weights, spec_metadata
    from netspec.weights_import import import_metadata, pair, read_map, read_source

    out = check_writable(args.output, args.force,  # before any work
                         inputs=[args.spec, args.source, args.map])
    graph = load_graph(args)
    renames = read_map(args.map) if args.map else None
    source, found_at = read_source(args.source)
    pairing = pair(graph, source, args.source, renames, found_at)
    for line in pairing.describe():
        print(line)
    save_weights(out, pairing.tensors, {**spec_metadata(graph),
                                        **import_metadata(args.source, pairing)},
                 force=args.force)
    print(f"wrote {out} ({graph.name}, {len(pairing.tensors)} tensors)")
    return 0
