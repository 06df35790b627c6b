"""`msm-eval pipeline --config FILE`: spec variants -> documents -> midtrain -> demos -> AFT -> probes -> compare."""

from __future__ import annotations

import argparse
import functools
from typing import Any


def _run(args: argparse.Namespace) -> int:
    from msm_eval.train.pipeline import Pipeline, load_pipeline_config
    cfg = load_pipeline_config(args.config)
    summary = Pipeline(cfg, progress=None if args.quiet else functools.partial(print, flush=True)).run()
    ran = sum(1 for s in summary["stages"] if s["status"] == "ran")
    print(f"pipeline '{cfg.name}': {ran} stage(s) ran, {len(summary['stages']) - ran} cached; "
          f"table: {cfg.out_dir / 'table.md'}")
    return 0


def register(subparsers: Any) -> None:
    """Add the `pipeline` command."""
    parser = subparsers.add_parser("pipeline", help="run the cached end-to-end MSM pipeline", description=__doc__)
    parser.add_argument("--config", required=True, help="pipeline YAML (e.g. configs/cpu_demo.yaml)")
    parser.add_argument("--quiet", action="store_true", help="no per-stage lines")
    parser.set_defaults(func=_run)
