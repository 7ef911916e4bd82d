"""Evaluation metrics kept as sums (counts, a confusion matrix), not ratios: sums add up
across batches and across processes (one all_reduce), ratios do not."""

from __future__ import annotations

import torch


class Tally:
    """Running sums for one pass: loss × samples, correct predictions, predictions made
    (pixels for segmentation), and for segmentation a K×K confusion matrix."""

    def __init__(self, classes: int, segmentation: bool, device: torch.device) -> None:
        self.classes = classes
        self.segmentation = segmentation
        # [loss_sum, samples, correct, predictions]; float64 so large counts stay exact
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)
        self.confusion = (torch.zeros(classes * classes, dtype=torch.float64, device=device)
                          if segmentation else None)

    @torch.no_grad()
    def add(self, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        pred = logits.argmax(1)
        n = y.shape[0]
        # in-place adds of Python numbers: no host→device copy, no sync, on any device
        self.sums[0] += loss.detach().double() * n
        self.sums[1] += n
        self.sums[2] += (pred == y).sum()
        self.sums[3] += y.numel()
        if self.confusion is not None:
            # row = true class, column = predicted class
            idx = (y.reshape(-1) * self.classes + pred.reshape(-1)).long()
            self.confusion += torch.bincount(idx, minlength=self.classes ** 2).double()

    def tensors(self) -> list[torch.Tensor]:
        """What to all_reduce (sum) across processes."""
        return [self.sums] + ([self.confusion] if self.confusion is not None else [])

    def result(self) -> dict[str, float]:
        loss_sum, samples, correct, predictions = self.sums.tolist()
        out = {"loss": loss_sum / max(samples, 1.0),
               "accuracy": correct / max(predictions, 1.0)}
        if self.confusion is not None:
            out["miou"] = mean_iou(self.confusion.view(self.classes, self.classes))
        return out


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean over classes of TP / (TP + FP + FN), over the classes that occur (in the
    labels or the predictions): a class absent from both has no IoU to average."""
    tp = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    if not bool(present.any()):
        return 0.0
    return float((tp[present] / union[present]).mean())
