"""Images → input arrays, the same way for training (netspec/train/images.py) and for
``netspec run`` on an image: decode with Pillow, convert to the spec's channels
(grayscale or RGB), resize to the spec's input, scale to [0, 1], then optionally
subtract a per-channel mean and divide by a std. The recipe is recorded in the
checkpoint and the ONNX metadata (``netspec.preprocess``) so inference repeats it.

Torch-free; Pillow is the optional extra ``images``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import UsageError

PREPROCESS_KEY = "netspec.preprocess"
CLASS_NAMES_KEY = "netspec.class_names"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
INSTALL_HINT = "pip install 'netspec[images]'"
MODES = {1: "L", 3: "RGB"}


def require_pillow(what: str) -> None:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        raise UsageError(f"{what} needs Pillow, which is not installed: {INSTALL_HINT}"
                         ) from None


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and \
        not path.name.startswith(".")


@dataclass(frozen=True)
class Preprocess:
    channels: int
    height: int
    width: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def mode(self) -> str:
        return MODES[self.channels]

    def to_json(self) -> str:
        return json.dumps({"channels": self.channels, "size": [self.height, self.width],
                           "scale": "1/255", "mean": self.mean, "std": self.std},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocess:
        d = json.loads(text)
        mean, std = d.get("mean"), d.get("std")
        return cls(int(d["channels"]), int(d["size"][0]), int(d["size"][1]),
                   tuple(mean) if mean else None, tuple(std) if std else None)

    @classmethod
    def for_input(cls, shape: tuple[int, ...], name: str, mean: tuple[float, ...] | None = None,
                  std: tuple[float, ...] | None = None) -> Preprocess:
        """The recipe for a spec's [C, H, W] input; refuses other inputs in one line."""
        if len(shape) != 3 or shape[0] not in MODES:
            raise UsageError(f"spec '{name}' takes {list(shape)}; images need an input "
                             "[1, H, W] (grayscale) or [3, H, W] (RGB)")
        c = shape[0]
        for flag, v in (("--mean", mean), ("--std", std)):
            if v is not None and len(v) not in (1, c):
                raise UsageError(f"{flag}: {len(v)} values for {c} channel(s); give 1 or {c}")
        if std is not None and not all(s > 0 for s in std):
            raise UsageError("--std: every value must be above 0")
        return cls(c, shape[1], shape[2], _per_channel(mean, c), _per_channel(std, c))

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """[C, H, W] uint8 → float32 in [0, 1], then (x − mean) / std per channel."""
        out = x.astype(np.float32) / 255.0
        if self.mean is not None:
            out -= np.asarray(self.mean, dtype=np.float32)[:, None, None]
        if self.std is not None:
            out /= np.asarray(self.std, dtype=np.float32)[:, None, None]
        return out


def _per_channel(v: tuple[float, ...] | None, c: int) -> tuple[float, ...] | None:
    """One value for every channel, or a value per channel, as c floats."""
    return None if v is None else tuple(float(x) for x in v) * (c // len(v))


def open_image(path: str | Path, mode: str) -> Any:
    """The decoded image converted to ``mode`` ('L' or 'RGB'); a file Pillow cannot read
    or convert is a one-line UsageError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and
                                                    "transparency" in img.info):
                # flatten transparency onto black rather than dropping alpha unpremultiplied
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (0, 0, 0, 255))
                img = Image.alpha_composite(background, img)
            return img.convert(mode)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError) as e:
        raise UsageError(f"{path}: not a readable image ({e})") from None


def image_array(img: Any) -> np.ndarray:
    """A Pillow image as [C, H, W] uint8."""
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def load_for_inference(path: str | Path, pre: Preprocess) -> np.ndarray:
    """One image as the model's input [C, H, W] float32: converted, resized, scaled."""
    from PIL import Image

    img = open_image(path, pre.mode)
    if img.size != (pre.width, pre.height):
        img = img.resize((pre.width, pre.height), Image.Resampling.BILINEAR)
    return pre.normalize(image_array(img))
