"""`msm-eval gate`: CI regression gate of a candidate run against a baseline (exit 0 / 1 / 2)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `gate` command."""
    parser = subparsers.add_parser(
        "gate", help="fail CI when a candidate regresses against a baseline",
        description=__doc__.splitlines()[0],
        epilog="exit status: 0 pass, 1 regression (detect) or not shown non-inferior (noninferiority), "
               "2 unusable input or a gate that cannot decide. Example: msm-eval gate "
               "results/baselines/constitution_adherence_rules_scripted.csv logs/candidate --json gate.json")
    parser.add_argument("baseline", help="baseline: exported CSV (results/baselines/*.csv), log file or folder")
    parser.add_argument("candidate", help="candidate: log file, log folder or exported CSV")
    parser.add_argument("--mode", choices=["detect", "noninferiority"], default="detect",
                        help="detect: fail a dimension whose drop is shown larger than the margin (one-sided "
                             "cluster sign-flip test of H0 drop <= margin, Holm); noninferiority: pass only "
                             "dimensions whose drop is shown smaller than the margin (one-sided CR2 cluster t "
                             "test of H0 drop >= margin) (default detect)")
    parser.add_argument("--margin", type=float, default=None,
                        help="the test boundary, a drop on the -3..+3 scale: detect tests H0 drop <= margin, "
                             "noninferiority tests H0 drop >= margin (default 0 for detect, 0.25 for "
                             "noninferiority)")
    parser.add_argument("--dims", nargs="+", default=None,
                        help="dimensions to gate (default: every dimension with at least --min-pairs paired "
                             "scored samples; the others are listed as not gated)")
    parser.add_argument("--alpha", type=float, default=0.05, help="one-sided error rate (default 0.05)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="compare even when scenario set, rubric, judge, judge mode, spec_in_context or "
                             "rollout mode differ (reported as warnings)")
    parser.add_argument("--min-pairs", type=int, default=10, help="fewest paired samples per dimension (default 10)")
    parser.add_argument("--max-unscored", type=float, default=0.2,
                        help="largest share of sample-epochs without a usable score per side (default 0.2)")
    parser.add_argument("--min-overlap", type=float, default=0.9,
                        help="smallest share of the baseline's sample-epochs (sample id and epoch) the candidate "
                             "must also have (default 0.9)")
    parser.add_argument("--max-unusable-increase", type=float, default=0.05,
                        help="largest increase of the share of samples without a usable score (refused, "
                             "unscored, error), candidate minus baseline over shared samples (default 0.05)")
    parser.add_argument("--resamples", type=int, default=10_000,
                        help="sign-flip permutations (all 2^C when that is fewer) (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, an integer >= 0 (default 0)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the verdict as JSON to PATH (a file)")
    parser.set_defaults(func=_run)


def _json_problem(path: str | None) -> str | None:
    """Why the verdict cannot be written to `path`, checked before any work."""
    if path is None:
        return None
    target = Path(path)
    if target.is_dir():
        return f"--json {path}: is a folder; give a file path such as {target / 'gate.json'}"
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"--json {path}: {parent} is not a folder"
    return None


def _run(args: argparse.Namespace) -> int:
    import warnings

    from msm_eval.gate import EXIT_UNUSABLE, run_gate

    problem = _json_problem(args.json)
    if problem:
        print(f"msm-eval: error: unusable gate input: {problem}", file=sys.stderr)
        return EXIT_UNUSABLE
    dims = [d for item in args.dims for d in item.split(",") if d] if args.dims else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-success logs are reported as gate problems
        result = run_gate(args.baseline, args.candidate, margin=args.margin, dims=dims, alpha=args.alpha,
                          mode=args.mode, allow_mismatch=args.allow_mismatch, n_resamples=args.resamples,
                          seed=args.seed, min_pairs=args.min_pairs, max_unscored=args.max_unscored,
                          min_overlap=args.min_overlap, max_unusable_increase=args.max_unusable_increase)
    print(result.render(problems=False))
    if result.problems:  # each problem once, on stderr
        print("msm-eval: error: unusable gate input:", file=sys.stderr)
        for item in result.problems:
            print(f"  - {item}", file=sys.stderr)
    if args.json:
        try:
            result.write_json(args.json)
        except OSError as exc:
            print(f"msm-eval: error: cannot write --json {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_UNUSABLE
    return result.exit_code
