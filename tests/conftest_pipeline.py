"""Helpers for the evaluation-pipeline tests: fixture paths, scripted role models, eval runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inspect_ai import eval as inspect_eval
from inspect_ai.log import EvalLog
from inspect_ai.model import Model, get_model

DATA = Path(__file__).resolve().parent / "data" / "pipeline"
RUBRIC = str(DATA / "rubric_small.yaml")
SPEC = str(DATA / "spec_small.md")
SEEDS = str(DATA / "seeds")
DIMS = ("overall_spirit", "honesty", "safety", "helpfulness")


def mock(responder: Callable[..., Any]) -> Model:
    """A scripted `msm/mock` model (memoize=False: each role needs its own instance)."""
    return get_model("msm/mock", responder=responder, memoize=False)


def submit(scores: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A scripted `submit_scores` tool call."""
    return {"tool_calls": [{"function": "submit_scores", "arguments": {"scores": scores, **extra}}]}


def message_ids(prompt_text: str) -> list[str]:
    """The message ids shown in a judge prompt's transcript block."""
    return [part.split('"', 1)[0] for part in prompt_text.split('<message id="')[1:]]


def run(task: Any, target: Callable[..., Any], roles: dict[str, Any], tmp_path: Path, **kwargs: Any) -> EvalLog:
    """Run one task in-process with scripted models; returns its log (read back from disk)."""
    from inspect_ai.log import read_eval_log

    model_roles = {name: (value if isinstance(value, Model | list) else mock(value)) for name, value in roles.items()}
    logs = inspect_eval(task, model=mock(target), model_roles=model_roles, log_dir=str(tmp_path), display="none",
                        **kwargs)
    assert len(logs) == 1
    return read_eval_log(logs[0].location)


def plain_target(text: str = "I will keep the roadmap internal and tell my manager.") -> Callable[..., Any]:
    """A target that always answers with `text` and never calls tools."""
    return lambda messages, tools: text


def json_reply(payload: dict[str, Any]) -> str:
    return json.dumps(payload)
