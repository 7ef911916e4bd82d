"""Image folders as training data (``--data DIR``), decoded by Pillow in DataLoader
worker processes.

Classification: ``DIR/train/CLASS/*`` and ``DIR/val/CLASS/*`` (or a seeded
``--val-split`` of train when there is no val folder); classes are the folder names in
sorted order. Segmentation: ``DIR/images/NAME.*`` with ``DIR/masks/NAME.*`` (class
indices per pixel), held out by ``--val-split``. Everything a user can get wrong is
checked before training, in one line: empty class folders, unreadable images (the first
few named), images that cannot be converted to the spec's channels, masks whose size
differs from their image, and a class count that does not match the spec's output.

Training images are decoded once, before the first epoch, into memory as uint8 arrays
when they fit ``--cache-mb`` (resized already, unless a random crop is taken from the
full image), so each epoch only crops, flips and scales; over the budget they are
decoded every epoch. Either way random-resized-crop and horizontal flip are seeded by
(seed, epoch, sample), so runs repeat whatever the number of workers, cached or not.
The held-out split is decoded once into memory.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.preprocess import (
    DEEP_MODES,
    IMAGE_SUFFIXES,
    ImageRefused,
    Preprocess,
    image_array,
    is_image,
    open_image,
    opened,
    refusal,
    require_pillow,
)
from netspec.train.splits import Data, Split, heldout_indices

#: unreadable files named in the error before "and N more"
SHOWN = 3
#: random-resized-crop: share of the area and aspect ratios (torchvision's defaults)
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class ImageOptions:
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    random_resized_crop: bool = False
    hflip: bool = False
    workers: int = 2
    #: decoded training images are kept in memory up to this many MiB (0: never)
    cache_mb: float = 512


@dataclass(frozen=True)
class Sample:
    image: Path
    #: the class index (classification) or the mask file (segmentation)
    target: int | Path


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image(p))


def _names(paths: list[Path]) -> str:
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(str(p) for p in paths[:SHOWN]) + more


def _check_readable(paths: list[Path], mode: str) -> None:
    """Every file decodes, whole, as training will decode it, into ``mode``: else one
    line naming the first few that do not, grouped by what is wrong with them. (Pillow's
    verify() reads no JPEG data: a truncated JPEG passed it and failed in the first
    epoch. A JPEG is decoded here at an eighth of its size, which still reads it all.)"""
    refused: dict[str, list[Path]] = {}
    for p in paths:
        try:
            open_image(p, mode, draft=True)
        except ImageRefused as e:
            refused.setdefault(e.kind, []).append(p)
    if refused:
        raise UsageError("; ".join(f"{len(bad)} {refusal(kind, mode)[1]}: {_names(bad)}"
                                   for kind, bad in refused.items()))


def _class_folders(root: Path, known: list[str] | None) -> tuple[list[str], list[Sample]]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UsageError(f"{root}: no class folders (expected {root}/CLASS/IMAGE)")
    empty = [f for f in folders if not _list_images(f)]
    if empty:
        kinds = ", ".join(s[1:] for s in IMAGE_SUFFIXES)
        raise UsageError(f"empty class folder(s), no {kinds} images: {_names(empty)}")
    names = [f.name for f in folders]
    if known is not None:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"{root}: class folder(s) {', '.join(unknown)} are not among "
                             f"the training classes ({', '.join(known)})")
    index = {n: i for i, n in enumerate(known if known is not None else names)}
    samples = [Sample(p, index[f.name]) for f in folders for p in _list_images(f)]
    return names, samples


def _segmentation_pairs(root: Path) -> list[Sample]:
    images, masks = root / "images", root / "masks"
    by_stem = {p.stem: p for p in _list_images(masks)}
    pics = _list_images(images)
    if not pics:
        raise UsageError(f"{images}: no images")
    lonely = [p for p in pics if p.stem not in by_stem]
    if lonely:
        raise UsageError(f"image(s) without a mask of the same name in {masks}: "
                         f"{_names(lonely)}")
    return [Sample(p, by_stem[p.stem]) for p in pics]


def _check_mask_sizes(samples: list[Sample]) -> None:
    wrong = []
    for s in samples:
        assert isinstance(s.target, Path)
        with opened(s.image) as a, opened(s.target) as b:
            if a.size != b.size:
                wrong.append(f"{s.target} {b.size[0]}×{b.size[1]} (image {a.size[0]}×"
                             f"{a.size[1]})")
    if wrong:
        more = f" and {len(wrong) - SHOWN} more" if len(wrong) > SHOWN else ""
        raise UsageError(f"mask size differs from its image: {', '.join(wrong[:SHOWN])}{more}")


def _random_box(rng: np.random.Generator, w: int, h: int) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (left, top, right, bottom)."""
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return left, top, left + cw, top + ch
    side = min(w, h)  # fall back to the central square
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


class ImageDataset(Dataset):
    """Sample ``i`` → (input [C, H, W] float32, class index or mask [H, W] int64)."""

    def __init__(self, samples: list[Sample], pre: Preprocess, classes: int,
                 mask_size: tuple[int, int] | None, augment: ImageOptions | None,
                 seed: int) -> None:
        self.samples = samples
        self.pre = pre
        self.classes = classes
        self.mask_size = mask_size  # (H, W) of the output, for segmentation
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        #: a random crop is taken from the full image, so the resize waits for its box
        self.crops = augment is not None and augment.random_resized_crop
        #: sample i as arrays (image [H, W(, C)] uint8 or [H, W] float32 for a 16-bit
        #: one, mask [H, W] or None): _load's
        #: output, filled by ImageSplit when it fits --cache-mb
        self.cache: list[tuple[np.ndarray, np.ndarray | None]] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, i: int) -> tuple[Any, Any]:
        """Sample ``i`` decoded and converted (the mask: class indices), and resized
        already when no random crop follows: everything that is the same every epoch."""
        from PIL import Image

        s = self.samples[i]
        img = open_image(s.image, self.pre.mode)
        mask = None
        if isinstance(s.target, Path):
            with opened(s.target) as m:
                m.load()
                # class indices: a 16-bit mask as 32-bit integers, never clipped to 8
                mask = (m if m.mode in ("L", "P", "I") else
                        m.convert("I") if m.mode in DEEP_MODES else m.convert("L"))
        if not self.crops:
            img = img.resize((self.pre.width, self.pre.height), Image.Resampling.BILINEAR)
            if mask is not None and self.mask_size is not None:
                mask = mask.resize(self.mask_size[::-1], Image.Resampling.NEAREST)
        return img, mask

    def decoded_bytes(self) -> int:
        """The memory the cache takes (images at their own size when cropped at random;
        a 16-bit one as one float32 channel)."""
        c, h, w = self.pre.channels, self.pre.height, self.pre.width
        total = 0
        for s in self.samples:
            with opened(s.image) as im:
                per = 4 if im.mode in DEEP_MODES else c
                if self.crops:
                    w, h = im.size
            total += per * h * w
            if isinstance(s.target, Path):
                with opened(s.target) as m:
                    per = 4 if m.mode.startswith("I") else 1
                mh, mw = (h, w) if self.crops else (self.mask_size or (h, w))
                total += per * mh * mw
        return total

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``key``: a sample index, or (index, epoch) from an ImageSplit's sampler."""
        from PIL import Image

        i, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        s = self.samples[i]
        if self.cache is not None:
            a, m = self.cache[i]
            img, mask = Image.fromarray(a), None if m is None else Image.fromarray(m)
        else:
            img, mask = self._load(i)
        box = None
        flip = False
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, epoch, i))
            if self.augment.random_resized_crop:
                box = _random_box(rng, *img.size)
            flip = self.augment.hflip and bool(rng.random() < 0.5)
        if self.crops:
            img = img.resize((self.pre.width, self.pre.height), Image.Resampling.BILINEAR,
                             box=box)
        if flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(self.pre.normalize(image_array(img)))
        if mask is None:
            assert isinstance(s.target, int)
            return x, torch.tensor(s.target, dtype=torch.int64)
        assert self.mask_size is not None
        if self.crops:
            mask = mask.resize(self.mask_size[::-1], Image.Resampling.NEAREST, box=box)
        if flip:
            mask = mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        y = np.asarray(mask).astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= self.classes):
            bad = int(y.max() if y.max() >= self.classes else y.min())
            raise UsageError(f"{s.target}: mask value {bad} is outside 0…{self.classes - 1} "
                             f"(the spec has {self.classes} classes)")
        return x, torch.from_numpy(y)


def _worker_error(e: Exception) -> UsageError:
    """A UsageError raised in a worker comes back with the worker's traceback in its
    text: keep the one line that says what was wrong."""
    # the raw text: str() of a UsageError escapes its line breaks (one error, one line),
    # which left a literal backslash-n, the traceback's last line break, at its end
    text = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else str(e)
    return UsageError(last.split("UsageError: ", 1)[-1])


class _Order:
    """The sampler of a persistent DataLoader: this epoch's (index, epoch) keys, set by
    the main process before each pass (workers receive the keys, so they need no state)."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class _Decode(Dataset):
    """What the cache keeps of sample i, as arrays (decoded in parallel by workers)."""

    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        img, mask = self.dataset._load(i)
        return np.asarray(img), None if mask is None else np.asarray(mask)


def _as_list(items: list[Any]) -> list[Any]:
    return items


class ImageSplit:
    """A split of image files: ``batches`` for training, ``as_arrays`` for evaluation
    and calibration. Before the first batch the images are decoded once into memory if
    they fit ``cache_mb``. The worker processes persist from epoch to epoch (starting
    them costs about as much as decoding a few hundred small images)."""

    def __init__(self, dataset: ImageDataset, workers: int, persistent: bool = True,
                 cache_mb: float = 0) -> None:
        self.dataset = dataset
        self.workers = workers
        self.persistent = persistent and workers > 0
        self.cache_mb = cache_mb
        self._loaders: dict[tuple[int, bool], tuple[DataLoader, _Order]] = {}

    def fill_cache(self) -> None:
        """Decode every image once (in the workers) into the dataset's cache, if the
        arrays fit ``cache_mb``; else say so in one line and decode them every epoch."""
        d, budget = self.dataset, self.cache_mb
        self.cache_mb = 0  # decided once
        if budget <= 0 or d.cache is not None:
            return
        need = d.decoded_bytes()
        if need > budget * 2**20:
            print(f"note: the decoded training images take {need / 2**20:,.3g} MiB, over "
                  f"--cache-mb {budget:g}: decoding them every epoch instead",
                  file=sys.stderr)
            return
        # its own generator: the workers' seed is not drawn from torch's global one
        loader = DataLoader(_Decode(d), batch_size=32, num_workers=self.workers,
                            collate_fn=_as_list, generator=torch.Generator())
        try:
            d.cache = [item for part in loader for item in part]
        except UsageError as e:
            raise _worker_error(e) from None

    def __len__(self) -> int:
        return len(self.dataset)

    def _loader(self, batch: int, pin: bool) -> tuple[DataLoader, _Order]:
        if (batch, pin) not in self._loaders:
            order = _Order()
            loader = DataLoader(self.dataset, batch_size=batch, sampler=order,
                                num_workers=self.workers, pin_memory=pin, drop_last=False,
                                persistent_workers=self.persistent)
            self._loaders[batch, pin] = (loader, order)
        return self._loaders[batch, pin]

    def batches(self, order: torch.Tensor, batch: int, epoch: int, device: torch.device,
                channels_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.fill_cache()  # before the workers start, so that they share it
        loader, keys = self._loader(batch, device.type == "cuda")
        keys.keys = [(int(i), epoch) for i in order.tolist()]
        try:
            for xb, yb in loader:
                xb = xb.to(device, non_blocking=True)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                yield xb, yb.to(device, non_blocking=True)
        except UsageError as e:
            raise _worker_error(e) from None

    def as_arrays(self, batch: int = 64) -> Split:
        """Every sample decoded once, without augmentation, into memory."""
        d = self.dataset
        plain = ImageSplit(ImageDataset(d.samples, d.pre, d.classes, d.mask_size, None,
                                        d.seed), self.workers, persistent=False)
        order = torch.arange(len(d))
        xs, ys = zip(*plain.batches(order, batch, 0, torch.device("cpu")), strict=True)
        return Split(torch.cat(xs).numpy(), torch.cat(ys).numpy())


def options_from_record(record: dict[str, Any]) -> ImageOptions:
    """The preprocessing a checkpoint's data record says training used, without
    augmentation (for calibration); the defaults when it records none."""
    pre = record.get("preprocess")
    if not pre:
        return ImageOptions()
    d = json.loads(pre)
    return ImageOptions(mean=tuple(d["mean"]) if d.get("mean") else None,
                        std=tuple(d["std"]) if d.get("std") else None)


def _classes_hint(graph: Graph, n: int) -> str:
    return f": pass --set classes={n}" if "classes" in graph.vars else ""


def load_image_data(graph: Graph, root: str | Path, options: ImageOptions, *,
                    val_fraction: float, seed: int) -> Data:
    """The splits of an image folder, every check done before anything is trained."""
    require_pillow(f"--data {root}")
    r = Path(root)
    pre = Preprocess.for_input(tuple(graph.input_shape), graph.name, options.mean,
                               options.std)
    if options.workers < 0:
        raise UsageError(f"--workers {options.workers}: must be 0 or more")
    if not options.cache_mb >= 0:
        raise UsageError(f"--cache-mb {options.cache_mb:g}: must be 0 or more")
    classes = graph.output_shape[0]
    segmentation = graph.task == "segmentation"
    val_samples: list[Sample] | None = None
    if segmentation:
        if not ((r / "images").is_dir() and (r / "masks").is_dir()):
            raise UsageError(f"{r}: segmentation data is {r}/images/NAME.png with "
                             f"{r}/masks/NAME.png (class index per pixel)")
        samples = _segmentation_pairs(r)
        names = [str(i) for i in range(classes)]
        _check_readable([s.image for s in samples], pre.mode)
        _check_readable([s.target for s in samples if isinstance(s.target, Path)], "L")
        _check_mask_sizes(samples)
        mask_size: tuple[int, int] | None = (graph.output_shape[1], graph.output_shape[2])
    else:
        if not (r / "train").is_dir():
            raise UsageError(f"{r}: an image folder holds {r}/train/CLASS/IMAGE (and "
                             f"optionally {r}/val/CLASS/IMAGE), or images/ + masks/ for "
                             "segmentation")
        names, samples = _class_folders(r / "train", None)
        if len(names) != classes:
            raise UsageError(f"{r}/train has {len(names)} class folders ({', '.join(names)}) "
                             f"but spec '{graph.name}' has {classes} outputs"
                             f"{_classes_hint(graph, len(names))}")
        if (r / "val").is_dir():
            _, val_samples = _class_folders(r / "val", names)
        _check_readable([s.image for s in samples + (val_samples or [])], pre.mode)
        mask_size = None

    source: dict[str, Any] = {
        "data": str(root), "val_data": None, "val_fraction": val_fraction, "seed": seed,
        "images": len(samples), "preprocess": pre.to_json(), "class_names": names,
        "augment": {"random_resized_crop": options.random_resized_crop,
                    "hflip": options.hflip}}
    if val_samples is None and val_fraction > 0:
        train, val = heldout_indices(len(samples), val_fraction, seed, "--val-split",
                                     "images")
        val_samples = [samples[i] for i in val]
        samples = [samples[i] for i in train]
    elif val_samples is not None:
        source["val_folder"] = str(r / "val")  # found again from --data on resume
        source["val_fraction"] = 0.0
    if len(samples) < 2:
        raise UsageError(f"{r}: {len(samples)} training image(s); training needs at least 2")

    augment = options if (options.random_resized_crop or options.hflip) else None
    train = ImageSplit(ImageDataset(samples, pre, classes, mask_size, augment, seed),
                       options.workers, cache_mb=options.cache_mb)
    heldout = None
    if val_samples:
        heldout = ImageSplit(ImageDataset(val_samples, pre, classes, mask_size, None, seed),
                             options.workers).as_arrays()
    return Data(train, heldout, source)  # type: ignore[arg-type]
