"""`msm-eval gate`: CI regression gate of a candidate run against a baseline (exit 0 / 1 / 2)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `gate` command."""
    parser = subparsers.add_parser(
        "gate", help="fail CI when a candidate regresses against a baseline",
        description=__doc__.splitlines()[0],
        epilog="exit status: 0 pass, 1 regression, 2 unusable input")
    parser.add_argument("baseline", help="baseline: exported CSV (results/baselines/*.csv), log file or folder")
    parser.add_argument("candidate", help="candidate: log file, log folder or exported CSV")
    parser.add_argument("--mode", choices=["detect", "noninferiority"], default="detect",
                        help="detect: significant drop (Holm) larger than the margin fails; noninferiority: "
                             "the lower confidence bound must stay above -margin (default detect)")
    parser.add_argument("--margin", type=float, default=None,
                        help="tolerated drop on the -3..+3 scale (default 0 for detect, 0.25 for noninferiority)")
    parser.add_argument("--dims", nargs="+", default=None, help="dimensions to gate (default: all baseline dimensions)")
    parser.add_argument("--alpha", type=float, default=0.05, help="one-sided error rate (default 0.05)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="compare even when scenario set, rubric or judge differ (reported as warnings)")
    parser.add_argument("--min-pairs", type=int, default=10, help="fewest paired samples per dimension (default 10)")
    parser.add_argument("--max-unscored", type=float, default=0.2,
                        help="largest share of sample-epochs without a usable score per side (default 0.2)")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap / permutation resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and permutation draws (default 0)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the verdict as JSON to PATH")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import warnings

    from msm_eval.gate import run_gate

    dims = [d for item in args.dims for d in item.split(",") if d] if args.dims else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-success logs are reported as gate problems
        result = run_gate(args.baseline, args.candidate, margin=args.margin, dims=dims, alpha=args.alpha,
                          mode=args.mode, allow_mismatch=args.allow_mismatch, n_resamples=args.resamples,
                          seed=args.seed, min_pairs=args.min_pairs, max_unscored=args.max_unscored)
    print(result.render())
    if result.problems:
        print("msm-eval: error: unusable gate input: " + "; ".join(result.problems), file=sys.stderr)
    if args.json:
        result.write_json(args.json)
    return result.exit_code
