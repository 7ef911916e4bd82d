"""``netspec params --batch``'s activations against torch's own account, for every bundled
spec and YAML example, in float32 and under CPU bf16 autocast.

torch's account is what autograd saves for backward after one training-mode forward pass
(``saved_tensors_hooks``, each storage once, the model's weights and buffers aside:
tests/test_memory.py's ``saved_bytes``, imported from there). One row per spec: the bytes
measured and the estimate's difference from them, in bytes.

    python bench/memory_exact.py                  # every spec and example, batch 2
    python bench/memory_exact.py --batch 8 specs/vit_b_16.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import netspec
from netspec.memory import step_memory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_memory import saved_bytes  # noqa: E402  (the suite's own measurement)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", type=Path)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    specs = args.specs or [*sorted((ROOT / "specs").glob("*.yaml")),
                           *sorted((ROOT / "examples").glob("*.yaml"))]
    print(f"| spec (batch {args.batch}) | fp32 measured | estimate − measured "
          "| bf16 measured | estimate − measured |")
    print("|---|---:|---:|---:|---:|")
    for path in specs:
        graph = netspec.load(path)
        cells = []
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            model = netspec.build(graph).train()
            x = torch.randn(args.batch, *graph.input_shape)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                measured = saved_bytes(model, x)
            estimate = step_memory(graph, args.batch, precision=precision).activations
            cells += [f"{measured:,}", f"{estimate - measured:+,}"]
        print(f"| {path.stem} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
