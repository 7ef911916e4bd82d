"""Training and BN calibration for the torch backend (``netspec train`` / ``calibrate``).

One job per module, so each can be read and tested alone:

- data.py: the data sets (``digits``, ``.npz``), checked against the spec before any
  training starts, and the seeded held-out split;
- schedule.py: the learning rate per step (linear warm-up, then cosine);
- metrics.py: accuracy and mean IoU, as sums that add up across processes;
- bn_stats.py: which BatchNorm statistics a checkpoint holds (``ema``, ``epoch``) and
  the calibration pass that recomputes them;
- checkpoint.py: weights + metadata, and the resume state beside them (safetensors only);
- distributed.py: torchrun / DistributedDataParallel plumbing;
- progress.py: the progress bar and the per-epoch lines;
- loop.py: the ``Trainer`` that ties these together.

Importing ``netspec.train`` itself loads nothing heavy; the modules that need torch
import it themselves.
"""
