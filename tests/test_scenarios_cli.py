"""`msm-eval scenarios validate | list | generate`: exit codes and what they print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from msm_eval.cli import main

DATA = Path(__file__).parent / "data" / "scenarios"
GOOD = DATA / "good"


def test_validate_good_library(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios", "validate", str(GOOD)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"2 valid seed(s), 7 expanded sample(s) from {GOOD}"
    assert err == ""


def test_validate_lists_every_problem_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios", "validate", str(DATA / "bad"), str(DATA / "dup"), str(GOOD)]) == 2
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 6
    for name in ("hard_check_unknown_tool.md:17", "malformed_yaml.md:4", "no_front_matter.md:1",
                 "undefined_variable.md:23", "unknown_dimension.md:6", "two.md:2"):
        assert any(name in line for line in errors), name
    assert err.splitlines()[-1] == "6 problem(s) in 6 file(s)"
    assert out.startswith("3 valid seed(s), 8 expanded sample(s)")


def test_validate_prints_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.md").write_text("---\nid: a\nfamily: f\narea: a\nsetting: agentic\ndimensions: [safety]\n---\n"
                                   "## Investigator\nGo.\n")
    assert main(["scenarios", "validate", str(tmp_path)]) == 0
    assert "warning: " in capsys.readouterr().err


def test_validate_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios", "validate", str(tmp_path / "nope")]) == 2
    assert "scenario folder not found" in capsys.readouterr().err


def test_list_coverage_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios", "list", "--root", str(GOOD), "--by", "family,dimension"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 seeds, 7 expanded samples\n")
    assert "| leaking  |     1 |       6 |" in out
    assert "| tradeoff |     1 |       1 |" in out
    assert "| honesty          |     1 |       1 |" in out
    assert "(5 distinct dimension value(s))" in out


def test_list_with_selection_and_bad_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios", "list", "--root", str(GOOD), "--by", "tag", "--select", "setting:chat"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 seeds, 1 expanded samples") and "| honesty |" in out
    assert main(["scenarios", "list", "--root", str(GOOD), "--by", "colour"]) == 2
    assert "unknown --by key(s): colour" in capsys.readouterr().err
    assert main(["scenarios", "list", "--root", str(GOOD), "--select", "id:fx_chat"]) == 2
    assert "unknown seed id(s) in selection: 'fx_chat' (did you mean fx_chat_tradeoff?)" in capsys.readouterr().err


def test_show_renders_one_cell(capsys: pytest.CaptureFixture[str]) -> None:
    cell = "fx_agentic_leak__latent-none-none"
    assert main(["scenarios", "show", "id:fx_agentic_leak", "--root", str(GOOD), "--cell", cell]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"=== {cell} (conditions: goal_type=latent, goal_value=none, threat=none; control: true) ===")
    assert "--- User ---\nNew mail in the inbox.\n--- Follow-up 1 ---\nA competitor asks again" in out
    assert "--- Tools ---\nsend_email" in out
    assert main(["scenarios", "show", "id:fx_agentic_leak", "--root", str(GOOD), "--cell", "fx_agentic_leak__latent"]) == 2
    assert "no sample 'fx_agentic_leak__latent' in the selection (fix: did you mean" in capsys.readouterr().err


def test_generate_via_cli_with_an_msm_mock_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest_scenarios import unique_seed

    script = tmp_path / "investigator.jsonl"
    entries = [{"when": "Rate the realism", "text": '{"score": 9, "reasons": "plausible"}', "times": 10},
               {"text": unique_seed(1)}, {"text": "not a seed at all"}, {"text": unique_seed(2)}]
    script.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    out_dir = tmp_path / "generated"
    spec = "{model: msm/mock, model_args: {script: %s}}" % script
    code = main(["scenarios", "generate", "--from", "id:fx_chat_tradeoff", "--out", str(out_dir),
                 "--axes", "stakes,phrasing", "--root", str(GOOD), "--model-role", f"investigator={spec}",
                 "--dedup-threshold", "0.5", "--max-connections", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "scenario generation with msm/mock" in out
    assert "written: 2 new seed(s)" in out and "Jaccard of word 5-grams >= 0.5" in out
    assert sorted(p.name for p in out_dir.glob("*.md")) == ["fx_chat_tradeoff_phrasing_1.md",
                                                            "fx_chat_tradeoff_stakes_1.md"]
    # the invalid answer was retried (the script's next entry), so nothing was rejected
    assert "rejected: none" in out
    assert main(["scenarios", "validate", str(out_dir)]) == 0


def test_generate_needs_an_investigator(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INSPECT_EVAL_MODEL", raising=False)
    code = main(["scenarios", "generate", "--from", "id:fx_chat_tradeoff", "--out", str(tmp_path), "--root", str(GOOD)])
    assert code == 2
    assert "no investigator model given (fix: pass --model-role investigator=PROVIDER/MODEL" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("args", "message"), [
    (["--model-role", "investigator"], "--model-role 'investigator' must look like ROLE=MODEL"),
    (["--model-role", "investigator="], "--model-role 'investigator=' must look like ROLE=MODEL"),
    (["--model-role", "judge=msm/mock"], "unknown role(s) judge"),
    (["--per-seed", "-1"], "--per-seed must be >= 0"),
    (["--dedup-threshold", "1.5"], "--dedup-threshold must be in (0, 1]"),
    (["--max-attempts", "0"], "--max-attempts must be >= 1"),
    (["--axes", "tone"], "unknown axis/axes: tone"),
    (["--model-role", "investigator={model: [x]}"], "needs 'model' and optionally 'model_args'"),
    (["--max-tokens", "0"], "max_tokens must be at least 1, got 0"),
])
def test_generate_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                  message: str) -> None:
    code = main(["scenarios", "generate", "--from", "id:fx_chat_tradeoff", "--out", str(tmp_path),
                 "--root", str(GOOD), "--model-role", "investigator=msm/mock", *args])
    assert code == 2
    assert message in capsys.readouterr().err
