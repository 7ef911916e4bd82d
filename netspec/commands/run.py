"""``netspec run model.onnx --input x.npy``: run an exported model with onnxruntime."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from netspec.commands.options import number
from netspec.errors import UsageError
from netspec.io import check_writable

if TYPE_CHECKING:  # numpy and onnxruntime load when the command runs, not at start-up
    import numpy as np

    from netspec.backends.onnx.runner import OnnxRunner

#: per-sample lines printed for a classifier's output before summarising the rest
def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="run an ONNX model on a .npy input with onnxruntime",
                       description="Run an exported model on an input saved with numpy "
                       "(shape [N, ...] and dtype as the model declares), print the output "
                       "shape and, for [N, K] outputs, each sample's top-1 class.")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--input", required=True, metavar="X.npy|IMAGE|DIR",
                   help="a .npy array, or images (png, jpeg, bmp, webp; a folder: all in "
                   "it) preprocessed as recorded at training, printed with their top classes")
    p.add_argument("--top", type=number("--top", int, least=1), default=3, metavar="K",
                   help="classes printed per image (default 3)")
    p.add_argument("--output", metavar="Y.npy", help="save the output (numpy .npy)")
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    p.add_argument("--bench", type=int, default=0, metavar="N",
                   help="also time N runs and print p50/p90/p99 latency")
    p.set_defaults(run=run)


def _load_input(path: str) -> object:
    import numpy as np

    from netspec.npy import check_npy

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such input file")
    try:
        with p.open("rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise UsageError(f"{p}: not a numpy .npy file (save the input with np.save)")
            f.seek(0)
            # the header alone first: what it claims must be in the file, before numpy
            # allocates it
            check_npy(f, os.fstat(f.fileno()).st_size, str(p))
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UsageError(f"{p}: not a numpy .npy array ({e})") from None


def _refuse_spec(model: str) -> None:
    """``netspec run spec.yaml``: say what to do rather than a protobuf parse error."""
    p = Path(model)
    if p.suffix.lower() in (".yaml", ".yml"):
        raise UsageError(f"{p}: this is a spec; export it first "
                         f"(netspec export {p} -o model.onnx)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from netspec.backends.onnx.runner import OnnxRunner

    if args.bench < 0:
        raise UsageError("--bench must be 0 or more")
    _refuse_spec(args.model)
    out = check_writable(args.output, args.force, inputs=[args.model, args.input]) \
        if args.output else None
    from netspec.image_run import MAX_ROWS, is_image_input, run_images, save_and_time

    if is_image_input(args.input):  # the recorded preprocessing, top classes by name
        return run_images(args, out)
    x = _load_input(args.input)
    if not isinstance(x, np.ndarray):
        raise UsageError(f"{args.input}: holds several arrays (.npz); save one with np.save")
    runner = OnnxRunner(args.model)
    if len(runner.output_names) > 1:
        return _run_several(runner, x, out, args.bench, args.force)
    y = runner(x)  # checks shape and dtype: a UsageError names what the model wants
    print(f"output {list(y.shape)} {y.dtype} ({runner.providers[0]})")
    if y.ndim == 2:
        top = y.argmax(axis=1)
        for i in range(min(len(y), MAX_ROWS)):
            print(f"  sample {i}: class {int(top[i])} (score {float(y[i, top[i]]):.4g})")
        if len(y) > MAX_ROWS:
            print(f"  … {len(y) - MAX_ROWS} more samples")
    return save_and_time(runner, x, y, out, args.force, args.bench)


def _run_several(runner: OnnxRunner, x: np.ndarray, out: Path | None, bench: int,
                 force: bool) -> int:
    """A model with several outputs (a detector's feature maps): each by name; saved
    together as an .npz with one array per output."""
    if out is not None and out.suffix != ".npz":
        raise UsageError(f"{out}: the model has {len(runner.output_names)} outputs "
                         f"({', '.join(runner.output_names)}); write them to an .npz")
    from netspec.image_run import save_and_time

    ys = runner.run_all(x)
    for name, y in ys.items():
        print(f"output {name} {list(y.shape)} {y.dtype} ({runner.providers[0]})")
    return save_and_time(runner, x, ys, out, force, bench)
