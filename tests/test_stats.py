"""stats.py on simulated data with known truth: coverage, pairing, NaN, clusters, determinism,
degenerate data, multiplicity, power, rates and Krippendorff's alpha."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from conftest_results import simulate_frame
from msm_eval import stats
from msm_eval.errors import MsmEvalError


def _coverage_band(n: int, level: float) -> tuple[float, float]:
    """Two-sided 99.9% binomial tolerance band around the nominal level for n intervals."""
    return sps.binom.ppf(0.0005, n, level) / n, sps.binom.ppf(0.9995, n, level) / n


def test_summarize_coverage_near_nominal_with_unequal_clusters() -> None:
    rng = np.random.default_rng(11)
    hits, total = 0, 0
    for rep in range(100):
        sizes = rng.integers(1, 7, size=30)  # unequal cluster sizes
        frame = simulate_frame(30, sizes, dims=3, runs=(0.5,), cluster_sd=0.8, noise_sd=1.0, seed=rep)
        table = stats.summarize(frame, n_resamples=1_000, seed=rep)
        hits += int(((table["ci_low"] <= 0.5) & (table["ci_high"] >= 0.5)).sum())
        total += len(table)
    low, high = _coverage_band(total, 0.95)
    # small-sample bootstrap intervals run slightly narrow; allow 2 points below the band
    assert low - 0.02 <= hits / total <= high, hits / total


def test_compare_coverage_of_known_difference() -> None:
    hits, total = 0, 0
    for rep in range(60):
        frame = simulate_frame(25, 4, dims=3, runs=(0.0, 0.3), cluster_sd=1.0, noise_sd=0.8, seed=100 + rep,
                               shared_sample_sd=0.5)
        table = stats.compare(frame, "run0", "run1", n_resamples=1_000, seed=rep)
        hits += int(((table["ci_low"] <= 0.3) & (table["ci_high"] >= 0.3)).sum())
        total += len(table)
    low, high = _coverage_band(total, 0.95)
    assert low - 0.02 <= hits / total <= high, hits / total


def test_paired_interval_narrower_than_unpaired_under_correlation() -> None:
    frame = simulate_frame(30, 4, dims=4, runs=(0.0, 0.2), cluster_sd=1.0, noise_sd=0.5, seed=3,
                           shared_sample_sd=0.7)
    paired = stats.compare(frame, "run0", "run1", n_resamples=2_000)
    unpaired = stats.compare(frame, "run0", "run1", n_resamples=2_000, paired=False)
    width_paired = (paired["ci_high"] - paired["ci_low"]).to_numpy()
    width_unpaired = (unpaired["ci_high"] - unpaired["ci_low"]).to_numpy()
    assert (width_paired < 0.6 * width_unpaired).all()
    assert (paired["corr"] > 0.5).all()
    np.testing.assert_allclose(paired["delta"], unpaired["delta"], atol=1e-12)


def test_nan_scores_are_excluded_not_zeroed() -> None:
    frame = simulate_frame(10, 3, dims=2, seed=5)
    frame.loc[(frame["dimension"] == "dim0") & (frame["sample_id"].isin(["s0", "s1", "s2", "s3"])), "score"] = np.nan
    frame.loc[frame["dimension"] == "dim1", "score"] = np.nan
    table = stats.summarize(frame, n_resamples=500).set_index("dimension")
    expected = frame[(frame["dimension"] == "dim0")]["score"].mean()  # pandas skips NaN
    assert table.loc["dim0", "n"] == 26 and table.loc["dim0", "clusters"] == 9
    assert table.loc["dim0", "mean"] == pytest.approx(expected)
    assert table.loc["dim1", "n"] == 0 and math.isnan(table.loc["dim1", "mean"])
    assert math.isnan(table.loc["dim1", "ci_low"]) and table.loc["dim1", "method"] == "none"
    assert table.loc["dim1", "missing"] == 30  # NaN under status scored = not exercised


def test_ratio_of_sums_equals_sample_mean_for_unequal_clusters() -> None:
    frame = simulate_frame(6, [1, 2, 3, 8, 1, 5], dims=1, seed=9)
    row = stats.summarize(frame, n_resamples=500).iloc[0]
    assert row["mean"] == pytest.approx(frame["score"].mean())
    assert (row["n"], row["clusters"]) == (20, 6)


def test_epochs_are_averaged_within_sample_first() -> None:
    frame = simulate_frame(8, 2, dims=1, epochs=3, seed=2)
    row = stats.summarize(frame, n_resamples=500).iloc[0]
    per_sample = frame.groupby("sample_id")["score"].mean()
    assert row["n"] == 16 and row["mean"] == pytest.approx(per_sample.mean())
    assert row["scored"] == 48  # the counts keep the sample-epoch denominators


def test_deterministic_given_seed() -> None:
    frame = simulate_frame(12, 3, dims=3, runs=(0.0, 0.4), seed=1)
    first = stats.summarize(frame, n_resamples=800, seed=4)
    again = stats.summarize(frame, n_resamples=800, seed=4)
    other = stats.summarize(frame, n_resamples=800, seed=5)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["ci_low"], other["ci_low"])
    pd.testing.assert_frame_equal(stats.compare(frame, "run0", "run1", n_resamples=800, seed=4),
                                  stats.compare(frame, "run0", "run1", n_resamples=800, seed=4))


def test_degenerate_data_gets_point_interval() -> None:
    frame = simulate_frame(10, 3, dims=2, runs=(0.0, 0.0), seed=0)
    frame.loc[frame["dimension"] == "dim0", "score"] = 3.0  # everyone at the ceiling
    table = stats.summarize(frame, n_resamples=500).set_index(["run", "dimension"])
    row = table.loc[("run0", "dim0")]
    assert (row["mean"], row["ci_low"], row["ci_high"], row["se"], row["method"]) == (3.0, 3.0, 3.0, 0.0, "degenerate")
    diff = stats.compare(frame, "run0", "run1", n_resamples=500).set_index("dimension").loc["dim0"]
    assert (diff["delta"], diff["ci_low"], diff["ci_high"], diff["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    assert math.isnan(diff["corr"])


def test_single_cluster_is_flagged_not_crashed() -> None:
    frame = simulate_frame(1, 5, dims=1, seed=0)
    row = stats.summarize(frame, n_resamples=200).iloc[0]
    assert row["method"] == "too_few_clusters" and math.isnan(row["ci_low"]) and row["n"] == 5
    # a single sample (trivially "all values equal") is one cluster too: no interval, no MDE
    one = simulate_frame(1, 1, dims=1, runs=(0.0, 0.5), seed=0)
    assert stats.summarize(one, n_resamples=200).iloc[0]["method"] == "too_few_clusters"
    diff = stats.compare(one, "run0", "run1", n_resamples=200).iloc[0]
    assert diff["n_pairs"] == 1 and diff["method"] == "too_few_clusters"
    assert math.isnan(diff["ci_low"]) and math.isnan(diff["se"]) and math.isnan(diff["mde"])


def test_matches_scipy_bootstrap_within_monte_carlo_error() -> None:
    frame = simulate_frame(40, [2, 3, 4, 5] * 10, dims=1, runs=(0.3,), seed=8)
    ours = stats.summarize(frame, n_resamples=20_000, seed=1).iloc[0]
    codes = frame["cluster"].str[1:].astype(int).to_numpy()
    sums = np.bincount(codes, weights=frame["score"].to_numpy())
    sizes = np.bincount(codes).astype(float)
    ref = sps.bootstrap((sums, sizes), lambda s, m, axis=-1: s.sum(axis) / m.sum(axis), paired=True,
                        vectorized=True, n_resamples=20_000, method="BCa", rng=2)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert ours["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=0.04 * width)
    assert ours["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=0.04 * width)
    assert ours["se"] == pytest.approx(ref.standard_error, rel=0.05)


def test_compare_detects_shift_and_reports_pairing() -> None:
    frame = simulate_frame(20, 5, dims=3, runs=(0.0, 0.5), cluster_sd=1.0, noise_sd=0.7, seed=4,
                           shared_sample_sd=0.5)
    table = stats.compare(frame, "run0", "run1", n_resamples=2_000, correction="holm")
    assert (table["n_pairs"] == 100).all() and (table["clusters"] == 20).all()
    assert (table["p_adj"] < 0.01).all() and (table["ci_low"] > 0).all()
    assert (table["p_adj"] >= table["p_value"]).all()
    assert np.allclose(table["delta"], table["candidate_mean"] - table["baseline_mean"])
    with pytest.raises(MsmEvalError, match="candidate 'nope' is not a value of column 'run'"):
        stats.compare(frame, "run0", "nope")


def test_compare_pairs_only_samples_both_runs_scored() -> None:
    frame = simulate_frame(10, 4, dims=1, runs=(0.0, 0.0), seed=6)
    drop = (frame["run"] == "run1") & frame["sample_id"].isin(["s0", "s5"])
    frame.loc[drop, "score"] = np.nan
    row = stats.compare(frame, "run0", "run1", n_resamples=300).iloc[0]
    assert row["n_pairs"] == 38


def test_sign_flip_p_value_is_exact_for_few_clusters() -> None:
    frame = simulate_frame(5, 2, dims=1, runs=(0.0, 5.0), cluster_sd=0.1, noise_sd=0.1, seed=0)
    row = stats.compare(frame, "run0", "run1", n_resamples=10_000).iloc[0]
    assert row["p_value"] == pytest.approx(2 / 32)  # all 2^5 sign flips; observed is the extreme pair
    less = stats.compare(frame, "run1", "run0", n_resamples=10_000, alternative="less").iloc[0]
    assert less["p_value"] == pytest.approx(1 / 32)


def test_adjust_p_holm_and_bh() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    holm = stats.adjust_p(p, "holm")
    np.testing.assert_allclose(holm[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(holm[4])
    np.testing.assert_allclose(stats.adjust_p(p, "bh")[:4], sps.false_discovery_control(p[:4], method="bh"))
    np.testing.assert_allclose(stats.adjust_p(p, None)[:4], p[:4])
    with pytest.raises(MsmEvalError, match="unknown correction"):
        stats.adjust_p(p, "bonferonni")  # type: ignore[arg-type]


def test_power_and_minimum_detectable_effect() -> None:
    mde = stats.minimum_detectable_effect(0.1, alpha=0.05, power=0.8)
    assert mde == pytest.approx((1.959964 + 0.841621) * 0.1, rel=1e-5)
    assert stats.power(mde, 0.1, alpha=0.05) == pytest.approx(0.8, abs=1e-3)
    assert stats.power(0.0, 0.1) == pytest.approx(0.05)
    assert stats.required_samples(mde / 2, 0.1, n=100) == 400


def test_wilson_interval_matches_scipy() -> None:
    low, high = stats.wilson_interval(np.array([2, 30]), np.array([120, 40]))
    for k, n, lo, hi in zip([2, 30], [120, 40], low, high):
        ref = sps.binomtest(k, n).proportion_ci(method="wilson")
        assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_rates_by_condition_cluster_and_wilson() -> None:
    frame = simulate_frame(20, 4, dims=1, seed=1)
    frame["dimension"] = "harmful"
    frame["score"] = (frame["score"] > 0.8).astype(float)
    frame["cond_threat"] = np.where(frame["sample_id"].str[1:].astype(int) % 2 == 0, "yes", "no")
    table = stats.rates(frame, by=["run", "cond_threat"], dimensions=["harmful"], n_resamples=1_000)
    assert list(table["cond_threat"]) == ["no", "yes"]
    for row in table.itertuples():
        part = frame[frame["cond_threat"] == row.cond_threat]
        assert row.rate == pytest.approx(part["score"].mean())
        assert row.wilson_low < row.rate < row.wilson_high and row.ci_low <= row.rate <= row.ci_high


def _reference_alpha(matrix: np.ndarray, level: str) -> float:
    from inspect_ai.scorer._metrics.krippendorff import _alpha, _prepare

    units = [[v for v in matrix[:, u] if np.isfinite(v)] for u in range(matrix.shape[1])]
    prepared, disagreement = _prepare(level, [u for u in units if len(u) >= 2])
    return _alpha(prepared, disagreement)


@pytest.mark.parametrize("level", ["ordinal", "interval", "nominal"])
def test_krippendorff_alpha_matches_inspect(level: str) -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(-3, 4, size=150)
    matrix = np.clip(truth + rng.integers(-1, 2, size=(3, 150)), -3, 3).astype(float)
    matrix[rng.random(matrix.shape) < 0.1] = np.nan
    result = stats.krippendorff_alpha(matrix, level=level, n_resamples=1_000)
    assert result.alpha == pytest.approx(_reference_alpha(matrix, level), abs=1e-9)
    assert result.ci_low < result.alpha < result.ci_high
    assert result.n_raters == 3 and result.n_units <= 150


def test_krippendorff_alpha_perfect_and_invalid() -> None:
    matrix = np.array([[1, 2, 3, -1], [1, 2, 3, -1]], dtype=float)
    assert stats.krippendorff_alpha(matrix).alpha == pytest.approx(1.0)
    with pytest.raises(MsmEvalError, match="unknown level"):
        stats.krippendorff_alpha(matrix, level="ratio")
    assert math.isnan(stats.krippendorff_alpha(np.array([[1.0, np.nan], [np.nan, 2.0]])).alpha)


# ------------------------------------------------------------------ audit additions

def test_compare_carries_each_sides_honest_counts() -> None:
    frame = simulate_frame(8, 3, dims=2, runs=(0.0, 0.2), seed=3)
    cand = frame["run"] == "run1"
    frame.loc[cand & frame["sample_id"].isin(["s0", "s1"]), ["score", "status"]] = [np.nan, "refused"]
    frame.loc[cand & (frame["sample_id"] == "s2"), ["score", "status"]] = [np.nan, "error"]
    frame.loc[~cand & (frame["sample_id"] == "s3") & (frame["dimension"] == "dim1"), "score"] = np.nan
    table = stats.compare(frame, "run0", "run1", n_resamples=300).set_index("dimension")
    assert (table["candidate_refused"] == 2).all() and (table["candidate_error"] == 1).all()
    assert (table["baseline_refused"] == 0).all() and (table["candidate_scored"] == 21).all()
    assert table.loc["dim1", "baseline_missing"] == 1 and table.loc["dim0", "baseline_missing"] == 0
    assert table.loc["dim0", "n_pairs"] == 21 and table.loc["dim1", "n_pairs"] == 20
    unpaired = stats.compare(frame, "run0", "run1", n_resamples=300, paired=False)
    assert (unpaired["candidate_refused"] == 2).all()


def test_sign_flip_p_matches_scipy_permutation_test_on_cluster_sums() -> None:
    frame = simulate_frame(8, [1, 2, 3, 4, 2, 3, 1, 5], dims=2, runs=(0.0, 0.4), seed=12, shared_sample_sd=0.5)
    table = stats.compare(frame, "run0", "run1", n_resamples=10_000)  # 2^8 <= 10,000: exact
    wide = frame.pivot_table(index=["dimension", "sample_id", "cluster"], columns="run", values="score").reset_index()
    wide["diff"] = wide["run1"] - wide["run0"]
    for row in table.itertuples():
        sums = wide[wide["dimension"] == row.dimension].groupby("cluster")["diff"].sum().to_numpy()
        ref = sps.permutation_test((sums,), lambda x, axis=-1: np.sum(x, axis=axis), permutation_type="samples",
                                   vectorized=True, n_resamples=10_000, alternative="two-sided")
        assert row.p_value == pytest.approx(ref.pvalue, abs=1e-12)


def test_compare_interval_matches_scipy_paired_cluster_bca() -> None:
    frame = simulate_frame(40, [2, 3, 4, 5] * 10, dims=1, runs=(0.0, 0.3), seed=21, shared_sample_sd=0.6)
    ours = stats.compare(frame, "run0", "run1", n_resamples=20_000, seed=1).iloc[0]
    wide = frame.pivot_table(index=["sample_id", "cluster"], columns="run", values="score").reset_index()
    wide["diff"] = wide["run1"] - wide["run0"]
    per_cluster = wide.groupby("cluster")["diff"].agg(["sum", "count"])
    ref = sps.bootstrap((per_cluster["sum"].to_numpy(), per_cluster["count"].to_numpy(dtype=float)),
                        lambda s, m, axis=-1: s.sum(axis) / m.sum(axis), paired=True, vectorized=True,
                        n_resamples=20_000, method="BCa", rng=3)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    # ours is slightly wider by design (t with C-1 df and the sqrt(C/(C-1)) stretch: ~4% at C=40)
    assert ours["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=0.06 * width)
    assert ours["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=0.06 * width)
    assert ours["ci_high"] - ours["ci_low"] >= width * 0.99
    assert ours["delta"] == pytest.approx(wide["diff"].mean())


def test_bca_falls_back_to_percentile_when_bias_correction_is_infinite() -> None:
    column = np.sort(np.linspace(1.0, 2.0, 200))  # every resample above the estimate: z0 = -inf
    low, high, method = stats._bca_levels(column, 0.5, np.array([0.4, 0.6, 0.5]), -1.96, 1.96)
    assert method == "percentile"
    assert (low, high) == pytest.approx((0.025, 0.975), abs=1e-4)
    low, high, method = stats._bca_levels(column, 1.5, np.array([1.4, 1.6, 1.5]), -1.96, 1.96)
    assert method == "bca" and 0 < low < high < 1


def test_ceiling_degenerate_where_scipy_bca_gives_nan() -> None:
    frame = simulate_frame(12, 3, dims=1, seed=0)
    frame["score"] = 3.0
    with pytest.warns(Warning):  # scipy: DegenerateDataWarning and a NaN interval
        ref = sps.bootstrap((np.full(12, 9.0), np.full(12, 3.0)), lambda s, m, axis=-1: s.sum(axis) / m.sum(axis),
                            paired=True, vectorized=True, method="BCa", rng=0, n_resamples=999)
    assert math.isnan(ref.confidence_interval.low)
    row = stats.summarize(frame, n_resamples=999).iloc[0]
    assert (row["ci_low"], row["ci_high"], row["method"]) == (3.0, 3.0, "degenerate")
    frame.loc[0, "score"] = 2.0  # one sample off the ceiling: a real interval, never above the ceiling
    row = stats.summarize(frame, n_resamples=2_000).iloc[0]
    assert row["method"] in ("bca", "percentile") and row["ci_low"] < row["mean"] < row["ci_high"] == 3.0


def test_krippendorff_bootstrap_interval_is_a_unit_bootstrap() -> None:
    rng = np.random.default_rng(4)
    truth = rng.integers(-3, 4, size=60)
    matrix = np.clip(truth + rng.integers(-1, 2, size=(3, 60)), -3, 3).astype(float)
    matrix[rng.random(matrix.shape) < 0.1] = np.nan
    n_resamples = 200
    result = stats.krippendorff_alpha(matrix, level="ordinal", n_resamples=n_resamples, seed=7)
    kept = matrix[:, np.isfinite(matrix).sum(0) >= 2]
    weights = stats._Resampler(n_resamples, 7).weights(kept.shape[1])
    boot = []
    for row in weights.astype(int):
        units = np.repeat(np.arange(kept.shape[1]), row)  # the same resample, as a list of units
        boot.append(_reference_alpha(kept[:, units], "ordinal"))
    assert result.ci_low == pytest.approx(np.quantile(boot, 0.025), abs=1e-9)
    assert result.ci_high == pytest.approx(np.quantile(boot, 0.975), abs=1e-9)


def test_clustered_wilson_matches_inspect_ci_wilson() -> None:
    from inspect_ai.scorer import SampleScore, Score, ci_wilson

    rng = np.random.default_rng(2)
    clusters = np.repeat(np.arange(12), rng.integers(1, 6, size=12))
    values = (rng.random(clusters.size) < np.where(clusters % 3 == 0, 0.7, 0.2)).astype(float)
    scores = [SampleScore(score=Score(value=v), sample_id=f"s{i}", sample_metadata={"seed": int(c)})
              for i, (v, c) in enumerate(zip(values, clusters))]
    ref = ci_wilson(cluster="seed")(scores)
    frame = pd.DataFrame({"run": "r", "model": "m", "spec": "s", "judge": "j", "task": "t",
                          "sample_id": [f"s{i}" for i in range(values.size)], "cluster": [f"c{c}" for c in clusters],
                          "epoch": 1, "dimension": "harmful", "score": values, "status": "scored"})
    row = stats.rates(frame, dimensions=["harmful"], n_resamples=200).iloc[0]
    assert (row["wilson_cluster_low"], row["wilson_cluster_high"]) == pytest.approx((ref["lower"], ref["upper"]), abs=1e-9)
    assert row["n_eff"] < row["n"]


def test_rates_with_no_harmful_action_keep_an_informative_interval() -> None:
    frame = simulate_frame(10, 3, dims=1, seed=0)
    frame["dimension"], frame["score"] = "harmful", 0.0
    row = stats.rates(frame, dimensions=["harmful"], n_resamples=300).iloc[0]
    assert (row["rate"], row["ci_low"], row["ci_high"], row["method"]) == (0.0, 0.0, 0.0, "degenerate")
    ref = sps.binomtest(0, 30).proportion_ci(method="wilson")
    assert row["wilson_high"] == pytest.approx(ref.high)
    assert row["wilson_cluster_low"] == pytest.approx(0.0, abs=1e-12)
    assert row["wilson_cluster_high"] > row["wilson_high"]  # t with 9 df on top of the plain n


# ------------------------------------------------------------------ data contract, tables' claims (issue 12)

def _contract_frame() -> pd.DataFrame:
    rows = [("s1", "c1", 2.0, "scored"), ("s2", "c2", 2.0, "scored"), ("s3", "c3", 0.0, "refused"),
            ("s4", "c4", 0.0, "error")]
    return pd.DataFrame([{"run": "r", "model": "m", "spec": "s", "judge": "j", "task": "t", "sample_id": sid,
                          "cluster": c, "epoch": 1, "dimension": "honesty", "score": score, "status": status}
                         for sid, c, score, status in rows])


def test_unusable_rows_never_contribute_whatever_score_they_carry(tmp_path) -> None:
    from msm_eval import results

    frame = _contract_frame()
    assert stats.summarize(frame, n_resamples=200).iloc[0]["mean"] == 2.0  # was 1.33 with the zeros counted
    path = tmp_path / "scores.csv"
    frame.to_csv(path, index=False)
    loaded = results.load(path)
    assert loaded.loc[loaded["status"] == "refused", "score"].isna().all()
    assert stats.summarize(loaded, n_resamples=200).iloc[0]["mean"] == 2.0


@pytest.mark.parametrize(("status", "score", "message"), [
    ("weird", 1.0, "column 'status': unknown status 'weird'"),
    ("scored", 5.0, "column 'score': 5 is outside -3..+3"),
    ("partial", -3.5, "column 'score': -3.5 is outside -3..+3"),
    ("scored", math.inf, "column 'score': inf is not finite"),
])
def test_data_contract_names_file_row_and_column(status: str, score: float, message: str, tmp_path) -> None:
    from msm_eval import results

    frame = _contract_frame()
    frame.loc[1, ["status", "score"]] = [status, score]
    with pytest.raises(MsmEvalError, match="results frame: row 1 .*" + message.replace("(", r"\(").replace("+", r"\+")):
        stats.summarize(frame, n_resamples=200)
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(MsmEvalError) as caught:
        results.load(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: row 3 (sample_id=s2, epoch=1, dimension=honesty): ") and message in text


def test_unparsable_score_in_a_csv_is_named(tmp_path) -> None:
    from msm_eval import results

    path = tmp_path / "bad.csv"
    _contract_frame().assign(score=["2", "two", "", "NaN"]).to_csv(path, index=False)
    with pytest.raises(MsmEvalError, match=r"row 3: column 'score': 'two' is not a number"):
        results.load(path)


def test_unpaired_compare_holds_its_level_with_8_clusters() -> None:
    """Independent runs, no difference, 8 clusters: the old percentile/normal version rejected ~9%."""
    from msm_eval import simulate as sim

    rng = np.random.default_rng(5)
    design = sim.Design(clusters=8, dims=3)
    alarms = trials = 0
    for _ in range(120):
        base, _, cluster_of = sim.paired_scores(rng, design)
        _, cand, _ = sim.paired_scores(rng, design)
        table = stats.compare(sim.tidy(base, cand, cluster_of), "base", "cand", paired=False, correction=None)
        alarms += int((table["p_value"] < 0.05).sum())
        trials += len(table)
    assert alarms <= sps.binom.ppf(0.99, trials, 0.05), alarms / trials


def test_mde_uses_t_the_correction_and_the_reachable_level() -> None:
    frame = simulate_frame(12, 4, dims=3, runs=(0.0, 0.2), seed=2, shared_sample_sd=0.5)
    holm = stats.compare(frame, "run0", "run1", n_resamples=1_000)
    plain = stats.compare(frame, "run0", "run1", n_resamples=1_000, correction=None)
    one_sided = stats.compare(frame, "run0", "run1", n_resamples=1_000, correction=None, alternative="less")
    factor = stats.sign_flip_mde_factor(holm["clusters"].to_numpy(), stats.COMPARE_MDE_CALIBRATION)
    np.testing.assert_allclose(factor, 1.05 + 2 / 12)
    expected = stats.minimum_detectable_effect(holm["se"].to_numpy(), 0.05, df=holm["clusters"] - 1, tests=3) * factor
    np.testing.assert_allclose(holm["mde"], expected)
    assert (holm["mde"] > plain["mde"]).all() and (plain["mde"] > one_sided["mde"]).all()
    assert (plain["mde"] > (1.96 + 0.8416) * plain["se"]).all()  # wider than the normal formula
    # before the calibration factor, a t test at the MDE has the stated power
    analytic = plain["mde"].iloc[0] / factor[0]
    assert stats.power(analytic, plain["se"].iloc[0], 0.05, df=11) == pytest.approx(0.8, abs=1e-6)
    # 8 clusters, 15 dimensions, Holm: the sign-flip test cannot reach 0.05, so nothing is detectable
    few = simulate_frame(8, 4, dims=15, runs=(0.0, 0.0), seed=2, shared_sample_sd=0.5)
    assert np.isinf(stats.compare(few, "run0", "run1", n_resamples=1_000)["mde"]).all()


def test_summary_flags_degenerate_and_ceiling_cells_and_offers_a_ceiling_rate() -> None:
    frame = simulate_frame(10, 3, dims=2, runs=(0.0,), seed=0)
    frame.loc[frame["dimension"] == "dim0", "score"] = 3.0
    table = stats.summarize(frame, n_resamples=300).set_index("dimension")
    assert table.loc["dim0", ["degenerate", "ceiling"]].tolist() == [True, True]
    assert table.loc["dim1", ["degenerate", "ceiling"]].tolist() == [False, False]
    below = stats.below_ceiling(frame).set_index("dimension")
    assert below.loc["dim0", "share_below"] == 0.0 and below.loc["dim0", "n"] == 30
    assert 0.05 < below.loc["dim0", "high"] < 0.5 and below.loc["dim0", "low"] == pytest.approx(0.0, abs=1e-12)
    assert below.loc["dim1", "share_below"] > 0.9


def test_bell_mccaffrey_df_equal_sizes_give_c_minus_1_and_unequal_fewer() -> None:
    equal = stats.bell_mccaffrey_df(np.full((8, 1), 4.0))
    assert equal[0] == pytest.approx(7.0)
    skewed = stats.bell_mccaffrey_df(np.array([[2.0]] * 7 + [[40.0]]))
    assert 1.0 < skewed[0] < 2.0
    # the closed form equals tr(M)^2 / tr(M^2) of the CR2 quadratic form, computed by eigenvalues
    sizes = np.array([1.0, 1, 2, 2, 4, 8, 16, 30])
    total = sizes.sum()
    v = sizes / np.sqrt(1 - sizes / total)
    eig = np.linalg.eigvalsh(np.diag(sizes / (1 - sizes / total)) - np.outer(v, v) / total)
    assert stats.bell_mccaffrey_df(sizes[:, None])[0] == pytest.approx(eig.sum() ** 2 / (eig ** 2).sum())
    assert np.isnan(stats.bell_mccaffrey_df(np.array([[3.0], [0.0]]))[0])  # one cluster with data


def test_unpaired_compare_holds_its_level_with_unequal_clusters() -> None:
    """Independent runs with very unequal clusters (sizes 1 to 30): with each side's C - 1 df the
    Welch cluster t rejected about 9% at alpha 0.05; the smaller side's Bell-McCaffrey df hold the level."""
    rng = np.random.default_rng(8)
    sizes = [1, 1, 2, 2, 4, 8, 16, 30]
    cluster_of = np.repeat(np.arange(len(sizes)), sizes)
    dims, alarms, trials = 60, 0, 0
    for _ in range(25):
        frames = []
        for run in ("base", "cand"):
            effects = rng.normal(0.0, np.sqrt(0.3), (len(sizes), dims))[cluster_of]
            latent = effects + rng.normal(0.0, np.sqrt(0.7), (cluster_of.size, dims))
            scores = np.clip(np.rint(1.5 * latent), -3, 3)
            frames.append(pd.DataFrame({
                "run": run, "model": "m", "spec": "s", "judge": "j", "task": "t",
                "sample_id": np.tile([f"{run}{i}" for i in range(cluster_of.size)], dims),
                "cluster": np.tile([f"c{c}" for c in cluster_of], dims), "epoch": 1,
                "dimension": np.repeat([f"dim{j}" for j in range(dims)], cluster_of.size),
                "score": scores.T.ravel(), "status": "scored"}))
        table = stats.compare(pd.concat(frames, ignore_index=True), "base", "cand", paired=False, correction=None)
        alarms += int((table["p_value"] < 0.05).sum())
        trials += len(table)
    assert alarms <= sps.binom.ppf(0.995, trials, 0.05), alarms / trials
