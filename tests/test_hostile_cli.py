"""Bad input to the CLI: one line naming the file / field and the fix, exit status 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from msm_eval.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _pipeline(tmp_path: Path, **patch: object) -> str:
    config = yaml.safe_load((ROOT / "configs" / "cpu_demo.yaml").read_text(encoding="utf-8"))
    config.update(patch)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def _train(tmp_path: Path, **patch: object) -> str:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"data": "d.jsonl", "out_dir": "run", **patch}), encoding="utf-8")
    return str(path)


CASES = {
    "train betas: 5": (lambda t: ["train", "midtrain", "--config", _train(t, betas=5)],
                       "train.yaml: field 'betas': must be a list of 2 numbers, got 5"),
    "train warmup_ratio: high": (lambda t: ["train", "midtrain", "--config", _train(t, warmup_ratio="high")],
                                 "field 'warmup_ratio': must be a number, got 'high'"),
    "train lora.r: text": (lambda t: ["train", "aft", "--config", _train(t, lora={"r": "big"})],
                           "field 'lora.r': must be an integer"),
    "pipeline documents: 5": (lambda t: ["pipeline", "--config", _pipeline(t, documents=5)],
                              "pipeline.yaml: field 'documents': must be a mapping of settings, got 5"),
    "pipeline variants: [nope]": (lambda t: ["pipeline", "--config", _pipeline(t, variants=["nope"], baseline=None)],
                                  "pipeline.yaml: field 'variants[0]': unknown spec variant 'nope'"),
    "pipeline unknown documents option": (lambda t: ["pipeline", "--config", _pipeline(t, documents={"n_typez": 2})],
                                          "field 'documents.n_typez': unknown setting"),
    "docs stats binary": (lambda t: ["docs", "stats", str(t / "binary.dat")], "binary.dat: not UTF-8 text"),
    "docs stats folder": (lambda t: ["docs", "stats", str(t / "folder")], "folder: is not a file"),
    "docs generate binary": (lambda t: ["docs", "generate", str(t / "binary.dat"), "--out", str(t / "o.jsonl")],
                             "binary.dat: not UTF-8 text"),
    "docs decompose --out folder": (lambda t: ["docs", "decompose", "constitution", "--out", str(t / "folder")],
                                    "folder: is a folder, but a file is written here"),
    "demos --out existing file": (lambda t: ["demos", "generate", "constitution", "--out", str(t / "file.txt")],
                                  "file.txt: is a file, but a folder is needed here"),
    "train --config folder": (lambda t: ["train", "aft", "--config", str(t / "folder")],
                              "folder: is a folder, not a config file"),
    "pipeline --config folder": (lambda t: ["pipeline", "--config", str(t / "folder")],
                                 "folder: is a folder, not a pipeline config"),
    "scenarios validate empty folder": (lambda t: ["scenarios", "validate", str(t / "folder")],
                                        "folder: no seed files found"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_cli_input_is_one_clear_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "binary.dat").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("not a folder\n", encoding="utf-8")
    argv, expected = CASES[case]
    code = main(argv(tmp_path))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert expected in err, err
    if case != "scenarios validate empty folder":   # validate lists each problem, then a count
        assert err.startswith("msm-eval: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "results").exists()   # the pipeline stopped before any stage ran
