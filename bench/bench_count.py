"""Counting a network without building it, as `netspec fit` counts: ratios in one run.

(1) In process. specs/resnet50.yaml is read and validated once; each variant (width 8,
    16, … 800) is then resolved and counted (``Resolver(doc, spec, {"width": w})
    .graph()`` and ``count``), as a search over vars does. The median per variant is
    compared with building the same variant with netspec on torch's ``meta`` device (no
    memory, no initialisation) and summing ``p.numel()`` over its parameters — what
    counting takes without netspec's counter — and, when torchvision is importable, with
    torchvision's resnet50 built on ``meta`` (width 64) as a second reference. Both
    counts are checked against netspec's.
(2) Whole process. ``netspec params specs/resnet50.yaml`` against the floor of any
    Python tool that validates with pydantic and reads YAML, ``python -c "import
    pydantic, yaml"``; the two alternate, and the ratio is of medians (and of minimums).

    python bench/bench_count.py [--rounds 3] [--builds 10] [--processes 15]

Not part of the test suite: it prints figures, it asserts only that the counts agree.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's netspec, not an installed one

from netspec.count import count  # noqa: E402
from netspec.lint import check_defaults, lint_layers  # noqa: E402
from netspec.resolve import Resolver  # noqa: E402
from netspec.spec import validate_top_level  # noqa: E402
from netspec.yaml_loader import Document, load_file  # noqa: E402

SPEC = ROOT / "specs" / "resnet50.yaml"
FLOOR = "import pydantic, yaml"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.3f} ms" if seconds < 0.01 else f"{seconds * 1e3:,.1f} ms"


def read_once() -> tuple[Document, object]:
    """The spec parsed, validated and linted once, as `netspec fit` does."""
    doc = load_file(SPEC)
    spec = validate_top_level(doc)
    problems = check_defaults(doc, spec) + lint_layers(doc, spec)
    assert not problems, problems
    return doc, spec


def count_variant(doc: Document, spec: object, width: int) -> tuple[float, int]:
    """Resolve and count one variant, as a search over vars does: (seconds, params)."""
    t = time.perf_counter()
    counts = count(Resolver(doc, spec, {"width": width}).graph())  # type: ignore[arg-type]
    return time.perf_counter() - t, counts.params


def per_variant(doc: Document, spec: object, widths: list[int], rounds: int
                ) -> tuple[float, dict[int, int]]:
    """The median time to resolve and count one variant, over every width and round."""
    times: list[float] = []
    params: dict[int, int] = {}
    for _ in range(rounds):
        for w in widths:
            seconds, params[w] = count_variant(doc, spec, w)
            times.append(seconds)
    return statistics.median(times), params


#: a builder of one variant: width → (seconds to build it and sum numel, that sum)
Builder = Callable[[int], tuple[float, int]]


def netspec_meta(doc: Document, spec: object) -> Builder | None:
    """netspec's model of a variant built on torch's meta device, numel summed; from
    its resolved Graph (the resolve is not timed on this side)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    import netspec

    def build(width: int) -> tuple[float, int]:
        graph = Resolver(doc, spec, {"width": width}).graph()  # type: ignore[arg-type]
        t = time.perf_counter()
        model = netspec.build(graph, device="meta")
        n = sum(p.numel() for p in model.parameters())
        return time.perf_counter() - t, n

    return build


def torchvision_meta() -> tuple[Builder, str] | None:
    """torchvision's resnet50 (width 64 whatever the variant) built under
    ``torch.device('meta')``, numel summed."""
    try:
        import torch
        import torchvision
    except Exception:  # not installed, or a build that does not load beside this torch
        return None

    def build(width: int) -> tuple[float, int]:
        t = time.perf_counter()
        with torch.device("meta"):
            model = torchvision.models.resnet50()
        n = sum(p.numel() for p in model.parameters())
        return time.perf_counter() - t, n

    return build, torchvision.__version__


def paired(doc: Document, spec: object, build: Builder, widths: list[int]
           ) -> tuple[float, float, float]:
    """Each width counted (median of 5) and built, in turn, so that the machine's drift
    hits both: (median count, median build, median of the pairs' ratios). The counts
    must agree."""
    counts, builds, ratios = [], [], []
    for w in widths:
        gc.collect()  # the last build's garbage is not the count's to collect, nor back
        seconds, params = sorted(count_variant(doc, spec, w) for _ in range(5))[2]
        gc.collect()
        built, n = build(w)
        assert n == params, (w, n, params)
        counts.append(seconds)
        builds.append(built)
        ratios.append(built / seconds)
    return statistics.median(counts), statistics.median(builds), statistics.median(ratios)


def run(cmd: list[str]) -> tuple[float, float]:
    """One whole process: its wall time, and its CPU time (user + system) as the
    operating system accounts it (steadier than wall time on a loaded machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def processes(repeats: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    py = sys.executable
    # as pip installs a package: netspec's modules compiled once, not in every process
    # (these machines set PYTHONDONTWRITEBYTECODE, so an edited module would be compiled
    # from source each time, while pydantic's and PyYAML's come compiled)
    subprocess.run([py, "-m", "compileall", "-q", "netspec"], check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)
    ours_cmd = [py, "-m", "netspec", "params", str(SPEC.relative_to(ROOT))]
    floor_cmd = [py, "-c", FLOOR]
    run(ours_cmd), run(floor_cmd)  # one untimed round: the OS's file cache
    ours, floor = [], []
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        ours.append(run(ours_cmd))
        floor.append(run(floor_cmd))
    return ours, floor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3,
                    help="passes over the 100 widths when counting (default 3)")
    ap.add_argument("--builds", type=int, default=10,
                    help="variants built on meta, for each reference (default 10)")
    ap.add_argument("--processes", type=int, default=15,
                    help="whole-process runs of each command (default 15)")
    args = ap.parse_args()

    widths = list(range(8, 801, 8))
    doc, spec = read_once()
    Resolver(doc, spec, {}).graph()  # type: ignore[arg-type]  # pydantic builds its validators
    ours, _ = per_variant(doc, spec, widths, args.rounds)
    built = widths[:: max(1, len(widths) // args.builds)][: args.builds]
    meta = netspec_meta(doc, spec)
    tv = torchvision_meta()
    meta_pairs = paired(doc, spec, meta, built) if meta else None
    tv_pairs = paired(doc, spec, tv[0], [64] * args.builds) if tv else None
    ours_p, floor_p = processes(args.processes)

    try:
        import torch

        torch_version = f", torch {torch.__version__}"
    except ImportError:
        torch_version = ", torch not installed"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, load average "
          f"{os.getloadavg()[0]:.1f}; python {platform.python_version()}{torch_version}\n")
    print(f"(1) in process: one resnet50 variant resolved and counted — {ms(ours)}, median "
          f"of {len(widths)} widths × {args.rounds} — against building it on torch's meta "
          f"device and summing numel; {args.builds} variants, each counted (median of 5) and "
          "built in turn\n")
    print("| built on meta + numel summed | count (median) | build (median) | ratio "
          "(median of pairs) |")
    print("|---|---:|---:|---:|")
    if meta_pairs is None:
        print("(torch not importable: no build to compare with)")
    else:
        c, b, r = meta_pairs
        print(f"| netspec's model, `netspec.build(graph, device='meta')` | {ms(c)} | {ms(b)} "
              f"| **{r:,.0f}×** |")
    if tv is None or tv_pairs is None:
        print("(torchvision not importable: its line is skipped)")
    else:
        c, b, r = tv_pairs
        print(f"| torchvision {tv[1]} `resnet50()` under `torch.device('meta')` (width 64) "
              f"| {ms(c)} | {ms(b)} | {r:,.0f}× |")

    med = statistics.median
    print(f"\n(2) whole process, {args.processes} interleaved runs each: wall time, and CPU "
          "time (user + system)\n")
    print("| command | wall, median (min) | CPU, median (min) |")
    print("|---|---:|---:|")
    for what, runs in ((f"`netspec params {SPEC.relative_to(ROOT)}`", ours_p),
                       (f"floor: `python -c \"{FLOOR}\"`", floor_p)):
        walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
        print(f"| {what} | {ms(med(walls))} ({ms(min(walls))}) | "
              f"{ms(med(cpus))} ({ms(min(cpus))}) |")
    wall_ratio = med(r[0] / f[0] for r, f in zip(ours_p, floor_p, strict=True))
    cpu_ratio = med(r[1] / f[1] for r, f in zip(ours_p, floor_p, strict=True))
    print(f"| **÷ floor** (median of the pairs' ratios) | **{wall_ratio:.2f}×** | "
          f"**{cpu_ratio:.2f}×** |")


if __name__ == "__main__":
    main()
