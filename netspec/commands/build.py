"""``netspec build spec.yaml``: build the PyTorch model, check it is exactly the network
that was counted, run one forward pass, and optionally save its initial weights."""

from __future__ import annotations

import argparse
import time

from netspec.commands.common import add_spec_args, load_graph
from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.io import check_writable
from netspec.kinds import fmt_shape

#: Building a model larger than this at fp32 (parameters + buffers) needs --allow-large.
#: A fixed figure, not a share of this machine's RAM, so a spec gets the same verdict on
#: every machine (and in CI): 8 GB is ~2·10⁹ values, 14× the largest bundled spec
#: (vgg16_bn, 0.55 GB), and a build needs at least this much memory before its forward.
LARGE_MODEL_BYTES = 8 * 10**9


def add_allow_large(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-large", action="store_true",
                   help=f"build even when the weights need more than "
                   f"{LARGE_MODEL_BYTES / 1e9:g} GB at fp32")


def check_size(graph: Graph, allow_large: bool, source: str) -> None:
    """Refuse, before anything is allocated, a model too large to build by accident."""
    c = graph.params()
    need = 4 * (c.params + c.buffers)
    if need > LARGE_MODEL_BYTES and not allow_large:
        raise UsageError(
            f"{source}: spec '{graph.name}' has {c.params:,} parameters and {c.buffers:,} buffer "
            f"values: building it needs {need / 1e9:,.1f} GB at fp32 (limit "
            f"{LARGE_MODEL_BYTES / 1e9:g} GB); pass --allow-large to build it anyway")


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
    p.add_argument("--seed", type=int, default=0, help="torch seed for the initial weights")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    add_allow_large(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    graph = load_graph(args)
    check_size(graph, args.allow_large, args.spec)  # before torch allocates anything
    if args.output:
        check_writable(args.output, force=args.force)  # refuse before the slow part

    import torch  # only here: the other commands never load torch

    from netspec.backends.torch import build, state_dict_numpy
    from netspec.weights import save_weights, spec_metadata

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available here "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    device = torch.device("cuda" if args.device == "cuda" or (
        args.device == "auto" and torch.cuda.is_available()) else "cpu")

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    model = build(graph, device=device)
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
    want = (2, *graph.output_shape)
    if tuple(y.shape) != want:
        print(f"netspec: bug: output shape {list(y.shape)}, the spec says {list(want)}")
        return 1
    elapsed = time.perf_counter() - start

    print(f"{args.spec}: built {graph.name} — {params:,} parameters, {buffers:,} buffer "
          f"values, on {device}")
    print(f"forward [2, {fmt_shape(graph.input_shape)[1:]} → {fmt_shape(y.shape)} "
          f"in {elapsed:.2f} s (build + forward)")
    if args.output:
        save_weights(args.output, state_dict_numpy(model), spec_metadata(graph))
        print(f"saved initial weights (seed {args.seed}) to {args.output}")
    return 0
