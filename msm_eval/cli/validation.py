"""`msm-eval judge-validate`: how often a judge gets the validation transcripts right, per dimension."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `judge-validate` command."""
    parser = subparsers.add_parser(
        "judge-validate", help="judge accuracy on the validation transcripts (logs of the judge_validation task)",
        description=__doc__.splitlines()[0],
        epilog="Produce the logs with: inspect eval msm_eval/tasks.py@judge_validation --model none/none "
               "--model-role judge=<judge> [-T judge_mode=logprob]")
    parser.add_argument("logs", nargs="+", help="inspect logs (or folders) of the judge_validation task")
    parser.add_argument("--out", required=True, help="output folder (validation.md/.csv/.json, confusion.csv, units.csv)")
    parser.add_argument("--validation", default=None, help="validation folder or file (default: the project's validation/)")
    parser.add_argument("--rubric", default="constitution", help="rubric name or path (default constitution)")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument("--resamples", type=int, default=2_000, help="cluster-bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the resampling (default 0)")
    parser.add_argument("--by", choices=("run", "judge"), default="run",
                        help="one table per run (default), or per judge and mode, pooling its runs (for a "
                             "validation set run in parts, e.g. one `-T selection=dimension:<d>` run per dimension)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from msm_eval.judge_validation import build_validation_report

    written = build_validation_report(args.logs, args.out, validation=args.validation, rubric=args.rubric,
                                      level=args.level, n_resamples=args.resamples, seed=args.seed,
                                      by=args.by)
    print(written["markdown"].read_text(encoding="utf-8"))
    for kind, path in written.items():
        print(f"{kind:>9}: {path}")
    return 0
