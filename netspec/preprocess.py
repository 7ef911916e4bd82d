"""Images → input arrays, the same way for training (netspec/train/images.py) and for
``netspec run`` on an image: decode with Pillow, convert to the spec's channels
(grayscale or RGB), resize to the spec's input, scale to [0, 1], then optionally
subtract a per-channel mean and divide by a std. The recipe is recorded in the
checkpoint and the ONNX metadata (``netspec.preprocess``) so inference repeats it.

Torch-free; Pillow is the optional extra ``images``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
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
        """[C, H, W] uint8 → float32 in [0, 1] (a 16-bit image comes as float32 in
        [0, 1] already, one channel: repeated for RGB), then (x − mean) / std."""
        out = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        if out.shape[0] != self.channels:
            out = np.repeat(out, self.channels, axis=0)
        if self.mean is not None:
            out -= np.asarray(self.mean, dtype=np.float32)[:, None, None]
        if self.std is not None:
            out /= np.asarray(self.std, dtype=np.float32)[:, None, None]
        return out


def _per_channel(v: tuple[float, ...] | None, c: int) -> tuple[float, ...] | None:
    """One value for every channel, or a value per channel, as c floats."""
    return None if v is None else tuple(float(x) for x in v) * (c // len(v))


#: Pillow's modes of 16-bit greyscale, and "I" (32-bit), which Pillow before 12 opens a
#: 16-bit PNG as: read as value / 65535 (an "I" value outside 0…65535 is refused)
DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
DEEP_MAX = 65535


class ImageRefused(UsageError):
    """One image netspec will not use. ``kind`` groups files refused for the same reason
    (``refusal``), so a folder's check can name them together. (A message alone makes
    one too: torch's DataLoader rebuilds a worker's exception from its text.)"""

    def __init__(self, message: str, kind: str = "unreadable") -> None:
        super().__init__(message)
        self.kind = kind

    @classmethod
    def of(cls, path: str | Path, kind: str, detail: str = "", mode: str = "") -> ImageRefused:
        return cls(f"{path}: {refusal(kind, mode)[0]}" + (f" ({detail})" if detail else ""),
                   kind)


def refusal(kind: str, mode: str = "") -> tuple[str, str]:
    """What is wrong, said of one image and of several: (after 'PATH: ', after 'N ')."""
    from PIL import Image

    limit = f"{Image.MAX_IMAGE_PIXELS:,}" if Image.MAX_IMAGE_PIXELS else "its limit"
    bomb = ("Pillow's guard against decompression bombs; netspec decodes no more: "
            "downscale")
    return {
        "unreadable": ("not a readable image", "unreadable image(s)"),
        "large": (f"more than {limit} pixels ({bomb} it)",
                  f"image(s) of more than {limit} pixels ({bomb} them)"),
        "float": ("a floating-point image (mode F), whose range netspec cannot know: save "
                  "it with 8 or 16 bits", "floating-point image(s) (mode F), whose range "
                  "netspec cannot know: save them with 8 or 16 bits"),
        "int32": ("a 32-bit image with values outside 0…65,535: save it with 8 or 16 bits",
                  "32-bit image(s) with values outside 0…65,535: save them with 8 or 16 bits"),
        "convert": (f"cannot be converted to {mode}", f"image(s) that cannot be converted "
                    f"to {mode}"),
    }[kind]


@contextmanager
def opened(path: str | Path) -> Iterator[Any]:
    """``Image.open``, with an image over Pillow's pixel limit refused in netspec's one
    line (Pillow warns, with a source line, up to twice the limit, and raises past it)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise ImageRefused.of(path, "large") from None
    with img:
        yield img


def open_image(path: str | Path, mode: str, draft: bool = False) -> Any:
    """The decoded image converted to ``mode`` ('L' or 'RGB'), or a 16-bit one as mode
    F (one channel, value / 65535: ``Preprocess.normalize`` takes it as it is); a file
    netspec will not use is an ImageRefused naming it. ``draft``: a JPEG is decoded at
    an eighth of its size, every byte of it still read (the check before training)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with opened(path) as img:
            if draft and img.format == "JPEG":
                img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
            return _converted(img, mode, path)
    except ImageRefused:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError) as e:
        raise ImageRefused.of(path, "unreadable", str(e)) from None


def _converted(img: Any, mode: str, path: str | Path) -> Any:
    from PIL import Image

    if img.mode == "F":
        raise ImageRefused.of(path, "float")
    if img.mode in DEEP_MODES:
        # Pillow's convert to L or RGB clips a 16-bit value at 255 (so nearly every pixel
        # of a 16-bit photo became white): scale it here, keeping all 16 bits
        a = np.asarray(img)
        if a.size and (int(a.min()) < 0 or int(a.max()) > DEEP_MAX):
            raise ImageRefused.of(path, "int32")
        return Image.fromarray((a / DEEP_MAX).astype(np.float32))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # flatten transparency onto black rather than dropping alpha unpremultiplied
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    try:
        return img.convert(mode)
    except ValueError:
        raise ImageRefused.of(path, "convert", mode=mode) from None


def image_array(img: Any) -> np.ndarray:
    """A Pillow image as [C, H, W]: uint8, or float32 in [0, 1] for a 16-bit one (F)."""
    a = np.asarray(img)
    if a.dtype != np.float32:
        a = a.astype(np.uint8, copy=False)
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def load_for_inference(path: str | Path, pre: Preprocess) -> np.ndarray:
    """One image as the model's input [C, H, W] float32: converted, resized, scaled."""
    from PIL import Image

    img = open_image(path, pre.mode)
    if img.size != (pre.width, pre.height):
        img = img.resize((pre.width, pre.height), Image.Resampling.BILINEAR)
    return pre.normalize(image_array(img))
