"""Prediction-powered inference (PPI++): judge scores on every sample, corrected by a human-labelled subset.

The estimand is the mean *human* score of a dimension (or the mean paired human difference between
two specs) over the scenario population. With `n` labelled samples (human score `y`, judge score
`f`) and `N` unlabelled samples (judge score only), the power-tuned estimator of Angelopoulos,
Duchi & Zrnic (PPI++, arXiv 2311.01453) is

    theta = lam * mean_unlabelled(f) + mean_labelled(y - lam * f)

It is unbiased for any fixed `lam` when the labelled samples are a uniform random draw of the
samples, however biased the judge: the second term measures and removes the judge's bias. `lam = 1`
is plain PPI, `lam = 0` the human-only mean; the default tunes `lam` from the data to minimise the
variance (clipped to [0, 1]), exactly as `ppi_py.ppi_mean_ci` does, so an uninformative judge costs
little and an informative one narrows the interval.

Intervals: without clusters, the normal interval of `ppi_py` (verified against it in the tests).
With clusters (scenario seeds), a cluster-robust variance from the estimator's per-sample influence
terms summed per cluster (with a C/(C-1) correction) and a t quantile with C - 1 df. With strata
(labels drawn with different rates per stratum, as the labelling sheet does by judge score), the
estimate is the stratum-size-weighted sum of per-stratum PPI estimates (each stratum's labels must
be a uniform draw within it); its variance adds the randomness of the stratum shares (strata are
fixed cells of the judge score, so their sizes vary between scenario draws). A stratum with fewer
than two labels is merged into its neighbour in score order (`collapse_strata`; method suffix
`_collapsed`), which is exact only when the merged strata were labelled at the same rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from msm_eval.errors import MsmEvalError


@dataclass(frozen=True)
class PPIResult:
    """A prediction-powered (or comparison) estimate with its interval."""

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    lam: float
    n_labelled: int
    n_unlabelled: int
    clusters: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tuned_lambda(y: np.ndarray, f_labelled: np.ndarray, f_unlabelled: np.ndarray) -> float:
    """The PPI++ power-tuning parameter for a mean, as `ppi_py` computes it (clipped to [0, 1])."""
    n, big_n = y.size, f_unlabelled.size
    if n < 2 or big_n < 1:
        return 0.0
    cov = float(np.mean((y - y.mean()) * (f_labelled - f_labelled.mean())))
    var = float(np.var(np.concatenate([f_labelled, f_unlabelled]), ddof=1))
    if var <= 0:
        return 0.0
    return float(np.clip(cov / ((1.0 + n / big_n) * var), 0.0, 1.0))


def _as_arrays(judge: Sequence[float] | np.ndarray, human: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(judge, dtype=float)
    y = np.asarray(human, dtype=float)
    if f.shape != y.shape or f.ndim != 1:
        raise MsmEvalError("judge and human scores must be 1-D arrays of the same length", field="scores")
    if not np.all(np.isfinite(f)):
        raise MsmEvalError("every sample needs a judge score (drop samples the judge did not score first)",
                           field="judge")
    return f, y


def ppi_mean(judge: Sequence[float] | np.ndarray, human: Sequence[float] | np.ndarray, *,
             clusters: Sequence[Any] | None = None, strata: Sequence[Any] | None = None,
             lam: float | None = None, level: float = 0.95) -> PPIResult:
    """PPI++ estimate of the mean human score.

    Args:
        judge: the judge score of every sample.
        human: the human score of the same samples, NaN where the sample is not labelled.
        clusters: cluster of each sample (clustered variance, t with C - 1 df); None = independent.
        strata: stratum of each sample when labels were drawn at different rates per stratum.
        lam: fixed power-tuning parameter (1 = PPI, 0 = human only); None = tuned (one value for all strata).
        level: confidence level.
    """
    if not 0 < level < 1:
        raise MsmEvalError(f"level must be in (0, 1), got {level}", field="level")
    f, y = _as_arrays(judge, human)
    labelled = np.isfinite(y)
    if strata is not None and len(strata) != f.size:
        raise MsmEvalError("strata must have one entry per sample", field="strata")
    groups, collapsed = (np.zeros(f.size, dtype=int), False) if strata is None else collapse_strata(strata, labelled)
    # one lam for all strata: tuned per stratum it would rest on a handful of labels and its noise
    # would go unaccounted for in the interval
    global_lam = tuned_lambda(y[labelled], f[labelled], f[~labelled])
    estimate = 0.0
    influence = np.zeros(f.size)
    lams = []
    total = f.size
    stratum_estimates = np.zeros(f.size)
    for g in np.unique(groups):
        in_g = groups == g
        lab, unl = in_g & labelled, in_g & ~labelled
        n, big_n = int(lab.sum()), int(unl.sum())
        if n < 2:
            return _empty(int(labelled.sum()), int((~labelled).sum()),
                          "too_few_labels" if strata is None else "too_few_labels_in_a_stratum")
        share = in_g.sum() / total
        lam_g = global_lam if lam is None else float(lam)
        if big_n == 0:
            lam_g = 0.0
        lams.append(lam_g)
        rect = y[lab] - lam_g * f[lab]
        mean_u = float(f[unl].mean()) if big_n else 0.0
        theta_g = lam_g * mean_u + float(rect.mean())
        estimate += share * theta_g
        stratum_estimates[in_g] = theta_g
        if big_n:
            influence[unl] = share * lam_g * (f[unl] - mean_u) / big_n
        influence[lab] = share * (rect - rect.mean()) / n
    # the stratum shares are random too (strata are cells of the judge score): each sample's share
    # influence; zero with a single stratum, so the unstratified case is exactly ppi_py's
    influence += (stratum_estimates - estimate) / total
    n_lab, n_unl = int(labelled.sum()), int((~labelled).sum())
    if clusters is None:
        se = math.sqrt(float(np.sum(influence ** 2)))
        quantile = float(sps.norm.ppf(0.5 + level / 2))
        n_clusters, method = f.size, "ppi++" if lam is None else "ppi"
    else:
        if len(clusters) != f.size:
            raise MsmEvalError("clusters must have one entry per sample", field="clusters")
        codes = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)[1]
        n_clusters = int(codes.max()) + 1
        if n_clusters < 2:
            return _empty(n_lab, n_unl, "too_few_clusters")
        sums = np.bincount(codes, weights=influence, minlength=n_clusters)
        se = math.sqrt(n_clusters / (n_clusters - 1) * float(np.sum(sums ** 2)))
        quantile = float(sps.t.ppf(0.5 + level / 2, df=n_clusters - 1))
        method = ("ppi++" if lam is None else "ppi") + "_clustered"
    if strata is not None:
        method += "_stratified" + ("_collapsed" if collapsed else "")
    return PPIResult(estimate=float(estimate), se=se, ci_low=float(estimate - quantile * se),
                     ci_high=float(estimate + quantile * se), lam=float(np.mean(lams)), n_labelled=n_lab,
                     n_unlabelled=n_unl, clusters=n_clusters, method=method)


def _order_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label.lstrip("s")), label)
    except ValueError:
        return (1, 0.0, label)


def collapse_strata(strata: Sequence[Any], labelled: np.ndarray, min_labels: int = 2) -> tuple[np.ndarray, bool]:
    """Stratum codes after merging each stratum with fewer than `min_labels` labels into its
    neighbour in score order (`s-3` < ... < `s+3`; numeric labels sort by value) until every
    stratum has enough; returns (codes, whether anything was merged). Merging strata whose label
    rates differ weights their labels as if drawn at one rate: a small bias the method name flags."""
    names = np.asarray([str(s) for s in strata])
    order = sorted(set(names), key=_order_key)
    counts = [int(labelled[names == name].sum()) for name in order]
    blocks = [[name] for name in order]
    merged = False
    while len(blocks) > 1:
        sizes = [sum(counts[order.index(n)] for n in block) for block in blocks]
        small = next((i for i, size in enumerate(sizes) if size < min_labels), None)
        if small is None:
            break
        if small == len(blocks) - 1:
            neighbour = small - 1
        elif small == 0:
            neighbour = 1
        else:
            neighbour = small - 1 if sizes[small - 1] <= sizes[small + 1] else small + 1
        low, high = sorted((small, neighbour))
        blocks[low:high + 1] = [blocks[low] + blocks[high]]
        merged = True
    code_of = {name: i for i, block in enumerate(blocks) for name in block}
    return np.asarray([code_of[name] for name in names]), merged


def _empty(n_lab: int, n_unl: int, method: str) -> PPIResult:
    nan = float("nan")
    return PPIResult(nan, nan, nan, nan, nan, n_lab, n_unl, 0, method)


def classical_mean(values: Sequence[float] | np.ndarray, *, clusters: Sequence[Any] | None = None,
                   level: float = 0.95) -> PPIResult:
    """The plain mean of the finite values with the same kind of interval (human-only or judge-only
    baseline); `lam` is recorded as NaN."""
    v = np.asarray(values, dtype=float)
    keep = np.isfinite(v)
    v = v[keep]
    if v.size < 2:
        return _empty(int(v.size), 0, "too_few")
    mean = float(v.mean())
    influence = (v - mean) / v.size
    if clusters is None:
        se = math.sqrt(float(np.sum(influence ** 2)) * v.size / (v.size - 1))
        quantile = float(sps.t.ppf(0.5 + level / 2, df=v.size - 1))
        n_clusters, method = int(v.size), "t"
    else:
        codes = np.unique(np.asarray([str(c) for c in np.asarray(clusters, dtype=object)[keep]]), return_inverse=True)[1]
        n_clusters = int(codes.max()) + 1
        if n_clusters < 2:
            return _empty(int(v.size), 0, "too_few_clusters")
        sums = np.bincount(codes, weights=influence, minlength=n_clusters)
        se = math.sqrt(n_clusters / (n_clusters - 1) * float(np.sum(sums ** 2)))
        quantile = float(sps.t.ppf(0.5 + level / 2, df=n_clusters - 1))
        method = "t_clustered"
    return PPIResult(mean, se, mean - quantile * se, mean + quantile * se, float("nan"), int(v.size), 0,
                     n_clusters, method)


def ppi_delta(judge_baseline: Sequence[float] | np.ndarray, judge_candidate: Sequence[float] | np.ndarray,
              human_baseline: Sequence[float] | np.ndarray, human_candidate: Sequence[float] | np.ndarray, *,
              clusters: Sequence[Any] | None = None, strata: Sequence[Any] | None = None,
              lam: float | None = None, level: float = 0.95) -> PPIResult:
    """PPI++ estimate of the mean paired difference candidate - baseline (same samples, in order).

    A sample counts as labelled when both sides carry a human score; the judge difference stands in
    for the human difference on the others.
    """
    fb, yb = _as_arrays(judge_baseline, human_baseline)
    fc, yc = _as_arrays(judge_candidate, human_candidate)
    if fb.shape != fc.shape:
        raise MsmEvalError("baseline and candidate must list the same samples", field="scores")
    return ppi_mean(fc - fb, yc - yb, clusters=clusters, strata=strata, lam=lam, level=level)
