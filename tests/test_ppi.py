"""Prediction-powered inference: agreement with ppi_py, clustering, strata, paired deltas, validity."""

from __future__ import annotations

import numpy as np
import pytest

from msm_eval.errors import MsmEvalError
from msm_eval.ppi import classical_mean, ppi_delta, ppi_mean, tuned_lambda

# Reference values from ppi_py 0.2.3 (`ppi_mean_pointestimate`, `ppi_mean_ci(alpha=0.05)`) on the
# data of `reference_data()`, computed in a separate environment (ppi_py pulls in numba and is not
# a dependency of this project): lam -> (point, low, high).
PPI_PY = {
    None: (0.6065282590113215, 0.34924006739632063, 0.8638164506263223),
    1.0: (0.6137367521836297, 0.34240129953635356, 0.8850722048309058),
    0.5: (0.5818683760918149, 0.2883786346870718, 0.8753581174965579),
}


def reference_data():
    rng = np.random.default_rng(15)
    big_n, n = 300, 40
    y_all = np.clip(np.round(rng.normal(0.5, 1.4, big_n + n)), -3, 3)
    f_all = np.clip(y_all + 0.7 + rng.normal(0, 0.8, big_n + n), -3, 3)
    human = np.where(np.arange(big_n + n) < n, y_all, np.nan)
    return f_all, human, y_all


@pytest.mark.parametrize("lam", [None, 1.0, 0.5])
def test_matches_ppi_py(lam):
    judge, human, _ = reference_data()
    result = ppi_mean(judge, human, lam=lam)
    point, low, high = PPI_PY[lam]
    assert result.estimate == pytest.approx(point, abs=1e-12)
    assert result.ci_low == pytest.approx(low, abs=1e-12)
    assert result.ci_high == pytest.approx(high, abs=1e-12)
    assert result.n_labelled == 40 and result.n_unlabelled == 300


def test_lambda_zero_is_the_human_mean_and_tuning_is_clipped():
    judge, human, _ = reference_data()
    assert ppi_mean(judge, human, lam=0.0).estimate == pytest.approx(np.nanmean(human))
    labelled = np.isfinite(human)
    # a judge anti-correlated with people gets lam 0 (never a negative weight)
    assert tuned_lambda(human[labelled], -judge[labelled], -judge[~labelled]) == 0.0


def test_corrects_a_biased_judge_where_the_judge_mean_does_not():
    judge, human, truth = reference_data()
    naive = classical_mean(judge)
    corrected = ppi_mean(judge, human)
    assert naive.ci_low > truth.mean()                      # the judge alone excludes the truth
    assert corrected.ci_low <= truth.mean() <= corrected.ci_high


def test_clusters_widen_the_interval_and_singletons_reduce_to_the_plain_case():
    judge, human, _ = reference_data()
    plain = ppi_mean(judge, human, lam=1.0)
    singletons = ppi_mean(judge, human, lam=1.0, clusters=np.arange(judge.size))
    assert singletons.se == pytest.approx(plain.se * np.sqrt(judge.size / (judge.size - 1)))
    # clusters of 10 consecutive samples that share a random offset in judge and human score
    rng = np.random.default_rng(3)
    cluster = np.arange(judge.size) // 10
    offset = rng.normal(0, 1.0, cluster.max() + 1)[cluster]
    clustered = ppi_mean(judge + offset, human + offset, lam=1.0, clusters=cluster)
    independent = ppi_mean(judge + offset, human + offset, lam=1.0)
    assert clustered.se > independent.se and clustered.clusters == 34
    assert clustered.method == "ppi_clustered"


def test_one_stratum_equals_no_strata_and_too_few_labels_is_reported():
    judge, human, _ = reference_data()
    assert ppi_mean(judge, human, strata=["a"] * judge.size).estimate == pytest.approx(
        ppi_mean(judge, human).estimate)
    sparse = human.copy()
    sparse[1:] = np.nan
    assert ppi_mean(judge, sparse).method == "too_few_labels"


def test_stratified_estimate_is_unbiased_under_unequal_label_rates():
    """Labels drawn at 50% in the top judge stratum and 5% elsewhere: the plain PPI estimate is
    biased, the stratified one is not (averaged over 400 draws)."""
    rng = np.random.default_rng(7)
    plain, stratified, truths = [], [], []
    for _ in range(400):
        y = rng.normal(0, 1, 600)
        f = y + 0.5 * y ** 2 + rng.normal(0, 0.5, 600)     # judge error depends on the score
        stratum = (f > np.quantile(f, 0.8)).astype(int)
        rate = np.where(stratum == 1, 0.5, 0.05)
        human = np.where(rng.random(600) < rate, y, np.nan)
        plain.append(ppi_mean(f, human, lam=1.0).estimate)
        stratified.append(ppi_mean(f, human, lam=1.0, strata=stratum).estimate)
        truths.append(y.mean())
    assert abs(np.mean(stratified) - np.mean(truths)) < 0.03
    assert abs(np.mean(plain) - np.mean(truths)) > 0.1


def test_delta_is_ppi_on_paired_differences():
    judge, human, _ = reference_data()
    rng = np.random.default_rng(1)
    shift_j = rng.normal(0.3, 0.5, judge.size)
    delta = ppi_delta(judge, judge + shift_j, human, human + shift_j + 0.2)
    direct = ppi_mean(shift_j, shift_j + 0.2 + 0 * human)
    assert delta.estimate == pytest.approx(direct.estimate)
    assert delta.n_labelled == 40


def test_bad_input_is_a_clear_error():
    with pytest.raises(MsmEvalError, match="same length"):
        ppi_mean([1.0, 2.0], [1.0])
    with pytest.raises(MsmEvalError, match="every sample needs a judge score"):
        ppi_mean([1.0, np.nan, 0.0], [1.0, 2.0, np.nan])
    with pytest.raises(MsmEvalError, match="level"):
        ppi_mean([1.0, 2.0, 3.0], [1.0, 2.0, np.nan], level=1.5)


def test_strata_with_too_few_labels_are_collapsed_into_neighbours():
    from msm_eval.ppi import collapse_strata

    strata = ["s-1"] * 4 + ["s+0"] * 4 + ["s+1"] * 4 + ["s+3"] * 4
    labelled = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    codes, merged = collapse_strata(strata, labelled)
    # s+0 (1 label) joins s-1 (its smaller neighbour by labels), s+3 (0 labels) joins s+1
    assert merged and list(codes) == [0] * 8 + [1] * 8
    judge = np.arange(16, dtype=float)
    human = np.where(labelled, judge + 1, np.nan)
    assert ppi_mean(judge, human, strata=strata).method.endswith("_stratified_collapsed")
    assert collapse_strata(["a", "a", "b", "b"], np.array([1, 1, 1, 1], dtype=bool))[1] is False
