"""``netspec export spec.yaml -o model.onnx``: ONNX for onnxruntime, BatchNorm folded,
dropout gone, checked against torch."""

from __future__ import annotations

import argparse
import json
import sys

from netspec.commands.common import (
    add_allow_large,
    add_spec_args,
    check_size,
    load_graph,
    load_graph_for_weights,
)
from netspec.commands.export_deploy import (
    add_deploy_args,
    check_deploy_args,
    describe,
    export_model,
)
from netspec.commands.options import SEED, number
from netspec.io import atomic_write, check_writable


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name, help="export to ONNX (BatchNorm folded, dropout removed), checked against torch",
        description="Write an ONNX model for onnxruntime straight from the spec and its "
        "weights: every BatchNorm folded into a neighbouring conv/linear or into one "
        "per-channel Mul+Add, every dropout gone. The model passes onnx's full checker "
        "(structure, types and inferred shapes); "
        "unless --no-verify, onnxruntime and the torch module (eval mode) must agree on "
        "random inputs within --tolerance, else nothing is written (exit 1).")
    add_spec_args(p)
    p.add_argument("--weights", metavar="W.safetensors",
                   help="trained weights (safetensors; without them: torch's initialisation "
                   "for --seed, which imports torch)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.onnx")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default 17: onnxruntime ≥ 1.14; from 11 to the newest "
                   "the installed onnx knows)")
    p.add_argument("--tolerance", type=number("--tolerance", least=0.0), default=None,
                   help="largest |onnx − torch| allowed, relative to the output's scale when "
                   "that is above 1 (default 1e-4; 1e-2 with --precision fp16)")
    p.add_argument("--seed", type=number("--seed", int, **SEED), default=0,
                   help="seed of the initial weights (without --weights) and of the "
                   "verification inputs")
    p.add_argument("--report", action="store_true",
                   help="print where every BatchNorm and dropout went")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the onnxruntime-vs-torch comparison (with --weights, torch "
                   "is never imported); the ONNX checker still runs")
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    add_deploy_args(p)
    add_allow_large(p)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from netspec.backends.onnx.opset import DEFAULT_OPSET, check_opset

    out = check_writable(args.output, args.force,  # before any work
                         inputs=[args.spec, args.weights, args.calibration_data])
    opset = check_opset(DEFAULT_OPSET if args.opset is None else args.opset)
    graph = load_graph(args)
    if not args.weights or not args.no_verify:  # torch builds the model: refuse first
        check_size(graph, args.allow_large, args.spec)

    weights = metadata = None
    if args.weights:
        from netspec.weights import SHA_KEY, load_weights

        weights, metadata = load_weights(args.weights)
        # the vars the weights were made with, when the spec is theirs (a note says so)
        graph = load_graph_for_weights(args, weights, metadata, args.weights, graph)
        if metadata.get(SHA_KEY, graph.spec_sha256) != graph.spec_sha256:
            print(f"note: {args.weights} was saved from a different text of the spec "
                  f"(sha256 {metadata[SHA_KEY][:12]}…, this one {graph.spec_sha256[:12]}…); "
                  "the tensors match it", file=sys.stderr)

    checked = check_deploy_args(args, graph, opset, metadata)  # precision, size, data
    file, report, quant = export_model(args, checked, graph, weights, metadata, opset,
                                       args.tolerance)
    # the fp32/fp16 file is written from its pieces, never joined into one bytes object
    size = len(file) if isinstance(file, bytes) else file.size
    atomic_write(out, file if isinstance(file, bytes) else file.write, force=args.force)

    if args.format == "json":
        print(json.dumps({"output": str(out), "bytes": size, **report.to_dict(),
                          "int8": quant.to_dict() if quant else None}, indent=2))
        return 0
    print(f"{out}: {graph.name}, opset {opset}, {report.onnx_nodes} ONNX nodes, "
          f"{report.exported_params:,} weights ({report.params:,} in the spec), "
          f"{size / 1e6:.1f} MB")
    print(report.summary)
    for line in describe(report, quant, args.report):
        print(line)
    if args.report:
        width = max((len(e.layer) for e in report.folds), default=0)
        for e in report.folds:
            where = f"{e.action} into {e.into}" if e.into else e.action
            print(f"  {e.layer:<{width}}  {where}: {e.reason}")
    v = report.verification
    if v is None:
        print("not verified against torch (--no-verify)")
    else:
        batches = " and ".join(str(n) for n in v.batches)
        if len(v.sizes) > 1:
            batches += ", input " + " and ".join("×".join(map(str, s)) for s in v.sizes)
        fp = f"{report.precision} " if report.precision != "fp32" else ""
        fp = "fp32 (before quantization) " if report.precision == "int8" else fp
        print(f"onnxruntime {fp}vs torch (eval), batch {batches}: max abs diff {v.max_abs:.2g}, "
              f"max rel diff {v.max_rel:.2g} (tolerance {v.tolerance:g})")
    return 0
