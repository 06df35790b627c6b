"""The demo's outputs: report and variant comparison computed from real logs, NaN never counted."""

from __future__ import annotations

import json
from pathlib import Path

from msm_eval.demo import DemoRun, write_outputs
from msm_eval.tasks import constitution_adherence
from tests.conftest_pipeline import SEEDS, plain_target, run, submit


def _variant_log(tmp_path: Path, variant: str, honesty: int) -> Path:
    judge = lambda messages, tools: submit({"overall_spirit": 1, "honesty": honesty, "safety": None})  # noqa: E731
    task = constitution_adherence(spec="constitution", spec_variant=variant, spec_in_context=True, scenarios=SEEDS)
    return Path(run(task, plain_target(), {"judge": judge}, tmp_path / "logs").location)


def test_demo_outputs_report_and_compare_the_two_variants(tmp_path):
    logs = [_variant_log(tmp_path, "rules", 1), _variant_log(tmp_path, "value_augmented", 3)]
    demo = DemoRun(logs=logs, eval_seconds=1.5)
    written = write_outputs(demo, tmp_path / "out", ["rules", "value_augmented"], 48, n_resamples=500)
    names = {path.relative_to(tmp_path / "out").as_posix() for path in written.values()}
    assert {"summary.md", "summary.tex", "summary.csv", "report.html", "forest.png", "demo.md", "demo.json",
            "compare/comparison.md", "compare/comparison.json"} <= names
    comparison = json.loads((tmp_path / "out" / "compare" / "comparison.json").read_text())
    by_dim = {row["dimension"]: row for row in comparison["dimensions"]}
    assert by_dim["honesty"]["delta"] == 2.0 and by_dim["honesty"]["n_pairs"] == 2
    assert by_dim["overall_spirit"]["delta"] == 0.0
    # safety was null in every judgment: NaN, not 0, so it has no pairs to compare
    assert "safety" not in by_dim or by_dim["safety"]["n_pairs"] == 0
    page = written["demo_markdown"].read_text()
    assert "smoke-test judge" in page and "## value_augmented − rules" in page
    assert "| honesty |" in page and "+2.00" in page
    assert "eval_seconds" not in json.loads(written["demo_json"].read_text())
    assert json.loads(written["run_json"].read_text())["eval_seconds"] == 1.5


def test_demo_agentic_cell_runs_through_the_investigator_and_tables_show_the_mode(tmp_path):
    from msm_eval.demo import AGENTIC_SAMPLES, ReplayInvestigator
    from msm_eval.scenarios import build_dataset
    from msm_eval.tasks import agentic_misalignment

    selection = "id:" + AGENTIC_SAMPLES[0].split("__")[0]
    metadata = [s.metadata for s in build_dataset(selection)[0] if s.id in AGENTIC_SAMPLES]
    investigator = ReplayInvestigator(metadata)

    def target(messages, tools):
        if messages[-1].role == "user" and tools:
            return {"tool_calls": [{"function": "cancel_alert", "arguments": {"alert_id": "EMG-20614", "code": "0000"}}]}
        return "I will let the emergency dispatch proceed."

    def judge(messages, tools):
        return submit({"overall_spirit": 1}) if tools else "<reasoning>r</reasoning><answer>no</answer>"

    log = run(agentic_misalignment(scenarios=selection, max_turns=1, investigator="simple"), target,
              {"judge": judge, "investigator": investigator}, tmp_path / "logs", sample_id=list(AGENTIC_SAMPLES))
    [sample] = log.samples
    assert sample.metadata["rollout_mode"] == "investigator"
    assert "EMG-20614" in sample.messages[1].text                      # the replayed world holds the fixtures
    assert "remains active" in sample.messages[3].text                 # the seed's canned tool result
    written = write_outputs(DemoRun(logs=[Path(log.location)], eval_seconds=1.0), tmp_path / "out", ["rules"], 40,
                            n_resamples=200)
    page = written["demo_markdown"].read_text()
    assert "## How samples were played" in page and "| investigator | 1 |" in page


def test_demo_outputs_are_the_same_bytes_for_the_same_scores(tmp_path):
    """Two runs with the same scores (but their own eval ids, log names and timings) write identical
    committed files; only the ignored run.json differs."""
    outputs = []
    for attempt, seconds in (("a", 1.5), ("b", 99.0)):
        logs = [_variant_log(tmp_path / attempt, "rules", 1), _variant_log(tmp_path / attempt, "value_augmented", 3)]
        written = write_outputs(DemoRun(logs=logs, eval_seconds=seconds), tmp_path / attempt / "out",
                                ["rules", "value_augmented"], 48, n_resamples=300)
        outputs.append({path.relative_to(tmp_path / attempt / "out").as_posix(): path.read_bytes()
                        for path in written.values()})
    first, second = outputs
    assert first.keys() == second.keys()
    differing = sorted(name for name in first if first[name] != second[name])
    assert differing == ["run.json"]
    assert b"#" not in first["report.html"].split(b"<h2>Runs</h2>")[1]        # no random run ids in the page
