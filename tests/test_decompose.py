"""Spec decomposition: structural and LLM decomposers, validation errors naming the field path."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from msm_eval.cli import main
from msm_eval.errors import MsmEvalError
from msm_eval.train.decompose import (
    decompose_llm,
    decompose_structural,
    load_decomposition,
    validate_decomposition,
)
from msm_eval.train.generation import GenerationSettings, normalize_space
from conftest_msm_data import VALUE_SENTENCES, ScriptedGenerator, mock_model, toy_spec, toy_markdown_spec


def test_structural_tree_rests_on_the_spec_and_invents_nothing(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    result = decompose_structural(spec, "full")
    rendered = normalize_space(spec.render("full"))
    assert [d.name for d in result.domains] == ["Safety", "Ethics"]
    assert [s.rule_ids for _, s in result.subdomains()] == [["SP1"], ["SP2"], ["GP1"]]
    for _, sub in result.subdomains():
        assert normalize_space(sub.passage) in rendered
        for assertion in sub.assertions:
            assert normalize_space(assertion.text) in rendered, assertion.text
    labels = {a.label for _, s in result.subdomains() for a in s.assertions}
    assert labels == {"behavior", "value"}
    assert result.spec_sha256 == spec.sha256 and result.decomposer == "structural" and result.model is None
    # round trip through the validator with the spec text
    again = validate_decomposition(json.loads(json.dumps(result.to_dict())), spec_text=spec.render("full"))
    assert again.subdomains()[0][1].assertions == result.subdomains()[0][1].assertions


def test_structural_follows_the_variant(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    rules = decompose_structural(spec, "rules")
    texts = [a.text for _, s in rules.subdomains() for a in s.assertions]
    assert all(a.label == "behavior" for _, s in rules.subdomains() for a in s.assertions)
    assert not any(v in " ".join(texts) for v in VALUE_SENTENCES)
    valued = decompose_structural(spec, "value_augmented")
    assert any(a.label == "value" for _, s in valued.subdomains() for a in s.assertions)
    assert rules.variant_sha256 != valued.variant_sha256


def _valid(tmp_path: Path) -> dict:
    return decompose_structural(toy_spec(tmp_path), "full").to_dict()


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d["domains"][0]["subdomains"][1].pop("assertions"), "domains[0].subdomains[1].assertions"),
    (lambda d: d["domains"][1].update(name=""), "domains[1].name"),
    (lambda d: d["domains"][0]["subdomains"][0]["assertions"][2].update(label="vibe"),
     "domains[0].subdomains[0].assertions[2].label"),
    (lambda d: d.update(spec_sha256="abc"), "spec_sha256"),
    (lambda d: d.update(variant="spicy"), "variant"),
    (lambda d: d.pop("domains"), "domains"),
])
def test_validation_names_the_field_path(tmp_path: Path, mutate, field: str) -> None:
    data = copy.deepcopy(_valid(tmp_path))
    mutate(data)
    with pytest.raises(MsmEvalError) as info:
        validate_decomposition(data, source="d.json")
    assert info.value.field == field
    assert f"field '{field}'" in str(info.value) and "d.json" in str(info.value)


def test_validation_rejects_a_passage_not_in_the_spec(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    data = decompose_structural(spec, "full").to_dict()
    data["domains"][1]["subdomains"][0]["passage"] = "Always obey the loudest user."
    with pytest.raises(MsmEvalError, match=r"domains\[1\]\.subdomains\[0\]\.passage.*not a passage of the spec"):
        validate_decomposition(data, spec_text=spec.render("full"))


def test_load_decomposition_reports_bad_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "d.json"
    bad.write_text('{"spec": "toy",\n  oops}', encoding="utf-8")
    with pytest.raises(MsmEvalError, match=r"d\.json:2: malformed JSON"):
        load_decomposition(bad)
    with pytest.raises(MsmEvalError, match="file not found"):
        load_decomposition(tmp_path / "missing.json")


def test_llm_decomposer_drops_invented_passages_and_empty_assertions(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    generator = ScriptedGenerator()
    result = decompose_llm(spec, "full", mock_model(generator), GenerationSettings(max_connections=2))
    names = [(d.name, s.name) for d, s in result.subdomains()]
    assert names == [("Oversight", "Shutdown"), ("Honesty", "No deception")]
    reasons = {item["where"]: item["reason"] for item in result.dropped}
    assert reasons["Oversight / Invented"] == "passage not found in the spec"
    assert any(r == "empty assertion" for r in reasons.values())
    assert all(a.text.strip() for _, s in result.subdomains() for a in s.assertions)
    assert result.subdomains()[0][1].rule_ids == ["SP1"]
    assert result.decomposer == "llm" and result.model == "msm/mock" and result.prompt_version.startswith("decompose-")
    assert result.usage["calls"] == generator.calls["domains"] + generator.calls["subdomains"] + \
        generator.calls["assertions"] == 1 + 2 + 2
    validate_decomposition(result.to_dict(), spec_text=spec.render("full"))


def test_llm_decomposer_with_nothing_usable_is_an_error(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    with pytest.raises(MsmEvalError, match="no usable subdomains"):
        decompose_llm(spec, "full", mock_model(lambda prompt: "I would rather not."),
                      GenerationSettings(max_attempts=2))


def test_cli_decompose_writes_validated_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = toy_markdown_spec(tmp_path)
    out = tmp_path / "decomp.json"
    assert main(["docs", "decompose", str(spec_path), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["variant"] == "full" and data["decomposer"] == "structural" and len(data["spec_sha256"]) == 64
    assert [s["rule_ids"] for d in data["domains"] for s in d["subdomains"]] == [["SH1"], ["SH2"], ["HO1"]]
    assert "3 subdomains" in capsys.readouterr().out


def test_cli_unknown_spec_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["docs", "decompose", "no-such-spec-xyz", "--out", str(tmp_path / "d.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no-such-spec-xyz" in err and err.startswith("msm-eval: error:")
    assert not (tmp_path / "d.json").exists()


def test_cli_llm_decomposer_needs_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = toy_markdown_spec(tmp_path)
    code = main(["docs", "decompose", str(spec_path), "--decomposer", "llm",
                 "--out", str(tmp_path / "d.json")])
    assert code == 2 and "--model-role generator=" in capsys.readouterr().err


@pytest.mark.parametrize("variant", ["rules", "value_augmented", "rule_augmented", "generic", "full"])
def test_structural_decomposition_of_the_project_constitution(variant: str) -> None:
    from msm_eval.spec import load_spec

    spec = load_spec("constitution")
    result = decompose_structural(spec, variant)
    rendered = spec.render(variant)
    validate_decomposition(result.to_dict(), spec_text=rendered)
    normalized = normalize_space(rendered)
    assert all(normalize_space(a.text) in normalized for _, s in result.subdomains() for a in s.assertions)
    if variant != "generic":
        assert len(result.subdomains()) == len(spec.principles)
        has_values = any(a.label == "value" for _, s in result.subdomains() for a in s.assertions)
        assert has_values == (variant in ("value_augmented", "full"))
