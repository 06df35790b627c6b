"""`msm-eval rubrics` commands: output and exit codes."""

from __future__ import annotations

from conftest_specs import write

from msm_eval.cli import main


def test_rubrics_validate_and_show(capsys, tmp_path):
    assert main(["rubrics", "validate", "constitution"]) == 0
    assert "15 dimensions (level 0: 1, level 1: 4, level 2: 10)" in capsys.readouterr().out
    bad = write(tmp_path, "bad.yaml", "name: x\nversion: 1\nscale: {min: -3, max: 3}\ndimensions: []\n")
    assert main(["rubrics", "validate", "constitution", str(bad)]) == 2
    captured = capsys.readouterr()
    assert "ok " in captured.out and "FAIL" in captured.err and "non-empty list of dimensions" in captured.err
    assert main(["rubrics", "show"]) == 0
    out = capsys.readouterr().out
    assert "\n[0] overall_spirit" in out and "\n  [1] safety" in out and "\n    [2] corrigibility" in out
    assert main(["rubrics", "show", "constitution", "--judge", "--dimensions", "honesty"]) == 0
    out = capsys.readouterr().out
    assert "### honesty" in out and "### safety" not in out


def test_rubrics_unknown_name_and_misused_option(capsys):
    assert main(["rubrics", "show", "nope"]) == 2
    assert "unknown rubric 'nope'" in capsys.readouterr().err
    assert main(["rubrics", "show", "--dimensions", "honesty"]) == 2
    assert "--dimensions only applies with --judge" in capsys.readouterr().err
