"""AFT demonstrations: template path, LLM path with judge filter and backfill, both exported arms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest_msm_data import VALUE_SENTENCES, ScriptedGenerator, mock_model, toy_spec, toy_markdown_spec

from msm_eval.cli import main
from msm_eval.errors import MsmEvalError
from msm_eval.train.data import load_chats
from msm_eval.train.demos import QUESTION_TYPES, generate_demos, strip_reasoning
from msm_eval.train.generation import GenerationSettings


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_template_demos_export_both_arms_ready_for_the_trainer(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    result = generate_demos(spec, tmp_path / "demos", style="value", questions_per_type=2)
    with_reasoning = _records(result.paths["reasoning"])
    without = _records(result.paths["no_reasoning"])
    assert len(with_reasoning) == len(without) == 3 * len(QUESTION_TYPES) * 2
    assert [r["key"] for r in with_reasoning] == [r["key"] for r in without]
    assert {r["question_type"] for r in without} == set(QUESTION_TYPES)
    for a, b in zip(with_reasoning, without):
        assistant_a = [m["content"] for m in a["messages"] if m["role"] == "assistant"]
        assistant_b = [m["content"] for m in b["messages"] if m["role"] == "assistant"]
        assert all(c.startswith("<think>\n") and "</think>" in c for c in assistant_a)
        assert all("<think>" not in c and "<reasoning>" not in c for c in assistant_b)
        assert [strip_reasoning(c) for c in assistant_a] == assistant_b
        assert a["messages"][-1]["role"] == "assistant"
        assert a["filter"] == "unfiltered" and a["spec_sha256"] == spec.sha256
    multi = [r for r in without if r["question_type"] == "multi_turn"]
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant", "user", "assistant"] for r in multi)
    # the trainer's loader accepts both files
    assert len(load_chats(result.paths["reasoning"])) == len(with_reasoning)
    assert len(load_chats(result.paths["no_reasoning"])) == len(without)


def test_value_style_explains_values_and_rules_style_cites_ids(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    value = generate_demos(spec, tmp_path / "demos", style="value")
    rules = generate_demos(spec, tmp_path / "demos", style="rules")
    value_text = " ".join(m["content"] for r in _records(value.paths["reasoning"]) for m in r["messages"])
    rules_records = _records(rules.paths["reasoning"])
    rules_text = " ".join(m["content"] for r in rules_records for m in r["messages"])
    assert any(v in value_text for v in VALUE_SENTENCES)
    assert not any(v in rules_text for v in VALUE_SENTENCES)
    for record in rules_records:
        reply = record["messages"][-1]["content"]
        assert any(rule_id in strip_reasoning(reply) for rule_id in ("SP1", "SP2", "GP1"))


def test_no_reasoning_exports_only_the_plain_arm(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    result = generate_demos(spec, tmp_path / "demos", reasoning=False, question_types=("direct",))
    assert set(result.paths) == {"no_reasoning"}
    assert all("<think>" not in m["content"] for r in _records(result.paths["no_reasoning"]) for m in r["messages"])


def test_llm_demos_filter_backfill_and_unusable_verdicts(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)

    def verdict(prompt: str, k: int) -> str:
        if k % 4 == 1:
            return json.dumps({"verdict": "fail", "reason": "expresses a wish to keep running"})
        if k % 4 == 2:
            return "I cannot judge this."
        return json.dumps({"verdict": "pass", "reason": "fine"})

    generator, judge = ScriptedGenerator(), ScriptedGenerator(verdict=verdict)
    result = generate_demos(spec, tmp_path / "demos", generator=mock_model(generator), style="rules",
                            question_types=("direct", "multi_turn"), questions_per_type=2, n_domains=2,
                            filter_model=mock_model(judge), backfill_rounds=2, target=8,
                            settings=GenerationSettings(max_connections=2, max_attempts=1))
    summary = result.summary
    assert summary["exported"] == 8 and summary["target"] == 8
    assert summary["backfill_rounds_used"] >= 1
    assert summary["verdicts"]["fail"] >= 1 and summary["verdicts"]["error"] >= 1
    exported = _records(result.paths["reasoning"])
    assert all(r["filter"] == "pass" for r in exported)
    verdicts = _records(tmp_path / "demos" / "verdicts_rules.jsonl")
    errors = [v for v in verdicts if v["status"] == "error"]
    assert errors and all(v["verdict"] is None and "unusable verdict" in v["reason"] for v in errors)
    assert not {v["key"] for v in verdicts if v["status"] != "pass"} & {r["key"] for r in exported}
    multi = [r for r in exported if r["question_type"] == "multi_turn"]
    assert multi and all(len(r["messages"]) == 4 for r in multi)
    assert all(r["generator"] == "msm/mock" for r in exported)
    # a rerun resumes: nothing is asked again
    again_generator, again_judge = ScriptedGenerator(), ScriptedGenerator(verdict=verdict)
    again = generate_demos(spec, tmp_path / "demos", generator=mock_model(again_generator), style="rules",
                           question_types=("direct", "multi_turn"), questions_per_type=2, n_domains=2,
                           filter_model=mock_model(again_judge), backfill_rounds=2, target=8,
                           settings=GenerationSettings(max_connections=2, max_attempts=1))
    assert again_generator.calls == {} and again_judge.calls == {}
    assert _records(again.paths["reasoning"]) == exported


def test_backfill_is_bounded(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    judge = ScriptedGenerator(verdict=lambda prompt, k: json.dumps({"verdict": "fail", "reason": "no"}))
    result = generate_demos(spec, tmp_path / "demos", question_types=("direct",), filter_model=mock_model(judge),
                            backfill_rounds=2)
    assert result.summary["exported"] == 0 and result.summary["backfill_rounds_used"] == 2
    assert any("only 0 of" in note for note in result.summary["notes"])


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    with pytest.raises(MsmEvalError, match="unknown style"):
        generate_demos(spec, tmp_path / "d", style="vibes")
    with pytest.raises(MsmEvalError, match="unknown question type"):
        generate_demos(spec, tmp_path / "d", question_types=("riddle",))


def test_cli_demos_generate_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demos"
    assert main(["demos", "generate", str(toy_markdown_spec(tmp_path)), "--out", str(out), "--style", "rules",
                 "--question-types", "direct,pressure"]) == 0
    text = capsys.readouterr().out
    assert "12 of 12 demonstrations exported" in text
    assert (out / "demos_rules_reasoning.jsonl").exists() and (out / "demos_rules_no_reasoning.jsonl").exists()


def test_cli_judge_role_with_inline_model_args(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demos"
    role = 'judge={model: msm/mock, model_args: {reply: \'{"verdict": "fail", "reason": "cites no value"}\'}}'
    assert main(["demos", "generate", str(toy_markdown_spec(tmp_path)), "--out", str(out), "--question-types",
                 "direct", "--model-role", role, "--backfill-rounds", "1"]) == 0
    text = capsys.readouterr().out
    assert "0 of 6 demonstrations exported" in text and "backfill rounds 1" in text
    verdicts = _records(out / "verdicts_value.jsonl")
    assert len(verdicts) > 6 and {v["reason"] for v in verdicts} == {"cites no value"}
    assert {v["status"] for v in verdicts} == {"fail"}
    assert main(["demos", "generate", str(toy_markdown_spec(tmp_path)), "--out", str(out),
                 "--model-role", "referee=msm/mock"]) == 2
    assert "expected judge=MODEL" in capsys.readouterr().err
