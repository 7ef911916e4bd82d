"""The training loop: the ``Trainer`` builds the model, steps through epochs, evaluates
on the held-out split after each, and writes checkpoints it can resume from exactly.

Exactness of ``--resume`` rests on four things, each kept in the state file or derived
from what is: the weights and BN buffers, the optimizer state, the step (the learning
rate is a function of it), and the RNG state (dropout). The data order needs no state:
DistributedSampler derives each epoch's shuffle from (seed, epoch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from netspec.backends.torch import build, load_weights_into, param_groups, state_dict_numpy
from netspec.backends.torch.device import resolve_device  # noqa: F401 (commands import it here)
from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.train import distributed
from netspec.train.bn_stats import batchnorms, start_epoch_average
from netspec.train.checkpoint import (
    EPOCH_KEY,
    METRICS_KEY,
    TrainState,
    checkpoint_metadata,
    load_state,
    save_checkpoint,
    save_state,
    state_path,
)
from netspec.train.data import Data, Split
from netspec.train.distributed import Dist
from netspec.train.finetune import freeze, load_pretrained, split_groups
from netspec.train.images import ImageSplit
from netspec.train.metrics import Tally
from netspec.train.progress import Progress, epoch_line
from netspec.train.schedule import lr_at, warmup_steps

#: defaults per optimizer: (lr, weight decay). AdamW's decay is decoupled, hence larger
OPTIMIZER_DEFAULTS: dict[str, tuple[float, float]] = {"sgd": (0.1, 5e-4),
                                                      "adamw": (3e-3, 0.05)}
#: data sets up to this size go onto the GPU once, instead of batch by batch
ON_DEVICE_BYTES = 1 << 30


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = OPTIMIZER_DEFAULTS["adamw"][0]
    weight_decay: float = OPTIMIZER_DEFAULTS["adamw"][1]
    momentum: float = 0.9  # SGD only (Nesterov)
    warmup_epochs: float = 1.0
    amp: str | None = None  # "bf16", "fp16" or None (float32)
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    bn_stats: str = "ema"
    sync_bn: bool = False
    #: fine-tuning (netspec/train/finetune.py): the pretrained file, the layer globs to
    #: freeze, the pretrained part's learning-rate factor, and (set when the file is
    #: read) the tensors that were freshly initialised
    pretrained: str | None = None
    freeze: tuple[str, ...] = ()
    pretrained_lr_scale: float = 1.0
    fresh: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_config(cfg: TrainConfig, graph: Graph, device: torch.device, world: int) -> None:
    """Settings that cannot work here, refused before anything is built."""
    if graph.task == "features":
        raise UsageError(f"spec '{graph.name}' is a feature extractor (task features, "
                         f"{len(graph.outputs)} output(s)): netspec train fits classifiers and "
                         "segmenters with cross-entropy; train it from Python with your own "
                         "loss (netspec.build gives the module)")
    if cfg.epochs < 1:
        raise UsageError(f"--epochs {cfg.epochs}: must be 1 or more")
    if cfg.batch_size < 1:
        raise UsageError(f"--batch-size {cfg.batch_size}: must be 1 or more")
    if cfg.batch_size % world:
        raise UsageError(f"--batch-size {cfg.batch_size} is the global batch and must divide "
                         f"evenly among the {world} processes")
    for flag, v in (("--lr", cfg.lr), ("--weight-decay", cfg.weight_decay),
                    ("--warmup-epochs", cfg.warmup_epochs),
                    ("--pretrained-lr-scale", cfg.pretrained_lr_scale)):
        if not math.isfinite(v):
            raise UsageError(f"{flag} {v}: must be a finite number")
    if not cfg.lr > 0:
        raise UsageError(f"--lr {cfg.lr}: must be above 0")
    if not cfg.weight_decay >= 0:
        raise UsageError(f"--weight-decay {cfg.weight_decay}: must be 0 or more")
    if cfg.channels_last and len(graph.input_shape) != 3:
        raise UsageError(f"--channels-last is for image inputs [C, H, W]; spec "
                         f"'{graph.name}' takes {list(graph.input_shape)}")
    if cfg.amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("--amp bf16: this GPU has no bfloat16; use --amp fp16")
    if cfg.sync_bn and world > 1 and device.type != "cuda":
        raise UsageError("--sync-bn needs GPUs (torch's SyncBatchNorm runs on CUDA only)")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)  # no decay on norm γ/δ and biases
    if cfg.pretrained is not None:
        groups = split_groups(model, groups, list(cfg.fresh), cfg.pretrained_lr_scale)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def split_to_device(split: Split, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as tensors where batches are cut from: on a GPU when it fits (one copy
    instead of one per batch), else on the host (pinned, so copies overlap compute)."""
    if not isinstance(split, Split):  # an ImageSplit: decoded batch by batch
        return split  # type: ignore[return-value]
    x, y = torch.from_numpy(split.x), torch.from_numpy(split.y)
    if device.type == "cuda":
        if x.nbytes + y.nbytes <= ON_DEVICE_BYTES:
            return x.to(device), y.to(device)
        return x.pin_memory(), y.pin_memory()
    return x, y


class Trainer:
    def __init__(self, graph: Graph, data: Data, cfg: TrainConfig, *,
                 device: torch.device | None = None, dist: Dist | None = None,
                 progress: Progress | None = None, output: str | Path | None = None,
                 resume: str | Path | None = None) -> None:
        self.graph = graph
        self.data = data
        self.cfg = cfg
        self.device = device or torch.device("cpu")
        self.dist = dist or Dist()
        self.progress = progress or Progress(enabled=False)
        self.output = Path(output) if output is not None else None
        self.segmentation = graph.task == "segmentation"
        self.classes = graph.output_shape[0]
        self.has_bn = any(n.args is not None and n.args.running_stats for n in graph.layers)
        check_config(cfg, graph, self.device, self.dist.world)

        # the same seed on every rank; DDP also broadcasts rank 0's weights to be sure
        torch.manual_seed(cfg.seed)
        model = build(graph, device=self.device)
        if cfg.sync_bn and self.dist.active:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        #: the plain module: state_dict names, evaluation, test hooks
        self.model: nn.Module = model
        self.frozen = freeze(model, graph, list(cfg.freeze)) if cfg.freeze else []
        if cfg.pretrained is not None and resume is None:
            loaded = load_pretrained(model, cfg.pretrained)
            cfg.fresh = tuple(loaded.fresh)  # recorded: --resume rebuilds the same groups
            for line in loaded.describe(cfg.pretrained):
                self.progress.print(line)
        if self.frozen:
            self.progress.print(f"frozen (no gradient steps): {', '.join(self.frozen)}")
        self.optimizer = make_optimizer(model, cfg)
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.amp == "fp16" else None
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps taken: the whole scheduler state
        self.metrics: dict[str, Any] = {}
        if resume is not None:
            self._resume(Path(resume))
        elif self.dist.active:
            # weights are identical (seeded above, broadcast by DDP); dropout masks
            # should differ between ranks, as they would for different samples
            torch.manual_seed(cfg.seed + 1 + self.dist.rank)

        # DDP after loading a resumed state: it broadcasts rank 0's weights on entry
        net = distributed.wrap_ddp(model, self.dist, self.device)
        #: what the training step calls: DDP and/or compiled around ``model``
        self.net: nn.Module = torch.compile(net) if cfg.compile else net

        self.per_rank_batch = cfg.batch_size // self.dist.world
        self._train = split_to_device(data.train, self.device)
        self._heldout = (split_to_device(data.heldout, self.device)
                         if data.heldout is not None else None)
        # drop_last=False pads each rank's share to the same length, so every rank runs
        # the same number of steps (DDP needs that); shuffling is seeded by (seed, epoch)
        self.sampler = DistributedSampler(range(len(data.train)), num_replicas=self.dist.world,
                                          rank=self.dist.rank, shuffle=True, seed=cfg.seed)
        per_rank = self.sampler.num_samples
        # a short last batch is dropped (BN statistics of a batch of 1 are undefined),
        # unless the data holds less than one batch
        self.steps_per_epoch = max(1, per_rank // self.per_rank_batch)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.warmup = warmup_steps(self.total_steps, self.steps_per_epoch, cfg.warmup_epochs)

    # ------------------------------------------------------------------ data
    def _batch(self, xy: tuple[torch.Tensor, torch.Tensor], idx: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = xy
        idx = idx.to(x.device)
        xb = x[idx].to(self.device, non_blocking=True)
        yb = y[idx].to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, yb

    def _epoch_batches(self, order: torch.Tensor
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's batches: cut from memory, or decoded by an ImageSplit's workers."""
        b = self.per_rank_batch
        if isinstance(self._train, ImageSplit):
            yield from self._train.batches(order[:self.steps_per_epoch * b], b, self.epoch,
                                           self.device, self.cfg.channels_last)
            return
        for i in range(self.steps_per_epoch):
            yield self._batch(self._train, order[i * b:(i + 1) * b])

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cfg.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # ------------------------------------------------------------------ steps
    def _set_lr(self) -> None:
        lr = lr_at(self.step, base_lr=self.cfg.lr, total_steps=self.total_steps,
                   warmup=self.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def _train_step(self, xb: torch.Tensor, yb: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._set_lr()
        with self._autocast():
            logits = self.net(xb)
        # the loss in float32 whatever the autocast dtype (a sum over many terms);
        # [N, K] vs [N] for classes, [N, K, H, W] vs [N, H, W] per pixel
        loss = F.cross_entropy(logits.float(), yb)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:  # fp16: scale the loss so small gradients survive
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.step += 1
        return logits, loss

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """This rank's sample indices for ``epoch``, in order."""
        self.sampler.set_epoch(epoch)
        return torch.tensor(list(iter(self.sampler)), dtype=torch.long)

    def train_epoch(self) -> tuple[dict[str, float], float, float]:
        """One epoch: (train metrics, images/s over all ranks, seconds)."""
        cfg = self.cfg
        if cfg.bn_stats == "epoch":
            start_epoch_average(self.model)
        self.model.train()
        order = self.epoch_order(self.epoch)
        tally = Tally(self.classes, segmentation=False, device=self.device)
        self.progress.start_epoch(self.epoch + 1, cfg.epochs, self.steps_per_epoch)
        start = time.perf_counter()
        seen = 0
        for i, (xb, yb) in enumerate(self._epoch_batches(order)):
            logits, loss = self._train_step(xb, yb)
            tally.add(logits, yb, loss)
            seen += xb.shape[0]
            if self.progress.wants_update():  # reading the loss waits for the device
                r = tally.result()
                rate = seen * self.dist.world / max(time.perf_counter() - start, 1e-9)
                self.progress.update(i + 1, r["loss"], r["accuracy"], rate)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        distributed.average_buffers(self.model, self.dist)  # one set of BN statistics
        distributed.all_reduce_sum(tally.tensors(), self.dist)
        self.epoch += 1
        return tally.result(), seen * self.dist.world / max(seconds, 1e-9), seconds

    def evaluate(self, split: Split | None = None) -> dict[str, float] | None:
        """Metrics over the held-out split (or ``split``); every rank takes part."""
        xy = self._heldout if split is None else split_to_device(split, self.device)
        if xy is None:
            return None
        return evaluate_model(self.model, xy, self.graph, self.device,
                              batch=max(self.per_rank_batch, 256), dist=self.dist,
                              autocast=self._autocast, channels_last=self.cfg.channels_last)

    # ------------------------------------------------------------------ runs
    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train up to ``cfg.epochs`` (or ``stop_after`` epochs in all, as if interrupted
        there: the schedule still spans cfg.epochs, and --resume continues), evaluating
        and saving after each epoch. Returns the last metrics."""
        last = self.cfg.epochs if stop_after is None else min(stop_after, self.cfg.epochs)
        saved_momentum = {name: bn.momentum for name, bn in batchnorms(self.model)}
        while self.epoch < last:
            train, rate, seconds = self.train_epoch()
            heldout = self.evaluate()
            self.metrics = {"epoch": self.epoch, "train": train, "heldout": heldout}
            self.progress.end_epoch(epoch_line(self.epoch, self.cfg.epochs, train, heldout,
                                               rate, seconds))
            if self.output is not None:
                self.save(self.output)
        # the spec's momentum again (``epoch`` set None): only matters to a caller that
        # keeps training the module; the statistics are what they are
        for name, bn in batchnorms(self.model):
            bn.momentum = saved_momentum[name]
        distributed.dump_rank_weights(state_dict_numpy(self.model), self.dist)
        return self.metrics

    @property
    def bn_stats(self) -> str:
        return self.cfg.bn_stats if self.has_bn else "none"

    def _rng_states(self) -> list[dict[str, torch.Tensor]]:
        mine = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            mine["cuda"] = torch.cuda.get_rng_state(self.device)
        gathered = {k: distributed.gather_equal(v, self.dist, self.device)
                    for k, v in mine.items()}
        return [{k: gathered[k][r] for k in mine} for r in range(self.dist.world)]

    def save(self, path: Path) -> None:
        """Write the checkpoint and its resume state (rank 0; every rank must call)."""
        rng = self._rng_states()  # a collective: every rank takes part
        if self.dist.main:
            config = {**self.cfg.to_dict(), "world": self.dist.world}
            save_state(state_path(path), TrainState(
                epoch=self.epoch, step=self.step, world=self.dist.world, config=config,
                optimizer=self.optimizer.state_dict(),
                scaler=self.scaler.state_dict() if self.scaler is not None else None,
                rng=rng, spec_sha256=self.graph.spec_sha256))
            meta = checkpoint_metadata(self.graph, epoch=self.epoch, metrics=self.metrics,
                                       bn_stats=self.bn_stats, data=self.data.source,
                                       train=config)
            save_checkpoint(path, state_dict_numpy(self.model), meta)
        distributed.barrier(self.dist)  # nobody reads the files before they exist

    def _resume(self, path: Path) -> None:
        st = load_state(state_path(path))
        meta = load_weights_into(self.model, path)  # checks names and shapes first
        if meta.get(EPOCH_KEY) != str(st.epoch):
            raise UsageError(f"{path}: weights are from epoch {meta.get(EPOCH_KEY)} but "
                             f"{state_path(path)} is from epoch {st.epoch}; they do not "
                             "belong together")
        if st.spec_sha256 and st.spec_sha256 != self.graph.spec_sha256 and self.dist.main:
            print(f"note: {path} was trained from a different text of the spec; its "
                  "tensors fit this one", file=sys.stderr)
        try:
            self.optimizer.load_state_dict(st.optimizer)
        except (ValueError, KeyError) as e:
            raise UsageError(f"{state_path(path)}: optimizer state does not fit ({e})"
                             ) from None
        if self.scaler is not None and st.scaler is not None:
            self.scaler.load_state_dict(st.scaler)
        self.epoch, self.step = st.epoch, st.step
        self.metrics = json.loads(meta.get(METRICS_KEY, "{}"))
        if st.world == self.dist.world and len(st.rng) > self.dist.rank:
            states = st.rng[self.dist.rank]
            torch.set_rng_state(states["torch"])
            if self.device.type == "cuda" and "cuda" in states:
                torch.cuda.set_rng_state(states["cuda"], self.device)
        else:
            # another number of processes: there is no saved stream for this rank, so
            # dropout continues from a fresh seed (weights and schedule are still exact)
            torch.manual_seed(self.cfg.seed + 1 + self.dist.rank + 1000 * st.epoch)
            if self.dist.main:
                print(f"note: resuming {st.world}-process state with {self.dist.world} "
                      "processes: the dropout random stream restarts", file=sys.stderr)


@torch.no_grad()
def evaluate_model(model: nn.Module, xy: tuple[torch.Tensor, torch.Tensor], graph: Graph,
                   device: torch.device, *, batch: int = 256, dist: Dist | None = None,
                   autocast: Any = contextlib.nullcontext, channels_last: bool = False
                   ) -> dict[str, float]:
    """Loss, accuracy (per pixel for segmentation) and mean IoU (segmentation) of
    ``model`` in eval mode. With several ranks each takes every W-th sample and the
    sums are added, so each sample counts exactly once."""
    d = dist or Dist()
    segmentation = graph.task == "segmentation"
    tally = Tally(graph.output_shape[0], segmentation=segmentation, device=device)
    x, y = xy
    mine = torch.arange(d.rank, len(x), d.world)  # rank r: r, r+W, r+2W, …
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(mine), batch):
            idx = mine[i:i + batch].to(x.device)
            xb = x[idx].to(device, non_blocking=True)
            yb = y[idx].to(device, non_blocking=True)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast():
                logits = model(xb)
            tally.add(logits, yb, F.cross_entropy(logits.float(), yb))
    finally:
        model.train(was_training)
    distributed.all_reduce_sum(tally.tensors(), d)
    return tally.result()


def iter_batches(x: torch.Tensor, batch: int, device: torch.device,
                 channels_last: bool = False) -> Iterator[torch.Tensor]:
    """Inputs in order, ``batch`` at a time, on ``device`` (for calibration)."""
    for i in range(0, len(x), batch):
        xb = x[i:i + batch].to(device, non_blocking=True)
        yield xb.contiguous(memory_format=torch.channels_last) if channels_last else xb
