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
