"""``netspec import SOURCE -o spec.yaml``: an existing network as a spec a person would
have written, proven equal to it before anything is written.

SOURCE: ``torchvision:NAME``, ``timm:NAME``, ``package.module:callable`` (a PyTorch
module, traced with torch.fx) or a ``.onnx`` file. How layers are recognised, and how the
structure is recovered: docs/architecture.md, "Import".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from netspec import __version__
from netspec.errors import UsageError
from netspec.io import atomic_write, check_writable
from netspec.resolve import MAX_DIM


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name, help="an existing network (torchvision, timm, your module, ONNX) → a spec",
        description="Read a PyTorch module (traced with torch.fx) or an ONNX file, map "
        "every operation to a netspec layer, recover its structure (blocks with args, "
        "repeats, residuals, branches, dense blocks, gates) and write a readable spec. "
        "Before anything is written, the spec is resolved and compared layer by layer "
        "with the source, its parameter count equals the source's, and the spec built "
        "with the source's weights computes the source's outputs. What netspec cannot "
        "express is refused, naming the module and the operation (exit 2).")
    p.add_argument("source", metavar="SOURCE",
                   help="torchvision:NAME, timm:NAME, package.module:callable, or FILE.onnx")
    p.add_argument("-o", "--output", required=True, metavar="SPEC.yaml")
    p.add_argument("--weights-out", metavar="W.safetensors",
                   help="also write the source's weights under the spec's names")
    p.add_argument("--input", metavar="C,H,W",
                   help="the input shape without the batch axis (default: the source's, "
                   "else 3,224,224)")
    p.add_argument("--name", help="the spec's name (default: the source's)")
    p.add_argument("--kw", metavar="JSON", default="{}",
                   help="keyword arguments for the constructor, as a JSON object "
                   "(e.g. '{\"num_classes\": 10}')")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest |spec − source| allowed on the outputs, relative to their "
                   "scale when above 1 (default 1e-4)")
    p.add_argument("--force", action="store_true", help="replace the outputs if they exist")
    p.set_defaults(run=run)


def _kw(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--kw: not JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(value, dict):
        raise UsageError("--kw: expected a JSON object, e.g. '{\"num_classes\": 10}'")
    return value


def _input(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise UsageError(f"--input {text}: expected C,H,W or F, e.g. 3,224,224") from None
    if len(dims) not in (1, 3) or not all(1 <= d <= MAX_DIM for d in dims):
        raise UsageError(f"--input {text}: expected 1 or 3 sizes from 1 to "
                         f"{MAX_DIM:,}, e.g. 3,224,224")
    return dims


def _header(origin: str, params: int) -> list[str]:
    return [f"Imported by netspec {__version__} from {origin}.",
            f"{params:,} parameters, as the source has; built with the source's weights "
            "this spec computed the",
            "source's outputs when it was written. Names of the source's modules are kept "
            "where they are names here."]


def run(args: argparse.Namespace) -> int:
    from netspec.importer.check import ImportBug

    out = check_writable(args.output, args.force, inputs=[args.source])
    weights_out = None
    if args.weights_out:
        if Path(args.weights_out) == Path(args.output):
            raise UsageError("--weights-out: the same file as -o")
        weights_out = check_writable(args.weights_out, args.force, inputs=[args.source])
    kw = _kw(args.kw)
    shape = _input(args.input)
    if args.tolerance is None or not 0 <= args.tolerance < float("inf"):
        raise UsageError(f"--tolerance {args.tolerance}: must be a finite number ≥ 0")
    if args.source.lower().endswith(".onnx"):
        if kw:
            raise UsageError("--kw: an ONNX file has no constructor")
        from netspec.backends.onnx.read import import_onnx
        imported, agreement = import_onnx(args.source, shape, args.name, str(out),
                                          _header, args.tolerance)
    else:
        imported, agreement = _import_torch(args, kw, shape, str(out))
    if not agreement.ok:
        raise ImportBug(f"the spec built with the source's weights differs from the source "
                        f"by {agreement.max_abs:.3g} (tolerance {agreement.tolerance:g}); "
                        "nothing written: this is a bug in netspec import")
    atomic_write(out, imported.text.encode("utf-8"), force=args.force)
    lines = len(imported.text.splitlines())
    c = imported.graph.params()
    print(f"{out}: {imported.graph.name}, {len(imported.graph.layers)} layers in "
          f"{lines} lines, {c.params:,} parameters (the source's); outputs equal the "
          f"source's (max |Δ| {agreement.max_abs:.2g})")
    if weights_out is not None:
        from netspec.weights import save_weights, spec_metadata
        save_weights(weights_out, imported.weights,
                     {**spec_metadata(imported.graph), "netspec.imported_from": args.source},
                     force=args.force)
        print(f"{weights_out}: the source's {len(imported.weights)} tensors under the "
              "spec's names")
    if imported.by_position:
        print("the spec registers the source's parameters in the source's order: its "
              "state dicts pair with it by position (netspec weights import)")
    return 0


def _import_torch(args: argparse.Namespace, kw: dict[str, Any], shape: tuple[int, ...] | None,
                  file: str) -> tuple[Any, Any]:
    from netspec.backends.torch.sources import DEFAULT_INPUT, compare_with_torch, torch_source
    from netspec.backends.torch.trace import flatten_module
    from netspec.importer.pipeline import spec_from_flat

    src = torch_source(args.source, kw)
    shape = shape or src.input_shape or DEFAULT_INPUT
    net = flatten_module(src.module, args.name or src.name, args.source, shape)
    total = sum(net.source_params.values())
    imported = spec_from_flat(net, _header(src.origin, total), file)
    return imported, compare_with_torch(src.module, imported.graph, imported.weights,
                                        args.tolerance)
