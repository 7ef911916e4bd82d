"""The bundled zoo's ONNX files, as sha256 digests: a byte-identity check for refactors.

Every spec in specs/ is exported as ``netspec export`` does by default — weights from the
torch backend's initialisation for seed 0 — but without verification (verification
does not change the bytes, and takes most of an export's time). Each spec is exported in
these variants:

- ``default``: fp32 at the default opset (what ``netspec export SPEC`` writes);
- ``opset11``: fp32 at opset 11, the oldest opset (the other side of every boundary
  in opset.py);
- ``fp16``: ``--precision fp16`` at the default opset;
- ``dynamic``: ``--dynamic-size`` at the default opset, where the spec allows it (where
  it does not, the refusal's message is recorded and compared instead);
- ``stats``, ``stats-fp16``: fp32 and fp16 at the default opset with BatchNorm running
  statistics and γ/δ, and every other tensor that starts constant (a layer scale's γ),
  drawn from a fixed numpy seed. Freshly initialised BNs have mean 0 and γ 1, δ 0, so
  their folds shift nothing; these variants exercise the shift arithmetic (W·t into the
  bias) and per-channel scales that the default one cannot.

The bundled zoo folds only conv → BN and linear → layer scale, so a few small specs
written here (``fold_*``, :data:`FOLD_SPECS`) add every other path of the ONNX fold: BN
into the conv / conv_transpose / linear after it (grouped, over channels, through a
flatten), the refusals (padding, a conv_transpose that is not 1×1), classic dropout,
grouped conv_transpose → BN and → layer scale.

An export that fails (an op with no form at opset 11…) is recorded as its error's type
and message, so a changed refusal is a difference too.

    python bench/zoo_onnx_digests.py                  # print a digest per file
    python bench/zoo_onnx_digests.py -o digests.json  # … and write them as JSON
    python bench/zoo_onnx_digests.py --compare main   # the same export at REV, compared

With ``--compare REV`` the script checks REV out into a temporary git worktree, runs
itself there (``PYTHONPATH`` pointing at that worktree, so its netspec is REV's), with
the *same* spec files (this checkout's specs/, unless ``--specs``), and compares the
digests: it exits 1 on any difference, listing each. Run it from the checkout whose code
is to be compared, with ``PYTHONPATH`` pointing at it if the environment's netspec is
installed from elsewhere::

    PYTHONPATH=$PWD python bench/zoo_onnx_digests.py --compare main

``--only resnet18,mlp`` restricts the specs, ``--variants default,stats`` the variants.
The whole zoo takes a few minutes per side on 2 cores (vgg16_bn's 138 M parameters
dominate).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("default", "opset11", "fp16", "dynamic", "stats", "stats-fp16")
#: the numpy seed of the ``stats`` variant's BatchNorm statistics
STATS_SEED = 20260101

#: spec name → (input, layers): every fold path the zoo lacks (each spec's folds below)
FOLD_SPECS: dict[str, tuple[str, str]] = {
    # BN → grouped 1×1 conv folds; BN → padded 3×3 conv is a Mul+Add; classic dropout
    # and BN both fold into a grouped 3×3 conv without padding
    "fold_conv": ("[4, 6, 6]", """
        - conv: {out: 8, k: 3}
        - relu
        - norm: batch
        - conv: {out: 8, k: 1, groups: 2}
        - relu
        - norm: batch
        - conv: {out: 8, k: 3}
        - relu
        - norm: batch
        - dropout: {keep: 0.5, scaling: classic}
        - conv: {out: 8, k: 3, pad: 0, groups: 4}
        """),
    # grouped conv_transpose → BN; BN → grouped 1×1 conv_transpose, then a layer scale
    # into it; BN → 2×2 stride-2 conv_transpose is a Mul+Add
    "fold_conv_transpose": ("[4, 6, 6]", """
        - conv_transpose: {out: 8, k: 2, stride: 2, groups: 2}
        - norm: batch
        - relu
        - norm: batch
        - conv_transpose: {out: 6, k: 1, groups: 2}
        - layer_scale: 0.5
        - relu
        - norm: batch
        - conv_transpose: {out: 4, k: 2, stride: 2}
        """),
    # BN → linear over channels; BN → flatten → linear; BN and classic dropout → linear
    # over features; linear → BN
    "fold_linear": ("[4, 3, 3]", """
        - conv: {out: 4, k: 1}
        - relu
        - norm: batch
        - linear: {out: 6, over: channels}
        - relu
        - norm: batch
        - flatten
        - linear: {out: 10}
        - relu
        - norm: batch
        - dropout: {keep: 0.5, scaling: classic}
        - linear: {out: 5}
        - norm: batch
        """),
}


def _with_stats(weights: dict[str, Any]) -> dict[str, Any]:
    """The weights with every BatchNorm's running mean and variance, γ and δ drawn from
    a fixed seed, and every other float tensor that holds one value throughout scaled
    by a random factor per element (in sorted name order, so both sides draw the same)."""
    import numpy as np

    rng = np.random.default_rng(STATS_SEED)
    out = dict(weights)
    bns = {n[: -len(".running_mean")] for n in weights if n.endswith(".running_mean")}
    for name in sorted(weights):
        t = weights[name]
        if name.rpartition(".")[0] not in bns and t.dtype.kind == "f" and t.size > 1 \
                and t.min() == t.max():  # a layer scale's γ, a norm's γ…
            out[name] = (t * rng.uniform(0.5, 1.5, t.shape)).astype(t.dtype)
        if not name.endswith(".running_mean"):
            continue
        base = name[: -len(".running_mean")]
        mean = weights[name]
        out[name] = rng.normal(0.0, 0.5, mean.shape).astype(mean.dtype)
        var = weights[f"{base}.running_var"]
        out[f"{base}.running_var"] = rng.uniform(0.25, 2.0, var.shape).astype(var.dtype)
        for key, (lo, hi) in (("weight", (0.5, 1.5)), ("bias", (-0.5, 0.5))):
            t = weights.get(f"{base}.{key}")
            if t is not None:
                out[f"{base}.{key}"] = rng.uniform(lo, hi, t.shape).astype(t.dtype)
    return out


def _digest(file: Any) -> str:
    h = hashlib.sha256()
    parts = file.parts() if hasattr(file, "parts") else [file.tobytes()]
    for part in parts:
        h.update(part)
    return h.hexdigest()


def digests(specs: list[tuple[str, Path | str]], variants: tuple[str, ...], verbose: bool = True
            ) -> dict[str, str]:
    """``spec/variant`` → sha256 of the ONNX file (or ``error: Type: message``), with
    the netspec that ``import netspec`` finds."""
    import netspec
    from netspec.backends.onnx.export import export_onnx_file
    from netspec.backends.onnx.opset import DEFAULT_OPSET
    from netspec.backends.onnx.verify import initial_weights
    from netspec.load import load

    if verbose:
        print(f"netspec from {Path(netspec.__file__).parent.parent}", file=sys.stderr)
    kwargs: dict[str, dict[str, Any]] = {
        "default": {}, "opset11": {"opset": 11}, "fp16": {"precision": "fp16"},
        "dynamic": {"dynamic": True}, "stats": {}, "stats-fp16": {"precision": "fp16"}}
    out: dict[str, str] = {}
    for name, source in specs:
        t0 = time.perf_counter()
        graph = load(source) if isinstance(source, Path) else netspec.loads(source)
        weights = initial_weights(graph, 0)  # what export does without --weights
        stats = None
        for variant in variants:
            if variant.startswith("stats"):
                stats = stats or _with_stats(weights)
            w = stats if variant.startswith("stats") else weights
            try:
                file, _ = export_onnx_file(graph, w, verify=False,
                                           **{"opset": DEFAULT_OPSET, **kwargs[variant]})
                value = _digest(file)
            except Exception as e:  # a refusal is a result: compared like a digest
                value = f"error: {type(e).__name__}: {e}"
            out[f"{name}/{variant}"] = value
        if verbose:
            print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return out


def _spec_text(name: str, input: str, layers: str) -> str:
    body = textwrap.indent(textwrap.dedent(layers).strip(), "  ")
    return f"netspec: 1\nname: {name}\ninput: {input}\nlayers:\n{body}\n"


def _specs(folder: Path, only: str | None) -> list[tuple[str, Path | str]]:
    """(name, spec file or text): the folder's specs, then :data:`FOLD_SPECS`."""
    specs: list[tuple[str, Path | str]] = [(p.stem, p) for p in sorted(folder.glob("*.yaml"))]
    specs += [(n, _spec_text(n, *v)) for n, v in FOLD_SPECS.items()]
    if only:
        names = set(only.split(","))
        missing = names - {n for n, _ in specs}
        if missing:
            sys.exit(f"--only: no spec {', '.join(sorted(missing))} in {folder} or FOLD_SPECS")
        specs = [(n, s) for n, s in specs if n in names]
    return specs


def _at_rev(rev: str, args: argparse.Namespace) -> dict[str, str]:
    """This script's digests run in a temporary worktree of ``rev``."""
    with tempfile.TemporaryDirectory(prefix="zoo-digests-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                        str(tree), rev], check=True)
        try:
            out = Path(tmp) / "digests.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--specs",
                   str(args.specs.resolve()), "--variants", args.variants, "-o", str(out),
                   "--quiet-digests"]
            if args.only:
                cmd += ["--only", args.only]
            env = {**os.environ, "PYTHONPATH": str(tree)}
            print(f"{rev}: exporting in {tree}", file=sys.stderr)
            subprocess.run(cmd, check=True, cwd=tree, env=env)
            return dict(json.loads(out.read_text()))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(tree)], check=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--specs", type=Path, default=ROOT / "specs",
                   help="the folder of specs (default: this checkout's specs/)")
    p.add_argument("--only", help="comma-separated spec names (default: every spec)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, of {', '.join(VARIANTS)} (default: all)")
    p.add_argument("-o", "--output", type=Path, help="write the digests as JSON")
    p.add_argument("--compare", metavar="REV",
                   help="also export at git revision REV (a temporary worktree) and "
                   "compare; exit 1 on any difference")
    p.add_argument("--quiet-digests", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    variants = tuple(args.variants.split(","))
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        sys.exit(f"--variants: unknown {', '.join(sorted(unknown))}")
    specs = _specs(args.specs, args.only)

    t0 = time.perf_counter()
    mine = digests(specs, variants)
    if args.output:
        args.output.write_text(json.dumps(mine, indent=1) + "\n")
    if not args.quiet_digests:
        for key, value in mine.items():
            print(f"{value if not value.startswith('error') else value[:100]}  {key}")
        print(f"{len(mine)} files in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if not args.compare:
        return

    theirs = _at_rev(args.compare, args)
    differ = [k for k in mine if theirs.get(k) != mine[k]]
    differ += [k for k in theirs if k not in mine]
    files = sum(not v.startswith("error") for v in mine.values())
    refusals = len(mine) - files
    if differ:
        for key in differ:
            print(f"DIFFERS {key}: here {mine.get(key, '(none)')[:100]}; "
                  f"{args.compare} {theirs.get(key, '(none)')[:100]}")
        print(f"{len(differ)} of {len(mine)} differ from {args.compare}")
        sys.exit(1)
    print(f"all {len(mine)} identical to {args.compare}: {files} ONNX files byte for byte, "
          f"{refusals} refusals word for word")


if __name__ == "__main__":
    main()
