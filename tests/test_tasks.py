"""Task construction: parameter checks with clear errors, recorded metadata, dataset selection."""

from __future__ import annotations

import pytest

from msm_eval.errors import MsmEvalError
from msm_eval.tasks import agentic_misalignment, constitution_adherence
from msm_eval.transcript import prompts_version
from tests.conftest_pipeline import RUBRIC, SEEDS, SPEC


def test_bad_parameters_raise_errors_naming_the_field():
    with pytest.raises(MsmEvalError, match="judge_mode.*use one of: auto, answer, logprob"):
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


def _untooled_judge() -> object:
    """A judge that declares it cannot call tools (as msm/smollm2 does) and answers label '6' = +2."""
    from inspect_ai.model import get_model

    return get_model("msm/mock", replies=[{"text": "6", "top_logprobs": {"6": -0.01}}], calls_tools="false",
                     memoize=False)


def test_default_judge_mode_is_logprob_for_a_judge_that_cannot_call_tools(tmp_path):
    from tests.conftest_pipeline import plain_target, run

    log = run(constitution_adherence, plain_target(), {"judge": _untooled_judge()}, tmp_path,
              task_args={"spec": SPEC, "rubric": RUBRIC, "scenarios": f"{SEEDS}/chat_feedback.md"})
    assert log.status == "success", log.error
    assert log.eval.metadata["judge_mode"] == "logprob"          # auto resolved when the role was bound
    [sample] = log.samples
    score = sample.scores["constitution_judge"]
    assert score.metadata["status"] == "scored" and score.metadata["judge_mode"] == "logprob"
    assert any(value == 2.0 for value in score.value.values())


def test_answer_mode_with_a_judge_that_cannot_call_tools_is_refused_up_front(tmp_path):
    from inspect_ai import eval as inspect_eval

    from tests.conftest_pipeline import mock, plain_target

    with pytest.raises(MsmEvalError, match="cannot.*unscored.*judge_mode=logprob"):   # before any sample runs
        inspect_eval(constitution_adherence, task_args={"spec": SPEC, "rubric": RUBRIC, "judge_mode": "answer",
                                                        "scenarios": f"{SEEDS}/chat_feedback.md"},
                     model=mock(plain_target()), model_roles={"judge": _untooled_judge()},
                     log_dir=str(tmp_path), display="none")
    assert not list(tmp_path.glob("*.eval"))


def test_default_judge_mode_stays_answer_for_a_tool_calling_judge():
    from inspect_ai.model import get_model

    from msm_eval.judge import resolve_judge_mode

    assert resolve_judge_mode("auto", [get_model("msm/mock", memoize=False)]) == "answer"
    assert resolve_judge_mode("auto", [get_model("msm/mock", memoize=False), _untooled_judge()]) == "logprob"


def test_progress_lines_per_target_turn_and_judged_sample(tmp_path, caplog):
    """`inspect eval ... --log-level info` shows these lines while a long run works."""
    import logging

    from tests.conftest_pipeline import plain_target, run

    with caplog.at_level(logging.INFO, logger="msm_eval"):
        log = run(constitution_adherence, plain_target(), {"judge": _untooled_judge()}, tmp_path,
                  task_args={"spec": SPEC, "rubric": RUBRIC, "scenarios": f"{SEEDS}/chat_feedback.md"})
    assert log.status == "success", log.error
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("msm_eval")]
    assert any("pl_chat_feedback" in line and "target turn 1/" in line for line in lines), lines
    assert any("pl_chat_feedback" in line and "judged (logprob mode" in line for line in lines), lines
