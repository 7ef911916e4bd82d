"""Is the image-folder loader ever the bottleneck? Images/s of netspec's loader
(netspec/train/images.py: Pillow decode + convert + random-resized-crop + horizontal
flip + resize + scale, in DataLoader worker processes) against images/s of the training
step (forward, cross-entropy, backward, AdamW step) of the model it feeds, for the
digits CNN (8×8 grayscale, from 64×64 PNGs) and resnet18 at 224 (from 320×240 JPEGs).

The images are written first with Pillow into a temporary folder (random content: decode
cost does not depend on what is drawn much). The loader runs over every image once per
repetition (an epoch, with its persistent workers), twice: decoding every epoch
(``--cache-mb 0``), and with the decoded images kept in memory (the default), where the
first epoch includes decoding them once and later epochs only crop, flip and scale. The
step runs on random tensors already in memory. Medians over the repetitions.

    python bench/bench_images.py [--workers 2] [--images 256] [--repeats 3]
                                 [--device cpu|cuda] [--threads N] [--cache-mb 512]
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netspec  # noqa: E402
from netspec.preprocess import Preprocess  # noqa: E402
from netspec.train.images import ImageDataset, ImageOptions, ImageSplit, Sample  # noqa: E402

CASES = {
    # name: (spec, vars, source image size (w, h), format, training batch)
    "digits_cnn": ("specs/digits_cnn.yaml", {}, (64, 64), "png", 64),
    "resnet18": ("specs/resnet18.yaml", {"classes": 10}, (320, 240), "jpeg", 16),
}


def write_images(folder: Path, n: int, size: tuple[int, int], fmt: str) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        # smooth random content (noise would make JPEG decoding unrealistically slow)
        small = rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        img = Image.fromarray(small, "RGB").resize(size, Image.Resampling.BICUBIC)
        p = folder / f"{i}.{fmt}"
        img.save(p, quality=90) if fmt == "jpeg" else img.save(p)
        paths.append(p)
    return paths


def loader_rates(paths: list[Path], graph: netspec.Graph, workers: int, batch: int,
                 repeats: int, cache_mb: float) -> list[float]:
    """Images/s of each epoch (the first includes starting workers and any caching)."""
    pre = Preprocess.for_input(tuple(graph.input_shape), graph.name)
    options = ImageOptions(random_resized_crop=True, hflip=True, workers=workers)
    ds = ImageDataset([Sample(p, 0) for p in paths], pre, graph.output_shape[0], None,
                      options, seed=0)
    split = ImageSplit(ds, workers, cache_mb=cache_mb)
    rates = []
    for r in range(repeats + 1):
        start = time.perf_counter()
        n = sum(len(xb) for xb, _ in split.batches(torch.arange(len(paths)), batch, r,
                                                   torch.device("cpu")))
        rates.append(n / (time.perf_counter() - start))
    if cache_mb and ds.cache is None:
        sys.exit(f"the decoded images do not fit --cache-mb {cache_mb:g}")
    del split  # ends the persistent workers before the step is timed
    gc.collect()
    return rates


def step_rate(graph: netspec.Graph, batch: int, repeats: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = netspec.build(graph, device=device).train()
    opt = torch.optim.AdamW(netspec.param_groups(model, 0.05), lr=1e-3)
    x = torch.randn(batch, *graph.input_shape, device=device)
    y = torch.randint(0, graph.output_shape[0], (batch,), device=device)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    rates = []
    for _ in range(max(repeats, 5) * (4 if batch >= 64 else 1)):  # small steps: more
        start = time.perf_counter()
        step()
        rates.append(batch / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the step")
    ap.add_argument("--cache-mb", type=float, default=512)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"{platform.machine()} {platform.processor() or ''}, {torch.get_num_threads()} "
          f"torch threads, torch {torch.__version__}, device {device}, loader workers "
          f"{args.workers}")
    print("| model (input) | decoded every epoch | cached: 1st epoch | cached: later epochs "
          "| training step | cached / step |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as d:
        for name, (spec, vars, size, fmt, batch) in CASES.items():
            graph = netspec.load(ROOT / spec, **vars)
            folder = Path(d) / name
            folder.mkdir()
            paths = write_images(folder, args.images, size, fmt)
            stream = loader_rates(paths, graph, args.workers, batch, args.repeats, 0)
            cached = loader_rates(paths, graph, args.workers, batch, args.repeats,
                                  args.cache_mb)
            load = statistics.median(cached[1:])
            step = step_rate(graph, batch, args.repeats, device)
            shape = "×".join(str(s) for s in graph.input_shape)
            print(f"| {name} ({shape}, from {size[0]}×{size[1]} {fmt}, batch {batch}) | "
                  f"{statistics.median(stream[1:]):,.0f} | {cached[0]:,.0f} | {load:,.0f} | "
                  f"{step:,.0f} | {load / step:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
