"""How far ``netspec import`` reaches: every torchvision classification model and a list of
timm's CNN families, each imported (traced, mapped, structured, written, resolved and
checked layer by layer), then round-tripped (the spec built with the model's weights
computes its outputs), or refused with what netspec lacks.

Needs torchvision (and timm for its part), which do not install beside the CPU torch:

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1 \\
        timm -e .
    /tmp/tv/bin/python bench/bench_import.py --out bench/import_reach.md

Each row: the import time (tracing to the proven spec, the model already built, median of
``--repeats``) and its ratio to torch.fx's bare ``symbolic_trace`` of the same model,
timed interleaved in the same loop (the part of the work any fx-based tool pays; the rest
is mapping, structure and the proof); the spec's lines; whether the outputs agree (max
|Δ| over the output's scale at batch 2); for a refusal its one line.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from netspec.backends.torch.sources import compare_with_torch
from netspec.backends.torch.trace import flatten_module
from netspec.errors import NetspecError
from netspec.importer.pipeline import spec_from_flat

#: one model per timm CNN family the issue names, and a few more
TIMM = ["resnet50", "resnet50d", "resnext50_32x4d", "seresnet50", "efficientnet_b0",
        "efficientnetv2_rw_s", "mobilenetv2_100", "mobilenetv3_large_100", "mnasnet_100",
        "fbnetc_100", "mixnet_s", "convnext_atto", "convnext_tiny", "regnetx_002",
        "regnety_004", "rexnet_100", "ghostnet_100", "cspresnet50", "cspdarknet53",
        "densenet121", "dla34", "dpn68", "hrnet_w18_small", "res2net50_26w_4s",
        "selecsls42b", "ese_vovnet19b_dw", "xception41", "inception_v3", "vgg16",
        "nf_resnet50", "vit_tiny_patch16_224"]
#: torchvision's GoogLeNet and Inception hold auxiliary classifiers their eval forward
#: never calls: built without them (netspec refuses weights it never computes with)
TV_KW = {"googlenet": {"aux_logits": False, "init_weights": False},
         "inception_v3": {"aux_logits": False, "init_weights": False}}


def _row(name: str, make: Callable[[], torch.nn.Module], size: tuple[int, ...],
         repeats: int, verify: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    model = make().eval()
    params = sum(p.numel() for p in model.parameters())
    times: list[float] = []
    traces: list[float] = []
    try:
        for _ in range(repeats):  # interleaved: the same noise hits both
            start = time.perf_counter()
            imported = spec_from_flat(flatten_module(model, name, name, size), [],
                                      f"{name}.yaml")
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
            torch.fx.symbolic_trace(model)
            traces.append(time.perf_counter() - start)
    except NetspecError as e:
        return {"name": name, "params": params, "status": "refused",
                "why": str(e).splitlines()[0]}
    row = {"name": name, "params": params, "status": "imported",
           "lines": len(imported.text.splitlines()), "import_s": statistics.median(times),
           "trace_s": statistics.median(traces),
           "by_position": imported.by_position}
    if verify:
        a = compare_with_torch(model, imported.graph, imported.weights)
        row["status"] = "round-trips" if a.ok else f"outputs differ ({a.max_abs:.2g})"
        row["delta"] = a.max_abs / max(1.0, a.ref_max)
    return row


def torchvision_rows(repeats: int, verify: bool, size: tuple[int, ...]) -> list[dict]:
    import torchvision
    names = torchvision.models.list_models(module=torchvision.models)
    # each at the size its weights were trained at: Inception 299, the rest 224
    return [_row(n, lambda n=n: torchvision.models.get_model(n, **TV_KW.get(n, {})),
                 (3, 299, 299) if n == "inception_v3" else size, repeats, verify)
            for n in names]


def timm_rows(repeats: int, verify: bool, size: tuple[int, ...]) -> list[dict]:
    import timm
    rows = []
    for n in TIMM:
        cfg = timm.create_model(n, pretrained=False).pretrained_cfg
        shape = tuple(cfg.get("input_size") or size)
        rows.append(_row(n, lambda n=n: timm.create_model(n, pretrained=False), shape,
                         repeats, verify))
    return rows


def table(title: str, rows: list[dict]) -> str:
    out = [f"### {title}", "",
           "| model | parameters | result | spec lines | import (median) | ÷ bare fx trace "
           "| note |",
           "|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        if r["status"] == "refused":
            out.append(f"| {r['name']} | {r['params']:,} | refused | | | | {r['why']} |")
            continue
        note = f"max \\|Δ\\| {r['delta']:.1e} of the output's scale" if "delta" in r else ""
        if not r["by_position"]:
            note += "; registers in another order"
        out.append(f"| {r['name']} | {r['params']:,} | {r['status']} | {r['lines']} | "
                   f"{r['import_s'] * 1000:.0f} ms | {r['import_s'] / r['trace_s']:.1f}× | "
                   f"{note} |")
    done = sum(r["status"] == "round-trips" for r in rows)
    out += ["", f"{done} of {len(rows)} round-trip; "
            f"{sum(r['status'] == 'refused' for r in rows)} refused.", ""]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", choices=("torchvision", "timm", "both"), default="both")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", default="3,224,224",
                   help="torchvision's input, C,H,W (timm's come from each model's config)")
    p.add_argument("--no-verify", action="store_true")
    p.add_argument("--out", help="also write the tables to this markdown file")
    args = p.parse_args()
    size = tuple(int(d) for d in args.size.split(","))
    torch.set_num_threads(2)
    parts = []
    if args.source in ("torchvision", "both"):
        import torchvision
        parts.append(table(f"torchvision {torchvision.__version__}: every classification model",
                           torchvision_rows(args.repeats, not args.no_verify, size)))
    if args.source in ("timm", "both"):
        import timm
        parts.append(table(f"timm {timm.__version__}: one model per CNN family",
                           timm_rows(args.repeats, not args.no_verify, size)))
    text = "\n".join(parts)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
