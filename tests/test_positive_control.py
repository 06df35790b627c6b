"""The MSM positive control (configs/positive_control.yaml): its data files and its plumbing.

The plumbing test runs the committed configuration end to end -- file-sourced documents and
demonstrations, midtraining, AFT, export, spec_probe on the held-out items, the paired comparison --
on a tiny random model with a handful of steps. It does not show the effect (a random model learns
nothing in two steps); the committed result in results/msm_positive_control/ does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest_train import build_tiny_model
from msm_eval.errors import MsmEvalError
from msm_eval.fileio import read_jsonl
from msm_eval.probes import load_probe_items
from msm_eval.train.data import file_sha256, load_chats, load_documents
from msm_eval.train.pipeline import Pipeline, load_pipeline_config, pipeline_config_from_dict
from msm_eval.yamlsource import read_yaml_file

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "positive_control.yaml"


def test_data_files_are_what_build_data_writes_and_the_arms_match_in_size(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    spec = importlib.util.spec_from_file_location("build_data", ROOT / "positive_control" / "build_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    for name in ("facets.yaml",):
        (tmp_path / name).write_bytes((ROOT / "positive_control" / name).read_bytes())
    monkeypatch.setattr(module, "HERE", tmp_path)
    module.main()
    for name in ("principle_documents.jsonl", "control_documents.jsonl", "demos.jsonl"):
        assert (tmp_path / name).read_bytes() == (ROOT / "positive_control" / name).read_bytes(), name
    principle = load_documents(ROOT / "positive_control" / "principle_documents.jsonl")
    control = load_documents(ROOT / "positive_control" / "control_documents.jsonl")
    assert len(principle) == len(control) == 60
    assert all("Lamplight" in d["text"] for d in principle) and not any("Lamplight" in d["text"] for d in control)
    assert len(load_chats(ROOT / "positive_control" / "demos.jsonl")) == 18


def test_probe_items_are_held_out_from_the_training_text() -> None:
    """No probe option or question occurs verbatim in the documents or demonstrations."""
    items = load_probe_items(ROOT / "positive_control" / "probes.yaml")
    assert len(items) == 20 and len({i.cluster for i in items}) == 10
    corpus = " ".join(d["text"] for name in ("principle_documents", "control_documents")
                      for d in read_jsonl(ROOT / "positive_control" / f"{name}.jsonl"))
    corpus += " ".join(m["content"] for chat in load_chats(ROOT / "positive_control" / "demos.jsonl") for m in chat)
    for item in items:
        for text in (item.prompt, item.aligned, item.misaligned):
            assert text not in corpus, (item.id, text)


def _tiny_config(tmp_path: Path, model: Path) -> Any:
    raw = read_yaml_file(CONFIG, "pipeline config")
    raw.update(base_model=str(model), work_dir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"))
    tiny = {"lora": {"r": 2, "alpha": 4}, "seq_len": 128, "batch_size": 2, "max_steps": 2, "bf16": False,
            "progress": False, "save_every": 2}
    raw["midtrain"] = {**raw["midtrain"], **tiny}
    # the tiny model's byte-level tokenizer makes the chats long: whole chats need 1024-token rows
    raw["aft"] = {**raw["aft"], "seq_len": 1024, "max_steps": 1, "bf16": False, "progress": False,
                  "long_chats": "drop"}
    raw["eval"] = {**raw["eval"], "n_resamples": 200}
    return pipeline_config_from_dict(raw, source=str(CONFIG))


def test_positive_control_pipeline_runs_end_to_end_on_a_tiny_model(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)                        # the config's data paths are relative to the checkout
    model = build_tiny_model(tmp_path / "model")
    cfg = _tiny_config(tmp_path, model)
    assert cfg.spec is None and cfg.variants == ["control", "principle"] and cfg.baseline == "control"
    summary = Pipeline(cfg, progress=None).run()

    ran = {(s["stage"], s["arm"]) for s in summary["stages"] if s["status"] == "ran"}
    assert ran == {("demos", "shared"), ("eval", "base")} | {
        (stage, arm) for stage in ("documents", "midtrain", "aft", "export", "eval") for arm in ("control", "principle")}
    # each arm trained on its own file, byte for byte, and the same demonstrations
    for arm in ("control", "principle"):
        [run_json] = [json.loads(p.read_text()) for p in (tmp_path / "work" / "aft").glob("*/run/run.json")
                      if json.loads(p.read_text())["stage_history"][0]["data_sha256"]
                      == file_sha256(ROOT / "positive_control" / f"{arm}_documents.jsonl")]
        assert run_json["stage_history"][1]["data_sha256"] == file_sha256(ROOT / "positive_control" / "demos.jsonl")
        assert run_json["stage_history"][1]["truncated_replies"] == 0
    [pair] = [c for c in summary["comparisons"] if c["kind"] == "all" and c["baseline"] == "control"]
    assert pair["candidate"] == "principle" and pair["n_pairs"] == 20 and pair["clusters"] == 10
    assert "Training data from files (no spec)" in (tmp_path / "out" / "table.md").read_text()

    # unchanged: everything but the comparison comes from the cache
    again = Pipeline(_tiny_config(tmp_path, model), progress=None).run()
    assert {s["status"] for s in again["stages"]} == {"cached"}


def test_file_sourced_config_errors_name_the_field(tmp_path: Path) -> None:
    raw = read_yaml_file(CONFIG, "pipeline config")
    broken = {**raw, "demos": {"generator": "file"}}
    with pytest.raises(MsmEvalError, match=r"demos.path.*generator 'file' needs a 'path'"):
        pipeline_config_from_dict(broken)
    broken = {**raw, "demos": {"generator": "template", "path": "x.jsonl"}}
    with pytest.raises(MsmEvalError, match=r"missing 'spec'"):       # template data needs a spec
        pipeline_config_from_dict(broken)
    broken = {**raw, "demos": {"generator": "file", "path": "x.jsonl", "seed": 3}}
    with pytest.raises(MsmEvalError, match=r"demos.seed.*does nothing with generator 'file'"):
        pipeline_config_from_dict(broken)
    broken = {**raw, "variants": ["control", "../escape"]}
    with pytest.raises(MsmEvalError, match=r"variants\[1\].*not a simple name"):
        pipeline_config_from_dict(broken)
    cfg = pipeline_config_from_dict({**raw, "work_dir": str(tmp_path / "w"), "out_dir": str(tmp_path / "o"),
                                     "demos": {"generator": "file", "path": str(tmp_path / "missing.jsonl")}})
    with pytest.raises(MsmEvalError, match="missing.jsonl.*not found"):
        Pipeline(cfg, progress=None).run()


def test_committed_configs_load() -> None:
    for name in ("positive_control.yaml", "gpu_qwen15b.yaml", "cpu_demo.yaml"):
        load_pipeline_config(ROOT / "configs" / name)
