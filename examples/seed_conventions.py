"""Two conventions a spec makes explicit, side by side.

1. Dropout: `{drop: 0.2}` and `{keep: 0.8}` are the same layer (PyTorch's p drops, the
   classic papers' p keeps). `scaling: inverted` (PyTorch's) scales the kept values by
   1/keep while training and does nothing at inference; `scaling: classic` (the original
   paper's) trains with the bare mask and multiplies by keep at inference. Both give
   training and inference the same expected activation; only the place of the scaling
   differs — which matters when you port weights between the two.
2. BatchNorm statistics: four ways to get the running mean and variance inference uses,
   on the digits CNN, each with the held-out accuracy it gives.

    python examples/seed_conventions.py [--quick]
"""

import contextlib
import io
import re
import sys
import tempfile
from pathlib import Path

import torch

import netspec
from netspec.cli import main as netspec_main

QUICK = "--quick" in sys.argv
SPEC = str(Path(__file__).resolve().parent.parent / "specs" / "digits_cnn.yaml")

print("1. dropout on an input of ones (1,000,000 values)")
x = torch.ones(1, 1_000_000)
for option in ("drop: 0.2", "keep: 0.8"):
    for scaling in ("inverted", "classic"):
        layer = netspec.build(netspec.loads(
            f"netspec: 1\nname: d\ninput: [1000000]\n"
            f"layers: [{{dropout: {{{option}, scaling: {scaling}}}}}]"))
        torch.manual_seed(0)
        train = layer.train()(x)
        kept = train[train != 0]
        infer = layer.eval()(x)
        print(f"  {{{option}, scaling: {scaling:8}}}  train: mean {train.mean():.4f}, "
              f"kept values = {kept[0]:.3f}, zeros {(train == 0).float().mean():.1%} | "
              f"inference: every value = {infer[0, 0]:.3f}")

print("\n2. BatchNorm statistics on the digits CNN (held-out accuracy)")
epochs = "1" if QUICK else "2"   # short runs: where the strategies differ most


def netspec_cli(*args: str) -> str:
    """`netspec ARGS...` in this process (as the shell would run it), its output captured."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert netspec_main(list(args)) == 0, f"netspec {' '.join(args)} failed"
    return out.getvalue()


def accuracy(output: str) -> str:   # the last held-out accuracy the command printed
    return re.findall(r"held-out accuracy (?:[\d.]+% → )?([\d.]+%)", output)[-1]


with tempfile.TemporaryDirectory() as tmp:
    ema, epoch = Path(tmp, "ema.safetensors"), Path(tmp, "epoch.safetensors")
    train = ("train", SPEC, "--data", "digits", "--epochs", epochs, "--device", "cpu")
    results = {
        "ema (running average, default)": netspec_cli(*train, "-o", str(ema)),
        "epoch (average of the last epoch)": netspec_cli(*train, "--bn-stats", "epoch",
                                                         "-o", str(epoch)),
    }
    for split in ("train", "heldout"):
        results[f"calibrate-{split} (the ema run, recomputed)"] = netspec_cli(
            "calibrate", SPEC, "--weights", str(ema), "--data", "digits", "--split", split,
            "--device", "cpu", "-o", str(Path(tmp, f"{split}.safetensors")))
    for name, output in results.items():
        print(f"  {name:44} {accuracy(output):>7}")
print("(calibrate-heldout measures the statistics on the very data it is scored on: "
      "an optimistic number, shown for comparison)")
