"""`msm-eval compare`: paired per-dimension differences between two runs with CIs and p-values."""

from __future__ import annotations

import argparse
import json

from msm_eval.cli.report import add_stats_options


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `compare` command."""
    parser = subparsers.add_parser("compare", help="paired comparison of two runs (candidate - baseline)",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("baseline", help="baseline: log file, log folder or exported CSV")
    parser.add_argument("candidate", nargs="?", default=None,
                        help="candidate source (omit when selecting runs with --baseline-run/--candidate-run)")
    parser.add_argument("--baseline-run", default=None, help="baseline label (a value of --by) inside the sources")
    parser.add_argument("--candidate-run", default=None, help="candidate label (a value of --by) inside the sources")
    parser.add_argument("--by", default="run", help="column holding the run labels (default run)")
    parser.add_argument("--correction", choices=["holm", "bh", "by", "none"], default="holm",
                        help="multiplicity correction across dimensions (default holm)")
    parser.add_argument("--out", default=None, help="output folder for md/tex/csv/json/html/png")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON on stdout")
    parser.add_argument("--labels", default=None,
                        help="labelling-sheet folder with imported human labels: adds judge-only vs prediction-powered "
                             "paired deltas (ppi_comparison.md, .csv)")
    add_stats_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import sys
    import tempfile

    import pandas as pd

    from msm_eval.report import build_comparison

    from msm_eval.gate import comparison_warnings
    from msm_eval.results import human_labels, load

    correction = None if args.correction == "none" else args.correction
    # read each source once; the frames go on to build_comparison
    baseline = load(args.baseline)
    candidate = load(args.candidate) if args.candidate is not None else None
    if candidate is None and args.baseline_run and args.candidate_run and args.by in baseline.columns:
        column = baseline[args.by].astype(str)
        sides = (baseline[column == args.baseline_run], baseline[column == args.candidate_run])
    else:
        sides = (baseline, candidate)
    legend = []
    if sides[1] is not None and not sides[0].empty and not sides[1].empty:
        labels = human_labels(pd.concat(sides, ignore_index=True, sort=False))
        for name, frame in zip(("baseline", "candidate"), sides):
            runs = sorted(frame["run"].astype(str).unique())
            legend.append(f"{name}: " + ", ".join(f"{labels.get(r, r)} (run {r})" for r in runs))
        legend.extend(f"warning: {w}" for w in comparison_warnings(*sides))
    with tempfile.TemporaryDirectory(prefix="msm-compare-") as scratch:
        written = build_comparison(baseline, candidate, args.out or scratch,
                                   baseline_run=args.baseline_run, candidate_run=args.candidate_run, by=args.by,
                                   level=args.level, n_resamples=args.resamples, seed=args.seed,
                                   correction=correction)
        for line in legend:  # labels in words and warnings; stderr keeps --json output parseable
            print(line, file=sys.stderr if args.json else sys.stdout)
        if args.labels:
            from msm_eval.calibration import write_ppi_comparison

            written.update(write_ppi_comparison(args.baseline, args.candidate, args.labels, args.out or scratch,
                                                baseline_run=args.baseline_run, candidate_run=args.candidate_run,
                                                by=args.by, level=args.level))
        if args.json:
            print(json.dumps(json.loads(written["json"].read_text(encoding="utf-8")), indent=2))
        else:
            print(written["markdown"].read_text(encoding="utf-8"))
            if "ppi_markdown" in written:
                print(written["ppi_markdown"].read_text(encoding="utf-8"))
        if args.out:
            for kind, path in written.items():
                print(f"{kind:>9}: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0
