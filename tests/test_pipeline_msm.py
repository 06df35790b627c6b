"""The MSM pipeline's content-hash caching: a re-run skips everything; one changed variant reruns its branch only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from conftest_train import build_tiny_model, write_chats, write_documents
from msm_eval.errors import MsmEvalError
from msm_eval.train.pipeline import Pipeline, StageFunctions, pipeline_config_from_dict


class FakeSpec:
    name = "fake"
    sha256 = "a" * 64

    def render(self, variant: str = "full") -> str:
        return f"spec text for {variant}"

    def variant_sha256(self, variant: str) -> str:
        return hashlib.sha256(self.render(variant).encode()).hexdigest()


def _functions(calls: list[str]) -> StageFunctions:
    def documents(spec: Any, variant: str, out: Path, settings: dict[str, Any]) -> Path:
        calls.append(f"documents:{variant}")
        return write_documents(out, n=12, spec_sha=spec.variant_sha256(variant))

    def demos(spec: Any, out_dir: Path, settings: dict[str, Any]) -> Path:
        calls.append("demos")
        return write_chats(out_dir / "demos.jsonl", n=8)

    def evaluate(model_dir: Path, log_dir: Path, settings: dict[str, Any], label: str) -> Path:
        calls.append(f"eval:{label}")
        assert (model_dir / "config.json").exists()
        log_dir.mkdir(parents=True, exist_ok=True)
        return log_dir / "fake.eval"

    def compare(evals: dict[str, str], cfg: Any, records: list[Any]) -> dict[str, Any]:
        calls.append("compare")
        return {"arms": list(evals), "stages": [{"stage": r.stage, "arm": r.arm, "status": r.status} for r in records]}

    return StageFunctions(documents=documents, demos=demos, evaluate=evaluate, compare=compare,
                          load_spec=lambda ref: FakeSpec())


def _config(tmp_path: Path, model: Path, **over: Any) -> Any:
    raw = {"name": "t", "base_model": str(model), "spec": "fake", "variants": ["rules", "value_augmented"],
           "baseline": "rules", "work_dir": str(tmp_path / "work"), "out_dir": str(tmp_path / "out"),
           "documents": {"generator": "template"}, "demos": {"generator": "template"},
           "midtrain": {"seq_len": 64, "batch_size": 2, "epochs": 1, "lora": {"r": 2, "alpha": 4}, "bf16": False,
                        "progress": False},
           "aft": {"seq_len": 128, "batch_size": 2, "epochs": 1, "bf16": False, "progress": False},
           "eval": {"presentation": "free"}}
    raw.update(over)
    return pipeline_config_from_dict(raw)


def test_pipeline_caches_every_stage_and_reruns_only_the_changed_branch(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    calls: list[str] = []
    lines: list[str] = []
    first = Pipeline(_config(tmp_path, model), _functions(calls), progress=lines.append).run()
    assert {s["status"] for s in first["stages"]} == {"ran"}
    # progress: one line when each stage starts and one when it ends
    assert sum(line.startswith("[run]") for line in lines) == len(first["stages"])
    assert sum(line.startswith("[done]") and line.endswith(" s)") for line in lines) == len(first["stages"])
    assert sorted(calls) == sorted(["demos", "eval:base", "documents:rules", "eval:rules",
                                    "documents:value_augmented", "eval:value_augmented", "compare"])
    run = json.loads(next((tmp_path / "work" / "aft").glob("*/run/run.json")).read_text())
    assert [h["stage"] for h in run["stage_history"]] == ["midtrain", "aft"]

    calls.clear()
    second = Pipeline(_config(tmp_path, model), _functions(calls), progress=None).run()
    assert {s["status"] for s in second["stages"]} == {"cached"}
    assert calls == ["compare"]

    calls.clear()
    changed = _config(tmp_path, model, variant_overrides={"value_augmented": {"midtrain": {"lr": 3e-4}}})
    third = Pipeline(changed, _functions(calls), progress=None).run()
    ran = {(s["stage"], s["arm"]) for s in third["stages"] if s["status"] == "ran"}
    assert ran == {("midtrain", "value_augmented"), ("aft", "value_augmented"), ("export", "value_augmented"),
                   ("eval", "value_augmented")}
    assert calls == ["eval:value_augmented", "compare"]


def test_pipeline_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(MsmEvalError, match="field 'baseline'"):
        _config(tmp_path, tmp_path, baseline="generic")
    with pytest.raises(MsmEvalError, match=r"field 'midtrain.out_dir'"):
        _config(tmp_path, tmp_path, midtrain={"out_dir": "x"})
    with pytest.raises(MsmEvalError, match=r"field 'learning_rate'"):
        _config(tmp_path, tmp_path, aft={"learning_rate": 1})


def test_cache_keys_follow_generator_versions_and_output_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new template version regenerates the data; training re-runs only where the data's bytes changed."""
    import msm_eval.train.pipeline as pipeline
    model = build_tiny_model(tmp_path / "model")
    calls: list[str] = []
    Pipeline(_config(tmp_path, model), _functions(calls), progress=None).run()

    real_version = pipeline.generator_version
    monkeypatch.setattr(pipeline, "generator_version", lambda kind: real_version(kind) + "-edited")
    calls.clear()
    functions = _functions(calls)
    same_docs = functions.documents

    def documents(spec: Any, variant: str, out: Path, settings: dict[str, Any]) -> Path:
        path = same_docs(spec, variant, out, settings)
        if variant == "value_augmented":  # the edited template changes this variant's corpus only
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"text": "One more document about honesty.", "key": "extra"}) + "\n")
        return path

    functions.documents = documents
    summary = Pipeline(_config(tmp_path, model), functions, progress=None).run()
    ran = {(s["stage"], s["arm"]) for s in summary["stages"] if s["status"] == "ran"}
    assert ran == {("demos", "shared"), ("documents", "rules"), ("documents", "value_augmented"),
                   ("midtrain", "value_augmented"), ("aft", "value_augmented"), ("export", "value_augmented"),
                   ("eval", "value_augmented")}
    assert "eval:rules" not in calls and "eval:base" not in calls


def test_a_moved_work_dir_is_still_a_valid_cache(tmp_path: Path) -> None:
    """stage.json records its own outputs relative to the stage folder, so a renamed, moved or
    copied work_dir serves every stage from the cache instead of pointing at the old place."""
    import shutil

    model = build_tiny_model(tmp_path / "model")
    calls: list[str] = []
    Pipeline(_config(tmp_path, model), _functions(calls), progress=None).run()
    eval_markers = list((tmp_path / "work" / "eval").glob("*/stage.json"))
    assert len(eval_markers) == 3
    assert all(json.loads(m.read_text())["outputs"]["log"] == "$STAGE/logs/fake.eval" for m in eval_markers)
    shutil.move(str(tmp_path / "work"), str(tmp_path / "moved"))

    seen: dict[str, str] = {}
    functions = _functions(calls)
    compare = functions.compare

    def recording_compare(evals: dict[str, str], cfg: Any, records: list[Any]) -> dict[str, Any]:
        seen.update(evals)
        return compare(evals, cfg, records)

    functions.compare = recording_compare
    calls.clear()
    summary = Pipeline(_config(tmp_path, model, work_dir=str(tmp_path / "moved")), functions, progress=None).run()
    assert {s["status"] for s in summary["stages"]} == {"cached"}
    assert calls == ["compare"] and set(seen) == {"base", "rules", "value_augmented"}
    assert all(Path(log).parent.parent.parent.parent == tmp_path / "moved" for log in seen.values())


def test_committed_outputs_do_not_change_with_timings_or_the_cache(tmp_path: Path) -> None:
    """table.md / summary.json / comparisons.csv are the same bytes whether stages ran (and how long
    they took) or came from the cache; that goes to the ignored run.json."""
    from inspect_ai import eval as inspect_eval

    from msm_eval.probes import spec_probe
    from msm_eval.train.pipeline import StageRecord, compare_arms

    model = build_tiny_model(tmp_path / "model")
    [log] = inspect_eval(spec_probe(batch_size=4, model_path=str(model)), model=f"hf/{model}", limit=6,
                         display="none", log_dir=str(tmp_path / "logs"), model_args={"do_sample": False})
    evals = {"base": log.location, "rules": log.location, "value_augmented": log.location}
    cfg = _config(tmp_path, model, eval={"presentation": "free", "n_resamples": 200})
    committed = ("table.md", "summary.json", "comparisons.csv")
    compare_arms(evals, cfg, [StageRecord("midtrain", "rules", "k" * 64, "ran", 12.34, "x")])
    first = {name: (cfg.out_dir / name).read_bytes() for name in committed}
    first_run = json.loads((cfg.out_dir / "run.json").read_text())
    compare_arms(evals, cfg, [StageRecord("midtrain", "rules", "k" * 64, "cached", 0.0, "x")])
    assert {name: (cfg.out_dir / name).read_bytes() for name in committed} == first
    assert b"12.3" not in first["summary.json"] and b"12" not in first["table.md"].split(b"Which stages")[1]
    assert first_run["stages"][0]["seconds"] == 12.3
    assert json.loads((cfg.out_dir / "run.json").read_text())["stages"][0]["status"] == "cached"
