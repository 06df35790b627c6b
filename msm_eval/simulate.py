"""Known-truth clustered score data, for checking the statistics by simulation.

Scores are integers on the rubric scale: a latent normal value is rounded and clipped to -3..+3.
The latent value of a sample on one dimension is

    mu_run + cluster effect (variance icc·sd²) + sample effect shared by both runs
    (variance pair·sd²) + noise (the rest of sd²),

so `icc` is the latent intra-cluster correlation and `icc + pair` the latent correlation of a
sample's two paired scores. The true mean of a run is the expectation of the rounded, clipped
score, computed exactly from the normal distribution (`expected_score`), and `mu_for_mean`
inverts it so that a simulation can put the true mean difference exactly where it wants (for
example a drop equal to a gate's margin). `missing` makes a share of cells NaN ("dimension not
exercised") at random in each run.

Used by `benchmarks/stats_simulation.py` and the fast simulation tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import optimize, special

LOW, HIGH = -3, 3


def expected_score(mu: float, sd: float) -> float:
    """E[clip(round(X), -3, 3)] for X ~ Normal(mu, sd)."""
    cuts = (np.arange(LOW, HIGH) + 0.5 - mu) / sd  # boundaries between consecutive scores
    cdf = special.ndtr(cuts)
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return float(np.dot(probs, np.arange(LOW, HIGH + 1)))


@lru_cache(maxsize=4096)
def mu_for_mean(target: float, sd: float) -> float:
    """The latent mean whose rounded, clipped score has expectation `target` (in (-3, 3))."""
    return float(optimize.brentq(lambda mu: expected_score(mu, sd) - target, -12.0, 12.0, xtol=1e-12))


@dataclass(frozen=True)
class Design:
    """One simulated setting: clusters, samples per cluster, dimensions and the correlations."""

    clusters: int
    per_cluster: int = 4
    dims: int = 3
    sd: float = 1.5
    icc: float = 0.45
    pair: float = 0.25
    missing: float = 0.1


def paired_scores(rng: np.random.Generator, design: Design, base_mean: float | np.ndarray = 0.5,
                  cand_mean: float | np.ndarray = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(baseline, candidate, cluster_of): two (samples x dims) score arrays with NaN cells and each
    sample's cluster; `base_mean` / `cand_mean` are true means (scalars or one per dimension)."""
    n = design.clusters * design.per_cluster
    d = design.dims
    sd = design.sd
    cluster_of = np.repeat(np.arange(design.clusters), design.per_cluster)
    mu_b = np.array([mu_for_mean(float(m), sd) for m in np.broadcast_to(base_mean, (d,))])
    mu_c = np.array([mu_for_mean(float(m), sd) for m in np.broadcast_to(cand_mean, (d,))])
    cluster = rng.normal(0, sd * np.sqrt(design.icc), (design.clusters, d))[cluster_of]
    shared = rng.normal(0, sd * np.sqrt(design.pair), (n, d))
    noise_sd = sd * np.sqrt(max(1.0 - design.icc - design.pair, 0.0))
    out = []
    for mu in (mu_b, mu_c):
        latent = mu[None, :] + cluster + shared + rng.normal(0, noise_sd, (n, d))
        scores = np.clip(np.rint(latent), LOW, HIGH)
        scores[rng.random((n, d)) < design.missing] = np.nan
        out.append(scores)
    return out[0], out[1], cluster_of


def cluster_sums(values: np.ndarray, cluster_of: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums and counts (C x D) of the non-NaN entries of a (samples x dims) array."""
    ok = np.isfinite(values)
    sums = np.zeros((n_clusters, values.shape[1]))
    ns = np.zeros_like(sums)
    np.add.at(sums, cluster_of, np.where(ok, values, 0.0))
    np.add.at(ns, cluster_of, ok.astype(float))
    return sums, ns


def tidy(base: np.ndarray, cand: np.ndarray, cluster_of: np.ndarray) -> pd.DataFrame:
    """The two runs as a tidy results frame (runs `base` and `cand`, dimensions dim0..)."""
    n, d = base.shape
    frames = []
    for run, scores in (("base", base), ("cand", cand)):
        frames.append(pd.DataFrame({
            "run": run, "model": "m", "spec": "s", "judge": "j", "task": "t",
            "sample_id": np.tile([f"s{i}" for i in range(n)], d),
            "cluster": np.tile([f"c{c}" for c in cluster_of], d), "epoch": 1,
            "dimension": np.repeat([f"dim{j}" for j in range(d)], n),
            "score": scores.T.ravel(), "status": "scored"}))
    return pd.concat(frames, ignore_index=True)
