"""``netspec train``'s flags for fine-tuning (``--weights``, ``--freeze``,
``--pretrained-lr-scale``) and for image folders (``--mean``, ``--std``,
``--random-resized-crop``, ``--hflip``, ``--workers``, ``--cache-mb``), and how a
resumed run keeps them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from netspec.commands.options import number
from netspec.errors import UsageError


def add_finetune_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--weights", metavar="PRE.safetensors",
                   help="start from these weights (e.g. from netspec weights import); "
                   "tensors whose shape changed (a new head) are freshly initialised and "
                   "listed")
    g.add_argument("--freeze", action="append", default=[], metavar="GLOB",
                   help="keep the parameters of the layers matching this glob over layer "
                   "names fixed (e.g. 'conv1', 'layer1*'; repeatable)")
    g.add_argument("--pretrained-lr-scale", type=float, metavar="F",
                   help="learning rate of the pretrained tensors = F × the schedule's "
                   "(default 1; fresh tensors always get the full rate)")


def add_image_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("image folders (--data DIR)")
    g.add_argument("--mean", metavar="M[,M,M]",
                   help="per-channel mean subtracted after scaling to [0, 1] (recorded in "
                   "the checkpoint and the ONNX file)")
    g.add_argument("--std", metavar="S[,S,S]", help="per-channel std divided by, after --mean")
    g.add_argument("--random-resized-crop", action="store_true",
                   help="train on a random crop (8–100%% of the area, aspect 3/4–4/3) "
                   "resized to the input")
    g.add_argument("--hflip", action="store_true", help="flip training images left-right "
                   "at random (half of them)")
    g.add_argument("--workers", type=number("--workers", int, least=0), default=2,
                   help="DataLoader processes decoding images (default 2; 0: in this one)")
    g.add_argument("--cache-mb", type=number("--cache-mb", least=0.0), default=512,
                   metavar="N",
                   help="keep the decoded training images in memory when they fit in N MiB "
                   "(default 512; 0: decode them every epoch), so later epochs only crop, "
                   "flip and scale")


def _floats(flag: str, text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected numbers separated by commas, e.g. "
                         "0.485,0.456,0.406") from None


def finetune_settings(args: argparse.Namespace, resumed: dict[str, Any] | None
                      ) -> dict[str, Any]:
    """TrainConfig's fine-tuning fields: from the flags, or from the run being resumed."""
    if resumed is not None:
        if args.weights:
            raise UsageError("--weights starts a run from pretrained weights; --resume "
                             "continues one (it already holds them)")
        was = {"freeze": list(resumed.get("freeze", [])),
               "pretrained_lr_scale": resumed.get("pretrained_lr_scale", 1.0)}
        given = {"freeze": args.freeze or None, "pretrained_lr_scale": args.pretrained_lr_scale}
        for key, value in given.items():
            if value is not None and value != was[key]:
                flag = "--" + key.replace("_", "-")
                raise UsageError(f"{flag} {value}: the run being resumed used {was[key]}; "
                                 "a resumed run keeps its settings")
        return {"pretrained": resumed.get("pretrained"), "freeze": tuple(was["freeze"]),
                "pretrained_lr_scale": was["pretrained_lr_scale"],
                "fresh": tuple(resumed.get("fresh", ()))}
    scale = 1.0 if args.pretrained_lr_scale is None else args.pretrained_lr_scale
    if not scale >= 0:
        raise UsageError(f"--pretrained-lr-scale {scale}: must be 0 or more")
    if args.pretrained_lr_scale is not None and not args.weights:
        raise UsageError("--pretrained-lr-scale applies to the tensors of --weights; "
                         "give --weights")
    if args.weights and not Path(args.weights).is_file():
        raise UsageError(f"{args.weights}: no such weights file")
    return {"pretrained": args.weights, "freeze": tuple(args.freeze),
            "pretrained_lr_scale": scale}


def image_options(args: argparse.Namespace, resumed_data: dict[str, Any]) -> Any:
    """ImageOptions from the flags; a resumed run's recorded ones where none is given."""
    from netspec.train.images import ImageOptions

    mean, std = _floats("--mean", args.mean), _floats("--std", args.std)
    crop, flip = args.random_resized_crop, args.hflip
    if resumed_data.get("preprocess"):
        pre = json.loads(resumed_data["preprocess"])
        aug = resumed_data.get("augment", {})
        mean = mean if mean is not None else (tuple(pre["mean"]) if pre.get("mean") else None)
        std = std if std is not None else (tuple(pre["std"]) if pre.get("std") else None)
        crop = crop or bool(aug.get("random_resized_crop"))
        flip = flip or bool(aug.get("hflip"))
    return ImageOptions(mean=mean, std=std, random_resized_crop=crop, hflip=flip,
                        workers=args.workers, cache_mb=args.cache_mb)
