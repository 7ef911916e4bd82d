"""Segment circles and squares with the bundled U-Net: make a data set, train it with
`netspec train`, export it with `netspec export`, and check that onnxruntime's mean IoU
equals torch's on the held-out images.

    python examples/segmentation_unet.py [--quick]
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import netspec
from netspec.backends.torch import load_weights_into
from netspec.cli import main as netspec_main

QUICK = "--quick" in sys.argv
SIZE, N, EPOCHS, WIDTH = (32, 64, 2, 8) if QUICK else (64, 1000, 6, 16)
SETS = ["--set", f"size={SIZE}", "--set", "classes=3", "--set", f"width={WIDTH}"]


def shapes(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy RGB images with one circle (class 1) and one square (class 2) each."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, 3, size, size)).astype(np.float32)
    y = np.zeros((n, size, size), np.int64)
    rows, cols = np.mgrid[:size, :size]
    for i in range(n):
        r = rng.integers(size // 8, size // 4)
        cy, cx = rng.integers(r, size - r, 2)
        y[i][(rows - cy) ** 2 + (cols - cx) ** 2 <= r * r] = 1
        s = rng.integers(size // 8, size // 4)
        top, left = rng.integers(0, size - s, 2)
        y[i, top:top + s, left:left + s] = 2
        x[i] += (y[i] > 0) * rng.uniform(0.5, 1.0, (3, 1, 1)).astype(np.float32)
    return x, y


def mean_iou(pred: np.ndarray, y: np.ndarray, classes: int = 3) -> float:
    ious = [((pred == c) & (y == c)).sum() / ((pred == c) | (y == c)).sum()
            for c in range(classes) if ((pred == c) | (y == c)).any()]
    return float(np.mean(ious))


def netspec_cli(*args: str) -> None:
    """`netspec ARGS...`, run in this process as the shell would run it."""
    print("$ netspec", " ".join(args), flush=True)
    assert netspec_main(list(args)) == 0


spec = str(Path(__file__).resolve().parent.parent / "specs" / "unet.yaml")
with tempfile.TemporaryDirectory() as tmp:
    train, test = Path(tmp, "train.npz"), Path(tmp, "test.npz")
    x_train, y_train = shapes(N, SIZE, seed=0)
    np.savez(train, x=x_train, y=y_train)
    x_test, y_test = shapes(N // 4, SIZE, seed=1)
    np.savez(test, x=x_test, y=y_test)
    ckpt, onnx_file = Path(tmp, "unet.safetensors"), Path(tmp, "unet.onnx")

    netspec_cli("train", spec, *SETS, "--data", str(train), "--val-data", str(test),
                "--epochs", str(EPOCHS), "--batch-size", "16", "-o", str(ckpt))
    netspec_cli("export", spec, *SETS, "--weights", str(ckpt), "-o", str(onnx_file))

    model = netspec.build(spec, size=SIZE, classes=3, width=WIDTH).eval()
    load_weights_into(model, ckpt)
    with torch.no_grad():
        torch_pred = model(torch.from_numpy(x_test)).argmax(1).numpy()
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    ort_pred = session.run(None, {session.get_inputs()[0].name: x_test})[0].argmax(1)

    iou_torch, iou_ort = mean_iou(torch_pred, y_test), mean_iou(ort_pred, y_test)
    print(f"mean IoU on {len(x_test)} held-out images: torch {iou_torch:.4f}, "
          f"onnxruntime {iou_ort:.4f}; pixels that differ: {(torch_pred != ort_pred).sum()}")
    assert abs(iou_torch - iou_ort) < 1e-3, "onnxruntime disagrees with torch"
