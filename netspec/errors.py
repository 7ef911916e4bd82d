"""Errors a user can cause, each pinned to a place in their spec.

Every problem in user input becomes a :class:`SpecError` (or several, in a
:class:`SpecErrors`); the CLI prints them as ``FILE:LINE:COL: message`` and exits 2.
Anything else that escapes is a bug in netspec.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Pos:
    """A 1-based line and column in a spec file."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


#: what str.splitlines breaks a line at: a message quoting user text must not contain them
_LINE_BREAKS = {c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(message: str) -> str:
    """``message`` with any line break in quoted user text escaped: one error, one line."""
    return message.translate(str.maketrans(_LINE_BREAKS))


class NetspecError(Exception):
    """Base class of every error netspec reports as bad input (exit status 2)."""

    exit_code = 2


class UsageError(NetspecError):
    """Bad input that has no position in a spec: a missing file, a bad flag value."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class VarError(UsageError):
    """A var set from outside the spec (``load(path, classes=10)``, ``--set``) that the spec
    has not, or whose value does not evaluate. The message speaks of vars, as a Python
    caller knows them; the command line rephrases it as the flag it came from."""

    def __init__(self, subject: str, detail: str) -> None:
        super().__init__(f"var {subject}: {detail}")
        self.subject = subject
        self.detail = detail

    def as_flag(self, flag: str = "--set") -> UsageError:
        return UsageError(f"{flag} {self.subject}: {self.detail}")


class SpecError(NetspecError):
    def __init__(self, message: str, pos: Pos | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos

    def __str__(self) -> str:
        return one_line(f"{self.pos}: {self.message}" if self.pos else self.message)


class SpecErrors(NetspecError):
    """Several problems found in one pass, reported together."""

    def __init__(self, errors: Iterable[SpecError]) -> None:
        self.errors = sorted(
            errors, key=lambda e: (e.pos.line, e.pos.col) if e.pos else (0, 0)
        )
        super().__init__("\n".join(str(e) for e in self.errors))


#: names people bring from PyTorch and Keras for the spec's shorter ones
SYNONYMS = {
    "kernel": "k", "kernel_size": "k", "padding": "pad", "out_channels": "out",
    "out_features": "out", "filters": "out", "units": "out", "channels": "out",
    "num_groups": "groups", "p": "drop", "rate": "drop", "negative_slope": "slope",
    "scale_factor": "scale", "output_size": "size", "ceil_mode": "ceil",
    "count_include_pad": "count_pad", "output_padding": "output_pad", "use_bias": "bias",
}


def did_you_mean(word: str, choices: Iterable[str], sigil: str = "") -> str:
    """A ' (did you mean X?)' suffix, or '' when nothing is close. ``sigil`` is written
    before the suggestion as the user writes it: ``$`` for a var."""
    import difflib  # here, not at the top: only a mistake needs it

    options = sorted(choices)
    word = str(word)
    # compared in lower case too: PyTorch's class names (ReLU, Kernel_Size)
    for w in dict.fromkeys((word, word.lower())):
        if SYNONYMS.get(w) in options:
            return f" (did you mean '{sigil}{SYNONYMS[w]}'?)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        lower = {o.lower(): o for o in reversed(options)}
        close = [lower[c] for c in difflib.get_close_matches(word.lower(), lower, n=1,
                                                              cutoff=0.6)]
    if not close:  # a misspelt synonym: kernal → kernel → k
        close = [SYNONYMS[c] for c in difflib.get_close_matches(
            word.lower(), [s for s in SYNONYMS if SYNONYMS[s] in options], n=1, cutoff=0.8)]
    return f" (did you mean '{sigil}{close[0]}'?)" if close else ""
