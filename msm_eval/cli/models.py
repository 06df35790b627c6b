"""`msm-eval models`: list the project's model providers and prepare the embedded SmolLM2 model."""

from __future__ import annotations

import argparse
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `models` command group."""
    parser = subparsers.add_parser("models", help="list model providers, prepare the embedded model",
                                   description=__doc__)
    commands = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    listing = commands.add_parser("list", help="the msm/* providers and whether msm/smollm2 is prepared")
    listing.set_defaults(func=run_list)

    prepare = commands.add_parser("prepare", help="convert the embedded SmolLM2 GGUF to a cached HF folder")
    prepare.add_argument("--force", action="store_true", help="convert again even if a finished folder exists")
    prepare.set_defaults(func=run_prepare)


def run_list(args: argparse.Namespace) -> int:
    """Print one line per provider with its state."""
    from msm_eval.errors import MsmEvalError
    from msm_eval.models import smollm2

    print("msm/mock      scripted offline model: -M reply=TEXT | -M replies='[...]' | -M script=FILE.jsonl "
          "[-M exhaust=error]")
    try:
        source = str(smollm2.gguf_path())
    except MsmEvalError:
        source = f"not installed ({smollm2.INSTALL_HINT})"
    manifest = smollm2.read_manifest()
    state = (f"prepared at {smollm2.model_dir()} ({manifest.get('dtype')})" if smollm2.is_prepared()
             else "not prepared (run: msm-eval models prepare)")
    print(f"msm/smollm2   embedded SmolLM2-135M-Instruct: {state}")
    print(f"              source GGUF: {source}")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    """Convert (if needed) and print the folder."""
    from msm_eval.models import smollm2

    was_ready = smollm2.is_prepared() and not args.force
    started = time.monotonic()
    path = smollm2.prepare(force=args.force)
    if was_ready:
        print(f"already prepared: {path}")
    else:
        print(f"prepared in {time.monotonic() - started:.1f} s: {path}")
    return 0
