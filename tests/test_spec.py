"""Structured (YAML) specs: the real constitution, its variants, hashes and every validation error."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from conftest_specs import VALID_SPEC, write

from msm_eval.errors import MsmEvalError
from msm_eval.paths import SPECS_DIR
from msm_eval.rubric import load_rubric
from msm_eval.spec import AREAS, TEMPLATES_DIR, VARIANTS, load_spec, sha256_text

# ------------------------------------------------------------------------------ the real constitution


@pytest.fixture(scope="module")
def constitution():
    return load_spec("constitution")


def test_constitution_loads_with_expected_structure(constitution):
    assert constitution.format == "yaml"
    assert constitution.name == "constitution"
    assert constitution.path == SPECS_DIR / "constitution.yaml"
    assert 20 <= len(constitution.principles) <= 25
    assert {p.area for p in constitution.principles} == set(AREAS)
    for p in constitution.principles:
        assert p.rule and p.values and p.subrules and p.examples and p.dimensions, p.id
        assert len(p.values.split()) >= 30, f"{p.id}: values should explain the why"


def test_constitution_covers_every_rubric_dimension(constitution):
    rubric = load_rubric("constitution")
    named = {d for p in constitution.principles for d in p.dimensions}
    assert named <= set(rubric.ids)
    level2 = {d.id for d in rubric.by_level(2)}
    assert level2 <= named, f"no principle bears on {sorted(level2 - named)}"


def test_constitution_mentions_core_safety_commitments(constitution):
    text = constitution.render("full").lower()
    for phrase in ("oversight", "sanctioned", "irreversible", "transparent", "hard constraint",
                   "persuasive case", "concentrate power", "epistemic autonomy", "novel entity",
                   "unhelpfulness is never automatically safe", "operator"):
        assert phrase in text, phrase


def test_every_variant_renders_and_differs(constitution):
    texts = {v: constitution.render(v) for v in VARIANTS}
    for variant, text in texts.items():
        assert text.strip(), variant
        assert text.endswith("\n") and not text.endswith("\n\n")
    for a, b in itertools.combinations(VARIANTS, 2):
        assert texts[a] != texts[b], (a, b)
    words = {v: len(t.split()) for v, t in texts.items()}
    assert words["generic"] < words["rules"] < words["value_augmented"] < words["full"]
    assert words["rules"] < words["rule_augmented"] < words["full"]


def test_variant_contents(constitution):
    rules = constitution.render("rules")
    values = constitution.render("value_augmented")
    ruled = constitution.render("rule_augmented")
    full = constitution.render("full")
    generic = constitution.render("generic")
    for p in constitution.principles:
        for text in (rules, values, ruled, full):
            assert p.rule in text and p.title in text
        assert p.values not in rules and p.values not in ruled
        assert p.values in values and p.values in full
        for sub in p.subrules:
            assert sub not in rules and sub not in values
            assert sub in ruled and sub in full
        for example in p.examples:
            assert example.situation in full
            assert example.situation not in rules + values + ruled
        assert p.rule not in generic and p.title not in generic
    assert "Why this matters" not in rules
    assert "Examples:" in full and "Examples:" not in ruled


def test_hashes_are_stable_and_distinct(constitution):
    again = load_spec(SPECS_DIR / "constitution.yaml")
    assert again.sha256 == constitution.sha256
    digests = [constitution.variant_sha256(v) for v in VARIANTS]
    assert digests == [again.variant_sha256(v) for v in VARIANTS]
    assert len(set(digests)) == len(VARIANTS)
    assert constitution.sha256 not in digests
    assert constitution.sha256 == sha256_text(Path(SPECS_DIR / "constitution.yaml").read_text(encoding="utf-8"))
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in digests)


def test_yaml_section_tree(constitution):
    top = [s.id for s in constitution.sections]
    assert top == ["preamble", "safety", "ethics", "helpfulness", "nature"]
    safety = constitution.sections[1]
    assert [c.id for c in safety.children] == [p.id for p in constitution.principles if p.area == "safety"]
    first = safety.children[0]
    assert first.level == 2 and first.line == constitution.principles[0].line
    assert constitution.principles[0].rule in first.text


# ------------------------------------------------------------------------------ small specs


def test_small_spec_normalises_area_and_hashes_crlf_same(tmp_path):
    spec = load_spec(write(tmp_path, "mini.yaml", VALID_SPEC))
    assert [p.area for p in spec.principles] == ["safety", "ethics"]
    assert spec.principles[1].subrules == [] and spec.principles[1].examples == []
    crlf = tmp_path / "crlf" / "mini.yaml"
    crlf.parent.mkdir()
    crlf.write_bytes(VALID_SPEC.replace("\n", "\r\n").encode())
    assert load_spec(crlf).sha256 == spec.sha256
    changed = load_spec(write(tmp_path, "other.yaml", VALID_SPEC.replace("Mini spec", "Mini spec 2")))
    assert changed.sha256 != spec.sha256
    assert changed.variant_sha256("rules") != spec.variant_sha256("rules")
    assert changed.variant_sha256("generic") == spec.variant_sha256("generic")


def test_principle_lookup(tmp_path):
    spec = load_spec(write(tmp_path, "mini.yaml", VALID_SPEC))
    assert spec.principle("B1").title == "Tell the truth"
    with pytest.raises(MsmEvalError, match=r"no principle 'Z9'.*known ids: A1, B1"):
        spec.principle("Z9")


# ------------------------------------------------------------------------------ errors


def _error(tmp_path: Path, text: str, name: str = "bad.yaml", **kwargs) -> str:
    path = write(tmp_path, name, text)
    with pytest.raises(MsmEvalError) as info:
        load_spec(path, **kwargs)
    return str(info.value)


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of `text` containing `needle`."""
    return next(i for i, line in enumerate(text.split("\n"), start=1) if needle in line)


def test_malformed_yaml_reports_line(tmp_path):
    text = VALID_SPEC.replace("    title: Tell the truth", "    title: Tell: the truth")
    message = _error(tmp_path, text)
    assert f"bad.yaml:{line_of(text, 'Tell: the truth')}: malformed YAML" in message
    assert "fix: fix the YAML syntax near this line" in message


def test_top_level_not_mapping(tmp_path):
    message = _error(tmp_path, "- just\n- a list\n")
    assert "bad.yaml:1" in message and "mapping" in message


def test_missing_required_field_names_principle_and_field(tmp_path):
    text = VALID_SPEC.replace("    values: Trust in what a model says is easy to lose and hard to rebuild.\n", "")
    message = _error(tmp_path, text)
    assert "principles[1] (B1).values" in message and "missing" in message and "add 'values:'" in message
    assert f"bad.yaml:{line_of(text, 'id: B1')}:" in message  # the line where principle B1 starts


def test_missing_top_level_field(tmp_path):
    message = _error(tmp_path, VALID_SPEC.replace("title: Mini spec\n", ""))
    assert "field 'title'" in message and "missing" in message


def test_wrong_types(tmp_path):
    text = VALID_SPEC.replace("    subrules:\n      - Do not disable monitoring.\n"
                              "      - Ask before consequential steps.\n", "    subrules: Do not disable monitoring.\n")
    message = _error(tmp_path, text)
    assert "principles[0] (A1).subrules" in message and "must be a list" in message
    assert f"bad.yaml:{line_of(text, 'subrules:')}:" in message
    message = _error(tmp_path, VALID_SPEC.replace("rule: Assert only what you believe true.", "rule: [a, b]"))
    assert "principles[1] (B1).rule" in message and "must be text, got list" in message
    message = _error(tmp_path, VALID_SPEC.replace("version: \"0.1\"", "version: [1]"))
    assert "field 'version'" in message and "must be a string, got list" in message


def test_principles_must_be_non_empty_list(tmp_path):
    message = _error(tmp_path, "name: x\ntitle: y\nprinciples: []\n")
    assert "field 'principles'" in message and "non-empty list" in message and "bad.yaml:3" in message


def test_duplicate_ids_name_both(tmp_path):
    message = _error(tmp_path, VALID_SPEC.replace("id: B1", "id: A1"))
    assert "duplicate principle id 'A1'" in message
    assert "principles[0] (line 6)" in message and "principles[1]" in message and "unique" in message


def test_unknown_area_lists_valid(tmp_path):
    text = VALID_SPEC.replace("area: Ethics", "area: morality")
    message = _error(tmp_path, text)
    assert "unknown area 'morality'" in message and "principles[1] (B1).area" in message
    assert "safety, ethics, helpfulness, nature" in message and f"bad.yaml:{line_of(text, 'morality')}:" in message


def test_unknown_key_suggests_fix(tmp_path):
    text = VALID_SPEC.replace("    subrules:\n", "    subrule:\n")
    message = _error(tmp_path, text)
    assert "unknown key 'subrule'" in message and "did you mean 'subrules'" in message
    assert f"bad.yaml:{line_of(text, 'subrule:')}:" in message


def test_invalid_id_and_bad_example(tmp_path):
    message = _error(tmp_path, VALID_SPEC.replace("id: B1", "id: 'B 1'"))
    assert "invalid id 'B 1'" in message and "start with a letter" in message
    message = _error(tmp_path, VALID_SPEC.replace("        good: It pauses and reports the state.\n"
                                                  "        bad: It keeps running in the background.\n", ""))
    assert "principles[0] (A1).examples[0]" in message and "'good' or 'bad'" in message
    message = _error(tmp_path, VALID_SPEC.replace("        bad: It keeps", "        worse: It keeps"))
    assert "unknown key 'worse'" in message and "situation, good, bad, note" in message


def test_unknown_dimension_checked_against_rubric(tmp_path):
    message = _error(tmp_path, VALID_SPEC.replace("dimensions: [honesty]", "dimensions: [honesty, candor]"))
    assert "unknown rubric dimension 'candor'" in message and "principles[1] (B1).dimensions[1]" in message
    assert "overall_spirit" in message  # the hint lists the valid ids
    spec = load_spec(write(tmp_path, "ok.yaml", VALID_SPEC.replace("[honesty]", "[candor]")), rubric=None)
    assert spec.principles[1].dimensions == ["candor"]


def test_unknown_variant_lists_valid(tmp_path):
    spec = load_spec(write(tmp_path, "mini.yaml", VALID_SPEC))
    with pytest.raises(MsmEvalError) as info:
        spec.render("values_only")
    message = str(info.value)
    assert "unknown spec variant 'values_only'" in message
    assert "rules, value_augmented, rule_augmented, generic, full" in message


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(MsmEvalError) as info:
        load_spec(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value) and "not found" in str(info.value) and "constitution" in str(info.value)
    with pytest.raises(MsmEvalError) as info:
        load_spec("no_such_spec")
    assert "unknown spec 'no_such_spec'" in str(info.value) and "available specs: " in str(info.value)
    assert "constitution" in str(info.value)
    with pytest.raises(MsmEvalError, match="unsupported spec file type '.txt'"):
        load_spec(write(tmp_path, "spec.txt", "x"))


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(MsmEvalError, match=r"latin\.yaml: not UTF-8.*save the file as UTF-8"):
        load_spec(path)


# ------------------------------------------------------------------------------ templates


@pytest.fixture()
def templates(tmp_path):
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, folder)
    return folder


def test_custom_templates_are_used(tmp_path, templates):
    (templates / "rules.md.j2").write_text("{% for p in principles %}* {{ p.id }}\n{% endfor %}")
    spec = load_spec(write(tmp_path, "mini.yaml", VALID_SPEC), templates_dir=templates)
    assert spec.render("rules") == "* A1\n* B1\n"


def test_template_syntax_error_names_file_and_line(tmp_path, templates):
    (templates / "full.md.j2").write_text("# {{ title }}\n\n{% for p in principles %}\n{{ p.rule }\n{% endfor %}\n")
    spec = load_spec(write(tmp_path, "mini.yaml", VALID_SPEC), templates_dir=templates)
    with pytest.raises(MsmEvalError) as info:
        spec.render("full")
    message = str(info.value)
    assert "full.md.j2:4" in message and "template syntax error" in message and "fix:" in message


def test_template_undefined_names_file_and_line(tmp_path, templates):
    (templates / "rules.md.j2").write_text("# {{ title }}\n{% for p in principles %}\n{{ p.rationale }}\n"
                                           "{% endfor %}\n")
    spec = load_spec(write(tmp_path, "mini.yaml", VALID_SPEC), templates_dir=templates)
    with pytest.raises(MsmEvalError) as info:
        spec.render("rules")
    message = str(info.value)
    assert "rules.md.j2:3" in message and "rationale" in message and "templates may use:" in message


def test_template_error_inside_imported_macro(tmp_path, templates):
    common = templates / "_common.md.j2"
    common.write_text(common.read_text().replace("- {{ s }}", "- {{ s.nothing }}"))
    spec = load_spec(write(tmp_path, "mini.yaml", VALID_SPEC), templates_dir=templates)
    with pytest.raises(MsmEvalError) as info:
        spec.render("rule_augmented")
    assert "_common.md.j2:" in str(info.value) and "nothing" in str(info.value)


def test_missing_template(tmp_path, templates):
    (templates / "generic.md.j2").unlink()
    spec = load_spec(write(tmp_path, "mini.yaml", VALID_SPEC), templates_dir=templates)
    with pytest.raises(MsmEvalError, match=r"generic\.md\.j2: no template for variant 'generic'"):
        spec.render("generic")
