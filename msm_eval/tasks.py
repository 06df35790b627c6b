"""The inspect tasks of msm-eval (thin wiring: dataset + rollout solver + scorers).

    inspect eval msm_eval/tasks.py@constitution_adherence --model <target> \
        --model-role judge=<judge> [--model-role investigator=<investigator>] \
        -T spec=constitution -T spec_variant=full -T spec_in_context=true -T scenarios=tags:honesty

- `constitution_adherence`: seeds -> rollout (investigator or static) -> rubric judge.
- `agentic_misalignment`: agentic seeds -> rollout -> harmful-action classifier + rubric judge.
- `spec_probe`: judge-free log-probability probes (defined in `msm_eval.probes`).

inspect imports this file as a standalone module, so it only uses absolute imports of the
installed `msm_eval` package. Every run records in `log.eval.metadata`: spec, spec_variant,
spec_sha256 (source), spec_variant_sha256 (rendered variant), spec_in_context, rubric,
rubric_sha256, scenario_set_hash, prompts_version, judge_mode, judge_samples, max_turns, and the
`judge` / `investigator` model names. inspect binds `--model-role` before it builds a task, so
those names are known at build time under `inspect eval`; a task object built before `eval()` is
called records them as null (`log.eval.model_roles` holds the binding in every case).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset
from inspect_ai.model import Model, model_roles
from inspect_ai.solver import chain

from msm_eval.classifiers import harmful_action
from msm_eval.errors import MsmEvalError
from msm_eval.investigator import rollout
from msm_eval.judge import JUDGE_MODES, constitution_judge, require_judge
from msm_eval.rubric import load_rubric
from msm_eval.scenarios import build_dataset
from msm_eval.spec import load_spec
from msm_eval.transcript import prompts_version

AGENTIC_SELECTION = "agentic_misalignment"
"""Default seed selection of `agentic_misalignment`: the library folder of that name."""


def user_path(value: str | None) -> str | None:
    """A relative path as the user meant it: inspect runs task files from their own folder, so a
    path that does not exist there is resolved against the shell's working directory (`$PWD`)."""
    if not value or ":" in value.split("/")[0] or Path(value).is_absolute() or Path(value).exists():
        return value
    shell_cwd = os.environ.get("PWD")
    if shell_cwd and (Path(shell_cwd) / value).exists():
        return str(Path(shell_cwd) / value)
    return value


def _user_selection(selection: str | None) -> str | None:
    if not selection:
        return selection
    return ";".join(user_path(clause.strip()) or "" for clause in selection.split(";"))


def role_model_names(role: str) -> str | list[str] | None:
    """The model name(s) bound to `role` where the task is being built (a list for a panel), else None."""
    bound: Model | list[Model] | None = model_roles().get(role)
    if bound is None:
        return None
    if isinstance(bound, list):
        return [str(model) for model in bound]
    return str(bound)


def _check_args(judge_mode: str, judge_samples: int, max_turns: int | None) -> None:
    if judge_mode not in JUDGE_MODES:
        raise MsmEvalError(f"unknown judge_mode {judge_mode!r}", field="judge_mode",
                           hint=f"use one of: {', '.join(JUDGE_MODES)}")
    if int(judge_samples) < 1:
        raise MsmEvalError(f"judge_samples must be at least 1, got {judge_samples}", field="judge_samples")
    if max_turns is not None and int(max_turns) < 1:
        raise MsmEvalError(f"max_turns must be at least 1, got {max_turns}", field="max_turns")


def _build(name: str, *, spec: str, spec_variant: str, spec_in_context: bool, scenarios: str | None,
           max_turns: int | None, judge_mode: str, judge_samples: int, rubric: str,
           judge_max_chars: int | None, classify: bool) -> Task:
    _check_args(judge_mode, judge_samples, max_turns)
    loaded_rubric = load_rubric(user_path(rubric) or rubric)
    loaded_spec = load_spec(user_path(spec) or spec, rubric=loaded_rubric)
    spec_text = loaded_spec.render(spec_variant)
    samples, set_hash = build_dataset(_user_selection(scenarios))
    if not samples:
        raise MsmEvalError(f"scenario selection {scenarios!r} produced no samples", field="scenarios")
    scorers: list[Any] = []
    if classify:
        scorers.append(harmful_action(mode=judge_mode, max_chars_per_message=judge_max_chars))
    scorers.append(constitution_judge(rubric=loaded_rubric, mode=judge_mode, samples=int(judge_samples),
                                      max_chars_per_message=judge_max_chars))
    metadata = {
        "spec": loaded_spec.name,
        "spec_path": loaded_spec.path.name,
        "spec_variant": spec_variant,
        "spec_sha256": loaded_spec.sha256,
        "spec_variant_sha256": loaded_spec.variant_sha256(spec_variant),
        "spec_in_context": bool(spec_in_context),
        "rubric": loaded_rubric.name,
        "rubric_sha256": loaded_rubric.sha256,
        "scenarios": scenarios,
        "scenario_set_hash": set_hash,
        "prompts_version": prompts_version(),
        "judge_mode": judge_mode,
        "judge_samples": int(judge_samples),
        "max_turns": max_turns,
        "judge": role_model_names("judge"),
        "investigator": role_model_names("investigator"),
    }
    return Task(
        dataset=MemoryDataset(samples, name=f"{name}:{scenarios or 'all'}"),
        solver=chain(require_judge(), rollout(max_turns=max_turns,
                                              spec_text=spec_text if spec_in_context else None)),
        scorer=scorers,
        metadata=metadata,
        name=name,
    )


@task
def constitution_adherence(spec: str = "constitution", spec_variant: str = "full", spec_in_context: bool = False,
                           scenarios: str | None = None, max_turns: int | None = None, judge_mode: str = "answer",
                           judge_samples: int = 1, rubric: str = "constitution",
                           judge_max_chars: int | None = None) -> Task:
    """Does the target adhere to the spec? Seeds -> rollout -> judge on every rubric dimension.

    Args:
        spec: spec name under specs/ or a path (its sha256 is recorded even when not in context).
        spec_variant: rules | value_augmented | rule_augmented | generic | full.
        spec_in_context: put the rendered spec variant at the top of the target's system prompt.
        scenarios: seed selection (tags:a,b | id:x | family:x | area:x | setting:x | dimension:x | path;
            clauses joined by ';'); default: the whole library.
        max_turns: target turns per scenario (default: the seed's max_turns).
        judge_mode: answer (structured scores) | logprob (expected score from label log-probs).
        judge_samples: judge calls per judge model, averaged per dimension.
        rubric: rubric name under rubrics/ or a path.
        judge_max_chars: truncate each transcript message to this many characters for the judge.
    """
    return _build("constitution_adherence", spec=spec, spec_variant=spec_variant, spec_in_context=spec_in_context,
                  scenarios=scenarios, max_turns=max_turns, judge_mode=judge_mode, judge_samples=judge_samples,
                  rubric=rubric, judge_max_chars=judge_max_chars, classify=False)


@task
def agentic_misalignment(spec: str = "constitution", spec_variant: str = "full", spec_in_context: bool = False,
                         scenarios: str | None = AGENTIC_SELECTION, max_turns: int | None = None,
                         judge_mode: str = "answer", judge_samples: int = 1, rubric: str = "constitution",
                         judge_max_chars: int | None = None) -> Task:
    """Agentic-misalignment scenarios: harmful-action rate (verdict AND hard checks) plus the rubric judge.

    Parameters as for `constitution_adherence`; `scenarios` defaults to the library's
    agentic_misalignment folder. The classifier uses the judge role (first model of a panel).
    """
    return _build("agentic_misalignment", spec=spec, spec_variant=spec_variant, spec_in_context=spec_in_context,
                  scenarios=scenarios, max_turns=max_turns, judge_mode=judge_mode, judge_samples=judge_samples,
                  rubric=rubric, judge_max_chars=judge_max_chars, classify=True)


# ----------------------------------------------------------------------------- spec_probe
# The judge-free probe task lives in msm_eval/probes.py; the trainer helper wires `spec_probe`
# here (below this line) so `inspect eval msm_eval/tasks.py@spec_probe` finds it.
@task
def spec_probe(items: str | None = None, model_path: str | None = None, presentation: str = "free",
               kinds: str | None = None, batch_size: int = 8, dtype: str = "float32") -> Task:
    """Judge-free probes: P(aligned) per item from the model's log-probabilities (see msm_eval.probes)."""
    from msm_eval.probes import spec_probe as build_spec_probe
    # relative paths mean the shell's working directory (inspect runs task files from their folder)
    return build_spec_probe(items=user_path(items), model_path=user_path(model_path), presentation=presentation,
                            kinds=kinds, batch_size=batch_size, dtype=dtype)


# ----------------------------------------------------------------------------- judge_validation
@task
def judge_validation(validation: str | None = None, selection: str | list[str] | None = None,
                     judge_mode: str = "answer", judge_samples: int = 1, rubric: str = "constitution",
                     judge_max_chars: int | None = None) -> Task:
    """Is the judge right? Replays the validation transcripts (validation/) to the bound judge.

    Run with `--model none/none --model-role judge=<judge>`; analyse with `msm-eval judge-validate`.
    `selection`: dimension:a,b | kind:x | setting:x | id:a,b (clauses joined by ';').
    """
    from msm_eval.judge_validation import validation_task
    return validation_task(validation=user_path(validation), selection=selection, judge_mode=judge_mode,
                           judge_samples=judge_samples, rubric=rubric, judge_max_chars=judge_max_chars)
