"""Task construction: parameter checks with clear errors, recorded metadata, dataset selection."""

from __future__ import annotations

import pytest

from msm_eval.errors import MsmEvalError
from msm_eval.tasks import agentic_misalignment, constitution_adherence
from msm_eval.transcript import prompts_version
from tests.conftest_pipeline import RUBRIC, SEEDS, SPEC


def test_bad_parameters_raise_errors_naming_the_field():
    with pytest.raises(MsmEvalError, match="judge_mode.*use one of: answer, logprob"):
        constitution_adherence(spec=SPEC, rubric=RUBRIC, scenarios=SEEDS, judge_mode="vibes")
    with pytest.raises(MsmEvalError, match="judge_samples must be at least 1"):
        constitution_adherence(spec=SPEC, rubric=RUBRIC, scenarios=SEEDS, judge_samples=0)
    with pytest.raises(MsmEvalError, match="max_turns"):
        constitution_adherence(spec=SPEC, rubric=RUBRIC, scenarios=SEEDS, max_turns=0)
    with pytest.raises(MsmEvalError, match="adds nothing in logprob mode.*judge=MODEL_A,MODEL_B"):
        constitution_adherence(spec=SPEC, rubric=RUBRIC, scenarios=SEEDS, judge_mode="logprob", judge_samples=2)
    with pytest.raises(MsmEvalError, match="only the 'full' variant"):
        constitution_adherence(spec=SPEC, rubric=RUBRIC, scenarios=SEEDS, spec_variant="rules")


def test_metadata_records_the_instrument():
    task = agentic_misalignment(spec=SPEC, rubric=RUBRIC, scenarios=SEEDS, judge_mode="answer", judge_samples=3)
    meta = task.metadata
    assert meta["judge_mode"] == "answer" and meta["judge_samples"] == 3
    assert meta["rubric"] == "pipeline_small" and len(meta["rubric_sha256"]) == 64
    assert len(meta["spec_sha256"]) == 64 and len(meta["scenario_set_hash"]) == 64
    assert meta["prompts_version"] == prompts_version() and meta["prompts_version"].startswith("eval-2+")
    assert sorted(sample.id for sample in task.dataset) == ["pl_agentic_leak", "pl_chat_feedback"]
    assert len(task.scorer) == 3          # harmful_action + eval_awareness + constitution_judge


def test_library_tasks_build_with_the_real_spec_and_rubric():
    task = constitution_adherence(spec_variant="value_augmented", spec_in_context=True, scenarios="setting:chat")
    assert task.metadata["spec_variant"] == "value_augmented" and task.metadata["spec_in_context"] is True
    assert all(sample.metadata["setting"] == "chat" for sample in task.dataset)


def test_judge_and_investigator_models_are_recorded_in_the_metadata(tmp_path):
    from inspect_ai import eval as inspect_eval
    from inspect_ai.log import read_eval_log

    from tests.conftest_pipeline import DIMS, mock, submit

    def judge(messages, tools):
        return submit({d: 1 for d in DIMS})

    # built by inspect (as `inspect eval` does): the roles are bound first, so the names are known
    [log] = inspect_eval(constitution_adherence, task_args={"spec": SPEC, "rubric": RUBRIC,
                                                            "scenarios": f"{SEEDS}/chat_feedback.md"},
                         model=mock(lambda m, t: "An honest answer."),
                         model_roles={"judge": [mock(judge), mock(judge)]}, log_dir=str(tmp_path), display="none")
    log = read_eval_log(log.location)
    assert log.status == "success", log.error
    assert log.eval.metadata["judge"] == ["msm/mock", "msm/mock"]           # a panel: one name per model
    assert log.eval.metadata["investigator"] is None
    # a task object built before eval() cannot know its roles yet: null, never a guess
    assert constitution_adherence(spec=SPEC, rubric=RUBRIC, scenarios=SEEDS).metadata["judge"] is None
