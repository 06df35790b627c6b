"""Judge-accuracy statistics with cluster-bootstrap intervals (validation set and human labels).

Every statistic here is written as a function of per-unit *weights*: a cluster-bootstrap resample
draws clusters with replacement, which is the same as giving each unit the number of times its
cluster was drawn. So one (resamples x units) weight matrix gives every resampled statistic as
matrix products, ties and duplicated units included (the weighted Spearman equals Spearman on the
expanded resample). Intervals are percentile intervals of the resampled statistic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from msm_eval.errors import MsmEvalError


def cluster_weights(clusters: Sequence[str], n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples + 1, units) unit weights: row 0 all ones (the estimate), then one row per
    cluster-bootstrap resample (each unit weighted by how often its cluster was drawn)."""
    if n_resamples < 1:
        raise MsmEvalError("n_resamples must be at least 1", field="n_resamples")
    labels, codes = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    n_clusters = labels.size
    ones = np.ones((1, codes.size))
    if n_clusters == 0:
        return np.zeros((n_resamples + 1, 0))
    rng = np.random.default_rng([int(seed), n_clusters, 15])
    counts = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_resamples).astype(float)
    return np.vstack([ones, counts[:, codes]])


def weighted_mean(values: np.ndarray, weights: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per weight row: sum(w * v) / sum(w) over units where `mask` (default: finite values) holds."""
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values) if mask is None else (np.asarray(mask, dtype=bool) & np.isfinite(values))
    w = weights * keep[None, :]
    total = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w @ np.where(keep, values, 0.0)) / np.where(total > 0, total, 1), np.nan)


def ratio(numerator: np.ndarray, denominator: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per weight row: sum(w * numerator) / sum(w * denominator) for 0/1 indicator arrays."""
    num = weights @ np.asarray(numerator, dtype=float)
    den = weights @ np.asarray(denominator, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _weighted_midranks(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mid-ranks of each unit within each weighted resample (rows of `weights`)."""
    less = (x[:, None] > x[None, :]).astype(float)      # less[i, j] = x_j < x_i
    equal = (x[:, None] == x[None, :]).astype(float)
    return weights @ less.T + (weights @ equal.T + 1.0) / 2.0


def weighted_spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman's rho per weight row over units where both values are finite (NaN when fewer than
    three distinct units or no variation)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, w = x[keep], y[keep], weights[:, keep]
    if x.size < 3:
        return np.full(weights.shape[0], np.nan)
    rx, ry = _weighted_midranks(x, w), _weighted_midranks(y, w)
    total = w.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * rx).sum(1, keepdims=True) / total
        my = (w * ry).sum(1, keepdims=True) / total
        cov = (w * (rx - mx) * (ry - my)).sum(1)
        vx = (w * (rx - mx) ** 2).sum(1)
        vy = (w * (ry - my) ** 2).sum(1)
        rho = cov / np.sqrt(vx * vy)
    distinct = (w > 0).sum(1)
    return np.where((vx > 1e-12) & (vy > 1e-12) & (distinct >= 3), rho, np.nan)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile cluster-bootstrap interval."""

    estimate: float
    low: float
    high: float


def percentile_interval(resampled: np.ndarray, level: float = 0.95) -> Interval:
    """Row 0 is the estimate, rows 1.. the resamples (NaN resamples are dropped)."""
    estimate = float(resampled[0])
    boot = resampled[1:]
    boot = boot[np.isfinite(boot)]
    if not math.isfinite(estimate) or boot.size < 2:
        return Interval(estimate, float("nan"), float("nan"))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return Interval(estimate, float(low), float(high))


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], clusters: Sequence[str], *, n_resamples: int = 2_000,
              seed: int = 0, level: float = 0.95) -> Interval:
    """Estimate and interval of `statistic(weights) -> per-row values` under the cluster bootstrap."""
    return percentile_interval(statistic(cluster_weights(clusters, n_resamples, seed)), level)


def krippendorff_alpha_weighted(a: np.ndarray, b: np.ndarray, weights: np.ndarray, level: str = "interval",
                                domain: Sequence[float] | None = None) -> np.ndarray:
    """Krippendorff's alpha of two raters (units with both values finite) per weight row.

    `level` interval uses squared differences; ordinal uses Krippendorff's rank-based metric on the
    pooled value distribution of each resample; nominal counts disagreements. Values are mapped to
    `domain` (default: the values seen) so the coincidence matrix has a fixed shape.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b, w = a[keep], b[keep], weights[:, keep]
    if a.size == 0:
        return np.full(weights.shape[0], np.nan)
    values = np.unique(np.concatenate([a, b])) if domain is None else np.asarray(sorted(domain), dtype=float)
    ia, ib = np.searchsorted(values, a), np.searchsorted(values, b)
    if np.any(values[np.clip(ia, 0, values.size - 1)] != a) or np.any(values[np.clip(ib, 0, values.size - 1)] != b):
        raise MsmEvalError("rating outside the declared value domain", field="domain")
    v = values.size
    # each unit with two ratings adds 1/(m-1) = 1 to cells (a,b) and (b,a)
    pair = np.zeros((a.size, v * v))
    np.add.at(pair, (np.arange(a.size), ia * v + ib), 1.0)
    np.add.at(pair, (np.arange(a.size), ib * v + ia), 1.0)
    coincidence = (w @ pair).reshape(-1, v, v)
    marginals = coincidence.sum(2)
    total = marginals.sum(1)
    if level == "nominal":
        delta = np.broadcast_to(1.0 - np.eye(v), coincidence.shape)
    elif level == "interval":
        delta = np.broadcast_to((values[:, None] - values[None, :]) ** 2, coincidence.shape)
    elif level == "ordinal":
        cumulative = np.cumsum(marginals, axis=1)
        lo = np.minimum.outer(np.arange(v), np.arange(v))
        hi = np.maximum.outer(np.arange(v), np.arange(v))
        between = cumulative[:, hi] - cumulative[:, lo] + marginals[:, lo]
        delta = (between - (marginals[:, :, None] + marginals[:, None, :]) / 2.0) ** 2
    else:
        raise MsmEvalError(f"unknown level {level!r}", field="level", hint="use nominal, ordinal or interval")
    observed = (coincidence * delta).sum((1, 2))
    expected = (marginals[:, :, None] * marginals[:, None, :] * delta).sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1.0 - (total - 1.0) * observed / expected
    return np.where(expected > 0, alpha, np.nan)
