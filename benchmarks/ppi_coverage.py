"""Simulation: do prediction-powered intervals cover at the nominal rate with a biased judge, and
are they narrower than human-only intervals when the judge is informative?

Each replicate draws a fresh scenario set from a super-population: 60 clusters (scenario seeds) of
5 samples, human scores on -3..3 with a cluster effect, and a judge whose scores are biased. 60
samples get human labels, either uniformly at random or stratified by judge score (rates 10% /
20% / 40% in the judge-score cells < 0.5, 0.5-1.5, >= 1.5, analysed with strata). The estimands are the
super-population mean human score and, for two specs on the same scenarios, the mean paired
human difference (true delta 0.3; the judge adds a spec-dependent bias so its delta is wrong).

Methods: judge only (clustered t interval on all judge scores), human only (clustered t interval
on the labelled samples), PPI (lam = 1) and PPI++ (tuned lam), both with the clustered variance.
Reports coverage of 95% intervals (with its Monte-Carlo standard error), mean width and mean
error, and writes results/bench/ppi_coverage.json and .md.

    .venv/bin/python benchmarks/ppi_coverage.py [--reps 2000] [--quick]
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from msm_eval.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from msm_eval.ppi import classical_mean, ppi_delta, ppi_mean  # noqa: E402

CLUSTERS, PER_CLUSTER, LABELS, LEVEL = 60, 5, 60, 0.95
JUDGES = {
    # name: (slope on the human score, bias, noise sd)
    "informative_biased": (1.0, 0.8, 0.6),
    "weak_biased": (0.3, 1.0, 1.2),
    "uninformative": (0.0, 1.0, 1.0),
}
TRUE_DELTA = 0.3
STRATUM_EDGES = (0.5, 1.5)
"""Judge-score cells of the stratified design: below 0.5, 0.5 to 1.5, above 1.5."""


def human_scores(rng: np.random.Generator, n_clusters: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    cluster = np.repeat(np.arange(n_clusters), PER_CLUSTER)
    effect = rng.normal(0, 0.8, n_clusters)[cluster]
    latent = 0.6 + effect + rng.normal(0, 1.0, cluster.size)
    return cluster, latent + shift


def to_scale(latent: np.ndarray) -> np.ndarray:
    return np.clip(np.round(latent), -3, 3)


def judge_scores(rng: np.random.Generator, human: np.ndarray, judge: str, extra_bias: float = 0.0) -> np.ndarray:
    slope, bias, noise = JUDGES[judge]
    return np.clip(slope * human + bias + extra_bias + rng.normal(0, noise, human.size), -3, 3)


def label_mask(rng: np.random.Generator, judge: np.ndarray, design: str) -> tuple[np.ndarray, np.ndarray | None]:
    n = judge.size
    if design == "uniform":
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, LABELS, replace=False)] = True
        return mask, None
    terciles = np.digitize(judge, STRATUM_EDGES)   # fixed judge-score cells, as the labelling sheet uses
    mask = np.zeros(n, dtype=bool)
    for stratum, rate in zip(range(3), (0.1, 0.2, 0.4), strict=True):
        members = np.flatnonzero(terciles == stratum)
        take = max(2, int(round(rate * members.size)))
        mask[rng.choice(members, min(take, members.size), replace=False)] = True
    return mask, terciles


def true_means(seed: int = 99, draws: int = 400_000) -> tuple[float, float]:
    """Super-population mean human score of the baseline spec, and the true paired delta."""
    rng = np.random.default_rng(seed)
    _, latent = human_scores(rng, draws // PER_CLUSTER)
    noise_free = latent  # same latent for both specs: the candidate adds TRUE_DELTA before rounding
    base, cand = to_scale(noise_free), to_scale(noise_free + TRUE_DELTA)
    return float(base.mean()), float((cand - base).mean())


def one_replicate(rng: np.random.Generator, judge: str, design: str) -> dict[str, dict[str, float]]:
    cluster, latent = human_scores(rng, CLUSTERS)
    y_base, y_cand = to_scale(latent), to_scale(latent + TRUE_DELTA)
    f_base = judge_scores(rng, latent, judge)
    f_cand = judge_scores(rng, latent + TRUE_DELTA, judge, extra_bias=0.3)   # the judge favours the candidate
    mask, strata = label_mask(rng, f_base, design)
    human = np.where(mask, y_base, np.nan)
    out: dict[str, dict[str, float]] = {}

    def record(name: str, result: object) -> None:
        out[name] = {"estimate": result.estimate, "low": result.ci_low, "high": result.ci_high}  # type: ignore[attr-defined]

    record("mean/judge_only", classical_mean(f_base, clusters=cluster, level=LEVEL))
    record("mean/human_only", classical_mean(human, clusters=cluster, level=LEVEL))
    record("mean/ppi", ppi_mean(f_base, human, clusters=cluster, strata=strata, lam=1.0, level=LEVEL))
    record("mean/ppi++", ppi_mean(f_base, human, clusters=cluster, strata=strata, level=LEVEL))
    human_cand = np.where(mask, y_cand, np.nan)
    record("delta/judge_only", classical_mean(f_cand - f_base, clusters=cluster, level=LEVEL))
    record("delta/human_only", classical_mean(human_cand - human, clusters=cluster, level=LEVEL))
    record("delta/ppi++", ppi_delta(f_base, f_cand, human, human_cand, clusters=cluster, strata=strata, level=LEVEL))
    return out


def summarise(results: list[dict[str, dict[str, float]]], truth: dict[str, float]) -> dict[str, dict[str, float]]:
    table = {}
    for name in results[0]:
        target = truth[name.split("/")[0]]
        est = np.array([r[name]["estimate"] for r in results])
        low = np.array([r[name]["low"] for r in results])
        high = np.array([r[name]["high"] for r in results])
        ok = np.isfinite(low) & np.isfinite(high)
        covered = (low[ok] <= target) & (target <= high[ok])
        coverage = float(covered.mean())
        table[name] = {"coverage": coverage, "coverage_mc_se": math.sqrt(coverage * (1 - coverage) / max(ok.sum(), 1)),
                       "mean_width": float(np.mean(high[ok] - low[ok])), "mean_error": float(np.mean(est[ok] - target)),
                       "replicates": int(ok.sum())}
    return table


def markdown(payload: dict) -> str:
    lines = ["# PPI coverage simulation", "",
             f"{payload['replicates']} replicates per cell; {CLUSTERS} clusters x {PER_CLUSTER} samples, {LABELS} human "
             f"labels (stratified design: 10/20/40% in judge-score cells <0.5 / 0.5-1.5 / >=1.5); nominal {LEVEL:.0%}. True mean "
             f"{payload['truth']['mean']:.3f}, true delta {payload['truth']['delta']:.3f}. Coverage ± Monte-Carlo SE.",
             "", "| judge | design | estimand / method | coverage | width | mean error |", "|---|---|---|---|---:|---:|"]
    for cell in payload["cells"]:
        for name, row in cell["table"].items():
            lines.append(f"| {cell['judge']} | {cell['design']} | {name} | {row['coverage']:.3f} ± "
                         f"{row['coverage_mc_se']:.3f} | {row['mean_width']:.3f} | {row['mean_error']:+.3f} |")
    lines += ["", f"Machine: {payload['machine']}; {payload['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 replicates, no files written")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench", help="folder for the .json/.md results")
    args = parser.parse_args()
    reps = 200 if args.quick else args.reps
    started = time.perf_counter()
    mean, delta = true_means()
    truth = {"mean": mean, "delta": delta}
    cells = []
    for judge in JUDGES:
        for design in ("uniform", "stratified"):
            rng = np.random.default_rng([args.seed, list(JUDGES).index(judge), design == "stratified"])
            results = [one_replicate(rng, judge, design) for _ in range(reps)]
            cells.append({"judge": judge, "design": design, "table": summarise(results, truth)})
            print(judge, design, {k: round(v["coverage"], 3) for k, v in cells[-1]["table"].items()}, flush=True)
    payload = {"benchmark": "ppi_coverage", "replicates": reps, "truth": truth, "level": LEVEL, "judges": JUDGES,
               "cells": cells, "seconds": time.perf_counter() - started,
               "machine": f"{platform.machine()} {platform.python_version()}"}
    if args.quick:
        print(markdown(payload))
        return
    out = args.out
    atomic_write_json(out / "ppi_coverage.json", payload)
    atomic_write_text(out / "ppi_coverage.md", markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
