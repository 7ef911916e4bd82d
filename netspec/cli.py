"""The ``netspec`` command: argument parsing and the one place errors become exit codes.

Bad input (a :class:`NetspecError`) prints one positioned line per problem and exits 2;
anything else is a bug in netspec and exits 1 with its traceback. Each command lives in
netspec/commands/ and imports torch or onnx only inside its ``run``, so ``validate``,
``params`` and ``schema`` never load them.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from netspec import __version__
from netspec.commands import COMMANDS
from netspec.errors import NetspecError, VarError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="netspec",
        description="Declarative model specs: validate, count, build, export.",
    )
    p.add_argument("--version", action="version", version=f"netspec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        module.add_parser(sub, name)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except VarError as e:  # the core speaks of vars; here they came from --set
        print(str(e.as_flag()), file=sys.stderr)
        return e.exit_code
    except NetspecError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
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
