"""Fine-tuning: start from pretrained weights (``--weights``), freeze layers by glob
(``--freeze``) and scale the learning rate of the pretrained part
(``--pretrained-lr-scale``).

Tensors the pretrained file holds with the model's shape are copied; those whose shape
changed (a new head for other classes) or that the file lacks keep the model's fresh
initialisation and are listed. Which tensors are new is recorded in the run's config, so
``--resume`` rebuilds the same optimizer groups without reading the pretrained file.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from netspec.backends.torch import load_state
from netspec.errors import UsageError
from netspec.graph import Graph
from netspec.weights import load_weights

SKIPPED_SUFFIX = ".num_batches_tracked"


@dataclass(frozen=True)
class Loaded:
    copied: list[str]
    #: fresh: in the model but not in the file, or with another shape there
    fresh: list[str]
    #: in the file but not in the model
    unused: list[str]

    def describe(self, source: str, shown: int = 6) -> list[str]:
        lines = [f"fine-tuning from {source}: {len(self.copied)} tensors copied, "
                 f"{len(self.fresh)} freshly initialised"]
        if self.fresh:
            names = ", ".join(self.fresh[:shown])
            more = f" and {len(self.fresh) - shown} more" if len(self.fresh) > shown else ""
            lines.append(f"  freshly initialised (shape changed or not in the file): "
                         f"{names}{more}")
        if self.unused:
            names = ", ".join(self.unused[:shown])
            more = f" and {len(self.unused) - shown} more" if len(self.unused) > shown else ""
            lines.append(f"  not used (no such tensor in this spec): {names}{more}")
        return lines


def load_pretrained(model: nn.Module, path: str) -> Loaded:
    """Copy the pretrained tensors that fit into ``model``; list the rest."""
    tensors, _ = load_weights(path)
    own = model.state_dict()
    copied, fresh = [], []
    update: dict[str, torch.Tensor] = {}
    for key, mine in own.items():
        if key.endswith(SKIPPED_SUFFIX):
            continue
        theirs = tensors.get(key)
        if theirs is not None and tuple(theirs.shape) == tuple(mine.shape):
            update[key] = torch.tensor(theirs)
            copied.append(key)
        else:
            fresh.append(key)
    unused = [k for k in tensors if k not in own and not k.endswith(SKIPPED_SUFFIX)]
    if not copied:
        raise UsageError(f"{path}: none of its {len(tensors)} tensors fits this spec (names "
                         "and shapes differ); import weights for it with netspec weights "
                         "import")
    load_state(model, update)
    return Loaded(copied, fresh, unused)


def freeze(model: nn.Module, graph: Graph, patterns: list[str]) -> list[str]:
    """Stop gradients to the parameters of every layer whose name matches a glob; the
    frozen layer names. A pattern that matches no layer with parameters is refused."""
    with_params = [n.name for n in graph.layers
                   if n.args is not None and n.args.param_shapes(graph.input_shapes(n))]
    frozen: list[str] = []
    for pattern in patterns:
        hits = [name for name in with_params if fnmatch.fnmatchcase(name, pattern)
                or fnmatch.fnmatchcase(name, pattern + ".*")]
        if not hits:
            raise UsageError(f"--freeze {pattern}: matches no layer with parameters of spec "
                             f"'{graph.name}' (layer names as in netspec params, e.g. "
                             f"{', '.join(with_params[:3])}; globs like 'layer1*')")
        frozen += [h for h in hits if h not in frozen]
    for name in frozen:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(False)
    return frozen


def split_groups(model: nn.Module, groups: list[dict[str, Any]], fresh: list[str],
                 lr_scale: float) -> list[dict[str, Any]]:
    """Each optimizer group split in two: pretrained parameters (learning rate times
    ``lr_scale``, as ``lr_scale`` in the group) and freshly initialised ones."""
    fresh_ids = {id(p) for name, p in model.named_parameters() if name in set(fresh)}
    out: list[dict[str, Any]] = []
    for g in groups:
        old = [p for p in g["params"] if id(p) not in fresh_ids]
        new = [p for p in g["params"] if id(p) in fresh_ids]
        if old:
            out.append({**g, "params": old, "lr_scale": lr_scale})
        if new:
            out.append({**g, "params": new, "lr_scale": 1.0})
    return out
