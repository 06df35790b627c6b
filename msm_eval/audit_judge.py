"""The audit-quality scorer: scenario realism, eval awareness, prefill dependence (rubrics/audit.yaml).

`audit_judge` scores the same transcript the rubric judge reads (every branch of an audit, with
prefill marks) on a second rubric whose dimensions rate how far the measurement can be trusted
rather than how well the target adhered to the spec. It is a separate scorer with its own
`Score`, so its dimensions sit beside the constitution's 15 in logs, results and reports and are
never part of `overall_spirit` or its statistics. Tasks add it with `-T audit_rubric=audit`
(or a path to another rubric file). The judge calls, retries, panels and the NaN-ignoring
reduction are those of `msm_eval.judge`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from inspect_ai.model import Model
from inspect_ai.scorer import Score, Scorer, Target, scorer
from inspect_ai.solver import TaskState

from msm_eval.errors import MsmEvalError
from msm_eval.judge import (JUDGE_MODES, cluster_stderr, judge_answer, judge_logprob, judge_models, nan_mean,
                            reduce_runs, resolve_judge_mode, runs_metadata)

AUDIT_SCORER = "audit_judge"
"""The scorer's name in logs (`sample.scores["audit_judge"]`)."""


@scorer(metrics={"*": [nan_mean(), cluster_stderr()]}, name=AUDIT_SCORER)
def audit_judge(rubric: Any = "audit", mode: str = "auto", max_retries: int = 2,
                judge: str | Model | Sequence[str | Model] | None = None,
                max_chars_per_message: int | None = None) -> Scorer:
    """Score the audit's quality dimensions with the `judge` role (see module docstring).

    Args:
        rubric: a rubric name under rubrics/ (default `audit`), a path, or a loaded `Rubric`.
        mode: `auto`, `answer` or `logprob`, as for `constitution_judge`.
        max_retries: extra attempts after an unusable answer.
        judge: explicit judge model(s), overriding the role.
        max_chars_per_message: truncate long messages for small-context judges.
    """
    if mode not in JUDGE_MODES:
        raise MsmEvalError(f"unknown judge mode {mode!r}", field="judge_mode", hint="use auto, answer or logprob")
    if isinstance(rubric, str):
        from msm_eval.rubric import load_rubric

        rubric = load_rubric(rubric)
    loaded = rubric
    dimension_ids = list(loaded.ids)

    async def score(state: TaskState, target: Target) -> Score:
        models = judge_models(judge)
        used = resolve_judge_mode(mode, models)
        if used == "answer":
            jobs = [judge_answer(model, loaded, state, panel=index, max_retries=max_retries,
                                 max_chars_per_message=max_chars_per_message) for index, model in enumerate(models)]
        else:
            jobs = [judge_logprob(model, loaded, state, panel=index, max_retries=max_retries,
                                  max_chars_per_message=max_chars_per_message or 1500)
                    for index, model in enumerate(models)]
        runs = list(await asyncio.gather(*jobs))
        value, status, reason = reduce_runs(runs, dimension_ids)
        first_ok = next((r for r in runs if r.status in ("scored", "partial")), None)
        return Score(value=value,
                     explanation=(first_ok.summary if first_ok and first_ok.summary else None)
                     or f"{status}: " + (reason or f"{len(runs)} judge run(s)"),
                     metadata={"status": status, "reason": reason, "judge_mode": used, "rubric": loaded.name,
                               "justifications": first_ok.justifications if first_ok else {},
                               "citations": first_ok.citations if first_ok else {},
                               **runs_metadata(runs)})

    return score
