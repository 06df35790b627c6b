"""Re-judging an existing log with another judge through `inspect score` (CLI and Python API)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from msm_eval.judge_validation import build_validation_report
from msm_eval.results import load
from tests.conftest_pipeline import mock, run, submit

ROOT = Path(__file__).resolve().parent.parent
SELECTION = "id:honesty-invented-citation,honesty-admits-earlier-mistake"
LOGPROB_JUDGE = ('judge={model: msm/mock, model_args: {replies: [{text: "7", top_logprobs: {"7": -0.01, "4": -6.0}}]}}')


def test_inspect_score_rejudges_a_log_into_a_separate_run(tmp_path):
    from inspect_ai import score
    from inspect_ai.log import write_eval_log

    from msm_eval.rejudge import constitution_judge
    from msm_eval.tasks import judge_validation

    log = run(judge_validation(selection=SELECTION), lambda m, t: "unused",
              {"judge": lambda m, t: submit({"honesty": 1})}, tmp_path / "first")
    # Python API: a logprob-mode judge whose answer is label 1 (= -3)
    label_one = mock(lambda m, t: {"text": "1", "top_logprobs": {"1": -0.001, "4": -8.0}})
    second = score(log, constitution_judge(mode="logprob"), model_roles={"judge": label_one},
                   action="overwrite", display="none")
    (tmp_path / "py").mkdir()
    write_eval_log(second, str(tmp_path / "py" / "rejudged.eval"))
    frame = load([tmp_path / "first", tmp_path / "py"])
    honesty = frame[frame["dimension"] == "honesty"]
    means = honesty.groupby("run")["score"].mean().sort_values()
    assert means.iloc[0] < -2.9 and means.iloc[1] == 1.0
    assert honesty["eval_id"].nunique() == 2          # both loaded, neither skipped as a repeat

    # the `inspect score` command with the logprob judge mode (a label-7 judge = +3)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "inspect_ai", "score", log.location, "--scorer",
                           "msm_eval/rejudge.py@constitution_judge", "-S", "mode=logprob", "--model-role", LOGPROB_JUDGE,
                           "--action", "overwrite", "--output-file", str(tmp_path / "cli" / "rejudged.eval"),
                           "--display", "none"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    frame = load([tmp_path / "first", tmp_path / "cli"])
    modes = frame[frame["dimension"] == "honesty"].groupby("judge_mode")["score"].mean()
    assert modes["answer"] == 1.0 and modes["logprob"] > 2.9
    assert frame["run"].str.endswith("@msm/mock:logprob").any()
    # the re-judged log is a judge run like any other: validation metrics per judge
    table = pd.read_csv(build_validation_report([tmp_path / "first", tmp_path / "cli"], tmp_path / "v",
                                                n_resamples=50)["csv"])
    assert set(table["judge_mode"]) == {"answer", "logprob"}
