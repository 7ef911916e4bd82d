"""Image folders for ``netspec train --data DIR``, fine-tuning from pretrained weights,
and ``netspec run`` on images.

Every image is written here with Pillow; every expected input array is computed here
from the file with Pillow and numpy, not by netspec.preprocess.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from netspec.cli import main
from netspec.weights import load_weights

Image = pytest.importorskip("PIL.Image")  # the [images] extra, in [test]

ROOT = Path(__file__).resolve().parent.parent
DIGITS_CNN = str(ROOT / "specs" / "digits_cnn.yaml")
UNET = str(ROOT / "specs" / "unet.yaml")
FORMATS = ("png", "jpeg", "bmp", "webp")
MEAN, STD = 0.5, 0.25


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def picture(cls: int, i: int, size: int = 12) -> Image.Image:
    """An RGB picture whose class is where a bright block sits (left, middle, right)."""
    rng = np.random.default_rng(100 * cls + i)
    a = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
    w = size // 3
    a[:, cls * w:(cls + 1) * w] = 200 + rng.integers(0, 50, (size, w, 3))
    return Image.fromarray(a, "RGB")


def save(img: Image.Image, path: Path) -> Path:
    if path.suffix == ".webp":
        img.save(path, lossless=True)
    elif path.suffix == ".jpeg":
        img.save(path, quality=95)
    else:
        img.save(path)
    return path


def image_folder(root: Path, classes: int = 3, train: int = 12, val: int = 4) -> Path:
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class_{'abc'[c]}"
            folder.mkdir(parents=True)
            for i in range(n):
                ext = FORMATS[i % len(FORMATS)]
                save(picture(c, i + (1000 if split == "val" else 0)), folder / f"{i}.{ext}")
    return root


def by_hand(path: Path, size: tuple[int, int] = (8, 8), mode: str = "L") -> np.ndarray:
    """Pillow and numpy only: convert, resize (bilinear), [0, 1], (x − mean) / std."""
    with Image.open(path) as im:
        a = np.asarray(im.convert(mode).resize(size, Image.Resampling.BILINEAR), np.float32)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return (a / 255.0 - MEAN) / STD


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def train(*args: str) -> int:
    return main(["train", DIGITS_CNN, "--device", "cpu", "--batch-size", "12", *args])


# ---------------------------------------------------------------- the whole path


def test_train_export_and_run_on_an_image_folder(tmp_path, capsys):
    data = image_folder(tmp_path / "data")
    ckpt, model = tmp_path / "c.safetensors", tmp_path / "m.onnx"
    assert train("--set", "classes=3", "--data", str(data), "--epochs", "4", "--mean",
                 str(MEAN), "--std", str(STD), "--workers", "2", "-o", str(ckpt)) == 0
    assert "36 for training, 12 held out" in capsys.readouterr().out
    meta = load_weights(ckpt)[1]
    assert json.loads(meta["netspec.class_names"]) == ["class_a", "class_b", "class_c"]
    pre = json.loads(meta["netspec.preprocess"])
    assert pre["mean"] == [MEAN] and pre["std"] == [STD] and pre["size"] == [8, 8]

    cal = tmp_path / "cal.safetensors"  # calibration reads the folder as training did
    assert main(["calibrate", DIGITS_CNN, "--weights", str(ckpt), "--data", str(data),
                 "--device", "cpu", "-o", str(cal)]) == 0
    assert "on the train split" in capsys.readouterr().out
    assert load_weights(cal)[1]["netspec.preprocess"] == meta["netspec.preprocess"]

    assert main(["export", DIGITS_CNN, "--weights", str(ckpt), "-o", str(model)]) == 0
    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert props["netspec.class_names"] == meta["netspec.class_names"]
    assert props["netspec.preprocess"] == meta["netspec.preprocess"]
    capsys.readouterr()

    val = sorted((data / "val" / "class_b").iterdir())
    assert main(["run", str(model), "--input", str(data / "val" / "class_b"), "--top",
                 "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("4 image(s) → output [4, 3]")
    # the printed classes are onnxruntime's on the inputs prepared here by hand
    x = np.stack([by_hand(p) for p in val])
    logits = ort.InferenceSession(str(model)).run(None, {"input": x})[0]
    names = ["class_a", "class_b", "class_c"]
    for line, row in zip(lines[1:], logits, strict=True):
        first = line.split()[1]
        assert first == names[int(row.argmax())], line
    assert (logits.argmax(1) == 1).mean() >= 0.75  # it learned where the block is


def test_samples_equal_pillow_by_hand(tmp_path):
    from netspec.preprocess import Preprocess
    from netspec.train.images import ImageDataset, Sample

    paths = [save(picture(c, 7), tmp_path / f"p{c}.{ext}")
             for c, ext in enumerate(("png", "bmp", "webp"))]
    gray = save(Image.fromarray(np.arange(100, dtype=np.uint8).reshape(10, 10), "L"),
                tmp_path / "g.png")
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:5, :, 3] = 255  # top half opaque white, bottom half transparent
    clear = save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png")
    for mode, c in (("L", 1), ("RGB", 3)):
        pre = Preprocess.for_input((c, 8, 8), "t", (MEAN,), (STD,))
        ds = ImageDataset([Sample(p, 0) for p in [*paths, gray]], pre, 3, None, None, 0)
        for i, p in enumerate([*paths, gray]):
            x, y = ds[i]
            np.testing.assert_allclose(x.numpy(), by_hand(p, mode=mode), atol=1e-6)
            assert int(y) == 0
        x, _ = ImageDataset([Sample(clear, 0)], pre, 3, None, None, 0)[0]
        # transparency lies on black, not on whatever colour the hidden pixels have
        np.testing.assert_allclose(x.numpy()[:, 0], (1 - MEAN) / STD, atol=1e-6)
        np.testing.assert_allclose(x.numpy()[:, -1], (0 - MEAN) / STD, atol=1e-6)


RAW16 = (np.arange(64, dtype=np.int64).reshape(8, 8) * 1040 + 7).clip(0, 65535)


def deep_image(path: Path, mode: str, raw: np.ndarray = RAW16) -> Path:
    """An 8×8 greyscale image of ``raw`` values in a Pillow mode of more than 8 bits:
    a real 16-bit PNG for I;16; for the others a TIFF under a .png name (Pillow reads a
    file by its content, so such a file reaches netspec; PNG holds no I;16B, I or F)."""
    if mode == "I;16":
        Image.fromarray(raw.astype(np.uint16)).save(path)
    else:
        dtype = {"I;16B": ">u2", "I": np.int32, "F": np.float32}[mode]
        Image.fromarray(raw.astype(dtype)).save(path, format="TIFF")
    with Image.open(path) as im:
        assert im.mode == mode, im.mode
    return path


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
@pytest.mark.parametrize("channels", [1, 3])
def test_a_16_bit_image_reaches_the_model_as_value_over_65535(tmp_path, mode, channels):
    """Pillow's convert to L or RGB clips at 255: a 16-bit image was all but white."""
    from netspec.preprocess import Preprocess, load_for_inference
    from netspec.train.images import ImageDataset, ImageSplit, Sample

    path = deep_image(tmp_path / "deep.png", mode)
    want = np.repeat(((RAW16 / 65535 - MEAN) / STD)[None], channels, 0).astype(np.float32)
    pre = Preprocess.for_input((channels, 8, 8), "t", (MEAN,), (STD,))
    ds = ImageDataset([Sample(path, 0), Sample(path, 0)], pre, 3, None, None, 0)
    np.testing.assert_allclose(ds[0][0].numpy(), want, atol=1e-6)  # decoded each epoch
    split = ImageSplit(ds, workers=0, cache_mb=1)
    split.fill_cache()
    assert ds.cache is not None and ds.decoded_bytes() == 2 * 4 * 8 * 8
    np.testing.assert_allclose(ds[1][0].numpy(), want, atol=1e-6)  # from the cache
    np.testing.assert_allclose(load_for_inference(path, pre), want, atol=1e-6)  # run


def test_run_on_a_16_bit_png_feeds_the_model_value_over_65535(tmp_path):
    w, model = tmp_path / "w.safetensors", tmp_path / "m.onnx"
    assert main(["build", DIGITS_CNN, "-o", str(w)]) == 0
    assert main(["export", DIGITS_CNN, "--weights", str(w), "-o", str(model),
                 "--no-verify"]) == 0
    png, y = deep_image(tmp_path / "x.png", "I;16"), tmp_path / "y.npy"
    assert main(["run", str(model), "--input", str(png), "--output", str(y)]) == 0
    x = (RAW16 / 65535).astype(np.float32)[None, None]
    logits = ort.InferenceSession(str(model)).run(None, {"input": x})[0]
    np.testing.assert_allclose(np.load(y), logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("mode", "raw", "why"), [
    ("F", RAW16 / 65535, "floating-point image(s) (mode F), whose range netspec cannot know: "
     "save them with 8 or 16 bits"),
    ("I", RAW16 * 2, "32-bit image(s) with values outside 0…65,535: save them with 8 or 16 "
     "bits"),
])
def test_images_of_unknown_range_are_refused_before_training(tmp_path, capsys, mode, raw,
                                                             why):
    root = image_folder(tmp_path / "d", train=2, val=1)
    bad = deep_image(root / "train" / "class_a" / "deep.png", mode, raw)
    out = tmp_path / "c.safetensors"
    assert train("--set", "classes=3", "--data", str(root), "--epochs", "1",
                 "-o", str(out)) == 2
    assert one_error_line(capsys) == f"1 {why}: {bad}"
    assert not out.exists()


def test_a_huge_png_is_refused_in_netspecs_own_line(tmp_path, capsys, recwarn):
    """13000² pixels: past Pillow's limit of 89,478,485 (under twice it, where Pillow
    only warns, with its own text and a source line)."""
    from netspec.preprocess import Preprocess, load_for_inference

    root = image_folder(tmp_path / "d", train=2, val=1)
    huge = root / "train" / "class_a" / "huge.png"
    Image.new("1", (13000, 13000)).save(huge)
    out = tmp_path / "c.safetensors"
    assert train("--set", "classes=3", "--data", str(root), "--epochs", "1",
                 "-o", str(out)) == 2
    limit = f"{Image.MAX_IMAGE_PIXELS:,}"
    assert one_error_line(capsys) == (
        f"1 image(s) of more than {limit} pixels (Pillow's guard against decompression "
        f"bombs; netspec decodes no more: downscale them): {huge}")
    assert not out.exists()
    with pytest.raises(Exception, match=f"^{huge}: more than {limit} pixels"):
        load_for_inference(huge, Preprocess.for_input((1, 8, 8), "t"))
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]


def test_a_truncated_jpeg_is_refused_before_training_starts(tmp_path, capsys):
    """Pillow's verify() reads no JPEG data: the file passed the check and failed once
    the first epoch had started."""
    root = image_folder(tmp_path / "d", train=2, val=1)
    whole = save(picture(0, 3, size=64), tmp_path / "whole.jpeg").read_bytes()
    cut = root / "train" / "class_a" / "cut.jpeg"
    cut.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "c.safetensors"
    assert train("--set", "classes=3", "--data", str(root), "--epochs", "1", "--workers",
                 "2", "-o", str(out)) == 2
    assert one_error_line(capsys) == f"1 unreadable image(s): {cut}"
    assert capsys.readouterr().out == ""  # nothing trained, not even begun
    assert not out.exists()


def test_an_error_in_a_worker_is_its_one_line(tmp_path, capsys):
    """A mask value found by a DataLoader worker: its message, without the worker's
    traceback and without the literal backslash-n that once ended it."""
    root = tmp_path / "seg"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(4):
        save(picture(1, i, size=16), root / "images" / f"s{i}.png")
        Image.fromarray(np.full((16, 16), 7 if i == 2 else 1, np.uint8)).save(
            root / "masks" / f"s{i}.png")
    out = tmp_path / "u.safetensors"
    assert main(["train", UNET, "--set", "size=16", "--set", "width=4", "--data", str(root),
                 "--val-split", "0", "--epochs", "1", "--workers", "2", "--cache-mb", "0",
                 "--device", "cpu", "-o", str(out)]) == 2
    assert one_error_line(capsys) == (f"{root / 'masks' / 's2.png'}: mask value 7 is outside "
                                      "0…1 (the spec has 2 classes)")
    assert not out.exists()


def _image_bytes(fmt: str, mode: str) -> bytes:
    import io

    f = io.BytesIO()
    if mode == "I;16":
        Image.fromarray(RAW16.astype(np.uint16)).save(f, format="PNG")
    else:
        img = picture(1, 2, size=12).convert(mode)
        img.save(f, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return f.getvalue()


@settings(max_examples=80, deadline=None)
@given(st.sampled_from([("PNG", "RGB"), ("PNG", "P"), ("PNG", "I;16"), ("JPEG", "RGB"),
                        ("BMP", "L"), ("WEBP", "RGB")]),
       st.floats(0, 1), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                 max_size=6),
       st.sampled_from(["L", "RGB"]))
def test_hostile_image_bytes_decode_or_are_refused_in_one_line(tmp_path_factory, kind, keep,
                                                               flips, mode):
    """Any file: truncated anywhere, any bytes changed (its header's sizes too). It
    decodes to values in [0, 1], or it is refused in one line naming it, before training
    as in it: never another exception, never a library's warning."""
    import warnings

    from netspec.errors import UsageError
    from netspec.preprocess import Preprocess, image_array, open_image
    from netspec.train.images import _check_readable

    data = bytearray(_image_bytes(*kind))
    data = data[: max(1, round(len(data) * keep))] if keep < 1 else data
    for at, value in flips:
        data[min(len(data) - 1, int(at * len(data)))] = value
    path = tmp_path_factory.mktemp("img") / f"x.{kind[0].lower()}"
    path.write_bytes(bytes(data))
    pre = Preprocess.for_input((len(mode), 8, 8), "t")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a library's warning fails the example
        try:
            img = open_image(path, mode)
        except UsageError as e:
            assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
            with pytest.raises(UsageError):  # the check before training agrees
                _check_readable([path], mode)
            return
        _check_readable([path], mode)
        x = pre.normalize(image_array(img.resize((8, 8))))
    assert x.shape[0] == len(mode) and np.isfinite(x).all()
    assert x.min() >= 0 and x.max() <= 1


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**16), st.integers(0, 5))
def test_flip_only_gives_the_image_or_its_mirror_repeatably(seed, epoch):
    import tempfile

    from netspec.preprocess import Preprocess
    from netspec.train.images import ImageDataset, ImageOptions, Sample

    with tempfile.TemporaryDirectory() as d:
        p = save(picture(0, seed % 50, size=8), Path(d) / "x.png")
        pre = Preprocess.for_input((3, 8, 8), "t")
        ds = ImageDataset([Sample(p, 0)] * 4, pre, 3, None, ImageOptions(hflip=True), seed)
        ds.epoch = epoch
        plain = np.asarray(Image.open(p), np.float32).transpose(2, 0, 1) / 255.0
        outs = [ds[i][0].numpy() for i in range(4)]
        for x in outs:
            assert np.allclose(x, plain) or np.allclose(x, plain[:, :, ::-1])
        assert all(np.array_equal(a, ds[i][0].numpy()) for i, a in enumerate(outs))
        crop = ImageDataset([Sample(p, 0)], pre, 3, None,
                            ImageOptions(random_resized_crop=True), seed)
        crop.epoch = epoch
        assert crop[0][0].shape == (3, 8, 8)
        assert np.array_equal(crop[0][0].numpy(), crop[0][0].numpy())


# ---------------------------------------------------------------- segmentation


def test_segmentation_images_and_masks(tmp_path, capsys):
    from netspec.preprocess import Preprocess
    from netspec.train.images import ImageDataset, Sample

    root = tmp_path / "seg"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(8):
        mask = np.zeros((20, 20), np.uint8)
        mask[:, : 4 + i] = 1
        save(picture(1, i, size=20), root / "images" / f"s{i}.png")
        Image.fromarray(mask, "L").save(root / "masks" / f"s{i}.png")
    out = tmp_path / "u.safetensors"
    assert main(["train", UNET, "--set", "size=16", "--set", "width=4", "--data", str(root),
                 "--val-split", "0.25", "--epochs", "1", "--batch-size", "3", "--workers",
                 "0", "--device", "cpu", "-o", str(out)]) == 0
    assert "6 for training, 2 held out" in capsys.readouterr().out
    pre = Preprocess.for_input((3, 16, 16), "unet")
    ds = ImageDataset([Sample(root / "images" / "s3.png", root / "masks" / "s3.png")], pre,
                      2, (16, 16), None, 0)
    x, y = ds[0]
    with Image.open(root / "masks" / "s3.png") as m:
        want = np.asarray(m.resize((16, 16), Image.Resampling.NEAREST)).astype(np.int64)
    np.testing.assert_array_equal(y.numpy(), want)
    assert x.shape == (3, 16, 16)


# ---------------------------------------------------------------- bad input


def _corrupt(root: Path) -> str:
    bad = root / "train" / "class_b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return "1 unreadable image(s): " + str(bad)


def _truncated(root: Path) -> str:
    p = root / "train" / "class_a" / "0.png"
    p.write_bytes(p.read_bytes()[:40])
    return str(p)


def _empty(root: Path) -> str:
    (root / "train" / "class_d").mkdir()
    return "empty class folder(s)"


def _count(root: Path) -> str:
    return "has 3 class folders (class_a, class_b, class_c) but spec 'digits_cnn' has 10 " \
        "outputs: pass --set classes=3"


def _no_train(root: Path) -> str:
    (root / "train").rename(root / "training")
    return "an image folder holds"


@pytest.mark.parametrize("spoil", [_corrupt, _truncated, _empty, _count, _no_train])
def test_bad_folders_are_refused_before_training(tmp_path, capsys, spoil):
    root = image_folder(tmp_path / "d", train=2, val=1)
    message = spoil(root)
    sets = [] if spoil is _count else ["--set", "classes=3"]
    out = tmp_path / "c.safetensors"
    assert train(*sets, "--data", str(root), "--epochs", "1", "-o", str(out)) == 2
    assert message in one_error_line(capsys)
    assert not out.exists()


def test_mask_size_mismatch_is_named(tmp_path, capsys):
    root = tmp_path / "seg"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        save(picture(0, i, size=20), root / "images" / f"s{i}.png")
        Image.fromarray(np.zeros((20, 18 if i == 1 else 20), np.uint8)).save(
            root / "masks" / f"s{i}.png")
    out = tmp_path / "u.safetensors"
    assert main(["train", UNET, "--set", "size=16", "--data", str(root), "--epochs", "1",
                 "-o", str(out)]) == 2
    err = one_error_line(capsys)
    assert "mask size differs from its image" in err and "s1.png 18×20" in err
    assert not out.exists()


def test_without_pillow_says_how_to_install(tmp_path, capsys, monkeypatch):
    root = image_folder(tmp_path / "d", train=2, val=1)
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    assert train("--data", str(root), "--epochs", "1", "-o", str(tmp_path / "c.st")) == 2
    assert "pip install 'netspec[images]'" in one_error_line(capsys)


# ---------------------------------------------------------------- fine-tuning


def test_fine_tuning_new_head_freeze_and_lr_scale(tmp_path, capsys):
    data = image_folder(tmp_path / "data", train=6, val=2)
    pre = tmp_path / "pre.safetensors"
    assert main(["build", DIGITS_CNN, "--seed", "5", "-o", str(pre)]) == 0  # 10 classes
    before = load_file(str(pre))
    out = tmp_path / "ft.safetensors"
    assert train("--set", "classes=3", "--data", str(data), "--epochs", "1", "--workers",
                 "0", "--weights", str(pre), "--freeze", "conv_bn1", "--pretrained-lr-scale",
                 "0", "-o", str(out)) == 0
    stdout = capsys.readouterr().out
    assert "15 tensors copied, 2 freshly initialised" in stdout
    assert "fc.weight, fc.bias" in stdout
    assert "frozen (no gradient steps): conv_bn1" in stdout
    after = load_file(str(out))
    params = [k for k in before if not k.startswith("fc.") and "running" not in k
              and "num_batches" not in k]
    for k in params:  # frozen, or scaled to a learning rate of 0
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert after["fc.weight"].shape == (3, 128)

    out2 = tmp_path / "ft2.safetensors"
    assert train("--set", "classes=3", "--data", str(data), "--epochs", "2", "--workers",
                 "0", "--weights", str(pre), "--freeze", "conv_bn1*", "--stop-after", "1",
                 "-o", str(out2)) == 0
    mid = load_file(str(out2))
    assert np.array_equal(mid["conv_bn1.conv1.weight"], before["conv_bn1.conv1.weight"])
    assert not np.array_equal(mid["conv_bn2.conv1.weight"], before["conv_bn2.conv1.weight"])
    # resuming keeps the fine-tuning settings (and the optimizer's four groups)
    assert train("--data", str(data), "--resume", str(out2), "-o", str(out2),
                 "--workers", "0") == 0
    resumed = capsys.readouterr()
    assert "resuming" in resumed.out
    assert "note: using the vars recorded in" in resumed.err  # classes=3, no --set needed
    end = load_file(str(out2))
    assert np.array_equal(end["conv_bn1.conv1.weight"], before["conv_bn1.conv1.weight"])
    assert train("--set", "classes=3", "--data", str(data), "--epochs", "1", "--freeze",
                 "nothing*", "-o", str(tmp_path / "x.safetensors")) == 2
    assert "--freeze nothing*: matches no layer" in one_error_line(capsys)


def test_batches_are_the_same_with_any_number_of_workers(tmp_path):
    from netspec.preprocess import Preprocess
    from netspec.train.images import ImageDataset, ImageOptions, ImageSplit, Sample

    paths = [save(picture(i % 3, i, size=16), tmp_path / f"{i}.png") for i in range(10)]
    pre = Preprocess.for_input((3, 8, 8), "t")
    options = ImageOptions(random_resized_crop=True, hflip=True)
    order = torch.tensor([3, 1, 4, 0, 9, 2, 6, 5, 8, 7])
    got = {}
    for workers, cache_mb in ((0, 0), (2, 0), (0, 1), (2, 1)):  # decoded each epoch, cached
        split = ImageSplit(ImageDataset([Sample(p, i % 3) for i, p in enumerate(paths)], pre,
                                        3, None, options, seed=7), workers, cache_mb=cache_mb)
        got[workers, cache_mb] = [[b[0] for b in split.batches(order, 4, epoch,
                                                               torch.device("cpu"))]
                                  for epoch in (0, 1)]
        assert (split.dataset.cache is not None) == (cache_mb > 0)
    for run in ((2, 0), (0, 1), (2, 1)):
        for a, b in zip(got[0, 0], got[run], strict=True):
            for x, y in zip(a, b, strict=True):
                assert torch.equal(x, y), run
    assert not torch.equal(got[0, 0][0][0], got[0, 0][1][0])  # each epoch its own crops


def _mixed_pictures(folder: Path) -> list[Path]:
    """Pillow-written files of several sizes, formats and modes (RGBA, palette, grayscale)."""
    folder.mkdir()
    paths = [save(picture(i % 3, i, size=s), folder / f"{i}.{ext}")
             for i, (s, ext) in enumerate([(12, "png"), (30, "jpeg"), (17, "webp"),
                                           (24, "bmp")])]
    wide = np.random.default_rng(1).integers(0, 256, (9, 21), dtype=np.uint8)
    paths.append(save(Image.fromarray(wide, "L"), folder / "wide.png"))
    rgba = np.random.default_rng(2).integers(0, 256, (14, 11, 4), dtype=np.uint8)
    paths.append(save(Image.fromarray(rgba, "RGBA"), folder / "alpha.png"))
    paths.append(save(picture(1, 9, size=15).convert("P"), folder / "palette.png"))
    return paths


@pytest.mark.parametrize("crop", [True, False])
def test_cached_batches_equal_decoding_every_epoch(tmp_path, crop):
    """The same seed gives the same batches whether the images are decoded every epoch
    or once into memory, and the cached run reads no file after its first epoch."""
    from netspec.preprocess import Preprocess
    from netspec.train.images import ImageDataset, ImageOptions, ImageSplit, Sample

    paths = _mixed_pictures(tmp_path / "img")
    pre = Preprocess.for_input((3, 8, 8), "t", (MEAN,), (STD,))
    options = ImageOptions(random_resized_crop=crop, hflip=True)
    samples = [Sample(p, i % 3) for i, p in enumerate(paths)]
    order = torch.tensor([5, 0, 6, 2, 4, 1, 3])

    def epochs(split: ImageSplit) -> list[torch.Tensor]:
        return [torch.cat([x for x, _ in split.batches(order, 3, epoch, torch.device("cpu"))])
                for epoch in range(3)]

    want = epochs(ImageSplit(ImageDataset(samples, pre, 3, None, options, seed=3), 0))
    cached = ImageSplit(ImageDataset(samples, pre, 3, None, options, seed=3), 2, cache_mb=1)
    got = epochs(cached)
    opaque = [i for i, p in enumerate(paths) if p.stem != "alpha"]
    for i in opaque:  # the cache holds what Pillow decodes (resized unless cropped later)
        with Image.open(paths[i]) as im:
            rgb = im.convert("RGB")
            if not crop:
                rgb = rgb.resize((8, 8), Image.Resampling.BILINEAR)
        np.testing.assert_array_equal(cached.dataset.cache[i][0], np.asarray(rgb))
    hand = {i: by_hand(paths[i], mode="RGB") for i in opaque}
    for p in paths:
        p.unlink()
    got += epochs(cached)  # from memory alone
    for a, b in zip(want + want, got, strict=True):
        assert torch.equal(a, b)
    if not crop:  # each sample is Pillow's resize by hand, mirrored or not
        for x, i in zip(want[0].numpy(), order.tolist(), strict=True):
            if i in hand:
                assert np.allclose(x, hand[i], atol=1e-6) or \
                    np.allclose(x, hand[i][:, :, ::-1], atol=1e-6)
    assert not torch.equal(want[0], want[1])  # each epoch its own draws


def test_training_with_the_cache_gives_the_same_weights(tmp_path):
    data = str(image_folder(tmp_path / "d", train=4, val=1))
    outs = [tmp_path / f"{mb}.safetensors" for mb in ("0", "512")]
    for out in outs:
        assert train("--set", "classes=3", "--data", data, "--epochs", "2", "--workers", "0",
                     "--random-resized-crop", "--hflip", "--cache-mb", out.stem,
                     "-o", str(out)) == 0
    a, b = (load_file(str(o)) for o in outs)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_cached_masks_and_the_memory_budget(tmp_path, capsys):
    from netspec.preprocess import Preprocess
    from netspec.train.images import ImageDataset, ImageOptions, ImageSplit, Sample

    samples = []
    for i, (w, h) in enumerate([(20, 20), (31, 17), (12, 26), (16, 16)]):
        mask = (np.arange(w)[None, :] * 3 // w + np.zeros((h, 1), int)).astype(np.uint8)
        m = Image.fromarray(mask, "L")
        samples.append(Sample(save(picture(i % 3, i, size=max(w, h)).resize((w, h)),
                                   tmp_path / f"s{i}.png"),
                              save(m.convert("P") if i % 2 else m, tmp_path / f"m{i}.png")))
    pre = Preprocess.for_input((3, 8, 8), "t")
    options = ImageOptions(random_resized_crop=True, hflip=True)
    order = torch.tensor([2, 0, 3, 1])

    def epochs(cache_mb: float) -> tuple[ImageSplit, list[tuple[torch.Tensor, torch.Tensor]]]:
        split = ImageSplit(ImageDataset(samples, pre, 3, (8, 8), options, seed=1), 2,
                           cache_mb=cache_mb)
        return split, [b for epoch in (0, 1) for b in split.batches(order, 2, epoch,
                                                                     torch.device("cpu"))]

    _, want = epochs(0)
    assert capsys.readouterr().err == ""
    for budget, cached in ((1.0, True), (1e-4, False)):  # over the budget: decoded each epoch
        split, got = epochs(budget)
        assert (split.dataset.cache is not None) is cached
        for (x, y), (gx, gy) in zip(want, got, strict=True):
            assert torch.equal(x, gx) and torch.equal(y, gy)
    note = capsys.readouterr().err.strip()
    assert len(note.splitlines()) == 1 and note.startswith("note:") and "--cache-mb" in note
    assert train("--set", "classes=3", "--data", str(image_folder(tmp_path / "d", 3, 2, 1)),
                 "--epochs", "1", "--cache-mb", "-1", "-o", str(tmp_path / "c.st")) == 2
    assert "--cache-mb -1: must be a finite number, 0 or more" in one_error_line(capsys)


def test_run_without_a_recorded_recipe_and_on_an_empty_folder(tmp_path, capsys):
    w, model = tmp_path / "w.safetensors", tmp_path / "m.onnx"
    assert main(["build", DIGITS_CNN, "-o", str(w)]) == 0
    assert main(["export", DIGITS_CNN, "--weights", str(w), "-o", str(model),
                 "--no-verify"]) == 0
    png = save(picture(2, 0), tmp_path / "x.png")
    capsys.readouterr()
    assert main(["run", str(model), "--input", str(png), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "records no preprocessing" in out
    with Image.open(png) as im:  # the default recipe: grayscale, resized, [0, 1]
        a = np.asarray(im.convert("L").resize((8, 8), Image.Resampling.BILINEAR), np.float32)
    logits = ort.InferenceSession(str(model)).run(None, {"input": (a / 255.0)[None, None]})[0]
    assert f"  {png}  {int(logits.argmax())} " in out
    (tmp_path / "empty").mkdir()
    assert main(["run", str(model), "--input", str(tmp_path / "empty")]) == 2
    assert "no images" in one_error_line(capsys)
