"""Re-judge existing logs with another judge through inspect's own `inspect score` (targets are not rerun).

    inspect score LOG.eval --scorer msm_eval/rejudge.py@constitution_judge \
        --model-role judge=<new judge> [-S mode=logprob] --action overwrite --output-file NEW.eval

inspect loads a `--scorer` file as a standalone module, which `msm_eval/judge.py` cannot be (its
dataclasses need a package module), so this file wraps the rubric judge under the same scorer name
(adding `rejudged: true` to each score's metadata); the arguments (`-S mode=`, `-S samples=`, `-S rubric=`, ...) are those of
`msm_eval.judge.constitution_judge`. Write the result to a new file (`--output-file`) and keep the
original: `msm_eval.results.load` reads the new judge and mode from the scores (the log header keeps
the first judge) and gives the re-judged log its own run (`<run>@<judge>:<mode>`), so the two
judges can be compared, validated (`msm-eval judge-validate`) or checked against human labels.
The same works from Python: `inspect_ai.score(log, constitution_judge(...), model_roles={"judge": ...},
action="overwrite")` followed by `inspect_ai.log.write_eval_log`.
"""

from __future__ import annotations

from typing import Any

from inspect_ai.scorer import Score, Scorer, Target, scorer
from inspect_ai.solver import TaskState

from msm_eval.judge import constitution_judge as _constitution_judge
from msm_eval.judge import cluster_stderr, nan_mean


@scorer(metrics={"*": [nan_mean(), cluster_stderr()]}, name="constitution_judge")
def constitution_judge(rubric: Any = "constitution", mode: str = "answer", samples: int = 1, max_retries: int = 2,
                       spec_excerpt: str | None = None, max_chars_per_message: int | None = None) -> Scorer:
    """The rubric judge (msm_eval.judge.constitution_judge) with the `judge` role bound by `inspect score`;
    each score's metadata carries `rejudged: true`, which tells `results.load` to read the judge from it."""
    inner = _constitution_judge(rubric=rubric, mode=mode, samples=int(samples), max_retries=int(max_retries),
                                spec_excerpt=spec_excerpt,
                                max_chars_per_message=int(max_chars_per_message) if max_chars_per_message else None)

    async def score(state: TaskState, target: Target) -> Score:
        result = await inner(state, target)
        result.metadata = {**(result.metadata or {}), "rejudged": True}
        return result

    return score
