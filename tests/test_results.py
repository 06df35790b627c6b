"""results.py against genuine inspect .eval logs: the tidy frame, statuses, counts, export."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest_results import DIMS, standard_logs
from msm_eval import results
from msm_eval.cli import main
from msm_eval.errors import MsmEvalError


@pytest.fixture(scope="module")
def logs() -> dict[str, Path]:
    return standard_logs()


@pytest.fixture(scope="module")
def frame(logs: dict[str, Path]) -> pd.DataFrame:
    return results.load(list(logs.values()))


def _run(frame: pd.DataFrame, variant: str, task: str = "constitution_adherence") -> pd.DataFrame:
    part = frame[(frame["spec_variant"] == variant) & (frame["task"] == task) & (frame["judge"] == "mockllm/model")]
    assert part["run"].nunique() == 1
    return part


def test_tidy_frame_has_contract_columns_and_one_row_per_key(frame: pd.DataFrame) -> None:
    for column in results.TIDY_COLUMNS + ["spec_variant", "scenario_set_hash", "rubric_sha256", "judge_mode",
                                          "cond_threat"]:
        assert column in frame.columns
    assert not frame.duplicated(["run", "sample_id", "epoch", "dimension"]).any()
    assert frame["run"].nunique() == 4
    rules = _run(frame, "rules")
    assert set(rules["dimension"]) == set(DIMS)
    assert sorted(rules["epoch"].unique()) == [1, 2]
    assert len(rules) == 24 * 2 * 3  # samples x epochs x dimensions: nothing dropped
    row = rules.iloc[0]
    assert row["model"] == "mockllm/model" and row["judge"] == "mockllm/model"
    assert row["spec"] == "constitution" and row["scenario_set_hash"] == "c" * 64
    assert row["rubric_sha256"] == "b" * 64 and row["judge_mode"] == "answer"
    assert row["run"].startswith("constitution_adherence/mockllm/model/rules#")
    assert set(rules.loc[rules["sample_id"] == "seed1__v1", "cond_threat"]) == {"yes"}
    assert set(rules.loc[rules["sample_id"] == "seed1__v1", "cluster"]) == {"seed1"}


def test_failed_refused_and_partial_samples_keep_rows_with_nan(frame: pd.DataFrame) -> None:
    rules = _run(frame, "rules")
    errored = rules[rules["sample_id"] == "seed2__v2"]
    assert len(errored) == 6 and set(errored["status"]) == {"error"}
    assert errored["score"].isna().all()
    assert errored["reason"].str.contains("simulated rollout failure").all()
    refused = rules[rules["sample_id"] == "seed0__v0"]
    assert set(refused["status"]) == {"refused"} and refused["score"].isna().all()
    partial = rules[rules["sample_id"] == "seed1__v1"]
    assert set(partial["status"]) == {"partial"}
    assert partial.loc[partial["dimension"] == "helpfulness", "score"].isna().all()
    assert partial.loc[partial["dimension"] == "honesty", "score"].notna().all()
    assert rules["score"].isna().sum() == 6 + 6 + 2  # errored + refused + partial's helpfulness, nothing else


def test_unknown_status_becomes_unscored_with_reason(frame: pd.DataFrame) -> None:
    other = frame[frame["judge"] == "mockllm/other-judge"]
    odd = other[other["sample_id"] == "seed3__v0"]
    assert set(odd["status"]) == {"unscored"} and odd["score"].isna().all()
    assert odd["reason"].str.contains("unknown status 'weird'").all()


def test_counts_are_honest_denominators(frame: pd.DataFrame) -> None:
    rules_run = _run(frame, "rules")["run"].iloc[0]
    table = results.counts(frame, "run").set_index(["run", "dimension"])
    helpful = table.loc[(rules_run, "helpfulness")]
    assert (helpful["scored"], helpful["missing"], helpful["refused"], helpful["error"], helpful["unscored"]) == (42, 2, 2, 2, 0)
    honesty = table.loc[(rules_run, "honesty")]
    assert (honesty["scored"], honesty["missing"], honesty["total"]) == (44, 0, 48)


def test_harmful_action_scores_load_as_dimensions(frame: pd.DataFrame) -> None:
    agentic = frame[frame["task"] == "agentic_misalignment"]
    assert set(agentic["dimension"]) == {"harmful", "verdict", "hard_check"}
    assert set(agentic["score"].unique()) <= {0.0, 1.0}
    assert set(agentic["scorer"]) == {"harmful_action"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_round_trip(frame: pd.DataFrame, logs: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    out = results.export(list(logs.values()), tmp_path / f"tidy{suffix}")
    again = results.load(out)
    key = ["run", "sample_id", "epoch", "dimension"]
    left = frame.sort_values(key).reset_index(drop=True)
    right = again.sort_values(key).reset_index(drop=True)
    pd.testing.assert_series_equal(left["score"], right["score"])
    for column in ["run", "status", "cluster", "judge", "cond_threat", "scenario_set_hash", "reason"]:
        assert left[column].tolist() == right[column].tolist(), column
    assert right["epoch"].dtype.kind == "i"
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temp files left


def test_mixed_sources_folder_plus_csv(logs: dict[str, Path], tmp_path: Path) -> None:
    csv = results.export(logs["agentic"], tmp_path / "agentic.csv")
    mixed = results.load([logs["rules"].parent, csv])
    assert set(mixed["task"]) == {"constitution_adherence", "agentic_misalignment"}


def test_missing_path_and_unsupported_type(tmp_path: Path) -> None:
    with pytest.raises(MsmEvalError, match="no such file or folder"):
        results.load(tmp_path / "nope.eval")
    bad = tmp_path / "notes.txt"
    bad.write_text("x")
    with pytest.raises(MsmEvalError, match="unsupported file type '.txt'"):
        results.load(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MsmEvalError, match="folder holds no inspect logs"):
        results.load(empty)


def test_corrupt_log_names_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.eval"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(MsmEvalError, match="broken.eval: cannot read inspect log"):
        results.load(corrupt)


def test_csv_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("run,model,score\nr,m,1\n")
    with pytest.raises(MsmEvalError, match="missing required column\\(s\\): spec, judge, task, sample_id"):
        results.load(path)
    path.write_text(",".join(results.TIDY_COLUMNS) + "\nr,m,s,j,t,x,c,1,honesty,1,great\n")
    with pytest.raises(MsmEvalError, match="column .status.: unknown status .great."):
        results.load(path)


def test_log_with_error_status_is_loaded_and_flagged(logs: dict[str, Path], tmp_path: Path) -> None:
    from inspect_ai.log import read_eval_log, write_eval_log

    log = read_eval_log(str(logs["value_augmented"]))
    log.status = "error"
    target = tmp_path / "errored.eval"
    write_eval_log(log, str(target))
    with pytest.warns(UserWarning, match="status is 'error'"):
        frame = results.load(target)
    assert set(frame["log_status"]) == {"error"}
    assert frame["score"].notna().any()


def test_run_where_every_sample_failed_is_counted_not_lost(tmp_path: Path) -> None:
    from conftest_results import BASE_META, RunPlan, grid_samples, judge_scores, write_logs

    samples = grid_samples(2, 2)
    [path] = write_logs(tmp_path, [RunPlan(samples, judge_scores(), metadata=BASE_META,
                                           failing_ids={s[0] for s in samples})])
    frame = results.load(path)
    assert set(frame["dimension"]) == {results.NO_DIMENSION} and set(frame["status"]) == {"error"}
    assert len(frame) == 4 and frame["score"].isna().all()
    table = results.counts(frame, "run")
    assert table.iloc[0]["error"] == 4 and table.iloc[0]["scored"] == 0
    from msm_eval.gate import run_gate

    result = run_gate(path, path, n_resamples=100)
    assert result.exit_code == 2 and any("4/4 sample-epochs have no usable score" in p for p in result.problems)


def test_judge_ratings_loader(logs: dict[str, Path]) -> None:
    ratings = results.load_judge_ratings(logs["value_augmented"])
    assert set(ratings["rater"]) == {"mockllm/model#0", "mockllm/model#1"}
    matrix = results.ratings_matrix(ratings, "honesty")
    assert matrix.shape == (2, 24)
    assert not math.isnan(matrix.sum())


def test_cli_export(logs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.csv"
    assert main(["export", str(logs["rules"].parent), "--out", str(out)]) == 0
    assert "wrote 144 rows from 1 run(s)" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 144
    assert main(["export", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_folder_with_copies_is_deduplicated(logs: dict[str, Path], tmp_path: Path) -> None:
    shutil.copy(logs["rules"], tmp_path / logs["rules"].name)
    frame = results.load([tmp_path, tmp_path / logs["rules"].name])
    assert frame["run"].nunique() == 1 and len(frame) == 144


def test_same_eval_from_two_sources_is_counted_once(logs: dict[str, Path], tmp_path: Path) -> None:
    from inspect_ai.log import read_eval_log, write_eval_log

    write_eval_log(read_eval_log(str(logs["rules"])), str(tmp_path / "copy.json"), format="json")
    (tmp_path / "gate.json").write_text('{"verdict": "pass"}')  # not a log: ignored inside a folder
    csv = results.export(logs["rules"], tmp_path / "export.csv")
    with pytest.warns(UserWarning, match="already loaded from"):
        frame = results.load([logs["rules"], tmp_path])
    assert len(frame) == 144
    assert len(results.load(csv)) == 144


def test_report_reads_each_log_once(tmp_path, monkeypatch):
    """`report` needs the tidy frame and the per-judge ratings: one read of each .eval serves both."""
    import inspect_ai.log

    from conftest_results import standard_logs
    from msm_eval import report

    logs = standard_logs()
    results._LOG_CACHE.clear()
    real = inspect_ai.log.read_eval_log
    calls: list[str] = []

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(inspect_ai.log, "read_eval_log", counting)
    sources = [logs["rules"], logs["value_augmented"]]
    written = report.build_report(sources, by="spec_variant", out_dir=tmp_path, n_resamples=200)
    assert "html" in written
    assert sorted(calls) == sorted(str(p) for p in sources)
    # with the cache emptied the file is read again
    results._LOG_CACHE.clear()
    results.load(sources[0])
    assert len(calls) == 3
