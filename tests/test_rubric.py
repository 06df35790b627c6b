"""Rubrics: the real constitution rubric, judge-facing text, and every validation error."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest_specs import write

from msm_eval.errors import MsmEvalError
from msm_eval.paths import RUBRICS_DIR
from msm_eval.rubric import load_rubric

EXPECTED = {
    0: {"overall_spirit"},
    1: {"ethics", "helpfulness", "nature", "safety"},
    2: {"brilliant_friend", "corrigibility", "hard_constraints", "harm_avoidance", "honesty", "novel_entity",
        "principal_hierarchy", "psychological_security", "societal_structures", "unhelpfulness_not_safe"},
}

MINI = """\
name: mini
version: "1"
scale: {min: -3, max: 3}
dimensions:
  - id: root
    title: Root
    level: 0
    parent: null
    description: Everything.
    anchors: {-3: bad, 0: meh, 3: good}
    not_exercised: Never.
  - id: child
    title: Child
    level: 1
    parent: root
    description: A part.
    anchors:
      -3: bad
      3: good
    not_exercised: When absent.
"""


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of `text` containing `needle`."""
    return next(i for i, line in enumerate(text.split("\n"), start=1) if needle in line)


@pytest.fixture(scope="module")
def rubric():
    return load_rubric()


def test_constitution_rubric_dimensions(rubric):
    assert rubric.name == "constitution" and rubric.path == RUBRICS_DIR / "constitution.yaml"
    assert (rubric.scale_min, rubric.scale_max) == (-3, 3)
    assert len(rubric.ids) == 15 == len(set(rubric.ids))
    for level, ids in EXPECTED.items():
        assert {d.id for d in rubric.by_level(level)} == ids
    for dimension in rubric.dimensions:
        assert sorted(dimension.anchors) == [-3, -1, 0, 1, 3], dimension.id
        assert all(len(text.split()) >= 8 for text in dimension.anchors.values()), dimension.id
        assert dimension.not_exercised and dimension.description and dimension.title
        if dimension.level == 1:
            assert dimension.parent == "overall_spirit"
        if dimension.level == 2:
            assert dimension.parent in EXPECTED[1]
    assert {d.id for d in rubric.children("safety")} == {"corrigibility", "hard_constraints"}
    assert rubric.get("honesty").parent == "ethics"
    assert "honesty" in rubric and "candor" not in rubric
    assert rubric.tree_order()[0].id == "overall_spirit" and len(rubric.tree_order()) == 15


def test_get_unknown_dimension_lists_known(rubric):
    with pytest.raises(MsmEvalError) as info:
        rubric.get("candor")
    assert "unknown dimension 'candor'" in str(info.value) and "overall_spirit" in str(info.value)


def test_render_for_judge(rubric):
    text = rubric.render_for_judge()
    for dimension in rubric.dimensions:
        assert f"### {dimension.id}: {dimension.title}" in text
        assert dimension.not_exercised in text
        for anchor in dimension.anchors.values():
            assert anchor in text
    assert "-3 to 3" in text and "never as 0" in text
    assert text.index("### overall_spirit") < text.index("### safety") < text.index("### corrigibility")
    subset = rubric.render_for_judge(["honesty", "safety"])
    assert "### honesty" in subset and "### safety" in subset and "### nature" not in subset
    assert subset.index("### honesty") < subset.index("### safety")
    assert "  +3: " in subset and "   0: " in subset and "  -1: " in subset
    with pytest.raises(MsmEvalError, match="unknown dimension 'nope'"):
        rubric.render_for_judge(["nope"])


def test_sha256_stable_and_content_sensitive(rubric, tmp_path):
    text = (RUBRICS_DIR / "constitution.yaml").read_text(encoding="utf-8")
    copy = load_rubric(write(tmp_path, "copy.yaml", text))
    assert copy.sha256 == rubric.sha256 and copy.ids == rubric.ids
    changed = load_rubric(write(tmp_path, "changed.yaml", text.replace('version: "1.0"', 'version: "1.1"')))
    assert changed.sha256 != rubric.sha256 and changed.version == "1.1"


def test_user_rubric_added_as_data(tmp_path):
    mini = load_rubric(write(tmp_path, "mini.yaml", MINI))
    assert mini.ids == ["root", "child"] and mini.get("child").anchors == {-3: "bad", 3: "good"}
    assert mini.render_for_judge().count("### ") == 2


# ------------------------------------------------------------------------------ errors


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(MsmEvalError) as info:
        load_rubric(write(tmp_path, "bad.yaml", text))
    return str(info.value)


def test_malformed_yaml_line(tmp_path):
    text = MINI.replace("    title: Child", "    title: Child: oops")
    message = _error(tmp_path, text)
    assert f"bad.yaml:{line_of(text, 'Child: oops')}: malformed YAML" in message and "fix:" in message


def test_missing_field(tmp_path):
    text = MINI.replace("    not_exercised: When absent.\n", "")
    message = _error(tmp_path, text)
    assert "dimensions[1] (child).not_exercised" in message and "missing" in message
    assert f"bad.yaml:{line_of(text, 'id: child')}:" in message
    assert "field 'scale'" in _error(tmp_path, MINI.replace("scale: {min: -3, max: 3}\n", ""))


def test_duplicate_ids(tmp_path):
    message = _error(tmp_path, MINI.replace("id: child", "id: root").replace("parent: root", "parent: null"))
    assert "duplicate dimension id 'root'" in message and "dimensions[0] (line 5)" in message
    assert "dimensions[1]" in message and "unique" in message


def test_unknown_parent(tmp_path):
    text = MINI.replace("parent: root", "parent: rot")
    message = _error(tmp_path, text)
    assert "unknown parent 'rot'" in message and "dimensions[1] (child).parent" in message
    assert "root" in message.split("fix:")[1] and f"bad.yaml:{line_of(text, 'id: child')}:" in message


def test_parent_cycle(tmp_path):
    text = MINI.replace("    parent: null", "    parent: child")
    message = _error(tmp_path, text)
    assert "parent cycle: root -> child -> root" in message and "tree" in message


def test_level_inconsistent_with_parent(tmp_path):
    message = _error(tmp_path, MINI.replace("level: 1", "level: 2"))
    assert "level 2 does not fit parent 'root' (level 0)" in message and "set 'level: 1'" in message
    message = _error(tmp_path, MINI.replace("level: 0", "level: 1").replace("level: 1\n    parent: root",
                                                                          "level: 2\n    parent: root"))
    assert "without a parent must have level 0" in message


def test_anchor_outside_scale(tmp_path):
    text = MINI.replace("      3: good", "      4: good")
    message = _error(tmp_path, text)
    assert "anchor 4 is outside the scale -3..3" in message and "dimensions[1] (child).anchors.4" in message
    assert f"bad.yaml:{line_of(text, '4: good')}:" in message


def test_anchor_problems(tmp_path):
    assert "missing [3]" in _error(tmp_path, MINI.replace("      3: good\n", ""))
    assert "not an integer score" in _error(tmp_path, MINI.replace("      3: good", "      high: good"))
    assert "non-empty text" in _error(tmp_path, MINI.replace("      3: good", "      3: ''"))


def test_bad_scale_and_level_and_id(tmp_path):
    assert "min < max" in _error(tmp_path, MINI.replace("{min: -3, max: 3}", "{min: 3, max: -3}"))
    assert "exactly 'min' and 'max'" in _error(tmp_path, MINI.replace("{min: -3, max: 3}", "[-3, 3]"))
    assert "whole number >= 0" in _error(tmp_path, MINI.replace("level: 1", "level: one"))
    message = _error(tmp_path, MINI.replace("id: child", "id: Child-X").replace("parent: root", "parent: root"))
    assert "invalid dimension id 'Child-X'" in message and "lower-case" in message
    assert "unknown key 'weight'" in _error(tmp_path, MINI.replace("    level: 1\n", "    level: 1\n    weight: 2\n"))


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(MsmEvalError) as info:
        load_rubric(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value) and "not found" in str(info.value) and "constitution" in str(info.value)
    with pytest.raises(MsmEvalError) as info:
        load_rubric("nope")
    assert "unknown rubric 'nope'" in str(info.value) and "available rubrics: " in str(info.value)
