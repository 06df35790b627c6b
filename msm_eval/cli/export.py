"""`msm-eval export`: inspect logs (files or folders) -> the tidy results CSV / Parquet."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export` command."""
    parser = subparsers.add_parser("export", help="write the tidy results table of inspect logs (CSV/Parquet)",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", help="inspect log files, log folders or exported CSV/Parquet")
    parser.add_argument("--out", required=True, help="output file (*.csv or *.parquet)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import warnings

    from msm_eval.results import load, write_frame

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load(args.logs)
    for warning in caught:
        print(f"msm-eval: warning: {warning.message}")
    target = write_frame(frame, args.out)
    runs = frame["run"].nunique()
    print(f"wrote {len(frame)} rows from {runs} run(s) to {target}")
    return 0
