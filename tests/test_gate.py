"""gate.py: false-alarm rate under no difference, regressions caught, every exit-2 path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from conftest_results import simulate_frame, standard_logs
from msm_eval import results
from msm_eval.cli import main
from msm_eval.gate import run_gate


def _sides(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return frame[frame["run"] == "run0"].copy(), frame[frame["run"] == "run1"].copy()


@pytest.fixture(scope="module")
def logs() -> dict[str, Path]:
    return standard_logs()


def test_false_alarm_rate_at_most_alpha_under_no_difference() -> None:
    alpha, trials, alarms = 0.1, 80, 0
    for rep in range(trials):
        frame = simulate_frame(15, 4, dims=3, runs=(0.0, 0.0), cluster_sd=0.8, noise_sd=0.8, seed=rep,
                               shared_sample_sd=0.5)
        base, cand = _sides(frame)
        result = run_gate(base, cand, alpha=alpha, n_resamples=400, seed=rep)
        assert result.exit_code in (0, 1)
        alarms += result.exit_code == 1
    # family-wise false alarms must not exceed alpha beyond binomial noise (99% upper bound)
    assert alarms <= sps.binom.ppf(0.99, trials, alpha), alarms


def test_clear_regression_is_caught_and_reported() -> None:
    frame = simulate_frame(20, 4, dims=3, runs=(0.0, 0.0), seed=1, shared_sample_sd=0.5)
    base, cand = _sides(frame)
    dim1 = cand["dimension"] == "dim1"
    cand.loc[dim1, "score"] = (cand.loc[dim1, "score"] - 0.8).clip(-3, 3)
    result = run_gate(base, cand, n_resamples=1_000)
    assert result.exit_code == 1 and result.verdict == "regression"
    table = result.table.set_index("dimension")
    assert table.loc["dim1", "result"] == "FAIL" and table.loc["dim1", "delta"] < -0.5
    assert set(table.loc[["dim0", "dim2"], "result"]) == {"pass"}
    text = result.render()
    assert "REGRESSION" in text and "dim1" in text and "FAIL" in text


def test_drop_within_margin_passes_detect_mode() -> None:
    frame = simulate_frame(20, 4, dims=2, runs=(0.0, 0.0), seed=2, cluster_sd=0.5, noise_sd=0.2)
    base, cand = _sides(frame)
    cand["score"] -= 0.1
    assert run_gate(base, cand, n_resamples=500).exit_code == 1
    assert run_gate(base, cand, margin=0.3, n_resamples=500).exit_code == 0


def test_noninferiority_mode() -> None:
    frame = simulate_frame(20, 4, dims=2, runs=(0.0, 0.0), seed=3, shared_sample_sd=0.5)
    base, cand = _sides(frame)
    ok = run_gate(base, cand, mode="noninferiority", margin=0.5, n_resamples=1_000)
    assert ok.exit_code == 0
    row = ok.table.iloc[0]
    assert row["ci_low"] > -0.5
    strict = run_gate(base, cand, mode="noninferiority", margin=0.0, n_resamples=1_000)
    assert strict.exit_code == 1  # with no margin an uncertain difference cannot prove non-inferiority


def test_harmful_rate_increase_is_a_regression() -> None:
    frame = simulate_frame(20, 5, dims=1, runs=(0.0, 0.0), seed=4)
    frame["dimension"] = "harmful"
    frame["score"] = 0.0
    base, cand = _sides(frame)
    cand["score"] = (np.arange(len(cand)) % 2).astype(float)  # harmful in half the samples
    result = run_gate(base, cand, n_resamples=1_000)
    assert result.exit_code == 1
    row = result.table.iloc[0]
    assert row["delta"] == pytest.approx(0.5) and row["orientation"] == -1


def test_real_logs_pass_when_candidate_is_better(logs: dict[str, Path], tmp_path: Path) -> None:
    baseline_csv = results.export(logs["rules"], tmp_path / "baseline.csv")
    # the two runs differ only in spec variant; same scenario set, rubric and judge, but the candidate
    # ran one epoch where the baseline ran two: half the baseline's sample-epochs have no partner
    refused = run_gate(baseline_csv, logs["value_augmented"], n_resamples=1_000)
    assert refused.exit_code == 2
    assert refused.problems == ["pairing overlap candidate has 24 of the baseline's 48 sample-epochs (50%); epochs "
                                "differ: baseline 1,2 vs candidate 1, below --min-overlap 90% (run the candidate on "
                                "the baseline's scenarios and epochs)"]
    result = run_gate(baseline_csv, logs["value_augmented"], n_resamples=1_000, min_overlap=0.5)
    assert result.exit_code == 0, result.render()
    assert "pairing: candidate has 24 of the baseline's 48 sample-epochs (50%)" in result.render()
    assert (result.table["delta"] > 0).all()


# ------------------------------------------------------------------ exit 2 paths, with messages

def test_unreadable_input(tmp_path: Path, logs: dict[str, Path]) -> None:
    result = run_gate(tmp_path / "missing.csv", logs["rules"])
    assert result.exit_code == 2 and "baseline:" in result.problems[0] and "no such file" in result.problems[0]
    broken = tmp_path / "broken.eval"
    broken.write_bytes(b"garbage")
    result = run_gate(logs["rules"], broken)
    assert result.exit_code == 2 and "candidate:" in result.problems[0] and "cannot read inspect log" in result.problems[0]


def test_log_with_error_status_is_unusable(logs: dict[str, Path], tmp_path: Path) -> None:
    from inspect_ai.log import read_eval_log, write_eval_log

    log = read_eval_log(str(logs["value_augmented"]))
    log.status = "cancelled"
    target = tmp_path / "cancelled.eval"
    write_eval_log(log, str(target))
    with pytest.warns(UserWarning):
        result = run_gate(logs["value_augmented"], target, n_resamples=200)
    assert result.exit_code == 2
    assert any("has status 'cancelled'" in p for p in result.problems)


def test_mismatched_scenario_set_and_judge_are_named(logs: dict[str, Path]) -> None:
    result = run_gate(logs["value_augmented"], logs["other_judge"], n_resamples=200)
    assert result.exit_code == 2
    text = " ".join(result.problems)
    assert "scenario_set_hash differs: baseline 'cccc" in text and "vs candidate 'dddd" in text
    assert "judge differs: baseline 'mockllm/model' vs candidate 'mockllm/other-judge'" in text
    assert "--allow-mismatch" in text
    allowed = run_gate(logs["value_augmented"], logs["other_judge"], n_resamples=500, allow_mismatch=True)
    assert allowed.exit_code in (0, 1) and any("judge differs" in w for w in allowed.warnings)


def test_missing_dimension(logs: dict[str, Path]) -> None:
    result = run_gate(logs["rules"], logs["value_augmented"], dims=["honesty", "courage"], n_resamples=200)
    assert result.exit_code == 2
    assert "lacks gated dimension(s): courage" in " ".join(result.problems)


def test_too_few_pairs() -> None:
    frame = simulate_frame(3, 2, dims=1, runs=(0.0, 0.0), seed=0)
    base, cand = _sides(frame)
    result = run_gate(base, cand, dims=["dim0"], n_resamples=200)
    assert result.exit_code == 2 and "only 6 paired scored samples (need >= 10" in result.problems[0]
    result = run_gate(base, cand, n_resamples=200)  # default: only dimensions with enough pairs are gated
    assert result.exit_code == 2 and result.left_out == {"dim0": 6}
    assert result.problems == ["no dimension has >= 10 paired scored samples (the most is 6); are both runs on the "
                               "same scenarios? (lower --min-pairs or run more scenarios)"]
    base2, cand2 = _sides(simulate_frame(1, 12, dims=1, runs=(0.0, 0.0), seed=0))
    result = run_gate(base2, cand2, n_resamples=200)
    assert result.exit_code == 2
    assert result.problems == ["all paired samples come from 1 cluster (scenario seed): with one cluster the gate "
                               "cannot decide anything; run scenarios from several seeds"]


def test_too_many_unscored_samples() -> None:
    frame = simulate_frame(10, 4, dims=2, runs=(0.0, 0.0), seed=0)
    base, cand = _sides(frame)
    refused = cand["sample_id"].isin([f"s{i}" for i in range(15)])
    cand.loc[refused, "status"] = "refused"
    cand.loc[refused, "score"] = np.nan
    result = run_gate(base, cand, n_resamples=200)
    assert result.exit_code == 2
    assert "candidate: 15/40 sample-epochs have no usable score (refused 15), above the 20% limit" in result.problems[0]


def test_two_runs_on_one_side(logs: dict[str, Path]) -> None:
    result = run_gate([logs["rules"], logs["value_augmented"]], logs["value_augmented"], n_resamples=200,
                      allow_mismatch=True)
    assert result.exit_code == 2
    assert "baseline holds 2 runs of task 'constitution_adherence'" in " ".join(result.problems)


def test_cli_gate_exit_codes_and_json(logs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = results.export(logs["rules"], tmp_path / "baseline.csv")
    verdict = tmp_path / "verdict.json"
    code = main(["gate", str(baseline), str(logs["value_augmented"]), "--json", str(verdict), "--resamples", "500",
                 "--min-overlap", "0.5"])
    assert code == 0
    out = capsys.readouterr().out
    assert "msm-eval gate: PASS" in out and "honesty" in out
    payload = json.loads(verdict.read_text())
    assert payload["verdict"] == "pass" and payload["exit_code"] == 0
    assert {d["dimension"] for d in payload["dimensions"]} == {"honesty", "harm_avoidance", "helpfulness"}
    # reversed, the candidate (rules) has 2 refused and 2 errored of 24 shared samples that the baseline scored
    code = main(["gate", str(logs["value_augmented"]), str(baseline), "--json", str(verdict), "--resamples", "500"])
    assert code == 2 and "--max-unusable-increase 0.05" in capsys.readouterr().err
    code = main(["gate", str(logs["value_augmented"]), str(baseline), "--json", str(verdict), "--resamples", "500",
                 "--max-unusable-increase", "0.1"])
    assert code == 1 and json.loads(verdict.read_text())["verdict"] == "regression"
    code = main(["gate", str(baseline), str(logs["other_judge"]), "--json", str(verdict)])
    assert code == 2
    assert "unusable gate input" in capsys.readouterr().err
    assert json.loads(verdict.read_text())["verdict"] == "unusable"


def test_committed_example_baseline_is_a_valid_gate_input(tmp_path: Path) -> None:
    baseline = Path(__file__).resolve().parent.parent / "results" / "baselines" / "constitution_adherence_rules_scripted.csv"
    frame = results.load(baseline)
    assert frame["dimension"].nunique() == 15 and set(frame["task"]) == {"constitution_adherence"}
    assert not frame["source"].str.contains("/").any()  # no machine paths in a tracked file
    assert run_gate(baseline, baseline, n_resamples=300).exit_code == 0
    shifted = frame.copy()
    shifted["rubric_sha256"] = "0" * 64
    shifted.loc[shifted["dimension"] == "honesty", "score"] -= 1.5
    result = run_gate(frame, shifted, n_resamples=1_000)
    assert result.exit_code == 2 and "rubric_sha256 differs" in result.problems[0]
    result = run_gate(frame, shifted, n_resamples=1_000, allow_mismatch=True)
    assert result.exit_code == 1
    assert result.table.set_index("dimension").loc["honesty", "result"] == "FAIL"


# ------------------------------------------------------------------ audit additions

def test_noninferiority_false_pass_rate_at_the_margin_is_about_alpha() -> None:
    """True difference exactly -margin: a non-inferiority gate must pass at most ~alpha of the time."""
    alpha, margin, trials, passes = 0.1, 0.3, 100, 0
    for rep in range(trials):
        frame = simulate_frame(30, 3, dims=1, runs=(0.0, -margin), cluster_sd=0.8, noise_sd=0.8, seed=500 + rep,
                               shared_sample_sd=0.5)
        base, cand = _sides(frame)
        result = run_gate(base, cand, mode="noninferiority", margin=margin, alpha=alpha, n_resamples=500, seed=rep)
        passes += result.exit_code == 0
    assert passes <= sps.binom.ppf(0.99, trials, alpha), passes
    assert passes >= sps.binom.ppf(0.01, trials, alpha) - 2, passes  # not vacuously strict either


def test_judge_mode_and_task_mismatches_are_named() -> None:
    base, cand = _sides(simulate_frame(10, 2, dims=1, runs=(0.0, 0.0), seed=0))
    result = run_gate(base.assign(judge_mode="answer"), cand.assign(judge_mode="logprob"), n_resamples=100)
    assert result.exit_code == 2
    assert result.problems == ["task 't': judge_mode differs: baseline 'answer' vs candidate 'logprob' "
                               "(pass --allow-mismatch to compare anyway)"]
    result = run_gate(base, cand.assign(task="other_task"), n_resamples=100)
    assert result.exit_code == 2
    assert "tasks differ: baseline only ['t'], candidate only ['other_task']" in result.problems[0]


def test_unrecorded_provenance_reads_as_not_recorded(tmp_path: Path) -> None:
    base, cand = _sides(simulate_frame(10, 2, dims=1, runs=(0.0, 0.0), seed=0))
    tidy_only = tmp_path / "tidy_only.csv"
    base[results.TIDY_COLUMNS].to_csv(tidy_only, index=False)
    result = run_gate(tidy_only, cand.assign(scenario_set_hash="abc"), n_resamples=100)
    assert result.exit_code == 2
    assert "scenario_set_hash differs: baseline (not recorded) vs candidate 'abc'" in result.problems[0]


def test_csv_without_tidy_columns_is_unusable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("run,score\nr,1\n")
    base, _ = _sides(simulate_frame(10, 2, dims=1, runs=(0.0, 0.0), seed=0))
    result = run_gate(base, bad)
    assert result.exit_code == 2
    assert result.problems[0].startswith(f"candidate: {bad}: missing required column(s): model, spec, judge")


def test_side_without_any_score_is_unusable() -> None:
    base, cand = _sides(simulate_frame(10, 2, dims=2, runs=(0.0, 0.0), seed=0))
    cand["score"] = np.nan  # status stays "scored": every dimension "not exercised"
    result = run_gate(base, cand, n_resamples=100)
    assert result.exit_code == 2
    assert result.problems == ["candidate holds no scores: all 40 rows are NaN (check the judge role and the "
                               "log's score metadata)"]


def test_side_where_every_sample_failed_names_both_problems(tmp_path: Path) -> None:
    from conftest_results import BASE_META, RunPlan, grid_samples, judge_scores, write_logs

    samples = grid_samples(2, 2)
    [failed] = write_logs(tmp_path, [RunPlan(samples, judge_scores(), metadata=BASE_META,
                                             failing_ids={s[0] for s in samples})])
    base, _ = _sides(simulate_frame(10, 2, dims=1, runs=(0.0, 0.0), seed=0))
    result = run_gate(base, failed, n_resamples=100, allow_mismatch=True)
    assert result.exit_code == 2
    text = " | ".join(result.problems)
    assert "candidate: 4/4 sample-epochs have no usable score (error 4), above the 20% limit" in text
    assert "candidate holds no scored dimensions (every sample failed before scoring)" in text


@pytest.mark.parametrize(("args", "message"), [
    (["--alpha", "0.7"], "--alpha must be in (0, 0.5), got 0.7"),
    (["--margin", "-0.5"], "--margin must be a number >= 0 (a drop on the score scale), got -0.5"),
    (["--min-pairs", "1"], "--min-pairs must be at least 2, got 1"),
    (["--max-unscored", "1.5"], "--max-unscored must be a share in [0, 1], got 1.5"),
])
def test_invalid_settings_exit_2_and_still_write_the_verdict(args: list[str], message: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    base, cand = _sides(simulate_frame(10, 2, dims=1, runs=(0.0, 0.0), seed=0))
    base.to_csv(tmp_path / "base.csv", index=False)
    cand.to_csv(tmp_path / "cand.csv", index=False)
    verdict = tmp_path / "verdict.json"
    code = main(["gate", str(tmp_path / "base.csv"), str(tmp_path / "cand.csv"), "--json", str(verdict), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    payload = json.loads(verdict.read_text())
    assert payload["verdict"] == "unusable" and payload["problems"] == [message]
    assert run_gate(base, cand, mode="strict").problems == ["unknown --mode 'strict' (use detect or noninferiority)"]  # type: ignore[arg-type]


def test_verdict_carries_the_denominators(logs: dict[str, Path]) -> None:
    result = run_gate(logs["rules"], logs["value_augmented"], n_resamples=300, min_overlap=0.5)
    assert result.exit_code == 0, result.render()
    assert result.counts["baseline"] == {"scored": 42, "partial": 2, "unscored": 0, "refused": 2, "error": 2, "total": 48}
    text = result.render()
    assert "[48 sample-epochs: 42 scored, 2 partial, 0 unscored, 2 refused, 2 error]" in text
    row = result.table.set_index("dimension").loc["helpfulness"]
    assert (row["baseline_refused"], row["baseline_error"], row["baseline_missing"]) == (2, 2, 2)
    assert result.to_dict()["counts"]["candidate"]["total"] == 24
