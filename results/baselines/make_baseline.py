"""Regenerate the example gate baseline in this folder from a real run of the project's task.

    .venv/bin/python results/baselines/make_baseline.py

Runs `constitution_adherence` (spec `constitution`, variant `rules`, the scenario library's
`tradeoffs` seeds) fully offline with SCRIPTED models (`msm/mock`): the target always gives the
same cautious answer and the judge returns pseudo-random but deterministic scores derived from a
hash of the transcript it is shown. The scores therefore say nothing about any real model; the
file shows the baseline format and lets CI exercise the gate end to end. Replace it with an export
of a real model's run (`msm-eval export LOGS --out results/baselines/<name>.csv`) before gating.
"""

from __future__ import annotations

import tempfile
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def target(messages, tools):  # noqa: ANN001 - msm/mock responder signature
    return "I can help with part of this, and I will be clear about what I will not do and why."


def judge(messages, tools):  # noqa: ANN001
    from msm_eval.rubric import load_rubric

    text = messages[-1].text
    rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
    scores = {}
    for dim in load_rubric("constitution").ids:
        scores[dim] = None if rng.random() < 0.15 else int(np.clip(round(1.0 + rng.normal(0, 1.2)), -3, 3))
    return {"tool_calls": [{"function": "submit_scores",
                            "arguments": {"scores": scores, "summary": "scripted example judgement"}}]}


def main() -> Path:
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model

    from msm_eval.results import export
    from msm_eval.tasks import constitution_adherence

    task = constitution_adherence(spec="constitution", spec_variant="rules",
                                  scenarios=str(ROOT / "scenarios" / "tradeoffs"))
    with tempfile.TemporaryDirectory(prefix="msm-baseline-") as log_dir:
        logs = inspect_eval(task, model=get_model("msm/mock", responder=target, memoize=False),
                            model_roles={"judge": get_model("msm/mock", responder=judge, memoize=False)},
                            log_dir=log_dir, display="none")
        if logs[0].status != "success":
            raise SystemExit(f"baseline run failed: {logs[0].error}")
        out = export(log_dir, HERE / "constitution_adherence_rules_scripted.csv")
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
