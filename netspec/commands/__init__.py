"""One module per command, each with ``add_parser(subparsers, name)``; the parser sets
``args.run``. Importing these modules must stay cheap and torch-free."""

from __future__ import annotations

from types import ModuleType

from netspec.commands import (
    build,
    calibrate,
    diff,
    export,
    fit,
    graph,
    importer,
    params,
    run,
    schema,
    train,
    validate,
    weights,
)

COMMANDS: dict[str, ModuleType] = {
    "validate": validate,
    "params": params,
    "graph": graph,
    "diff": diff,
    "schema": schema,
    "build": build,
    "export": export,
    "run": run,
    "train": train,
    "calibrate": calibrate,
    "weights": weights,
    "import": importer,
    "fit": fit,
}
