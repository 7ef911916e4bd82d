"""``netspec params --batch``'s activations against torch's own account, for every bundled
spec and YAML example, in float32 and under CPU bf16 autocast.

torch's account is what autograd saves for backward after one training-mode forward pass
(``saved_tensors_hooks``, each storage once, the model's weights and buffers aside: the
same count as tests/test_memory.py's ``saved_bytes``). One row per spec: the bytes
measured and the estimate's difference from them, in bytes.

    python bench/memory_exact.py                  # every spec and example, batch 2
    python bench/memory_exact.py --batch 8 specs/vit_b_16.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import netspec
from netspec.memory import step_memory

ROOT = Path(__file__).resolve().parent.parent


def saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    state = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in state:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(kept.values())


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
