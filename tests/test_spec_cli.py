"""`msm-eval specs` commands: output and exit codes."""

from __future__ import annotations

from conftest_specs import VALID_SPEC, write

from msm_eval.cli import main
from msm_eval.spec import VARIANTS, load_spec


def test_specs_render_stdout_and_out(capsys, tmp_path):
    assert main(["specs", "render", "constitution", "--variant", "rules"]) == 0
    out = capsys.readouterr().out
    assert out == load_spec("constitution").render("rules")
    target = tmp_path / "sub" / "rules.md"
    assert main(["specs", "render", "constitution", "--variant", "value_augmented", "--out", str(target)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "wrote" in captured.err and load_spec("constitution").variant_sha256("value_augmented") in captured.err
    assert target.read_text(encoding="utf-8") == load_spec("constitution").render("value_augmented")
    assert [p.name for p in target.parent.iterdir()] == ["rules.md"]  # no temp file left behind


def test_specs_render_bad_variant_exits_2(capsys):
    assert main(["specs", "render", "constitution", "--variant", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("msm-eval: error:") and "unknown spec variant 'bogus'" in err
    assert "value_augmented" in err and err.count("\n") == 1


def test_specs_list_table(capsys, tmp_path):
    md = write(tmp_path, "house.md", "# House\ntext\n")
    assert main(["specs", "list", "constitution", str(md)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["spec", "variant", "words", "chars", "sha256"]
    rows = [line.split() for line in lines[1:]]
    spec = load_spec("constitution")
    assert [r[1] for r in rows] == [*VARIANTS, "full"]
    assert rows[0][0] == "constitution" and rows[-1][0] == "house"
    for row, variant in zip(rows, VARIANTS):
        assert row[4] == spec.variant_sha256(variant)[:12]
        assert int(row[2]) == len(spec.render(variant).split())
    assert main(["specs", "list", "--full", "constitution"]) == 0
    full_rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert full_rows[0][4] == spec.variant_sha256("rules")


def test_specs_list_defaults_to_all_specs(capsys):
    assert main(["specs", "list"]) == 0
    assert "constitution" in capsys.readouterr().out


def test_specs_show_yaml_and_markdown(capsys, tmp_path):
    assert main(["specs", "show", "constitution"]) == 0
    out = capsys.readouterr().out
    assert "constitution (yaml)" in out
    assert "\nsafety  Safety" in out and "\n  S1  Support legitimate human oversight  [" in out
    md = write(tmp_path, "tree.md", "# Top {#t}\n\nabc def\n\n## Child\n\nxyz\n")
    assert main(["specs", "show", str(md)]) == 0
    out = capsys.readouterr().out
    assert "\nt  Top  [" in out and "\n  child  Child  [3 chars, 1 words, line 5]" in out
    assert "{'id': 't'}" in out


def test_specs_validate(capsys, tmp_path):
    good = write(tmp_path, "good.yaml", VALID_SPEC)
    bad = write(tmp_path, "bad.yaml", VALID_SPEC.replace("area: Ethics", "area: morality"))
    assert main(["specs", "validate", "constitution", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.count("ok ") == 2 and "23 principles" in out
    assert main(["specs", "validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert "ok   " in captured.out and "FAIL" in captured.err and "unknown area 'morality'" in captured.err
    custom = write(tmp_path, "custom.yaml", VALID_SPEC.replace("[honesty]", "[candor]"))
    assert main(["specs", "validate", str(custom)]) == 2
    assert "unknown rubric dimension 'candor'" in capsys.readouterr().err
    assert main(["specs", "validate", "--rubric", "none", str(custom)]) == 0


def test_specs_validate_markdown_variant_note(capsys, tmp_path):
    md = write(tmp_path, "doc.md", "# A\n## B\n### C\n")
    assert main(["specs", "validate", str(md)]) == 0
    assert "3 sections" in capsys.readouterr().out


def test_unknown_spec_exits_2(capsys):
    assert main(["specs", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown spec 'nope'" in err and "constitution" in err
