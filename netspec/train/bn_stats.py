"""Which BatchNorm statistics a checkpoint holds, and the pass that recomputes them.

Strategies (recorded in the checkpoint's ``netspec.bn_stats``):

- ``ema``: torch's running exponential average during training (the spec's momentum);
- ``epoch``: the plain average of the batch statistics over the last epoch — every
  BN gets momentum=None (torch's cumulative average) and its statistics reset as each
  epoch starts, so what is left at the end is the last epoch's average;

  with several processes each rank averages its own batches and the ranks' statistics
  are averaged after every epoch (distributed.average_buffers): for ``epoch`` that is the
  average over every batch of every rank, as all ranks run the same number of steps;
- ``calibrate-train`` / ``calibrate-heldout``: recomputed after training by
  :func:`calibrate` from the training or the held-out data;
- ``none``: the network has no BatchNorm.

Calibration is exact rather than an average of batch statistics. Averaging per-batch
statistics (momentum=None in train mode) gives the mean of batch means and the mean of
batch variances, which misses the spread between batches, and every upstream BN would
normalise with its batch's statistics instead of the ones inference uses. Instead the
whole model stays in eval mode (dropout off too) and each BN's input is accumulated
exactly — count, mean and sum of squared deviations per channel, merged across batches
in float64 (Chan et al.) — and BNs are done in stages: a BN is measured once every BN
upstream of it holds its final statistics. The result is the fixed point inference
sees: running the calibrated model in eval mode over the same data, each BN's input
has exactly the stored mean and (unbiased) variance. A stage's pass stops as soon as
its last BN has seen the batch, so the cost is about (BN depth) × half a forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from netspec.errors import UsageError
from netspec.graph import INPUT, Graph

BN_STATS_KEY = "netspec.bn_stats"
TRAIN_STRATEGIES = ("ema", "epoch")


def batchnorms(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """Every BatchNorm (SyncBatchNorm too) that keeps running statistics."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def start_epoch_average(model: nn.Module) -> None:
    """Make every BN average this epoch's batch statistics from scratch (``epoch``)."""
    for _, bn in batchnorms(model):
        bn.momentum = None  # torch's cumulative moving average: the plain mean of batches
        bn.reset_running_stats()


def stages(graph: Graph) -> list[list[str]]:
    """BatchNorm node names grouped by how many BNs lie upstream of them (longest
    path): stage k's inputs depend only on BNs of stages below k."""
    depth: dict[str, int] = {}  # BNs on the longest path up to and including the node
    out: dict[int, list[str]] = {}
    for node in graph:
        below = max((depth[i] for i in node.inputs), default=0) if node.op != INPUT else 0
        if node.args is not None and node.args.running_stats:
            out.setdefault(below, []).append(node.name)
            depth[node.name] = below + 1
        else:
            depth[node.name] = below
    return [out[k] for k in sorted(out)]


class _Stop(Exception):
    """Raised by the last BN of a stage: the rest of the forward pass is not needed."""


@dataclass
class _Moments:
    """Per-channel count, mean and sum of squared deviations, merged batch by batch."""

    n: int = 0
    mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        # channels are dim 1 for both [N, C, H, W] and [N, F]
        xs = x.detach().double().transpose(0, 1).reshape(x.shape[1], -1)
        nb = xs.shape[1]
        mb = xs.mean(1)
        m2b = (xs - mb[:, None]).pow(2).sum(1)
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        total = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / total)
        self.m2 = self.m2 + m2b + delta.pow(2) * (self.n * nb / total)
        self.n = total


def _measure(moments: _Moments, stop: bool) -> Callable[[nn.Module, tuple], None]:
    """A forward pre-hook adding the module's input to ``moments``; ``stop``: then end
    the forward pass (this is the stage's last BN)."""
    def hook(module: nn.Module, args: tuple) -> None:
        moments.add(args[0])
        if stop:
            raise _Stop
    return hook


@torch.no_grad()
def calibrate(model: nn.Module, graph: Graph,
              batches: Callable[[], Iterable[torch.Tensor]]) -> dict[str, int]:
    """Recompute every BN's running statistics from the inputs ``batches()`` yields
    (called once per stage; already on the model's device and memory format).
    No gradient, no parameter change. Returns {"passes", "samples"}."""
    was_training = model.training
    model.eval()  # inference behaviour everywhere: BN uses running stats, dropout is off
    mods = dict(model.named_modules())
    all_stages = stages(graph)
    # statistics of BNs not yet measured do not matter (nothing measured reads them),
    # but a fresh start makes a failed calibration obvious rather than half-old
    for names in all_stages:
        for name in names:
            mods[name].reset_running_stats()
    samples = 0
    try:
        for names in all_stages:
            moments = {name: _Moments() for name in names}
            last = names[-1]  # graph order is forward order
            handles = [mods[name].register_forward_pre_hook(
                _measure(moments[name], stop=name == last)) for name in names]
            batches_seen = 0
            try:
                samples = 0
                for x in batches():
                    try:
                        model(x)
                    except _Stop:
                        pass
                    batches_seen += 1
                    samples += x.shape[0]
            finally:
                for h in handles:
                    h.remove()
            for name in names:
                bn = mods[name]
                mom = moments[name]
                if mom.n < 2 or mom.mean is None or mom.m2 is None:
                    raise UsageError(f"calibration saw {mom.n} value(s) per channel at "
                                     f"{name}; at least 2 are needed")
                bn.running_mean.copy_(mom.mean.to(bn.running_mean.dtype))
                # unbiased, as torch stores it (train-mode BN keeps n/(n-1) · batch var)
                bn.running_var.copy_((mom.m2 / (mom.n - 1)).to(bn.running_var.dtype))
                if bn.num_batches_tracked is not None:
                    bn.num_batches_tracked.fill_(batches_seen)
    finally:
        model.train(was_training)
    return {"passes": len(all_stages), "samples": samples}
