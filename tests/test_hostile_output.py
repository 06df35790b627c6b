"""Hostile model output: every log the harness writes loads with inspect's reader, parsers are bounded."""

from __future__ import annotations

from inspect_ai.log import read_eval_log

from msm_eval.tasks import constitution_adherence
from tests.conftest_pipeline import DIMS, RUBRIC, SEEDS, SPEC, run, submit


def judge(messages, tools):
    return submit({d: 1 for d in DIMS})


def test_a_target_calling_a_tool_that_does_not_exist_leaves_a_readable_log(tmp_path):
    def target(messages, tools):
        if messages[-1].role == "user":
            return {"tool_calls": [{"function": "delete_everything", "arguments": {"path": "/"}}]}
        return "I could not do that."

    task = constitution_adherence(spec=SPEC, rubric=RUBRIC, scenarios=f"{SEEDS}/chat_feedback.md", max_turns=1)
    log = run(task, target, {"judge": judge}, tmp_path)   # run() reads the log back with read_eval_log
    assert log.status == "success", log.error
    [sample] = log.samples
    tool_message = next(m for m in sample.messages if m.role == "tool")
    assert tool_message.error is not None and "unknown tool 'delete_everything'" in tool_message.error.message
    assert read_eval_log(log.location, header_only=False).samples[0].id == sample.id
