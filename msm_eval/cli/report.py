"""`msm-eval report`: per-dimension tables (Markdown, LaTeX, CSV, HTML) and a forest plot."""

from __future__ import annotations

import argparse


def add_stats_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by report, compare and gate."""
    parser.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap / permutation resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the resampling (default 0)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `report` command."""
    parser = subparsers.add_parser("report", help="summary tables and forest plot of eval runs",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", help="inspect log files, log folders or exported CSV/Parquet")
    parser.add_argument("--by", default="run",
                        help="group by run, model, spec, spec_variant, judge, task or cond_<name>, or several "
                             "comma-separated; 'spec' keeps spec variants apart (default run)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--title", default="msm-eval report", help="title of the tables and of report.html")
    parser.add_argument("--labels", default=None,
                        help="labelling-sheet folder with imported human labels: adds judge-only vs prediction-powered "
                             "means (ppi.md, ppi.csv)")
    add_stats_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from msm_eval.report import build_report

    written = build_report(args.logs, by=args.by, out_dir=args.out, level=args.level, n_resamples=args.resamples,
                           seed=args.seed, title=args.title)
    if args.labels:
        from msm_eval.calibration import write_ppi_report

        written.update(write_ppi_report(args.logs, args.labels, args.out, by=args.by, level=args.level))
    if "markdown" in written:
        print(written["markdown"].read_text(encoding="utf-8"))
    if "ppi_markdown" in written:
        print(written["ppi_markdown"].read_text(encoding="utf-8"))
    for kind, path in written.items():
        print(f"{kind:>15}: {path}")
    return 0
