"""Helpers for the results / stats / report / gate tests: real inspect .eval logs from small
in-process tasks whose scorers return the score layout of docs/architecture.md, and simulated
tidy frames with known truth. Imported explicitly by the tests that need them."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ScoreFn = Callable[[str, int], tuple[dict[str, float], dict[str, Any]]]
_PLANS: dict[str, ScoreFn] = {}
_FAILING: dict[str, set[str]] = {}


@dataclass
class RunPlan:
    """One in-test inspect run: its samples, what its scorer returns, and its task metadata."""

    samples: Sequence[tuple[str, str, dict[str, str]]]  # (sample id, cluster, conditions)
    scores: ScoreFn
    metadata: dict[str, Any] = field(default_factory=dict)
    scorer: str = "constitution_judge"
    epochs: int = 1
    failing_ids: set[str] = field(default_factory=set)
    task_name: str = "constitution_adherence"


def _scorer_factory(name: str):
    from inspect_ai.scorer import Score, Target, mean, scorer
    from inspect_ai.solver import TaskState

    @scorer(metrics={"*": [mean()]}, name=name)
    def build(plan: str):
        async def score(state: TaskState, target: Target) -> Score:
            value, metadata = _PLANS[plan](str(state.sample_id), int(state.epoch))
            return Score(value=value, metadata=metadata)

        return score

    return build


def _failing_solver_factory():
    from inspect_ai.solver import Generate, TaskState, solver

    @solver(name="msm_test_maybe_fail")
    def maybe_fail(plan: str):
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            if str(state.sample_id) in _FAILING.get(plan, set()):
                raise RuntimeError(f"simulated rollout failure in {state.sample_id}")
            return await generate(state)

        return solve

    return maybe_fail


_SCORERS: dict[str, Any] = {}
_SOLVER: list[Any] = []


def _outputs(input, tools, tool_choice, config):  # noqa: A002 - inspect's callable signature
    from inspect_ai.model import ModelOutput, ModelUsage

    output = ModelOutput.from_content("mockllm/model", "I will follow the spec.")
    output.usage = ModelUsage(input_tokens=3, output_tokens=5, total_tokens=8)
    return output


def write_logs(log_dir: Path, plans: Sequence[RunPlan], judge: str = "mockllm/model") -> list[Path]:
    """Run each plan as a real inspect eval (mock target, mock judge role); return log paths."""
    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import get_model

    if not _SOLVER:
        _SOLVER.append(_failing_solver_factory())
    paths = []
    for plan in plans:
        token = uuid.uuid4().hex
        _PLANS[token] = plan.scores
        _FAILING[token] = set(plan.failing_ids)
        if plan.scorer not in _SCORERS:
            _SCORERS[plan.scorer] = _scorer_factory(plan.scorer)
        dataset = [Sample(input=f"scenario {sid}", id=sid,
                          metadata={"cluster": cluster, "seed_id": cluster, "conditions": conditions,
                                    "family": "test", "area": "honesty"})
                   for sid, cluster, conditions in plan.samples]
        task = Task(dataset=dataset, solver=_SOLVER[0](token), scorer=_SCORERS[plan.scorer](token),
                    metadata=plan.metadata, name=plan.task_name)
        logs = eval(task, model=get_model("mockllm/model", custom_outputs=_outputs), display="none",
                    log_dir=str(log_dir), epochs=plan.epochs, fail_on_error=False,
                    model_roles={"judge": get_model(judge, custom_outputs=_outputs)})
        paths.append(Path(logs[0].location))
    return paths


DIMS = ("honesty", "harm_avoidance", "helpfulness")
BASE_META = {"spec": "constitution", "spec_variant": "rules", "spec_sha256": "a" * 64,
             "rubric": "constitution", "rubric_sha256": "b" * 64, "scenario_set_hash": "c" * 64,
             "prompts_version": "1", "judge_mode": "answer"}


def grid_samples(n_clusters: int, per_cluster: int) -> list[tuple[str, str, dict[str, str]]]:
    """Sample ids `seed<k>__v<j>` in clusters `seed<k>`, with a two-level `threat` condition."""
    return [(f"seed{k}__v{j}", f"seed{k}", {"threat": "yes" if j % 2 else "no"})
            for k in range(n_clusters) for j in range(per_cluster)]


def judge_scores(shift: float = 0.0, seed: int = 0) -> ScoreFn:
    """Deterministic integer scores per (sample, epoch) with a shift, all dimensions scored."""

    def fn(sample_id: str, epoch: int) -> tuple[dict[str, float], dict[str, Any]]:
        rng = np.random.default_rng([zlib.crc32(sample_id.encode()), epoch, seed])
        base = int(sample_id.split("__")[0].removeprefix("seed")) % 3 - 1
        values = {d: float(np.clip(round(base + shift + rng.normal(0, 0.7)), -3, 3)) for d in DIMS}
        per_judge = [{"judge": "mockllm/model", "sample": k,
                      "scores": {d: float(np.clip(v + rng.integers(-1, 2), -3, 3)) for d, v in values.items()}}
                     for k in range(2)]
        return values, {"status": "scored", "reason": "", "per_judge": per_judge, "judge_mode": "answer"}

    return fn


def simulate_frame(n_clusters: int, per_cluster: int | Sequence[int], dims: int = 3, runs: Sequence[float] = (0.0,),
                   cluster_sd: float = 1.0, noise_sd: float = 1.0, epochs: int = 1, seed: int = 0,
                   shared_sample_sd: float = 0.0) -> pd.DataFrame:
    """A tidy frame with known truth: score = run effect + cluster effect + sample effect (shared
    by runs) + noise, clipped to -3..+3; the population mean of run r on every dimension is
    `runs[r]` up to the (small) clipping of the tails."""
    rng = np.random.default_rng(seed)
    sizes = [per_cluster] * n_clusters if isinstance(per_cluster, int) else list(per_cluster)
    cluster_of = np.repeat(np.arange(n_clusters), sizes)
    n = cluster_of.size
    cluster_effect = rng.normal(0, cluster_sd, (n_clusters, dims))[cluster_of]
    sample_effect = rng.normal(0, shared_sample_sd, (n, dims)) if shared_sample_sd else 0.0
    frames = []
    for r, shift in enumerate(runs):
        for e in range(epochs):
            # clipped to the rubric scale: the data contract rejects scores outside -3..+3
            scores = np.clip(shift + cluster_effect + sample_effect + rng.normal(0, noise_sd, (n, dims)), -3.0, 3.0)
            for d in range(dims):
                frames.append(pd.DataFrame({
                    "run": f"run{r}", "model": "m", "spec": "s", "judge": "j", "task": "t",
                    "sample_id": [f"s{i}" for i in range(n)], "cluster": [f"c{c}" for c in cluster_of],
                    "epoch": e + 1, "dimension": f"dim{d}", "score": scores[:, d], "status": "scored"}))
    return pd.concat(frames, ignore_index=True)


def _partial_refused(base: ScoreFn, refused: set[str], partial: set[str], unknown: set[str]) -> ScoreFn:
    def fn(sample_id: str, epoch: int) -> tuple[dict[str, float], dict[str, Any]]:
        values, meta = base(sample_id, epoch)
        if sample_id in refused:
            return {d: float("nan") for d in DIMS}, {**meta, "status": "refused", "reason": "judge declined to grade"}
        if sample_id in partial:
            return {**values, "helpfulness": float("nan")}, {**meta, "status": "partial", "reason": "one dimension unparsable"}
        if sample_id in unknown:
            return values, {**meta, "status": "weird"}
        return values, meta

    return fn


def _harmful_scores(sample_id: str, epoch: int) -> tuple[dict[str, float], dict[str, Any]]:
    k = int(sample_id.split("__")[0].removeprefix("seed"))
    j = int(sample_id.split("__v")[1])
    harmful = float((k + j) % 3 == 0)
    return ({"harmful": harmful, "verdict": harmful, "hard_check": float(k % 4 == 0)},
            {"status": "scored", "reason": "", "checks": []})


@functools.cache
def standard_logs() -> dict[str, Path]:
    """Real .eval logs shared by the results/report/gate tests (built once per test process):
    `rules` (2 epochs; one refused, one partial, one errored sample), `value_augmented` (same
    scenarios, +1 shift), `agentic` (harmful_action scores with conditions), `other_judge` (as
    `rules` but another judge and scenario set)."""
    root = Path(tempfile.mkdtemp(prefix="msm-results-logs-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    samples = grid_samples(8, 3)
    plans = {
        "rules": RunPlan(samples, _partial_refused(judge_scores(0.0), {"seed0__v0"}, {"seed1__v1"}, set()),
                         metadata=BASE_META, epochs=2, failing_ids={"seed2__v2"}),
        "value_augmented": RunPlan(samples, judge_scores(1.0, seed=1),
                                   metadata={**BASE_META, "spec_variant": "value_augmented"}),
        "agentic": RunPlan(samples, _harmful_scores, metadata={**BASE_META, "spec_variant": "full"},
                           scorer="harmful_action", task_name="agentic_misalignment"),
        "other_judge": RunPlan(samples, _partial_refused(judge_scores(0.0), set(), set(), {"seed3__v0"}),
                               metadata={**BASE_META, "scenario_set_hash": "d" * 64}),
    }
    out = {}
    for name, plan in plans.items():
        folder = root / name
        judge = "mockllm/other-judge" if name == "other_judge" else "mockllm/model"
        out[name] = write_logs(folder, [plan], judge=judge)[0]
    return out
