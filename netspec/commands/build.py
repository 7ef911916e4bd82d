"""``netspec build spec.yaml``: build the PyTorch model, check it is exactly the network
that was counted, run one forward pass, and optionally save its initial weights."""

from __future__ import annotations

import argparse
import time

from netspec.commands.common import (
    add_allow_large,
    add_spec_args,
    check_size,
    load_graph,
    load_graph_for_weights,
)
from netspec.commands.options import SEED, number
from netspec.io import check_writable
from netspec.kinds import fmt_shape


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="build the PyTorch model and run one forward pass",
                       description="Build a spec's PyTorch model, check its parameter count "
                       "against the spec's, run a forward pass on a random batch of 2 and "
                       "optionally save the initialised weights (safetensors, spec inside).")
    add_spec_args(p)
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                   help="where to build and run (auto: cuda when available; default cpu)")
    p.add_argument("-o", "--output", metavar="FILE.safetensors",
                   help="save the initialised weights here")
    p.add_argument("--seed", type=number("--seed", int, **SEED), default=0,
                   help="torch seed for the initial weights")
    p.add_argument("--weights", metavar="W.safetensors",
                   help="load these weights before the forward pass (the vars they were "
                   "made with are used when the spec is theirs)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    add_allow_large(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    graph = load_graph(args)
    if args.weights:
        from netspec.weights import load_weights

        tensors, meta = load_weights(args.weights)
        graph = load_graph_for_weights(args, tensors, meta, args.weights, graph)
    check_size(graph, args.allow_large, args.spec)  # before torch allocates anything
    if args.output:
        # refuse before the slow part
        check_writable(args.output, force=args.force, inputs=[args.spec, args.weights])

    import torch  # only here: the other commands never load torch

    from netspec.backends.torch import build, load_weights_into, state_dict_numpy
    from netspec.backends.torch.device import resolve_device
    from netspec.weights import save_weights, spec_metadata

    device = resolve_device(args.device)

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    model = build(graph, device=device)
    if args.weights:
        load_weights_into(model, args.weights)
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for name, b in model.named_buffers()
                  if not name.endswith("num_batches_tracked"))
    counts = graph.params()
    if params != counts.params:  # the count is the spec's promise: a mismatch is our bug
        print(f"netspec: bug: built model has {params:,} parameters, "
              f"the spec counts {counts.params:,}")
        return 1

    model.eval()
    x = torch.randn(2, *graph.input_shape, device=device)
    with torch.no_grad():
        y = model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ys = y if isinstance(y, tuple) else (y,)  # a detector returns several outputs
    for out, shape in zip(ys, graph.output_shapes, strict=True):
        if tuple(out.shape) != (2, *shape):
            print(f"netspec: bug: output shape {list(out.shape)}, the spec says "
                  f"{[2, *shape]}")
            return 1
    elapsed = time.perf_counter() - start

    print(f"{args.spec}: built {graph.name} — {params:,} parameters, {buffers:,} buffer "
          f"values, on {device}")
    shown = ", ".join(fmt_shape(out.shape) for out in ys)
    print(f"forward [2, {fmt_shape(graph.input_shape)[1:]} → {shown} "
          f"in {elapsed:.2f} s (build + forward)")
    if args.output:
        save_weights(args.output, state_dict_numpy(model), spec_metadata(graph),
                     force=args.force)
        what = f"the weights of {args.weights}" if args.weights else \
            f"initial weights (seed {args.seed})"
        print(f"saved {what} to {args.output}")
    return 0
