"""``netspec train spec.yaml --data D --epochs N -o ckpt.safetensors``: train the torch
model of a spec, evaluating on a held-out split every epoch, and write a checkpoint
(safetensors, spec inside) that ``--resume`` continues exactly. Runs as it is on one
process, or under ``torchrun --nproc_per_node=N`` with DistributedDataParallel."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from netspec.commands.common import (
    add_allow_large,
    add_spec_args,
    check_size,
    load_graph,
    load_graph_for_weights,
)
from netspec.commands.options import SEED, number
from netspec.commands.train_args import (
    add_finetune_args,
    add_image_args,
    finetune_settings,
    image_options,
)
from netspec.errors import UsageError
from netspec.io import check_writable


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name, help="train the model on a data set and write a checkpoint",
        description="Train a spec's PyTorch model with cross-entropy (per pixel for "
        "segmentation), AdamW or SGD, a linear warm-up then a cosine schedule and no weight "
        "decay on norm scales/shifts or biases. Evaluates on a held-out split after every "
        "epoch (accuracy; mean IoU for segmentation) and writes the checkpoint after every "
        "epoch, with the resume state beside it as NAME.state.safetensors. Under torchrun "
        "with several processes it trains with DistributedDataParallel (NCCL on GPUs, gloo "
        "on CPUs); only rank 0 prints and writes.")
    add_spec_args(p)
    p.add_argument("--data", required=True, metavar="digits|FILE.npz|DIR",
                   help="'digits' (scikit-learn's 8×8 digits: pip install 'netspec[data]'), "
                   "an .npz with arrays x [N, *input] and y (class indices [N], or "
                   "[N, H, W] masks for segmentation), or an image folder: DIR/train/CLASS/*"
                   " and DIR/val/CLASS/* (or --val-split), or DIR/images/* + DIR/masks/* "
                   "for segmentation (pip install 'netspec[images]')")
    p.add_argument("--epochs", type=int, help="epochs in the whole run (with --resume: "
                   "default the resumed run's; a different number re-plans the schedule)")
    p.add_argument("-o", "--output", required=True, metavar="CKPT.safetensors")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: this process's GPU when CUDA is there, else the CPU")
    p.add_argument("--batch-size", type=int, help="global batch (split among processes; "
                   "default 64)")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), help="default adamw")
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-3 for adamw, "
                   "0.1 for sgd)")
    p.add_argument("--weight-decay", type=float,
                   help="default 0.05 for adamw, 5e-4 for sgd; never on norms and biases")
    p.add_argument("--warmup-epochs", type=float, help="linear warm-up length (default 1; "
                   "at most half the run)")
    p.add_argument("--amp", choices=("bf16", "fp16", "off"),
                   help="mixed precision (autocast; fp16 adds loss scaling); default off")
    p.add_argument("--channels-last", action="store_true",
                   help="NHWC memory format (faster convolutions on recent GPUs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=number("--seed", int, **SEED),
                   help="seeds weights, shuffling, dropout and the held-out split (default 0)")
    p.add_argument("--resume", metavar="CKPT.safetensors",
                   help="continue the run that wrote this checkpoint (and its .state file)")
    p.add_argument("--stop-after", type=int, metavar="EPOCHS",
                   help="stop once this many epochs are done in all, as an interruption "
                   "would; the schedule still spans --epochs and --resume continues")
    p.add_argument("--val-fraction", "--val-split", type=float,
                   help="share of --data held out for evaluation (seeded; default 0.2; "
                   "0: no evaluation)")
    p.add_argument("--val-data", metavar="FILE.npz",
                   help="evaluate on this data instead (all of --data is then for training)")
    p.add_argument("--bn-stats", choices=("ema", "epoch"),
                   help="BatchNorm statistics to keep: ema = the running exponential "
                   "average (default); epoch = the plain average over the last epoch")
    p.add_argument("--sync-bn", action="store_true",
                   help="with several GPUs: BatchNorm statistics over the global batch")
    p.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    add_allow_large(p)
    add_finetune_args(p)
    add_image_args(p)
    p.set_defaults(run=run)


#: TrainConfig field → (the flag's attribute, its default without --resume)
_FIXED_FLAGS: dict[str, tuple[str, Any]] = {
    "batch_size": ("batch_size", 64), "optimizer": ("optimizer", "adamw"),
    "lr": ("lr", None), "weight_decay": ("weight_decay", None),
    "warmup_epochs": ("warmup_epochs", 1.0), "amp": ("amp", None), "seed": ("seed", 0),
    "bn_stats": ("bn_stats", "ema"),
}


def _settings(args: argparse.Namespace, resumed: dict[str, Any] | None) -> dict[str, Any]:
    """The run's settings: the flags given, else the resumed run's, else the defaults.
    A resumed run keeps what shaped its trajectory; a flag that contradicts it is refused."""
    out: dict[str, Any] = {}
    for field, (attr, default) in _FIXED_FLAGS.items():
        given = getattr(args, attr)
        if resumed is not None:
            was = resumed.get(field)
            if given is not None and (None if given == "off" else given) != was:
                flag = "--" + attr.replace("_", "-")
                raise UsageError(f"{flag} {given}: the run being resumed used "
                                 f"{was if was is not None else 'off'}; a resumed run keeps "
                                 "its settings")
            out[field] = was
        else:
            out[field] = None if given == "off" else (default if given is None else given)
    from netspec.train.loop import OPTIMIZER_DEFAULTS

    lr, wd = OPTIMIZER_DEFAULTS[out["optimizer"]]
    out["lr"] = lr if out["lr"] is None else out["lr"]
    out["weight_decay"] = wd if out["weight_decay"] is None else out["weight_decay"]
    return out


def run(args: argparse.Namespace) -> int:
    graph = load_graph(args)
    # before torch allocates anything: the training step this run takes
    check_size(graph, args.allow_large, args.spec, batch=args.batch_size or 64,
               optimizer=args.optimizer or "adamw",
               precision="fp32" if args.amp in (None, "off") else "bf16")
    out = Path(args.output)
    resume = Path(args.resume) if args.resume else None
    in_place = resume is not None and out.resolve() == resume.resolve()
    # refuse before the slow part; continuing a run in its own checkpoint is no overwrite
    from netspec.train.checkpoint import DATA_KEY, state_path

    # the spec, the data and a fine-tuning start are never outputs; the run being
    # resumed is its own output (in_place) but never another file's
    inputs = [args.spec, args.data, args.val_data, args.weights]
    if resume is not None and not in_place:
        inputs += [resume, state_path(resume)]
    check_writable(out, force=args.force or in_place, inputs=inputs)
    check_writable(state_path(out), force=args.force or in_place, inputs=inputs)
    if args.stop_after is not None and args.stop_after < 1:
        raise UsageError(f"--stop-after {args.stop_after}: must be 1 or more")

    # torch only from here on: the other commands never load it
    from netspec.train import distributed
    from netspec.train.checkpoint import load_state
    from netspec.train.data import load_data
    from netspec.train.loop import TrainConfig, Trainer, resolve_device
    from netspec.train.progress import Progress
    from netspec.weights import load_weights

    resumed_cfg: dict[str, Any] = {}
    resumed_data: dict[str, Any] = {}
    if resume is not None:
        st = load_state(state_path(resume))
        resumed_cfg = st.config
        tensors, meta = load_weights(resume)
        resumed_data = json.loads(meta.get(DATA_KEY, "{}"))
        # the vars the run was started with, when the spec is the same (a note says so)
        graph = load_graph_for_weights(args, tensors, meta, str(resume), graph)
    elif args.epochs is None:
        raise UsageError("--epochs is required (unless --resume gives it)")
    settings = _settings(args, resumed_cfg if resume is not None else None)
    epochs = args.epochs if args.epochs is not None else int(resumed_cfg["epochs"])
    cfg = TrainConfig(epochs=epochs, channels_last=args.channels_last, compile=args.compile,
                      sync_bn=args.sync_bn, **settings,
                      **finetune_settings(args, resumed_cfg if resume is not None else None))

    # the held-out split is part of the run: a resumed run re-creates the same one
    val_fraction = args.val_fraction
    val_data = args.val_data
    if resume is not None and val_fraction is None and val_data is None:
        val_fraction = resumed_data.get("val_fraction")
        val_data = resumed_data.get("val_data")
    val_fraction = 0.2 if val_fraction is None else val_fraction

    _, _, local_rank = distributed.env_world()
    device = resolve_device(args.device, local_rank)
    # data problems are found identically on every rank, before the process group
    data = load_data(graph, args.data, val_data=val_data, val_fraction=val_fraction,
                     seed=cfg.seed, images=image_options(args, resumed_data))

    d = distributed.init(device)
    try:
        progress = Progress(enabled=d.main)
        start = time.perf_counter()
        trainer = Trainer(graph, data, cfg, device=device, dist=d, progress=progress,
                          output=out, resume=resume)
        params = sum(p.numel() for p in trainer.model.parameters())
        procs = f"{d.world} processes ({d.backend})" if d.active else "1 process"
        amp = f", {cfg.amp} autocast" if cfg.amp else ""
        progress.print(
            f"training {graph.name} ({params:,} parameters) on {device}, {procs}{amp}: "
            f"{data.describe()}")
        progress.print(
            f"{cfg.optimizer} lr {cfg.lr:g} weight decay {cfg.weight_decay:g}, batch "
            f"{cfg.batch_size}, {cfg.epochs} epoch{'s' * (cfg.epochs != 1)} of "
            f"{trainer.steps_per_epoch} steps "
            f"(warm-up {trainer.warmup}), BN statistics: {trainer.bn_stats}")
        if resume is not None:
            progress.print(f"resuming {resume} after epoch {trainer.epoch} "
                           f"(step {trainer.step})")
            if cfg.epochs != resumed_cfg["epochs"]:
                progress.print(f"note: {cfg.epochs} epochs instead of {resumed_cfg['epochs']}: "
                               "the learning-rate schedule is re-planned from here")
            if resumed_data.get("data", args.data) != args.data:
                progress.print(f"note: the resumed run trained on {resumed_data['data']}, "
                               f"this one on {args.data}")
        if trainer.epoch >= cfg.epochs:
            progress.print(f"the run is complete ({trainer.epoch} epochs); nothing to do")
            if not in_place:
                trainer.save(out)
            return 0
        metrics = trainer.fit(stop_after=args.stop_after)
        held = metrics.get("heldout")
        summary = ""
        if held:
            summary = f", held-out accuracy {100 * held['accuracy']:.2f}%"
            if "miou" in held:
                summary += f", mean IoU {held['miou']:.4f}"
        progress.print(f"saved {out} (epoch {trainer.epoch}/{cfg.epochs}{summary}, BN "
                       f"statistics: {trainer.bn_stats}) in "
                       f"{time.perf_counter() - start:.1f} s")
    finally:
        distributed.shutdown(d)
    return 0
