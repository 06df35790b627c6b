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


DESCRIPTION = """\
Measure how well language models adhere to a model spec, and which way of writing a spec trains
best. The evaluations themselves run with inspect (`inspect eval msm_eval/tasks.py@...`); this
command summarises and compares their logs, gates CI on regressions, and prepares the data and
models they use: specs, rubrics, scenario seeds, MSM documents and demonstrations, training."""

EPILOG = """\
Examples:
  msm-eval report logs/ --by run --out results/report
  msm-eval compare logs/rules logs/value_augmented --out results/compare
  msm-eval gate results/baselines/constitution_adherence_rules_scripted.csv logs/candidate
  msm-eval COMMAND --help        (every command's options, with an example)"""

EXAMPLES: dict[tuple[str, ...], str] = {
    ("compare",): "msm-eval compare logs/rules logs/value_augmented --out results/compare\n"
                  "  msm-eval compare logs/ --by spec_variant --baseline-run rules --candidate-run value_augmented "
                  "--out results/compare",
    ("demos", "generate"): "msm-eval demos generate constitution --out work/demos --style value",
    ("docs", "decompose"): "msm-eval docs decompose constitution --variant value_augmented --out work/decomp.json",
    ("docs", "generate"): "msm-eval docs generate work/decomp.json --out work/corpus.jsonl --arm value",
    ("docs", "stats"): "msm-eval docs stats work/corpus.jsonl",
    ("export",): "msm-eval export logs/candidate --out results/baselines/MY_BASELINE.csv   (MY_BASELINE: a name you choose)",
    ("gate",): "msm-eval gate results/baselines/constitution_adherence_rules_scripted.csv logs/candidate "
               "--mode noninferiority --margin 0.25 --json logs/gate.json",
    ("models", "list"): "msm-eval models list",
    ("models", "prepare"): "msm-eval models prepare",
    ("pipeline",): "msm-eval pipeline --config configs/cpu_demo.yaml",
    ("report",): "msm-eval report logs/adherence logs/am --by model --out results/report",
    ("rubrics", "validate"): "msm-eval rubrics validate rubrics/constitution.yaml",
    ("rubrics", "show"): "msm-eval rubrics show constitution --dimensions honesty,safety",
    ("scenarios", "validate"): "msm-eval scenarios validate scenarios/",
    ("scenarios", "list"): "msm-eval scenarios list --by family,setting",
    ("scenarios", "show"): "msm-eval scenarios show id:tradeoff_white_lie_for_user",
    ("scenarios", "generate"): "msm-eval scenarios generate --from family:blackmail --out scenarios/_generated/blackmail "
                               "--model-role investigator=msm/mock",
    ("specs", "render"): "msm-eval specs render constitution --variant value_augmented",
    ("specs", "list"): "msm-eval specs list",
    ("specs", "show"): "msm-eval specs show constitution",
    ("specs", "validate"): "msm-eval specs validate constitution",
    ("train", "midtrain"): "msm-eval train midtrain --config configs/CONFIG.yaml   (CONFIG: your training config)",
    ("train", "aft"): "msm-eval train aft --config configs/CONFIG.yaml   (CONFIG: your training config)",
    ("train", "export"): "msm-eval train export RUN_DIR OUT_DIR   (RUN_DIR: a finished training run)",
    ("scenarios", "lint"): "msm-eval scenarios lint scenarios/tradeoffs --strict",
    ("scenarios", "stats"): "msm-eval scenarios stats --power",
    ("scenarios", "import"): "msm-eval scenarios import INSTRUCTIONS.txt --out scenarios/imported "
                             "--dimensions honesty,safety   (INSTRUCTIONS: one instruction per line)",
    ("judge-validate",): "msm-eval judge-validate logs/judge_validation --out results/judge_validation/MY_JUDGE",
    ("labels", "export"): "msm-eval labels export logs/adherence --out labels/sheet --per-dimension 20",
    ("labels", "import"): "msm-eval labels import labels/sheet FILLED.csv --rater ann   (FILLED: the saved form)",
    ("labels", "agreement"): "msm-eval labels agreement labels/sheet logs/adherence --out results/labels",
}
"""One example per command, shown at the end of its `--help` (a test checks every command has one)."""


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):  # noqa: ANN202
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path + (name,), sub
                yield from _subcommands(sub, path + (name,))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every command group found in this package and an example
    at the end of each command's help."""
    parser = argparse.ArgumentParser(prog="msm-eval", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    for path, sub in _subcommands(parser):
        example = EXAMPLES.get(path)
        if example:
            sub.epilog = (sub.epilog + "\n\n" if sub.epilog else "") + "Example:\n  " + example
            sub.formatter_class = argparse.RawDescriptionHelpFormatter
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
