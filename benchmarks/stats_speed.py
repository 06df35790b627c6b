"""Speed of `msm_eval.stats.summarize` against calling `scipy.stats.bootstrap` per dimension.

Workload: 15 dimensions x 6 runs x 1,000 samples (250 clusters of 4) x 10,000 resamples, the
cluster bootstrap of the mean with a ratio-of-sums statistic and BCa intervals in both cases (the
same estimand). The two sides alternate A B A B ... for `--rounds` rounds, each timed in a fresh
process (`benchmarks/alternate.py`), reported as median and range. Checks that both give the same
intervals within Monte-Carlo error and writes results/bench/stats_speed.json and .md.

    .venv/bin/python benchmarks/stats_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
from scipy import stats as sps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from msm_eval import stats  # noqa: E402
from msm_eval.fileio import atomic_write_json, atomic_write_text  # noqa: E402


def workload(runs: int, samples: int, dims: int, per_cluster: int, seed: int = 0) -> pd.DataFrame:
    """Tidy frame: integer scores in -3..3 with cluster effects and correlated runs."""
    rng = np.random.default_rng(seed)
    cluster_of = np.arange(samples) // per_cluster
    effect = rng.normal(0, 1, (cluster_of.max() + 1, dims))[cluster_of] + rng.normal(0, 0.6, (samples, dims))
    frames = []
    for r in range(runs):
        scores = np.clip(np.round(0.8 + 0.05 * r + effect + rng.normal(0, 0.9, (samples, dims))), -3, 3)
        for d in range(dims):
            frames.append(pd.DataFrame({
                "run": f"run{r}", "model": "m", "spec": "s", "judge": "j", "task": "t",
                "sample_id": [f"s{i}" for i in range(samples)], "cluster": [f"c{c}" for c in cluster_of],
                "epoch": 1, "dimension": f"dim{d:02d}", "score": scores[:, d], "status": "scored"}))
    return pd.concat(frames, ignore_index=True)


def scipy_per_dimension(frame: pd.DataFrame, n_resamples: int, seed: int) -> pd.DataFrame:
    """The obvious alternative: one scipy.stats.bootstrap call per (run, dimension)."""
    rows = []
    for (run, dim), part in frame.groupby(["run", "dimension"], sort=True):
        codes, _ = pd.factorize(part["cluster"], sort=True)
        sums = np.bincount(codes, weights=part["score"].to_numpy())
        sizes = np.bincount(codes).astype(float)
        res = sps.bootstrap((sums, sizes), lambda s, m, axis=-1: s.sum(axis) / m.sum(axis), paired=True,
                            vectorized=True, n_resamples=n_resamples, method="BCa", rng=seed)
        rows.append({"run": run, "dimension": dim, "ci_low": res.confidence_interval.low,
                     "ci_high": res.confidence_interval.high, "se": res.standard_error})
    return pd.DataFrame(rows)


SIDES = ("msm_eval", "scipy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workload (smoke test)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench", help="folder for the .json/.md results")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    runs, samples, dims, per_cluster, n_resamples = (6, 1000, 15, 4, 10_000) if not args.quick else (2, 200, 5, 4, 2_000)
    frame = workload(runs, samples, dims, per_cluster)
    if args.child:
        start = time.perf_counter()
        if args.child == "msm_eval":
            stats.summarize(frame, by="run", n_resamples=n_resamples, seed=0)
        else:
            scipy_per_dimension(frame, n_resamples, seed=1)
        print(json.dumps({"seconds": time.perf_counter() - start}))
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from alternate import alternate, load_note, fmt, summary
    timings = alternate(__file__, SIDES, args.rounds, ["--quick"] if args.quick else [])
    timing = summary(timings, "seconds", "scipy", "msm_eval")
    ours = stats.summarize(frame, by="run", n_resamples=n_resamples, seed=0)
    start = time.perf_counter()
    compare_table = stats.compare(frame, "run0", f"run{runs - 1}", n_resamples=n_resamples, seed=0)
    compare_time = time.perf_counter() - start
    ref = scipy_per_dimension(frame, n_resamples, seed=1)

    merged = ours.merge(ref, on=["run", "dimension"], suffixes=("", "_scipy"))
    width = merged["ci_high_scipy"] - merged["ci_low_scipy"]
    low_dev = ((merged["ci_low"] - merged["ci_low_scipy"]).abs() / width)
    high_dev = ((merged["ci_high"] - merged["ci_high_scipy"]).abs() / width)
    se_ratio = merged["se"] / merged["se_scipy"]
    # Monte-Carlo tolerance: a 95% BCa endpoint from 10,000 resamples moves by ~2% of the width
    # between seeds; 5% leaves room for the sqrt(C/(C-1)) small-sample stretch (0.2% at C=250).
    tolerance = 0.05 if not args.quick else 0.10
    agree = bool(low_dev.max() < tolerance and high_dev.max() < tolerance and (se_ratio - 1).abs().max() < 0.05)
    result = {
        "workload": {"runs": runs, "samples_per_run": samples, "dimensions": dims, "clusters_per_run": samples // per_cluster,
                     "rows": len(frame), "n_resamples": n_resamples, "method": "cluster bootstrap, ratio of sums, BCa"},
        "timing": timing, "runs": timings,
        "msm_eval_summarize_s_median": round(timing["msm_eval"]["median"], 3),
        "msm_eval_compare_one_pair_s": round(compare_time, 3),
        "scipy_bootstrap_per_dimension_s_median": round(timing["scipy"]["median"], 3),
        "speedup": round(timing["paired_ratio"]["median"], 1),
        "agreement": {"max_abs_ci_low_diff_over_width": round(float(low_dev.max()), 4),
                      "max_abs_ci_high_diff_over_width": round(float(high_dev.max()), 4),
                      "se_ratio_min": round(float(se_ratio.min()), 4), "se_ratio_max": round(float(se_ratio.max()), 4),
                      "tolerance_over_width": tolerance, "within_monte_carlo_error": agree},
        "compare_example": {"dimension": compare_table.iloc[0]["dimension"],
                            "delta": round(float(compare_table.iloc[0]["delta"]), 4),
                            "ci": [round(float(compare_table.iloc[0]["ci_low"]), 4),
                                   round(float(compare_table.iloc[0]["ci_high"]), 4)]},
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                    "cpus": os.cpu_count(), "platform": platform.platform(),
                    "note": load_note()},
    }
    name = "stats_speed" if not args.quick else "stats_speed_quick"
    out_dir = args.out
    atomic_write_json(out_dir / f"{name}.json", result)
    md = [f"# {name}", "",
          f"Workload: {dims} dimensions x {runs} runs x {samples} samples ({samples // per_cluster} clusters per run) x "
          f"{n_resamples:,} resamples; cluster bootstrap of the mean (ratio of sums), BCa.", "",
          f"{args.rounds} rounds, the two sides alternating A B A B in fresh processes; median [range] over rounds.", "",
          "| implementation | seconds |", "|---|---|",
          f"| `msm_eval.stats.summarize` (all runs and dimensions) | {fmt(timing['msm_eval'])} |",
          f"| `scipy.stats.bootstrap` called per (run, dimension) | {fmt(timing['scipy'])} |",
          f"| `msm_eval.stats.compare` (one pair, bootstrap + permutation; once) | {compare_time:.2f} |", "",
          f"Paired speed-up: **{fmt(timing['paired_ratio'], 1)}x**. Interval agreement with scipy: endpoints differ by at most "
          f"{100 * max(low_dev.max(), high_dev.max()):.1f}% of the interval width; standard errors within "
          f"{100 * (se_ratio - 1).abs().max():.1f}% (tolerance {100 * tolerance:.0f}%: "
          f"{'within Monte-Carlo error' if agree else 'OUTSIDE tolerance'}).", "",
          f"Machine: Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}. "
          + load_note()]
    atomic_write_text(out_dir / f"{name}.md", "\n".join(md) + "\n")
    print("\n".join(md))
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
