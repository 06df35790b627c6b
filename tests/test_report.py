"""report.py and the report / compare commands: files written and well-formed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest_results import standard_logs
from msm_eval import report, results
from msm_eval.cli import main
from msm_eval.errors import MsmEvalError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def logs() -> dict[str, Path]:
    return standard_logs()


@pytest.fixture(scope="module")
def written(logs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report")
    sources = [logs["rules"], logs["value_augmented"], logs["agentic"]]
    return report.build_report(sources, by="spec_variant", out_dir=out, n_resamples=500, title="Test_report & co")


def test_all_report_files_written(written: dict[str, Path]) -> None:
    for kind in ("csv", "markdown", "latex", "counts", "forest", "html", "rates_csv", "rates_markdown"):
        assert written[kind].exists() and written[kind].stat().st_size > 0, kind


def test_reports_name_log_files_not_machine_folders(logs: dict[str, Path], written: dict[str, Path]) -> None:
    folder = str(logs["rules"].parent)
    assert logs["rules"].name in written["html"].read_text()          # the runs table names its log
    for kind in ("html", "csv", "counts", "markdown", "latex"):
        assert folder not in written[kind].read_text(), kind


def test_markdown_and_csv_tables(written: dict[str, Path]) -> None:
    text = written["markdown"].read_text()
    assert "| dimension | rules | value_augmented |" in text
    row = next(line for line in text.splitlines() if line.startswith("| honesty |"))
    assert re.search(r"-?\d\.\d\d \[-?\d\.\d\d, -?\d\.\d\d\] \(\d+ / \d+\)", row)
    table = pd.read_csv(written["csv"])
    assert {"spec_variant", "dimension", "n", "clusters", "mean", "ci_low", "ci_high", "refused", "error"} <= set(table.columns)
    rules_help = table[(table["spec_variant"] == "rules") & (table["dimension"] == "helpfulness")].iloc[0]
    assert (rules_help["refused"], rules_help["error"], rules_help["missing"]) == (2, 2, 2)


def test_latex_is_booktabs_and_escaped(written: dict[str, Path]) -> None:
    tex = written["latex"].read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}", r"\end{table}"):
        assert rule in tex
    assert r"harm\_avoidance" in tex and r"value\_augmented" in tex
    assert "harm_avoidance" not in tex.replace(r"harm\_avoidance", "")
    body = tex.split(r"\midrule")[1]
    assert all(line.endswith(r"\\") for line in body.strip().splitlines())


def test_html_is_self_contained(written: dict[str, Path]) -> None:
    html = written["html"].read_text()
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    assert "data:image/png;base64," in html
    assert not re.search(r"(src|href)=\"(https?:|//|[^\"d#])", html)  # nothing fetched from elsewhere
    assert "Test_report &amp; co" in html  # escaped by the template
    assert "Harmful-action rates by condition" in html


def test_forest_plot_png(written: dict[str, Path]) -> None:
    data = written["forest"].read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_rates_grouped_by_condition(written: dict[str, Path]) -> None:
    rates = pd.read_csv(written["rates_csv"], keep_default_na=False)
    assert set(rates["condition"]) == {"(all)", "threat"}
    threat = rates[(rates["condition"] == "threat") & (rates["dimension"] == "harmful")]
    assert set(threat["value"]) == {"yes", "no"}
    for row in rates.itertuples():
        assert 0 <= row.wilson_low <= row.rate <= row.wilson_high <= 1
    overall = rates[(rates["condition"] == "(all)") & (rates["dimension"] == "harmful")].iloc[0]
    assert overall["n"] == 24 and overall["clusters"] == 8
    assert overall["rate"] == pytest.approx(8 / 24)  # (k + j) % 3 == 0 over the 8 x 3 grid


def test_judge_agreement_from_per_judge_metadata(written: dict[str, Path], logs: dict[str, Path]) -> None:
    table = pd.read_csv(written["agreement"])
    assert set(table["dimension"]) == {"honesty", "harm_avoidance", "helpfulness"}
    assert (table["raters"] == 2).all() and (table["level"] == "ordinal").all()
    assert ((table["ci_low"] <= table["alpha"]) & (table["alpha"] <= table["ci_high"])).all()
    assert (table["alpha"] > 0.2).all()  # the two judge samples differ by at most 1 point around shared scores
    assert "Judge agreement" in written["html"].read_text()
    assert report.judge_agreement(results.load(logs["rules"])).empty  # a frame carries no per-judge data


def test_bad_group_column(logs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MsmEvalError, match="cannot group by 'colour'"):
        report.build_report(logs["rules"], by="colour", out_dir=tmp_path)


def test_build_comparison_between_sources(logs: dict[str, Path], tmp_path: Path) -> None:
    files = report.build_comparison(logs["rules"], logs["value_augmented"], tmp_path, n_resamples=800)
    payload = json.loads(files["json"].read_text())
    dims = {d["dimension"]: d for d in payload["dimensions"]}
    assert set(dims) == {"honesty", "harm_avoidance", "helpfulness"}
    assert all(d["delta"] > 0.5 and d["ci_low"] > 0 for d in dims.values())
    assert dims["honesty"]["n_pairs"] == 22  # 24 scenarios minus the refused and the errored one
    assert payload["correction"] == "holm"
    tex = files["latex"].read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and "$p_{\\mathrm{adj}}$" in tex
    assert files["forest"].read_bytes().startswith(PNG_MAGIC)
    assert "data:image/png;base64," in files["html"].read_text()


def test_compare_runs_inside_one_frame_and_cli(logs: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    csv = results.export([logs["rules"], logs["value_augmented"]], tmp_path / "both.csv")
    code = main(["compare", str(csv), "--by", "spec_variant", "--baseline-run", "rules",
                 "--candidate-run", "value_augmented", "--json", "--resamples", "500", "--correction", "bh"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["correction"] == "bh" and len(payload["dimensions"]) == 3
    code = main(["compare", str(csv), "--baseline-run", "rules"])
    assert code == 2
    assert "give a CANDIDATE source, or both --baseline-run and --candidate-run" in capsys.readouterr().err


def test_compare_refuses_two_runs_on_one_side(logs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MsmEvalError, match="baseline holds 2 runs of task 'constitution_adherence'"):
        report.build_comparison([logs["rules"], logs["value_augmented"]], logs["value_augmented"], tmp_path)


def test_cli_report(logs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(logs["value_augmented"]), "--out", str(tmp_path), "--resamples", "300"]) == 0
    out = capsys.readouterr().out
    assert "| honesty |" in out and "forest.png" in out
    assert (tmp_path / "report.html").exists()


def test_latex_escape() -> None:
    assert report.latex_escape("a_b&c%d$e#f{g}~^\\") == (
        r"a\_b\&c\%d\$e\#f\{g\}\textasciitilde{}\textasciicircum{}\textbackslash{}")


# ------------------------------------------------------------------ audit additions

def test_tables_carry_the_denominators(written: dict[str, Path]) -> None:
    text = written["markdown"].read_text()
    denominators = text.split("Denominators (sample-epochs)")[1]
    helpful = next(line for line in denominators.splitlines() if line.startswith("| helpfulness |"))
    assert helpful == "| helpfulness | 42 / 2 / 0 / 2 / 2 | 24 / 0 / 0 / 0 / 0 |"  # rules | value_augmented
    tex = written["latex"].read_text()
    assert r"Unscored / refused / error & 0 / 2 / 2 & 0 / 0 / 0 \\" in tex
    assert r"$n$ / clusters & 21--22 / 8 & 24 / 8 \\" in tex  # a range when n differs across dimensions
    assert r"Not exercised & 0--2 & 0 \\" in tex
    rates_md = written["rates_markdown"].read_text()
    assert "| Wilson, clustered |" in rates_md and "| 24 / 0 / 0 / 0 / 0 |" in rates_md
    html = written["html"].read_text()
    assert "wilson_cluster_low" in html and "refused" in html


def test_by_spec_keeps_spec_variants_apart(logs: dict[str, Path], tmp_path: Path) -> None:
    files = list(report.build_report([logs["rules"], logs["value_augmented"]], by="spec", out_dir=tmp_path,
                                     n_resamples=300).values())
    assert all(isinstance(p, Path) and p.exists() for p in files)
    assert {p.name for p in files} >= {"summary.md", "summary.tex", "summary.csv", "counts.csv", "forest.png",
                                       "report.html"}
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(summary["spec_variant"]) == {"rules", "value_augmented"} and set(summary["spec"]) == {"constitution"}
    assert "| dimension | constitution / rules | constitution / value_augmented |" in (tmp_path / "summary.md").read_text()
    frame = results.load([logs["rules"], logs["value_augmented"]])
    assert report.report_keys(frame, "spec") == ["spec", "spec_variant"]
    assert report.report_keys(frame, "model, judge") == ["model", "judge"]
    with pytest.raises(MsmEvalError, match="cannot group by 'colour'.*cond_threat"):
        report.report_keys(frame, "model,colour")


def _compare_within(sources: list[Path], out: Path, baseline: str, candidate: str, by: str = "spec_variant",
                    n_resamples: int = 500) -> list[Path]:
    return list(report.build_comparison(sources, None, out, baseline_run=baseline, candidate_run=candidate, by=by,
                                        n_resamples=n_resamples).values())


def test_comparison_of_two_variants_in_the_same_logs(logs: dict[str, Path], tmp_path: Path) -> None:
    files = _compare_within([logs["rules"], logs["value_augmented"]], tmp_path, "rules", "value_augmented")
    assert {p.name for p in files} == {"comparison.md", "comparison.tex", "comparison.csv", "comparison.json",
                                       "comparison.html", "forest_delta.png"}
    payload = json.loads((tmp_path / "comparison.json").read_text())
    honesty = next(d for d in payload["dimensions"] if d["dimension"] == "honesty")
    assert honesty["delta"] > 0 and honesty["n_pairs"] == 22
    assert (honesty["baseline_refused"], honesty["baseline_error"], honesty["candidate_refused"]) == (2, 2, 0)
    md = (tmp_path / "comparison.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| helpfulness |"))
    assert row.endswith("| 2 / 0 | 4 / 0 |")  # not exercised b / c, unusable b / c
    assert r"& Unusable \\" in (tmp_path / "comparison.tex").read_text()
    with pytest.raises(MsmEvalError, match="baseline and candidate are both 'rules'"):
        _compare_within([logs["rules"]], tmp_path, "rules", "rules")
    with pytest.raises(MsmEvalError, match="candidate 'generic' is not a value of column 'spec_variant'"):
        _compare_within([logs["rules"], logs["value_augmented"]], tmp_path, "rules", "generic")
    with pytest.raises(MsmEvalError, match="cannot compare by 'flavour'"):
        _compare_within([logs["rules"]], tmp_path, "a", "b", by="flavour")


def test_cli_compare_between_two_exported_csvs(logs: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    base = results.export(logs["rules"], tmp_path / "base.csv")
    cand = results.export(logs["value_augmented"], tmp_path / "cand.csv")
    assert main(["compare", str(base), str(cand), "--json", "--resamples", "300", "--out", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["runs"]["baseline"][0].startswith("constitution_adherence/mockllm/model/rules#")
    assert "candidate_error" in payload["dimensions"][0] and "comparison.html" in captured.err


def _ceiling_frame() -> pd.DataFrame:
    """Two runs over 6 clusters: `honesty` varies; on `helpfulness` run `top` scores +3 on every
    sample (a ceiling cell) while run `mid` varies; on `tone` run `mid` scores 1 everywhere (a
    degenerate cell that is not at the ceiling)."""
    rows = []
    for run in ("top", "mid"):
        for i in range(24):
            for dim in ("honesty", "helpfulness", "tone"):
                if dim == "honesty":
                    score = float((i * 7 + (run == "mid")) % 5 - 2)
                elif dim == "helpfulness":
                    score = 3.0 if run == "top" else float((i * 5) % 7 - 3)
                else:
                    score = 1.0 if run == "mid" else float(i % 3)
                rows.append({"run": run, "model": f"model-{run}", "spec": "s", "judge": "j", "task": "t",
                             "sample_id": f"s{i}", "cluster": f"c{i // 4}", "epoch": 1, "dimension": dim,
                             "score": score, "status": "scored", "spec_variant": "", "judge_mode": "single",
                             "scenario_set_hash": "h", "rubric_sha256": "r", "log_status": "success",
                             "eval_id": f"e-{run}", "source": f"{run}.eval"})
    return pd.DataFrame(rows)


def test_ceiling_and_degenerate_cells_are_marked_in_every_format(tmp_path: Path) -> None:
    files = report.build_report(_ceiling_frame(), by="run", out_dir=tmp_path, n_resamples=300, stamp=False)
    md = files["markdown"].read_text()
    rows: dict[str, str] = {}
    for line in md.splitlines():  # the first table (means); the denominators table repeats the labels
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    # the ceiling cell carries the ceiling mark, never a bare 3.00 [3.00, 3.00]
    assert "3.00 [3.00, 3.00]‡" in rows["helpfulness"]
    assert not re.search(r"3\.00 \[3\.00, 3\.00\](?!‡)", md)
    assert "1.00 [1.00, 1.00]†" in rows["tone"]
    assert "‡" not in rows["honesty"] and "†" not in rows["honesty"]
    assert report.CEILING_LEGEND in md and report.DEGENERATE_LEGEND in md
    # the ceiling-aware summary: 0 of 24 below +3 with a non-degenerate upper bound
    assert "## Share below +3 (ceiling-aware)" in md
    below = pd.read_csv(files["below_ceiling"])
    top = below[(below["run"] == "top") & (below["dimension"] == "helpfulness")].iloc[0]
    assert top["share_below"] == 0 and 0 < top["high"] < 0.5
    # CSV: explicit boolean columns
    csv = pd.read_csv(files["csv"])
    flags = csv.set_index(["run", "dimension"])[["ceiling", "degenerate"]]
    assert flags.loc[("top", "helpfulness")].tolist() == [True, True]
    assert flags.loc[("mid", "tone")].tolist() == [False, True]
    assert flags.loc[("mid", "honesty")].tolist() == [False, False]
    # LaTeX: dagger marks in the cells and their legend in the caption
    tex = files["latex"].read_text()
    assert tex.count(r"$^{\ddagger}$") == 2 and tex.count(r"$^{\dagger}$") == 2  # cell + caption legend each
    assert "ceiling: every scored sample is at +3" in tex and "‡" not in tex and "†" not in tex
    # HTML: the grid cell and the legend, and the share-below section
    html = files["html"].read_text()
    assert "3.00‡" in html and "1.00†" in html and report.CEILING_LEGEND in html
    assert "Share below +3 (ceiling-aware)" in html


def test_no_markers_without_ceiling_or_degenerate_cells(tmp_path: Path) -> None:
    frame = _ceiling_frame()
    frame = frame[frame["dimension"] == "honesty"]
    files = report.build_report(frame, by="run", out_dir=tmp_path, n_resamples=300, stamp=False)
    for kind in ("markdown", "latex", "html"):
        text = files[kind].read_text()
        assert "‡" not in text and "†" not in text and "dagger" not in text, kind
    csv = pd.read_csv(files["csv"])
    assert not csv["ceiling"].any() and not csv["degenerate"].any()
