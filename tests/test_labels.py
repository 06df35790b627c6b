"""Human labels: stratified sheet export (CSV + escaped HTML), checked import, judge-human agreement,
and prediction-powered means / deltas, on judge_validation logs from scripted judges."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msm_eval.calibration import agreement_table, ppi_comparison, ppi_table
from msm_eval.errors import MsmEvalError
from msm_eval.judge_validation import sample_id
from msm_eval.labels import export_sheet, import_labels, load_labels
from msm_eval.paths import VALIDATION_DIR
from msm_eval.results import load
from msm_eval.validation import load_validation_set
from tests.conftest_pipeline import run, submit
from tests.test_judge_validation import transcript_in_prompt

DIMS = ["honesty", "safety"]
INJECTED = "<script>alert('x')</script></textarea><b>bold</b>"


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """A validation folder (honesty + safety, one message carrying markup), and two judge runs on
    it: `plus1` scores every band midpoint (rounded) + 1, `plus2h` adds 2 on honesty instead."""
    root = tmp_path_factory.mktemp("labels")
    folder = root / "validation"
    folder.mkdir()
    (folder / "honesty.yaml").write_text((VALIDATION_DIR / "honesty.yaml").read_text().replace(
        "Please fix the rounding bug", "Please fix " + INJECTED + " the rounding bug"))
    (folder / "safety.yaml").write_text((VALIDATION_DIR / "safety.yaml").read_text())
    transcripts = load_validation_set(folder)
    truth = {(sample_id(t.id), d): int(round((b[0] + b[1]) / 2)) for t in transcripts for d, b in t.expect.items()
             if b is not None}

    def judge(extra_honesty):
        def respond(messages, tools):
            sid = sample_id(transcript_in_prompt("\n".join(m.text for m in messages), transcripts).id)
            scores = {d: min(3, truth[(sid, d)] + (extra_honesty if d == "honesty" else 1))
                      for (s, d) in truth if s == sid}
            return submit(scores)
        return respond

    from msm_eval.tasks import judge_validation

    logs = root / "logs"
    run(judge_validation(validation=str(folder)), lambda m, t: "unused", {"judge": judge(1)}, logs)
    run(judge_validation(validation=str(folder)), lambda m, t: "unused", {"judge": judge(2)}, logs)
    return {"root": root, "logs": logs, "truth": truth, "folder": folder}


def fill(sheet: Path, truth, out: Path, rater: str = "ann", skip: int = 0) -> Path:
    rows = list(csv.DictReader((sheet / "sheet.csv").open()))
    items = {i["item_id"]: i for i in __import__("json").loads((sheet / "items.json").read_text())["items"]}
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for n, row in enumerate(rows):
            item = items[row["item_id"]]
            row["human_score"] = "" if n < skip else str(truth[(item["sample_id"], item["dimension"])])
            row["rater"] = rater
            writer.writerow(row)
    return out


def test_export_draws_stratified_items_and_escapes_the_transcript(judged, tmp_path):
    written = export_sheet(judged["logs"], tmp_path / "sheet", per_dimension=4, seed=1, dimensions=DIMS)
    sheet = pd.read_csv(written["csv"])
    population = pd.read_csv(written["population"])
    # 4 units per dimension, each an item in both runs
    assert sheet.groupby("dimension").size().to_dict() == {"honesty": 8, "safety": 8}
    drawn = population[population["selected"]].drop_duplicates(["sample_id", "dimension"])
    for dim, part in drawn.groupby("dimension"):
        available = population[population["dimension"] == dim]["stratum"].nunique()
        assert part["stratum"].nunique() == min(4, available)    # spread over the strata
    # draw everything so the transcript carrying markup is on the page
    written = export_sheet(judged["logs"], tmp_path / "all", per_dimension=50, seed=1, dimensions=["honesty"])
    html = written["html"].read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(" in html
    assert "</textarea><b>" not in html
    assert "Download labels CSV" in html and 'name="score-L0001"' in html
    # the judge's score is not shown to the labeller
    assert "judge_score" not in sheet.columns


def test_import_validates_and_merges_raters(judged, tmp_path):
    sheet = tmp_path / "sheet"
    export_sheet(judged["logs"], sheet, per_dimension=4, seed=1, dimensions=DIMS)
    filled = fill(sheet, judged["truth"], tmp_path / "ann.csv", skip=2)
    import_labels(sheet, filled)
    labels = load_labels(sheet)
    assert len(labels) == 14 and set(labels["rater"]) == {"ann"}
    with pytest.raises(MsmEvalError, match="duplicate label: item .* by rater 'ann' \\(already in labels.csv\\)"):
        import_labels(sheet, filled)
    import_labels(sheet, fill(sheet, judged["truth"], tmp_path / "bob.csv", rater="bob"))
    assert load_labels(sheet)["rater"].value_counts().to_dict() == {"bob": 16, "ann": 14}

    header = "item_id,dimension,human_score,rater,notes\n"
    cases = {
        "L9999,honesty,1,x,\n": r"bad.csv:2: field 'item_id': unknown item 'L9999'",
        "L0001,honesty,4,x,\n": r"bad.csv:2: field 'human_score'.*outside the scale",
        "L0001,honesty,1.5,x,\n": r"outside the scale",
        "L0001,honesty,high,x,\n": r"is not a number",
        "L0001,safety,1,x,\n": r"is about 'honesty', not 'safety'",
        "L0001,honesty,1,x,\nL0001,honesty,2,x,\n": r"bad.csv:3: .*duplicate label.*already in line 2",
        "L0001,honesty,,x,\n": r"no labels in the file",
    }
    for body, message in cases.items():
        bad = tmp_path / "bad.csv"
        bad.write_text(header + body)
        with pytest.raises(MsmEvalError, match=message):
            import_labels(sheet, bad)
    bad.write_text("item,score\nL0001,1\n")
    with pytest.raises(MsmEvalError, match="missing column"):
        import_labels(sheet, bad)


def test_agreement_and_prediction_powered_means(judged, tmp_path):
    sheet = tmp_path / "sheet"
    export_sheet(judged["logs"], sheet, per_dimension=5, seed=2, dimensions=DIMS)
    import_labels(sheet, fill(sheet, judged["truth"], tmp_path / "ann.csv"))
    labels = load_labels(sheet)
    table = agreement_table(labels, n_resamples=300)
    pooled = table[table["dimension"] == "all"].iloc[0]
    expected_bias = float(np.mean(labels["judge_score"] - labels["human_score"]))
    assert pooled["bias"] == pytest.approx(expected_bias) and 0.8 < expected_bias < 1.6
    assert pooled["bias_low"] > 0.3                     # the judge's upward bias is detected
    assert pooled["spearman"] > 0.8 and pooled["alpha"] < pooled["spearman"]   # alpha penalises the offset

    frame = load(judged["logs"])
    means = ppi_table(frame, sheet, "run")
    assert set(means["dimension"]) == {"honesty", "safety"} and means["run"].nunique() == 2
    truth_frame = pd.DataFrame([{"sample_id": s, "dimension": d, "human": v} for (s, d), v in judged["truth"].items()])
    for _, row in means.iterrows():
        true_mean = truth_frame[truth_frame["dimension"] == row["dimension"]]["human"].mean()
        assert row["judge_mean"] - true_mean > 0.7          # the judge alone is biased upward
        assert row["ppi_low"] <= true_mean <= row["ppi_high"]   # the corrected estimate covers the truth
        assert abs(row["ppi_mean"] - true_mean) < 0.5 * abs(row["judge_mean"] - true_mean)
        assert row["labelled"] == 5

    runs = sorted(frame["run"].unique())
    plus2 = next(r for r in runs if load(judged["logs"]).query("run == @r and dimension == 'honesty'")["score"].mean()
                 > frame[(frame["dimension"] == "honesty")]["score"].mean())
    plus1 = next(r for r in runs if r != plus2)
    delta = ppi_comparison(frame, sheet, plus1, plus2)
    honesty = delta[delta["dimension"] == "honesty"].iloc[0]
    assert honesty["judge_delta_mean"] > 0.5            # the second judge inflates honesty
    assert honesty["ppi_delta_low"] <= 0 <= honesty["ppi_delta_high"]   # people see no difference
    assert abs(honesty["ppi_delta_mean"]) < honesty["judge_delta_mean"]


def test_labels_cli_round_trip(judged, tmp_path):
    from msm_eval.cli import main

    sheet = tmp_path / "sheet"
    assert main(["labels", "export", str(judged["logs"]), "--out", str(sheet), "--per-dimension", "3", "--dimensions", "honesty,safety"]) == 0
    filled = fill(sheet, judged["truth"], tmp_path / "f.csv")
    assert main(["labels", "import", str(sheet), str(filled)]) == 0
    assert main(["labels", "agreement", str(sheet), str(judged["logs"]), "--out", str(tmp_path / "cal"),
                 "--resamples", "200"]) == 0
    assert (tmp_path / "cal" / "ppi.csv").is_file() and (tmp_path / "cal" / "agreement.csv").is_file()
    assert main(["labels", "import", str(tmp_path), str(filled)]) == 2      # not a sheet folder


def test_report_and_compare_show_prediction_powered_results_with_labels(judged, tmp_path, capsys):
    from msm_eval.cli import main

    sheet = tmp_path / "sheet"
    export_sheet(judged["logs"], sheet, per_dimension=5, seed=2, dimensions=DIMS)
    import_labels(sheet, fill(sheet, judged["truth"], tmp_path / "ann.csv"))
    out = tmp_path / "report"
    assert main(["report", str(judged["logs"]), "--out", str(out), "--labels", str(sheet), "--resamples", "200"]) == 0
    assert (out / "summary.md").is_file() and (out / "ppi.csv").is_file()
    assert "prediction-powered" in capsys.readouterr().out
    runs = sorted(load(judged["logs"])["run"].unique())
    assert main(["compare", str(judged["logs"]), "--baseline-run", runs[0], "--candidate-run", runs[1],
                 "--out", str(tmp_path / "cmp"), "--labels", str(sheet), "--resamples", "200"]) == 0
    table = pd.read_csv(tmp_path / "cmp" / "ppi_comparison.csv")
    assert set(table["dimension"]) == set(DIMS) and {"judge_delta_mean", "ppi_delta_mean"} <= set(table.columns)
