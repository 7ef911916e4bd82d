"""``netspec calibrate spec.yaml --weights ckpt --data D -o ckpt2``: recompute every
BatchNorm's statistics from data, with no gradient step, and write a new checkpoint
recording which data they came from (``netspec.bn_stats``: calibrate-train or
calibrate-heldout). How and why: netspec/train/bn_stats.py."""

from __future__ import annotations

import argparse
import json

from netspec.commands.common import add_spec_args, load_graph, load_graph_for_weights
from netspec.commands.options import SEED, number
from netspec.errors import UsageError
from netspec.io import check_writable


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name, help="recompute BatchNorm statistics from data into a new checkpoint",
        description="Run the data through the trained model in eval mode (dropout off, "
        "no gradients, weights untouched) and set every BatchNorm's running mean and "
        "variance to the exact mean and unbiased variance of its input over the data, "
        "upstream BatchNorms already calibrated, as inference will see it. The held-out "
        "split is re-created from the checkpoint's record (seed, fraction) unless given.")
    add_spec_args(p)
    p.add_argument("--weights", required=True, metavar="CKPT.safetensors",
                   help="the trained checkpoint")
    p.add_argument("--data", required=True, metavar="digits|FILE.npz",
                   help="the data set, as for netspec train")
    p.add_argument("-o", "--output", required=True, metavar="OUT.safetensors")
    p.add_argument("--split", choices=("train", "heldout"),
                   help="which part of the data gives the statistics (default train; "
                   "heldout with --val-data)")
    p.add_argument("--val-data", metavar="FILE.npz",
                   help="the held-out data (then all of --data is the training split)")
    p.add_argument("--val-fraction", type=float,
                   help="held-out share of --data (default: the checkpoint's, else 0.2)")
    p.add_argument("--seed", type=number("--seed", int, **SEED),
                   help="seed of the held-out split (default: the checkpoint's, else 0)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="samples per forward pass (no effect on the result; default 256)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from netspec.train import distributed
    from netspec.train.checkpoint import DATA_KEY

    graph = load_graph(args)
    out = check_writable(args.output, force=args.force,
                         inputs=[args.spec, args.weights, args.data, args.val_data])
    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: must be 1 or more")
    if not any(n.args is not None and n.args.running_stats for n in graph.layers):
        raise UsageError(f"spec '{graph.name}' has no batch norm: nothing to calibrate")
    if distributed.env_world()[0] > 1:
        raise UsageError("calibrate runs in one process; start it without torchrun")

    from netspec.weights import load_weights

    tensors, meta = load_weights(args.weights)
    # the vars the checkpoint was trained with, when the spec is its own (a note says so)
    graph = load_graph_for_weights(args, tensors, meta, args.weights, graph)
    try:
        recorded = json.loads(meta.get(DATA_KEY, "{}"))
    except ValueError:
        recorded = {}
    split = args.split or ("heldout" if args.val_data else "train")
    val_fraction = args.val_fraction
    if val_fraction is None:
        # the split training made, so "train" means the samples it trained on
        same_data = recorded.get("data") == args.data and not args.val_data
        val_fraction = recorded.get("val_fraction", 0.2) if same_data else 0.2
    seed = args.seed if args.seed is not None else int(recorded.get("seed", 0))

    import torch

    from netspec.backends.torch import build, load_weights_into, state_dict_numpy
    from netspec.train.bn_stats import BN_STATS_KEY, calibrate
    from netspec.train.data import load_data
    from netspec.train.images import options_from_record
    from netspec.train.loop import evaluate_model, iter_batches, resolve_device, split_to_device
    from netspec.weights import save_weights, spec_metadata

    # an image folder: the preprocessing recorded at training, no augmentation
    data = load_data(graph, args.data, val_data=args.val_data, val_fraction=val_fraction,
                     seed=seed, images=options_from_record(recorded))
    source = data.train if split == "train" else data.heldout
    if hasattr(source, "as_arrays"):  # images decoded per batch: decode them once here
        source = source.as_arrays()
    if source is None:
        raise UsageError("--split heldout: there is no held-out data (--val-fraction is 0 "
                         "and no --val-data)")
    device = resolve_device(args.device)
    model = build(graph, device=device)
    load_weights_into(model, args.weights)

    held = split_to_device(data.heldout, device) if data.heldout is not None else None
    before = evaluate_model(model, held, graph, device) if held is not None else None
    x = torch.from_numpy(source.x)
    info = calibrate(model, graph, lambda: iter_batches(x, args.batch_size, device))
    after = evaluate_model(model, held, graph, device) if held is not None else None

    strategy = f"calibrate-{split}"
    record = {"split": split, "samples": info["samples"], "passes": info["passes"],
              "data": data.source, "previous": meta.get(BN_STATS_KEY, "unknown"),
              "heldout_before": before, "heldout_after": after}
    metadata = {**meta, **spec_metadata(graph), BN_STATS_KEY: strategy,
                "netspec.calibration": json.dumps(record, sort_keys=True)}
    save_weights(out, state_dict_numpy(model), metadata, force=args.force)

    print(f"calibrated {graph.name}'s batch norms on the {split} split of {args.data} "
          f"({info['samples']:,} samples, {info['passes']} passes)")
    if before is not None and after is not None:
        line = (f"held-out accuracy {100 * before['accuracy']:.2f}% → "
                f"{100 * after['accuracy']:.2f}%")
        if "miou" in after:
            line += f", mean IoU {before['miou']:.4f} → {after['miou']:.4f}"
        print(line)
    print(f"wrote {out} (BN statistics: {strategy})")
    return 0
