"""Statistics over the tidy results frame: clustered and paired bootstrap intervals, permutation
tests, multiplicity corrections, power, binary rates and inter-judge agreement.

Estimands (see docs/statistics.md):
- `summarize`: per group and dimension, the mean score over scenarios of the scenario-level mean
  (epochs averaged within a sample first). Uncertainty comes from resampling clusters (scenario
  seeds) with replacement; the statistic is the ratio of sums (sum of scores / number of scored
  samples over the drawn clusters), which handles clusters of unequal size and dimensions that
  are NaN (not exercised) in some samples.
- `compare`: per dimension, the mean paired difference candidate - baseline over the samples both
  runs scored (paired on `sample_id`, clustered on `cluster`), with a cluster bootstrap interval
  and a cluster-level sign-flip permutation p-value.

Everything is vectorised with numpy: per cluster count C, one (n_resamples x C) matrix of
multinomial cluster weights is drawn once and reused for every dimension and every group with
that count, so each interval is a matrix product. Results are deterministic given `seed`.
Intervals are BCa (bias-corrected and accelerated, jackknife over clusters) with a fallback to
the percentile interval when BCa is undefined, and [mean, mean] when every resample is equal.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as sps

from msm_eval.errors import MsmEvalError
from msm_eval.results import NO_DIMENSION, SCORE_RANGE, counts, usable_scores

Correction = Literal["holm", "bh", "by"] | None
Alternative = Literal["two-sided", "less", "greater"]
_CHUNK = 2_500  # resamples generated per block, bounding memory for many clusters


# --------------------------------------------------------------------------- resampling core

class _Resampler:
    """Cluster-bootstrap weights and sign flips, drawn once per cluster count and reused."""

    def __init__(self, n_resamples: int, seed: int) -> None:
        if n_resamples < 1:
            raise MsmEvalError("n_resamples must be at least 1", field="n_resamples")
        self.n_resamples = int(n_resamples)
        self.seed = int(seed)
        self._weights: dict[int, np.ndarray] = {}
        self._signs: dict[int, tuple[np.ndarray, bool]] = {}

    def weights(self, n_clusters: int) -> np.ndarray:
        """(n_resamples, n_clusters) multinomial counts: how often each cluster was drawn."""
        if n_clusters not in self._weights:
            rng = np.random.default_rng([self.seed, n_clusters, 1])
            blocks = []
            for start in range(0, self.n_resamples, _CHUNK):
                size = min(_CHUNK, self.n_resamples - start)
                draws = rng.integers(0, n_clusters, size=(size, n_clusters))
                offsets = (np.arange(size) * n_clusters)[:, None]
                blocks.append(np.bincount((draws + offsets).ravel(), minlength=size * n_clusters)
                              .reshape(size, n_clusters).astype(np.float64))
            self._weights[n_clusters] = np.vstack(blocks)
        return self._weights[n_clusters]

    def signs(self, n_clusters: int) -> tuple[np.ndarray, bool]:
        """(P, n_clusters) ±1 sign flips; all 2^C of them (exact test) when that is <= n_resamples."""
        if n_clusters not in self._signs:
            if n_clusters <= 20 and 2 ** n_clusters <= self.n_resamples:
                grid = ((np.arange(2 ** n_clusters)[:, None] >> np.arange(n_clusters)) & 1)
                self._signs[n_clusters] = (1.0 - 2.0 * grid, True)
            else:
                rng = np.random.default_rng([self.seed, n_clusters, 2])
                flips = rng.integers(0, 2, size=(self.n_resamples, n_clusters), dtype=np.int8)
                self._signs[n_clusters] = (1.0 - 2.0 * flips.astype(np.float64), False)
        return self._signs[n_clusters]


@dataclass
class _Intervals:
    estimate: np.ndarray
    se: np.ndarray
    low: np.ndarray
    high: np.ndarray
    method: list[str]


def _cluster_bootstrap(sums: np.ndarray, ns: np.ndarray, resampler: _Resampler, level: float,
                       values_equal: np.ndarray, bounds: tuple[np.ndarray, np.ndarray]) -> _Intervals:
    """Ratio-of-sums estimate and BCa interval per column from per-cluster sums and counts (C x D);
    intervals are clipped to the range of the data (a mean cannot leave it)."""
    n_clusters, n_dims = sums.shape
    total_s, total_n = sums.sum(0), ns.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = np.where(total_n > 0, total_s / np.where(total_n > 0, total_n, 1), np.nan)
    se = np.full(n_dims, np.nan)
    low = np.full(n_dims, np.nan)
    high = np.full(n_dims, np.nan)
    method = ["none"] * n_dims
    clusters_with_data = (ns > 0).sum(0)
    if n_clusters == 0:
        return _Intervals(estimate, se, low, high, method)
    weights = resampler.weights(n_clusters)
    boot_s = weights @ sums
    boot_n = weights @ ns
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = np.where(boot_n > 0, boot_s / np.where(boot_n > 0, boot_n, 1), np.nan)
        # leave-one-cluster-out jackknife for the BCa acceleration
        jack_n = total_n[None, :] - ns
        jack = np.where((ns > 0) & (jack_n > 0), (total_s[None, :] - sums) / np.where(jack_n > 0, jack_n, 1), np.nan)
    # small-sample correction: the cluster bootstrap's variance is biased down by (C-1)/C, so
    # stretch the resamples around the estimate by sqrt(C/(C-1)) (as inspect's clustered stderr)
    with np.errstate(invalid="ignore", divide="ignore"):
        stretch = np.where(clusters_with_data > 1, np.sqrt(clusters_with_data / np.maximum(clusters_with_data - 1, 1)), 1.0)
    boot = estimate[None, :] + (boot - estimate[None, :]) * stretch[None, :]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (no data) give NaN
        se_all = np.nanstd(boot, axis=0, ddof=1) if boot.shape[0] > 1 else np.full(n_dims, np.nan)
    alpha = (1.0 - level) / 2.0
    sorted_boot = np.sort(boot, axis=0)  # NaN sorts last
    valid_counts = np.isfinite(boot).sum(0)
    for d in range(n_dims):
        if total_n[d] == 0:
            continue
        if clusters_with_data[d] < 2:  # one cluster says nothing about between-cluster variation
            method[d] = "too_few_clusters"
            continue
        if values_equal[d]:
            se[d], low[d], high[d], method[d] = 0.0, estimate[d], estimate[d], "degenerate"
            continue
        column = sorted_boot[: valid_counts[d], d]
        spread = column[-1] - column[0] if column.size else 0.0
        se[d] = se_all[d]
        if column.size < 2 or spread <= 1e-12 * (1.0 + abs(estimate[d])):
            se[d], low[d], high[d], method[d] = 0.0, estimate[d], estimate[d], "degenerate"
            continue
        # small-sample expansion (Hesterberg's expanded percentile): t quantiles with C - 1 df in
        # place of normal ones, so few clusters widen the interval as a t interval would
        z = float(sps.t.ppf(1.0 - alpha, df=clusters_with_data[d] - 1))
        q_low, q_high, method[d] = _bca_levels(column, estimate[d], jack[:, d], -z, z)
        low[d] = max(_quantile_sorted(column, q_low), bounds[0][d])
        high[d] = min(_quantile_sorted(column, q_high), bounds[1][d])
    return _Intervals(estimate, se, low, high, method)


def _bca_levels(column: np.ndarray, estimate: float, jack: np.ndarray,
                z_low: float, z_high: float) -> tuple[float, float, str]:
    """BCa-adjusted quantile levels for the nominal quantiles `z_low`, `z_high`, or the
    percentile levels (ndtr(z_low), ndtr(z_high)) when BCa is undefined (the bias correction is
    infinite because every resample lies on one side of the estimate, or the acceleration makes
    the adjustment non-monotone)."""
    fallback = (float(special.ndtr(z_low)), float(special.ndtr(z_high)), "percentile")
    below = np.count_nonzero(column < estimate) + 0.5 * np.count_nonzero(column == estimate)
    z0 = special.ndtri(below / column.size)
    jack = jack[np.isfinite(jack)]
    accel = 0.0
    if jack.size >= 2:
        dev = jack.mean() - jack
        denom = 6.0 * np.sum(dev ** 2) ** 1.5
        accel = float(np.sum(dev ** 3) / denom) if denom > 0 else 0.0
    if not np.isfinite(z0):
        return fallback
    levels = []
    for z in (z_low, z_high):
        shrink = 1.0 - accel * (z0 + z)
        if shrink <= 0:
            return fallback
        levels.append(float(special.ndtr(z0 + (z0 + z) / shrink)))
    if not all(np.isfinite(levels)):
        return fallback
    return levels[0], levels[1], "bca"


def _quantile_sorted(column: np.ndarray, q: float) -> float:
    """Linear-interpolation quantile of an already sorted 1-D array."""
    position = np.clip(q, 0.0, 1.0) * (column.size - 1)
    lower = int(np.floor(position))
    upper = min(lower + 1, column.size - 1)
    return float(column[lower] + (position - lower) * (column[upper] - column[lower]))


# --------------------------------------------------------------------------- frame helpers

def _keys(by: str | Sequence[str]) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


def _check_columns(df: pd.DataFrame, needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise MsmEvalError(f"results frame lacks column(s) {', '.join(missing)}",
                           hint="build it with msm_eval.results.load")


def sample_level(df: pd.DataFrame, by: str | Sequence[str] = "run") -> pd.DataFrame:
    """Average epochs within each (group, sample, dimension); NaN when no epoch has a score.
    The data contract (`msm_eval.results.usable_scores`) is enforced first: only `scored` /
    `partial` rows contribute, and unknown statuses or scores outside -3..+3 are rejected."""
    keys = _keys(by)
    _check_columns(df, keys + ["sample_id", "cluster", "dimension", "score", "status"])
    data = usable_scores(df[df["dimension"] != NO_DIMENSION])
    grouped = data.groupby(keys + ["dimension", "sample_id"], sort=True, observed=True, dropna=False)
    out = grouped.agg(score=("score", "mean"), cluster=("cluster", "first"), epochs=("score", "count"))
    return out.reset_index()


def _cluster_arrays(samples: pd.DataFrame, value: str, dims: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                                 tuple[np.ndarray, np.ndarray]]:
    """Per-cluster sums and counts (C x D) of non-NaN `value`s, which dimensions are constant, and
    the (min, max) of the values per dimension."""
    codes, clusters = pd.factorize(samples["cluster"], sort=True)
    dim_index = pd.Index(dims).get_indexer(samples["dimension"])
    values = samples[value].to_numpy(dtype=float)
    ok = np.isfinite(values)
    sums = np.zeros((len(clusters), len(dims)))
    ns = np.zeros((len(clusters), len(dims)))
    np.add.at(sums, (codes[ok], dim_index[ok]), values[ok])
    np.add.at(ns, (codes[ok], dim_index[ok]), 1.0)
    lo = np.full(len(dims), np.inf)
    hi = np.full(len(dims), -np.inf)
    np.minimum.at(lo, dim_index[ok], values[ok])
    np.maximum.at(hi, dim_index[ok], values[ok])
    equal = np.isfinite(lo) & (hi - lo <= 1e-12)
    return sums, ns, equal, (lo, hi)


# --------------------------------------------------------------------------- summarize

def summarize(df: pd.DataFrame, by: str | Sequence[str] = "run", level: float = 0.95,
              n_resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per (group, dimension): `n` scored samples, `clusters`, `mean`, `se` (standard deviation
    of the stretched bootstrap distribution), `ci_low`, `ci_high` (cluster BCa), `method`, the
    flags `degenerate` (zero-width interval: all values equal, not a measured certainty) and
    `ceiling` (every scored sample at +3; see `below_ceiling`), and the honest counts of
    sample-epochs (`scored, missing, unscored, refused, error`)."""
    keys = _keys(by)
    _check_level(level)
    samples = sample_level(df, keys)
    dims = sorted(samples["dimension"].unique().tolist())
    resampler = _Resampler(n_resamples, seed)
    rows = []
    for group, part in samples.groupby(keys, sort=True, observed=True):
        group = group if isinstance(group, tuple) else (group,)
        present = set(part["dimension"].unique().tolist())
        part_dims = [d for d in dims if d in present]
        sums, ns, equal, bounds = _cluster_arrays(part, "score", part_dims)
        result = _cluster_bootstrap(sums, ns, resampler, level, equal, bounds)
        for j, dim in enumerate(part_dims):
            rows.append({**dict(zip(keys, group)), "dimension": dim, "n": int(ns[:, j].sum()),
                         "clusters": int((ns[:, j] > 0).sum()), "mean": result.estimate[j],
                         "se": result.se[j], "ci_low": result.low[j], "ci_high": result.high[j],
                         "method": result.method[j]})
    table = pd.DataFrame(rows, columns=keys + ["dimension", "n", "clusters", "mean", "se", "ci_low",
                                               "ci_high", "method"])
    # an interval of zero width covers nothing but its point; a cell at the top of the scale is one
    table["degenerate"] = (table["method"] == "degenerate").astype(bool)
    table["ceiling"] = (table["mean"] >= SCORE_RANGE[1] - 1e-9).astype(bool)
    if table.empty:
        return table
    honest = counts(df, keys)
    return table.merge(honest, on=keys + ["dimension"], how="left")


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise MsmEvalError(f"confidence level must be between 0 and 1, got {level}", field="level")


# --------------------------------------------------------------------------- compare

def compare(df: pd.DataFrame, baseline: str, candidate: str, by: str = "run", level: float = 0.95,
            n_resamples: int = 10_000, seed: int = 0, correction: Correction = "holm",
            alternative: Alternative = "two-sided", paired: bool = True) -> pd.DataFrame:
    """Per dimension, candidate - baseline: `delta, se, ci_low, ci_high, p_value, p_adj, n_pairs,
    clusters, corr` plus `baseline_mean, candidate_mean, method, mde` and each side's honest counts
    of sample-epochs (`baseline_scored, baseline_missing, baseline_unscored, baseline_refused,
    baseline_error` and the same with `candidate_`).

    Paired on `sample_id` (only samples both groups scored), clustered on the baseline's
    `cluster`; the p-value is a cluster-level sign-flip permutation test of the summed paired
    differences (`alternative`: "less" = candidate lower). `correction` adjusts p-values across
    the dimensions (Holm, Benjamini-Hochberg "bh", Benjamini-Yekutieli "by", or None).
    `mde` is the approximate minimum detectable effect at 80% power for the test reported: the
    effect at which a t test with C − 1 df has 80% power at alpha = 1 − level split over the
    dimensions (Bonferroni, the first Holm step) when a correction is applied, for the
    `alternative` tested, times the simulation-calibrated factor `sign_flip_mde_factor` (1.05 +
    2/C, `COMPARE_MDE_CALIBRATION`) for the sign-flip test; infinite when that test cannot reach
    the level at all. With `paired=False` it is the uncalibrated t value on the test's degrees of
    freedom.
    With `paired=False` the groups are compared as independent samples (Welch-type cluster t,
    CR2 variance per side, the smaller side's Bell-McCaffrey df), for runs that do not share
    samples.
    """
    _check_level(level)
    samples = sample_level(df, by)
    groups = set(samples[by].unique())
    for label, name in ((baseline, "baseline"), (candidate, "candidate")):
        if label not in groups:
            raise MsmEvalError(f"{name} '{label}' is not a value of column '{by}'", field=by,
                               hint="choose one of: " + ", ".join(sorted(map(str, groups))))
    base = samples[samples[by] == baseline]
    cand = samples[samples[by] == candidate]
    if not paired:
        unpaired = _compare_unpaired(base, cand, level, n_resamples, seed, correction, alternative)
        return _with_side_counts(unpaired, df, by, baseline, candidate)
    dims = sorted(set(base["dimension"]) | set(cand["dimension"]))
    merged = _pairs(base, cand)
    resampler = _Resampler(n_resamples, seed)
    sums, ns, equal, bounds = _cluster_arrays(merged, "diff", dims)
    result = _cluster_bootstrap(sums, ns, resampler, level, equal, bounds)
    p_values = _sign_flip_p(sums, ns, resampler, alternative)
    by_dim = {dim: part for dim, part in merged.groupby("dimension", sort=False)}
    empty = merged.iloc[:0]
    rows = []
    for j, dim in enumerate(dims):
        pairs = by_dim.get(dim, empty)
        rows.append({"dimension": dim, "delta": result.estimate[j], "se": result.se[j],
                     "ci_low": result.low[j], "ci_high": result.high[j], "p_value": p_values[j],
                     "n_pairs": int(len(pairs)), "clusters": int((ns[:, j] > 0).sum()),
                     "corr": _pearson(pairs["score_b"].to_numpy(), pairs["score_c"].to_numpy()),
                     "baseline_mean": float(pairs["score_b"].mean()) if len(pairs) else np.nan,
                     "candidate_mean": float(pairs["score_c"].mean()) if len(pairs) else np.nan,
                     "method": result.method[j]})
    table = pd.DataFrame(rows, columns=["dimension", "delta", "se", "ci_low", "ci_high", "p_value",
                                        "n_pairs", "clusters", "corr", "baseline_mean",
                                        "candidate_mean", "method"])
    table.insert(table.columns.get_loc("p_value") + 1, "p_adj", adjust_p(table["p_value"].to_numpy(), correction))
    tests = int(table["p_value"].notna().sum()) if correction else 1
    table["mde"] = paired_compare_mde(table["se"].to_numpy(), table["clusters"].to_numpy(dtype=float), level=level,
                                      alternative=alternative, tests=tests, n_resamples=n_resamples)
    return _with_side_counts(table, df, by, baseline, candidate)


def paired_compare_mde(se: float | np.ndarray, clusters: float | np.ndarray, *, level: float = 0.95,
                       alternative: Alternative = "two-sided", tests: int = 1, n_resamples: int = 10_000,
                       power: float = 0.8) -> np.ndarray:
    """The `mde` column of a paired `compare`: the effect at which a t test with C − 1 df has
    `power` at alpha = 1 − level over `tests` (Bonferroni, Holm's first step), times the
    simulation-calibrated sign-flip factor 1.05 + 2/C (`COMPARE_MDE_CALIBRATION`, fitted at 80%
    power); infinite where the sign-flip test cannot reach the level at all (too few clusters
    for the correction), NaN with fewer than 2 clusters. Planning tables (`scenario_stats`) use
    the same rule, so a planned MDE is the one the comparison will report."""
    se_arr = np.asarray(se, dtype=float)
    c = np.broadcast_to(np.asarray(clusters, dtype=float), se_arr.shape)
    usable = np.where(c >= 2, c, np.nan)
    mde = minimum_detectable_effect(se_arr, alpha=1.0 - level, power=power, alternative=alternative,
                                    df=usable - 1, tests=tests)
    # the sign-flip test cannot go below its smallest p-value: with too few clusters for the
    # correction applied, no effect is detectable at all
    smallest = smallest_sign_flip_p(c, n_resamples) * (2.0 if alternative == "two-sided" else 1.0)
    mde = np.asarray(mde) * sign_flip_mde_factor(usable, COMPARE_MDE_CALIBRATION)
    return np.where(np.isnan(mde) | (tests * smallest < 1.0 - level), mde, np.inf)


def _pairs(base: pd.DataFrame, cand: pd.DataFrame) -> pd.DataFrame:
    merged = base.merge(cand, on=["dimension", "sample_id"], suffixes=("_b", "_c"))
    merged = merged[merged["score_b"].notna() & merged["score_c"].notna()].copy()
    merged["diff"] = merged["score_c"] - merged["score_b"]
    merged["cluster"] = merged["cluster_b"]
    return merged


def paired_frame(df: pd.DataFrame, baseline: str, candidate: str, by: str = "run") -> pd.DataFrame:
    """The samples both groups scored, one row per (dimension, sample_id): `score_b`, `score_c`,
    `diff` = candidate − baseline (epochs averaged first) and `cluster` (the baseline's)."""
    samples = sample_level(df, by)
    return _pairs(samples[samples[by] == baseline], samples[samples[by] == candidate])


COUNT_COLUMNS = ("scored", "missing", "unscored", "refused", "error")


def _with_side_counts(table: pd.DataFrame, df: pd.DataFrame, by: str, baseline: str, candidate: str) -> pd.DataFrame:
    """Append each side's honest denominators (sample-epochs per dimension: `baseline_scored`,
    `baseline_missing`, `baseline_unscored`, `baseline_refused`, `baseline_error`, and the same
    for `candidate_`), so every difference carries what was left out of its pairs."""
    honest = counts(df, by)
    for label, prefix in ((baseline, "baseline_"), (candidate, "candidate_")):
        side = honest[honest[by] == label].set_index("dimension")
        for column in COUNT_COLUMNS:
            values = table["dimension"].map(side[column]) if not side.empty else pd.Series(0, index=table.index)
            table[prefix + column] = values.fillna(0).astype(int).to_numpy()
    return table


def _compare_unpaired(base: pd.DataFrame, cand: pd.DataFrame, level: float, n_resamples: int, seed: int,
                      correction: Correction, alternative: Alternative) -> pd.DataFrame:
    """Independent groups: difference of the two ratio-of-sums means with a Welch-type cluster t:
    each side's CR2 cluster-robust variance (unpooled), the smaller of the two sides'
    Bell-McCaffrey degrees of freedom (C − 1 with equal cluster sizes), a t interval and a t
    p-value. (A normal-approximation p-value with percentile
    intervals had 9% type-I error at 8 clusters; this holds the level there, see
    benchmarks/stats_simulation.py.) `n_resamples` and `seed` are unused."""
    del n_resamples, seed
    dims = sorted(set(base["dimension"]) & set(cand["dimension"]))
    base = base[base["dimension"].isin(dims)]
    cand = cand[cand["dimension"].isin(dims)]
    sums_b, ns_b, _, _ = _cluster_arrays(base, "score", dims)
    sums_c, ns_c, _, _ = _cluster_arrays(cand, "score", dims)
    mean_b, se_b, df_b = cluster_robust_mean(sums_b, ns_b)
    mean_c, se_c, df_c = cluster_robust_mean(sums_c, ns_c)
    delta = mean_c - mean_b
    var_b, var_c = se_b ** 2, se_c ** 2
    se = np.sqrt(var_b + var_c)
    with np.errstate(invalid="ignore", divide="ignore"):
        # the smaller side's degrees of freedom, not the Welch-Satterthwaite combination: with
        # clustered integer scores and unequal cluster sizes each side's variance has fewer
        # effective degrees of freedom than its Bell-McCaffrey value, and the combination (which
        # can exceed both) rejected 6-7% at alpha 0.05 in benchmarks/stats_simulation.py
        df = np.fmin(df_b, df_c)
        finite = np.isfinite(df) & (se > 0)
        dfs = np.where(finite, df, 1.0)
        half = sps.t.ppf(1 - (1.0 - level) / 2, dfs) * se
        t = delta / np.where(se > 0, se, np.nan)
        p = {"two-sided": 2 * sps.t.sf(np.abs(t), dfs), "less": sps.t.cdf(t, dfs),
             "greater": sps.t.sf(t, dfs)}[alternative]
    p = np.where(finite, p, np.nan)
    low, high = np.where(finite, delta - half, np.nan), np.where(finite, delta + half, np.nan)
    table = pd.DataFrame({"dimension": dims, "delta": delta, "se": se, "ci_low": low, "ci_high": high,
                          "p_value": p, "n_pairs": 0, "clusters": (ns_b > 0).sum(0) + (ns_c > 0).sum(0),
                          "corr": np.nan, "baseline_mean": mean_b, "candidate_mean": mean_c,
                          "method": "welch-cluster-t"})
    table.insert(table.columns.get_loc("p_value") + 1, "p_adj", adjust_p(table["p_value"].to_numpy(), correction))
    tests = int(np.isfinite(p).sum()) if correction else 1
    table["mde"] = minimum_detectable_effect(se, alpha=1.0 - level, alternative=alternative, df=df, tests=tests)
    return table


def _sign_flip_p(sums: np.ndarray, ns: np.ndarray, resampler: _Resampler, alternative: Alternative) -> np.ndarray:
    """Cluster-level sign-flip permutation p-values for the summed paired differences."""
    n_clusters, n_dims = sums.shape
    p = np.full(n_dims, np.nan)
    if n_clusters == 0:
        return p
    signs, exact = resampler.signs(n_clusters)
    null = signs @ sums
    observed = sums.sum(0)
    tol = 1e-9 * (1.0 + np.abs(sums).sum(0))
    if alternative == "two-sided":
        extreme = np.abs(null) >= np.abs(observed) - tol
    elif alternative == "less":
        extreme = null <= observed + tol
    elif alternative == "greater":
        extreme = null >= observed - tol
    else:
        raise MsmEvalError(f"unknown alternative '{alternative}'", field="alternative",
                           hint="use two-sided, less or greater")
    hits = extreme.sum(0)
    p = hits / signs.shape[0] if exact else (hits + 1.0) / (signs.shape[0] + 1.0)
    return np.where(ns.sum(0) > 0, np.minimum(p, 1.0), np.nan)


def cluster_robust_mean(sums: np.ndarray, ns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of per-cluster sums and counts (C x D): the ratio-of-sums mean, its CR2
    cluster-robust standard error and its Bell-McCaffrey degrees of freedom.

    The mean is the intercept of an OLS fit with clustered errors; for that model the CR2
    (Bell-McCaffrey) correction has a closed form: var = Σ_c r_c² / (1 − n_c/N) / N², with
    r_c = S_c − mean·n_c the cluster's summed residual. The degrees of freedom are Bell and
    McCaffrey's Satterthwaite approximation under a working model of independent samples
    (`bell_mccaffrey_df`): C − 1 with equal cluster sizes (then the t statistic is the exact t
    test on cluster means), fewer when the sizes differ, down to about 1 when one cluster holds
    most samples (where C − 1 df let 10-19% of non-inferiority false passes through at alpha 0.05;
    see docs/ci-gate.md). NaN where fewer than two clusters hold data."""
    sums, ns = np.atleast_2d(sums), np.atleast_2d(ns)
    total_n = ns.sum(0)
    clusters = (ns > 0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(total_n > 0, sums.sum(0) / np.where(total_n > 0, total_n, 1), np.nan)
        resid = sums - mean[None, :] * ns
        leverage = ns / np.where(total_n > 0, total_n, 1)[None, :]
        terms = np.where(ns > 0, resid ** 2 / np.where(leverage < 1, 1 - leverage, np.nan), 0.0)
        var = terms.sum(0) / total_n ** 2
    ok = clusters >= 2
    se = np.where(ok, np.sqrt(np.where(ok, var, np.nan)), np.nan)
    return mean, se, np.where(ok, bell_mccaffrey_df(ns), np.nan).astype(float)


def bell_mccaffrey_df(ns: np.ndarray) -> np.ndarray:
    """Bell-McCaffrey degrees of freedom of the CR2 variance of a ratio-of-sums mean, per column
    of per-cluster counts (C x D; clusters with count 0 do not count).

    The CR2 variance is a quadratic form in the residuals, y'My; under a working model of
    independent, equal-variance samples its Satterthwaite degrees of freedom are
    tr(M)² / tr(M²). For the intercept-only model M has the C x C form (up to a constant)
    diag(a) − v v'/N with a_c = n_c / (1 − n_c/N) and v_c = n_c / sqrt(1 − n_c/N), whose traces are
    closed-form. Equal sizes give exactly C − 1. NaN with fewer than two clusters."""
    ns = np.atleast_2d(np.asarray(ns, dtype=float))
    total = ns.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = ns / np.where(total > 0, total, np.nan)[None, :]
        inv = np.where(ns > 0, 1.0 / (1.0 - share), 0.0)
        a = ns * inv
        v2 = ns ** 2 * inv
        trace = a.sum(0) - v2.sum(0) / total
        trace_sq = (a ** 2).sum(0) - 2.0 * (a * v2).sum(0) / total + (v2.sum(0) / total) ** 2
        df = trace ** 2 / trace_sq
    return np.where((ns > 0).sum(0) >= 2, df, np.nan)


def cluster_t_test(sums: np.ndarray, ns: np.ndarray, null: float | np.ndarray = 0.0,
                   alternative: Alternative = "two-sided") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One- or two-sided cluster-robust t test of H0: mean = `null` (CR2 standard error, Student t
    with Bell-McCaffrey df: C − 1 for equal cluster sizes, fewer for unequal ones). Returns
    (mean, se, df, p); `alternative="greater"` tests mean > null."""
    mean, se, df = cluster_robust_mean(sums, ns)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (mean - np.asarray(null, dtype=float)) / se
        # zero standard error: every cluster equal; the sign of the distance to the null decides
        t = np.where((se == 0) & np.isfinite(mean), np.sign(mean - null) * np.inf, t)
        dfs = np.where(np.isfinite(df), df, 1.0)
        if alternative == "greater":
            p = sps.t.sf(t, dfs)
        elif alternative == "less":
            p = sps.t.cdf(t, dfs)
        elif alternative == "two-sided":
            p = 2 * sps.t.sf(np.abs(t), dfs)
        else:
            raise MsmEvalError(f"unknown alternative '{alternative}'", field="alternative",
                               hint="use two-sided, less or greater")
    p = np.where(np.isfinite(df) & np.isfinite(mean), np.minimum(p, 1.0), np.nan)
    return mean, se, df, p


def sign_flip_p(sums: np.ndarray, ns: np.ndarray, n_resamples: int = 10_000, seed: int = 0,
                alternative: Alternative = "two-sided") -> np.ndarray:
    """Cluster-level sign-flip permutation p-values for per-cluster sums (C x D) of paired
    differences (exact when 2^C <= n_resamples, else Monte Carlo with p = (hits+1)/(n+1))."""
    return _sign_flip_p(np.atleast_2d(sums), np.atleast_2d(ns), _Resampler(n_resamples, seed), alternative)


def smallest_sign_flip_p(n_clusters: int | np.ndarray, n_resamples: int) -> np.ndarray:
    """The smallest one-sided p-value the sign-flip test can give with C clusters: 1/2^C when every
    sign pattern is enumerated (2^C <= n_resamples, C <= 20), else 1/(n_resamples + 1)."""
    c = np.asarray(n_clusters, dtype=float)
    exact = (c <= 20) & (2.0 ** np.minimum(c, 60) <= n_resamples)
    return np.where(exact, 2.0 ** -np.minimum(c, 60), 1.0 / (n_resamples + 1.0))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


# --------------------------------------------------------------------------- multiplicity

def adjust_p(p_values: Sequence[float] | np.ndarray, method: Correction = "holm") -> np.ndarray:
    """Adjusted p-values across a family (NaN entries are left out of the family and stay NaN).

    `holm`: Holm's step-down (family-wise error); `bh` / `by`: Benjamini-Hochberg /
    Benjamini-Yekutieli (false discovery rate, via scipy); None: unadjusted.
    """
    p = np.asarray(p_values, dtype=float)
    out = p.copy()
    ok = np.isfinite(p)
    if method is None or not ok.any():
        return out
    family = p[ok]
    if method == "holm":
        order = np.argsort(family)
        m = family.size
        stepped = np.maximum.accumulate((m - np.arange(m)) * family[order]).clip(max=1.0)
        adjusted = np.empty_like(stepped)
        adjusted[order] = stepped
    elif method in ("bh", "by"):
        adjusted = sps.false_discovery_control(family, method=method)
    else:
        raise MsmEvalError(f"unknown correction '{method}'", field="correction", hint="use holm, bh, by or none")
    out[ok] = adjusted
    return out


# --------------------------------------------------------------------------- power

def _critical(alpha: float, alternative: Alternative, df: float | np.ndarray | None = None) -> np.ndarray | float:
    """Critical value of the test: normal, or Student t with `df` degrees of freedom."""
    q = 1 - alpha / 2 if alternative == "two-sided" else 1 - alpha
    return sps.norm.ppf(q) if df is None else sps.t.ppf(q, np.asarray(df, dtype=float))


def _z_alpha(alpha: float, alternative: Alternative) -> float:
    return float(_critical(alpha, alternative))


def power(effect: float | np.ndarray, se: float | np.ndarray, alpha: float = 0.05,
          alternative: Alternative = "two-sided", df: float | np.ndarray | None = None) -> np.ndarray | float:
    """Probability that a test at level `alpha` detects a true difference `effect` when the
    estimate's standard error is `se`: normal approximation, or with `df` a t test on `df`
    degrees of freedom (noncentral t)."""
    z = _critical(alpha, alternative, df)
    ratio = np.abs(np.asarray(effect, dtype=float)) / np.asarray(se, dtype=float)
    if df is None:
        result = sps.norm.sf(z - ratio)
        if alternative == "two-sided":
            result = result + sps.norm.cdf(-z - ratio)
    else:  # noncentral t with noncentrality effect / se
        dfs = np.asarray(df, dtype=float)
        result = sps.nct.sf(z, dfs, ratio)
        if alternative == "two-sided":
            result = result + sps.nct.cdf(-z, dfs, ratio)
    return float(result) if np.ndim(result) == 0 else result


def minimum_detectable_effect(se: float | np.ndarray, alpha: float = 0.05, power: float = 0.8,
                              alternative: Alternative = "two-sided", df: float | np.ndarray | None = None,
                              tests: int = 1) -> np.ndarray | float:
    """Approximate smallest true difference detected with probability `power` at the current
    standard error, for a test at level alpha' = alpha/tests (Bonferroni: the first, hardest step
    of Holm over `tests` hypotheses, so conservative for Holm and BH; halved again when
    two-sided).

    Without `df`: the normal formula (z_{1-alpha'} + z_{power})·se. With `df` (C − 1 for C
    clusters): the effect at which a t test on `df` degrees of freedom has power `power`
    (noncentral t), which is larger than the normal value when clusters are few. Both treat `se`
    as known and describe a t / z test; the permutation tests of `compare` and the gate are
    somewhat less powerful with few clusters. `benchmarks/stats_simulation.py` measures the power
    actually reached at this value."""
    level = alpha / max(int(tests), 1)
    se_arr = np.asarray(se, dtype=float)
    if df is None:
        value = (_critical(level, alternative) + sps.norm.ppf(power)) * se_arr
        return float(value) if np.ndim(value) == 0 else value
    dfs = np.broadcast_to(np.asarray(df, dtype=float), np.broadcast(se_arr, np.asarray(df)).shape).copy()
    ok = np.isfinite(dfs) & (dfs >= 1)
    dfs = np.where(ok, dfs, 1.0)
    crit = _critical(level, alternative, dfs)
    low, high = np.zeros_like(dfs), np.full_like(dfs, 1.0)

    def reached(nc: np.ndarray) -> np.ndarray:
        result = sps.nct.sf(crit, dfs, nc)
        if alternative == "two-sided":
            result = result + sps.nct.cdf(-crit, dfs, nc)
        return result

    while True:  # bracket the noncentrality giving `power`
        short = reached(high) < power
        if not short.any() or high.max() > 1e6:
            break
        high = np.where(short, high * 2, high)
    for _ in range(60):
        mid = (low + high) / 2
        below = reached(mid) < power
        low, high = np.where(below, mid, low), np.where(below, high, mid)
    value = np.where(ok, high, np.nan) * se_arr
    return float(value) if np.ndim(value) == 0 else value


MDE_CALIBRATION = (1.05, 1.0)
"""(a, b) of the gate's sign-flip MDE calibration factor a + b/C (see `sign_flip_mde_factor`)."""
COMPARE_MDE_CALIBRATION = (1.05, 2.0)
"""(a, b) of `compare`'s calibration factor a + b/C (two-sided, bootstrap `se`)."""


def sign_flip_mde_factor(clusters: float | np.ndarray,
                         calibration: tuple[float, float] = MDE_CALIBRATION) -> np.ndarray | float:
    """Factor by which the analytic t-based MDE is multiplied where a cluster sign-flip test
    decides: a + b/C, 1.05 + 1/C for the gate's detectable drop (`MDE_CALIBRATION`) and
    1.05 + 2/C for `compare`'s `mde` (`COMPARE_MDE_CALIBRATION`: at 1.05 + 1/C its two-sided test
    on the bootstrap `se` still reached only 72% power at 15 clusters, 83% and 82% at 40 and 150).

    Calibrated by simulation (`benchmarks/stats_simulation.py`: integer scores, latent ICC 0.3 and
    0.6, 15 dimensions, Holm, alpha 0.05). At the uncalibrated analytic value the sign-flip gate
    reached 63-71% power at 15 clusters and about 75% at 40 and 150, not 80%: the permutation test
    on summed differences loses power with few clusters (the 1/C part), and integer scores clipped
    at ±3 make the paired differences more variable under a real drop than under none, so the
    standard error seen when no drop happened understates the one at the drop (the 1.05 part,
    which a t test suffers as well). The result is still approximate: it holds for designs like
    the simulated one, not for every correlation structure."""
    c = np.asarray(clusters, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = calibration[0] + calibration[1] / c
    return float(factor) if np.ndim(factor) == 0 else factor


def required_samples(effect: float, se: float, n: int, alpha: float = 0.05, power: float = 0.8,
                     alternative: Alternative = "two-sided") -> int:
    """Samples needed to detect `effect`, scaling the current `se` at `n` samples as 1/sqrt(n)."""
    mde = minimum_detectable_effect(se, alpha=alpha, power=power, alternative=alternative)
    return int(np.ceil(n * (float(mde) / abs(effect)) ** 2))


# --------------------------------------------------------------------------- binary rates

def wilson_interval(successes: np.ndarray | float, n: np.ndarray | float, level: float = 0.95,
                    z: np.ndarray | float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion (accepts fractional successes from epoch means and
    fractional `n` from an effective sample size); `z` overrides the normal critical value."""
    z = sps.norm.ppf(1 - (1 - level) / 2) if z is None else np.asarray(z, dtype=float)
    k, n = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        phat = k / n
        denom = 1 + z ** 2 / n
        centre = (phat + z ** 2 / (2 * n)) / denom
        half = z * np.sqrt(phat * (1 - phat) / n + z ** 2 / (4 * n ** 2)) / denom
    return centre - half, centre + half


def clustered_wilson_interval(rate: np.ndarray | float, n: np.ndarray | float, clustered_var: np.ndarray | float,
                              clusters: np.ndarray | float, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wilson interval with the Korn-Graubard effective sample size for clustered binary data.

    `n_eff = rate (1 - rate) / clustered_var`, capped at `n` (clustering never adds information),
    and a Student-t critical value with `clusters - 1` df. When `n_eff` cannot be estimated (rate
    exactly 0 or 1, or zero clustered variance) the plain `n` is used, so the interval stays
    informative where a cluster bootstrap collapses to a point (e.g. no harmful action at all).
    The same construction as inspect's `ci_wilson(cluster=...)`. Returns (low, high, n_eff);
    NaN with fewer than two clusters."""
    rate, n = np.asarray(rate, dtype=float), np.asarray(n, dtype=float)
    var, clusters = np.asarray(clustered_var, dtype=float), np.asarray(clusters, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimable = (rate > 0) & (rate < 1) & (var > 0)
        n_eff = np.where(estimable, np.minimum(rate * (1 - rate) / np.where(var > 0, var, 1), n), n)
        z = np.where(clusters >= 2, sps.t.ppf(1 - (1 - level) / 2, np.maximum(clusters - 1, 1)), np.nan)
    low, high = wilson_interval(rate * n_eff, n_eff, level, z=z)
    return low, high, n_eff


def _clustered_variance(samples: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group and dimension, the cluster-robust variance of the mean of sample scores
    (ratio estimator, with the C/(C-1) finite-cluster factor): C/(C-1) sum_c (S_c - m N_c)^2 / N^2."""
    data = samples[samples["score"].notna()]
    per_cluster = data.groupby(keys + ["dimension", "cluster"], sort=True, observed=True)["score"].agg(["sum", "count"])
    per_cluster = per_cluster.reset_index()
    totals = per_cluster.groupby(keys + ["dimension"], observed=True).agg(total=("sum", "sum"), n=("count", "sum"),
                                                                         clusters=("cluster", "nunique"))
    per_cluster = per_cluster.merge(totals.reset_index(), on=keys + ["dimension"])
    mean = per_cluster["total"] / per_cluster["n"]
    per_cluster["sq"] = (per_cluster["sum"] - mean * per_cluster["count"]) ** 2
    out = per_cluster.groupby(keys + ["dimension"], observed=True).agg(sq=("sq", "sum"), n=("n", "first"),
                                                                      clusters=("clusters", "first")).reset_index()
    c = out["clusters"].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["clustered_var"] = np.where(c > 1, c / (c - 1) * out["sq"] / out["n"].astype(float) ** 2, np.nan)
    return out[keys + ["dimension", "clustered_var"]]


def rates(df: pd.DataFrame, by: str | Sequence[str] = "run", dimensions: Sequence[str] = ("harmful", "verdict"),
          level: float = 0.95, n_resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Binary rates (e.g. harmful action) per group and dimension: `successes, n, rate`; the
    Wilson interval (`wilson_low, wilson_high`, ignores clustering); the clustered Wilson interval
    (`wilson_cluster_low, wilson_cluster_high`, Korn-Graubard effective sample size `n_eff`, t
    with clusters - 1 df); the cluster-bootstrap interval (`ci_low, ci_high`, `method`); with
    `clusters` and the honest counts."""
    keys = _keys(by)
    part = df[df["dimension"].isin(list(dimensions))]
    columns = keys + ["dimension", "successes", "n", "clusters", "rate", "wilson_low", "wilson_high",
                      "wilson_cluster_low", "wilson_cluster_high", "n_eff", "ci_low", "ci_high", "method"]
    if part.empty:
        return pd.DataFrame(columns=columns)
    table = summarize(part, by=keys, level=level, n_resamples=n_resamples, seed=seed)
    table["rate"] = table["mean"]
    table["successes"] = table["mean"] * table["n"]
    table["wilson_low"], table["wilson_high"] = wilson_interval(table["successes"], table["n"], level)
    variance = _clustered_variance(sample_level(part, keys), keys)
    table = table.merge(variance, on=keys + ["dimension"], how="left")
    low, high, n_eff = clustered_wilson_interval(table["rate"], table["n"], table["clustered_var"], table["clusters"],
                                                 level)
    table["wilson_cluster_low"], table["wilson_cluster_high"], table["n_eff"] = low, high, n_eff
    extra = [c for c in table.columns if c not in columns and c not in ("mean", "se", "clustered_var")]
    return table[columns + extra]


def below_ceiling(df: pd.DataFrame, by: str | Sequence[str] = "run", level: float = 0.95,
                  n_resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Ceiling-aware summary of -3..+3 dimensions: per group and dimension, the share of scored
    samples whose (epoch-averaged) score is below +3, `share_below`, with its clustered Wilson
    interval (`low, high`: Korn-Graubard effective sample size, t with C − 1 df) and `n`,
    `clusters`, `n_eff`. Where a mean sits at the ceiling and its bootstrap interval collapses to
    [3, 3], this rate still has an informative interval (e.g. 0 of 40 below: [0, 0.09])."""
    keys = _keys(by)
    _check_columns(df, keys + ["sample_id", "cluster", "dimension", "score", "status"])
    data = usable_scores(df[df["dimension"] != NO_DIMENSION])
    below = data.assign(score=np.where(data["score"].notna(), (data["score"] < SCORE_RANGE[1]).astype(float), np.nan))
    samples = sample_level(below, keys)
    samples = samples[samples["score"].notna()].copy()
    samples["score"] = (samples["score"] > 0).astype(float)  # a sample is below when any epoch was
    columns = keys + ["dimension", "n", "clusters", "share_below", "low", "high", "n_eff"]
    if samples.empty:
        return pd.DataFrame(columns=columns)
    grouped = samples.groupby(keys + ["dimension"], sort=True, observed=True)
    table = grouped.agg(n=("score", "size"), clusters=("cluster", "nunique"), share_below=("score", "mean"))
    table = table.reset_index()
    variance = _clustered_variance(samples, keys)
    table = table.merge(variance, on=keys + ["dimension"], how="left")
    low, high, n_eff = clustered_wilson_interval(table["share_below"], table["n"], table["clustered_var"],
                                                 table["clusters"], level)
    table["low"], table["high"], table["n_eff"] = low, high, n_eff
    return table[columns]


# --------------------------------------------------------------------------- agreement

@dataclass(frozen=True)
class AlphaResult:
    """Krippendorff's alpha with a bootstrap-over-units percentile interval."""

    alpha: float
    ci_low: float
    ci_high: float
    n_units: int
    n_raters: int
    level: str


def krippendorff_alpha(ratings: np.ndarray | Sequence[Sequence[float]], level: str = "ordinal",
                       n_resamples: int = 2_000, seed: int = 0, confidence_level: float = 0.95) -> AlphaResult:
    """Krippendorff's alpha for a raters x units matrix (NaN = missing), levels nominal, ordinal
    or interval; the interval resamples units with replacement (vectorised over coincidence
    matrices). Alpha is NaN when fewer than two pairable values or no variation exist."""
    matrix = np.asarray(ratings, dtype=float)
    if matrix.ndim != 2:
        raise MsmEvalError("ratings must be a 2-D raters x units array", field="ratings")
    if level not in ("nominal", "ordinal", "interval"):
        raise MsmEvalError(f"unknown level '{level}'", field="level", hint="use nominal, ordinal or interval")
    pairable = np.isfinite(matrix).sum(0) >= 2
    matrix = matrix[:, pairable]
    n_units = int(matrix.shape[1])
    if n_units == 0:
        return AlphaResult(float("nan"), float("nan"), float("nan"), 0, int(matrix.shape[0]), level)
    domain = np.unique(matrix[np.isfinite(matrix)])
    codes = np.searchsorted(domain, np.where(np.isfinite(matrix), matrix, domain[0]))
    n_values = domain.size
    per_unit = np.zeros((n_units, n_values))
    for rater in range(matrix.shape[0]):
        ok = np.isfinite(matrix[rater])
        np.add.at(per_unit, (np.nonzero(ok)[0], codes[rater, ok]), 1.0)
    m = per_unit.sum(1)
    coincidence = (per_unit[:, :, None] * per_unit[:, None, :]
                   - per_unit[:, :, None] * np.eye(n_values)[None]) / (m - 1)[:, None, None]
    flat = coincidence.reshape(n_units, -1)
    point = _alpha_from_coincidence(flat.sum(0)[None, :], domain, level)[0]
    weights = _Resampler(n_resamples, seed).weights(n_units)
    boot = _alpha_from_coincidence(weights @ flat, domain, level)
    tail = (1 - confidence_level) / 2
    finite = boot[np.isfinite(boot)]
    low, high = (np.quantile(finite, [tail, 1 - tail]) if finite.size else (np.nan, np.nan))
    return AlphaResult(float(point), float(low), float(high), n_units, int(matrix.shape[0]), level)


def _alpha_from_coincidence(flat: np.ndarray, domain: np.ndarray, level: str) -> np.ndarray:
    """Alpha for each row of flattened coincidence matrices (R x V*V)."""
    v = domain.size
    coincidence = flat.reshape(-1, v, v)
    marginals = coincidence.sum(2)
    total = marginals.sum(1)
    if level == "nominal":
        delta = np.broadcast_to(1.0 - np.eye(v), coincidence.shape)
    elif level == "interval":
        delta = np.broadcast_to((domain[:, None] - domain[None, :]) ** 2, coincidence.shape)
    else:
        cumulative = np.cumsum(marginals, axis=1)
        lo_idx = np.minimum.outer(np.arange(v), np.arange(v))
        hi_idx = np.maximum.outer(np.arange(v), np.arange(v))
        between = cumulative[:, hi_idx] - cumulative[:, lo_idx] + marginals[:, lo_idx]
        delta = (between - (marginals[:, :, None] + marginals[:, None, :]) / 2.0) ** 2
    observed = (coincidence * delta).sum((1, 2))
    expected = (marginals[:, :, None] * marginals[:, None, :] * delta).sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1.0 - (total - 1.0) * observed / expected
    return np.where(expected > 0, alpha, np.nan)
