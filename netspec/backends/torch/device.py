"""Which torch device a ``--device`` choice means here: one definition for every command
(build, train, calibrate)."""

from __future__ import annotations

import torch

from netspec.errors import UsageError


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """``auto``: this rank's GPU when CUDA is there, else the CPU."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device cuda: CUDA is not available here (torch "
                         f"{torch.__version__}); use --device cpu or auto")
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        index = local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)  # NCCL and the caching allocator use "the" device
        return torch.device("cuda", index)
    return torch.device("cpu")
