"""The ``netspec`` command: argument parsing and the one place errors become exit codes.

Bad input (a :class:`NetspecError`) prints one positioned line per problem and exits 2;
anything else is a bug in netspec and exits 1 with its traceback. Each command lives in
netspec/commands/ and imports torch or onnx only inside its ``run``, so ``validate``,
``params`` and ``schema`` never load them.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn

from netspec import __version__
from netspec.commands import COMMANDS
from netspec.errors import NetspecError, UsageError, VarError


class _CtrlC:
    """While active, notes whether a SIGINT arrived (then raises KeyboardInterrupt as
    Python's own handler does). Installed only over Python's default handler, in the
    main thread: a caller's own handler is left alone."""

    def __init__(self) -> None:
        self.seen = False
        self._old: Any = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self) -> _CtrlC:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


class _Parser(argparse.ArgumentParser):
    """argparse's errors as every other netspec error: one line and exit status 2
    (argparse prints the whole usage first: ten lines for ``export --opset abc``).
    Subcommand parsers are of the parent's class, so this covers every command."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


#: library warnings a user should act on → netspec's own note (``str.format`` of the
#: match's groups). Every other warning of torch, numpy, Pillow, onnx or onnxruntime
#: is dropped: netspec checks what matters itself (finite weights, image sizes…)
NOTES = [
    (re.compile(r"This DataLoader will create (\d+) worker processes in total\. Our "
                r"suggested max number of worker in current system is (\d+)"),
     "note: {0} image-decoding workers (--workers) for {1} CPUs: more than the CPUs "
     "slows decoding down rather than up"),
    (re.compile(r"overflow encountered in cast"),
     "note: a value too large for float32 became infinite"),
]


def _note(message: str) -> str | None:
    for pattern, note in NOTES:
        m = pattern.search(message)
        if m:
            return note.format(*m.groups())
    return None


@contextmanager
def _library_warnings() -> Iterator[None]:
    """While a command runs, every Python warning (a library's text, then its file and
    source line) becomes netspec's one-line note, once, or nothing (``NOTES``). Where
    Python is told what to do with warnings (-W, PYTHONWARNINGS), it is left to."""
    if sys.warnoptions:
        yield
        return
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        note = _note(str(message))
        if note is not None and note not in shown:
            shown.add(note)
            print(note, file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # each one reaches show(), which says it once
        warnings.showwarning = show
        yield


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="netspec",
        description="Declarative model specs: validate, count, build, export.",
    )
    p.add_argument("--version", action="version", version=f"netspec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        module.add_parser(sub, name)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line. ``argv`` None: the ``netspec`` program itself, for which Ctrl-C
    ends the command with exit status 130. Given ``argv``, main runs inside a caller (a
    test, a script): a Ctrl-C the user types is then the caller's to handle — it stops a
    test run rather than failing one test — and propagates; a KeyboardInterrupt that the
    command's own code raises still becomes 130."""
    typed = _CtrlC()
    try:
        with typed, _library_warnings():
            args = parser().parse_args(argv)
            return int(args.run(args) or 0)
    except VarError as e:  # the core speaks of vars; here they came from --set
        print(str(e.as_flag()), file=sys.stderr)
        return e.exit_code
    except NetspecError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if typed.seen and argv is not None:
            raise
        print("netspec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception:
        traceback.print_exc()
        print("netspec: internal error: this is a bug in netspec, please report it",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
