"""``netspec run MODEL.onnx --input IMAGE|DIR``: classify images with the preprocessing
recorded in the model (``netspec.preprocess``, written when it was trained on an image
folder) and print each image's top classes by the names recorded at training
(``netspec.class_names``). A model without the record gets the default recipe for its
input (resize, scale to [0, 1]) and a note saying so. Torch-free."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from netspec.errors import UsageError
from netspec.io import save_arrays
from netspec.preprocess import (
    CLASS_NAMES_KEY,
    IMAGE_SUFFIXES,
    PREPROCESS_KEY,
    Preprocess,
    is_image,
    load_for_inference,
    require_pillow,
)

if TYPE_CHECKING:
    from netspec.backends.onnx.runner import OnnxRunner

#: rows (samples, images) `netspec run` prints before "… N more"
MAX_ROWS = 20


def is_image_input(path: str) -> bool:
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES


def image_files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if is_image(f))
        if not files:
            kinds = ", ".join(s[1:] for s in IMAGE_SUFFIXES)
            raise UsageError(f"{p}: no images ({kinds}) in this folder")
        return files
    if not p.is_file():
        raise UsageError(f"{p}: no such input file")
    return [p]


def recipe(meta: dict[str, str], input_shape: list[object], model: str
           ) -> tuple[Preprocess, bool]:
    """The recorded preprocessing, or the default one for the model's input (and False)."""
    if PREPROCESS_KEY in meta:
        try:
            return Preprocess.from_json(meta[PREPROCESS_KEY]), True
        except (ValueError, KeyError, TypeError, IndexError):
            raise UsageError(f"{model}: its {PREPROCESS_KEY} metadata is not readable"
                             ) from None
    dims = input_shape[1:]
    if len(dims) != 3 or not all(isinstance(d, int) for d in dims):
        raise UsageError(f"{model}: takes {input_shape}, not images [batch, C, H, W]")
    c, h, w = (int(d) for d in dims)  # type: ignore[call-overload]
    return Preprocess.for_input((c, h, w), model), False


def run_images(args: argparse.Namespace, out: Path | None) -> int:
    from netspec.backends.onnx.runner import OnnxRunner

    require_pillow("netspec run on images")
    files = image_files(args.input)
    runner = OnnxRunner(args.model)
    meta = dict(runner.session.get_modelmeta().custom_metadata_map)
    pre, recorded = recipe(meta, runner.input_shape, args.model)
    if not recorded:
        print("note: the model records no preprocessing (it was not trained on an image "
              "folder): images are resized and scaled to [0, 1]")
    names: list[str] | None = json.loads(meta[CLASS_NAMES_KEY]) if CLASS_NAMES_KEY in meta \
        else None
    x = np.stack([load_for_inference(f, pre) for f in files])
    y = runner(x)
    print(f"{len(files)} image(s) → output {list(y.shape)} ({runner.providers[0]})")
    if y.ndim == 2:
        top = max(1, min(getattr(args, "top", 3) or 3, y.shape[1]))
        e = np.exp(y - y.max(axis=1, keepdims=True))
        prob = e / e.sum(axis=1, keepdims=True)
        width = max(len(str(f)) for f in files[:MAX_ROWS])
        for i, f in enumerate(files[:MAX_ROWS]):
            best = np.argsort(-prob[i], kind="stable")[:top]
            shown = ", ".join(
                f"{names[k] if names and k < len(names) else k} {100 * prob[i, k]:.1f}%"
                for k in best)
            print(f"  {f!s:<{width}}  {shown}")
        if len(files) > MAX_ROWS:
            print(f"  … {len(files) - MAX_ROWS} more images")
    return save_and_time(runner, x, y, out, args.force, args.bench)


def save_and_time(runner: OnnxRunner, x: np.ndarray, y: np.ndarray | dict[str, np.ndarray],
                  out: Path | None, force: bool, bench: int) -> int:
    """The end of every `netspec run`: the outputs saved (one array, or an .npz of
    several), and ``bench`` timed runs of ``x``."""
    if out is not None:
        save_arrays(out, y, force=force)
        print(f"wrote {out}")
    if bench:
        print(runner.latency_text(x, bench))
    return 0
