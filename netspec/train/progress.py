"""What a training run prints: a live progress bar on a terminal (rich when installed,
else a plain line every few seconds), and one line per epoch everywhere. In a
distributed run only rank 0 makes a Progress that prints (``enabled``)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

#: seconds between the plain (non-rich) progress lines on a terminal
PLAIN_EVERY_S = 5.0
#: seconds between bar updates: each costs a device sync, so not every step
RICH_EVERY_S = 0.1


def _fmt_metrics(m: dict[str, float]) -> str:
    parts = [f"loss {m['loss']:.4f}", f"acc {100 * m['accuracy']:.2f}%"]
    if "miou" in m:
        parts.append(f"mIoU {m['miou']:.4f}")
    return " ".join(parts)


def epoch_line(epoch: int, epochs: int, train: dict[str, float],
               heldout: dict[str, float] | None, images_per_s: float, seconds: float) -> str:
    held = f" | held-out {_fmt_metrics(heldout)}" if heldout is not None else ""
    return (f"epoch {epoch}/{epochs}: train {_fmt_metrics(train)}{held} | "
            f"{images_per_s:,.0f} img/s, {seconds:.1f} s")


class Progress:
    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stdout
        # a live bar only where someone watches: in logs and pipes it is noise
        self.live = enabled and self.stream.isatty()
        self._rich: Any = None
        self._task: Any = None
        self._last = 0.0
        if self.live:
            try:
                import rich.progress as rp
                from rich.console import Console
            except ImportError:  # rich is optional: plain lines instead
                rp = None
            if rp is not None:
                self._rich = rp.Progress(
                    rp.TextColumn("{task.description}"), rp.BarColumn(),
                    rp.MofNCompleteColumn(), rp.TextColumn("{task.fields[stats]}"),
                    rp.TimeRemainingColumn(), transient=True,
                    console=Console(file=self.stream))

    def print(self, line: str) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=self.stream, flush=True)

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._last = time.perf_counter()
        self._epoch, self._epochs, self._steps = epoch, epochs, steps
        if self._rich is not None:
            self._rich.start()
            self._task = self._rich.add_task(f"epoch {epoch}/{epochs}", total=steps,
                                             stats="")

    def wants_update(self) -> bool:
        """Whether ``update`` would show anything now (reading the running loss costs a
        device sync, so the loop asks first)."""
        if not self.live:
            return False
        every = RICH_EVERY_S if self._rich is not None else PLAIN_EVERY_S
        return time.perf_counter() - self._last >= every

    def update(self, step: int, loss: float, accuracy: float, images_per_s: float) -> None:
        stats = f"loss {loss:.4f} acc {100 * accuracy:.1f}% {images_per_s:,.0f} img/s"
        self._last = time.perf_counter()
        if self._rich is not None:
            self._rich.update(self._task, completed=step, stats=stats)
        elif self.live:
            print(f"  epoch {self._epoch}/{self._epochs} step {step}/{self._steps}: {stats}",
                  file=self.stream, flush=True)

    def end_epoch(self, line: str) -> None:
        if self._rich is not None and self._task is not None:
            self._rich.remove_task(self._task)
            self._rich.stop()
            self._task = None
        self.print(line)
