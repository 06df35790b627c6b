"""The `msm-eval` command line: discovers one module per command group in this package.

Each module `msm_eval/cli/<group>.py` defines `register(subparsers) -> None`, adding its
subcommand(s) with `set_defaults(func=handler)`; a handler takes the parsed `argparse.Namespace`
and returns an exit code. Handlers import heavy libraries lazily so `msm-eval --help` stays fast.
Errors of type `MsmEvalError` print as one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from msm_eval.errors import MsmEvalError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every command group found in this package."""
    parser = argparse.ArgumentParser(prog="msm-eval", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `msm-eval` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MsmEvalError as exc:
        print(f"msm-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("msm-eval: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
