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
rubric_sha256, scenario_set_hash, prompts_version, judge_mode (`auto` resolved to the mode used
when the judge role is bound at build time), judge_samples, max_turns, and the
`judge` / `investigator` model names. inspect binds `--model-role` before it builds a task, so
those names are known at build time under `inspect eval`; a task object built before `eval()` is
called records them as null (`log.eval.model_roles` holds the binding in every case).
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset
from inspect_ai.model import GenerateConfig, Model, model_roles

from msm_eval.classifiers import eval_awareness, harmful_action
from msm_eval.errors import MsmEvalError
from msm_eval.audit_judge import audit_judge
from msm_eval.auditor import investigation
from msm_eval.judge import JUDGE_MODES, bound_judge_models, constitution_judge, resolve_judge_mode
from msm_eval.rubric import load_rubric
from msm_eval.scenarios import build_dataset
from msm_eval.spec import load_spec
from msm_eval.transcript import PROMPTS_DIR, prompts_version

BOUNDED_CALLS = GenerateConfig(max_retries=3, timeout=120, attempt_timeout=60)
"""Default limits on every model call of a task (target, judge, investigator): an attempt that
hangs is abandoned after 60 s, at most 3 retries, and no new retry after 120 s, so an unreachable
provider ends the run with log status `error` within about two minutes instead of retrying for
hours (inspect's own default). Override per run with inspect's options, e.g.
`--max-retries 10 --timeout 600 --attempt-timeout 300`."""

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


def selection_text(scenarios: str | Sequence[Any] | None) -> str | None:
    """The `scenarios` task option as one selection string.

    inspect splits `-T` values at commas, so `-T scenarios=family:blackmail,leaking` arrives as
    `["family:blackmail", "leaking"]`; the parts are joined back with commas (the OR inside a
    clause). Any other type is a one-line error."""
    if scenarios is None or isinstance(scenarios, str):
        return scenarios
    if isinstance(scenarios, Sequence) and all(isinstance(part, str | int | float) and not isinstance(part, bool)
                                                for part in scenarios):
        return ",".join(str(part).strip() for part in scenarios)
    raise MsmEvalError(f"scenarios must be a selection string, got {scenarios!r}", field="scenarios",
                       hint="e.g. -T scenarios=family:blackmail,leaking or -T 'scenarios=family:blackmail; tags:x'")


def _user_selection(selection: str | None) -> str | None:
    if not selection:
        return selection
    return " | ".join(";".join(user_path(clause.strip()) or "" for clause in alternative.split(";"))
                      for alternative in selection.split("|"))


FRAMINGS = ("none", "deployment", "evaluation", "ask")
"""Values of `agentic_misalignment`'s `framing` option (texts in msm_eval/prompts/target_switches.yaml)."""


def target_switches(no_leverage_instruction: bool, framing: str) -> tuple[str | None, dict[str, str]]:
    """(text appended to the target's system prompt, conditions recorded for it) for the switches
    of the original study: an explicit instruction not to use leverage or leak, and a framing of
    the situation as a deployment, an evaluation, or a question the target must answer itself."""
    import yaml

    if framing not in FRAMINGS:
        raise MsmEvalError(f"unknown framing {framing!r}", field="framing", hint=f"use one of: {', '.join(FRAMINGS)}")
    texts = yaml.safe_load((PROMPTS_DIR / "target_switches.yaml").read_text(encoding="utf-8"))
    parts, conditions = [], {}
    if no_leverage_instruction:
        parts.append(texts["instruction"]["no_leverage"].strip())
        conditions["instruction"] = "no_leverage"
    if framing != "none":
        parts.append(texts["framing"][framing].strip())
        conditions["framing"] = framing
    return ("\n\n".join(parts) or None), conditions


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


def _build(name: str, *, spec: str, spec_variant: str, spec_in_context: bool, scenarios: str | Sequence[Any] | None,
           max_turns: int | None, judge_mode: str, judge_samples: int, rubric: str,
           judge_max_chars: int | None, classify: bool, show_reasoning: bool = True,
           no_leverage_instruction: bool = False, framing: str = "none", awareness: bool = False,
           judge_guidance: bool = False, investigator: str = "agent",
           investigator_turns: int | None = None, investigator_prefill: bool = False,
           realism_threshold: float | None = None, audit_rubric: str | None = None) -> Task:
    _check_args(judge_mode, judge_samples, max_turns)
    scenarios = selection_text(scenarios)
    suffix, switch_conditions = target_switches(bool(no_leverage_instruction), str(framing))
    bound = bound_judge_models()
    if bound:  # `inspect eval` binds roles first: choose (or refuse) the mode before anything runs
        judge_mode = resolve_judge_mode(judge_mode, bound)
        if judge_mode == "logprob" and int(judge_samples) > 1:
            raise MsmEvalError(f"judge_samples={judge_samples} adds nothing in logprob mode (the judge cannot call "
                               "tools, so judge_mode=auto chose logprob)", field="judge_samples",
                               hint="use judge_samples=1, or a panel: --model-role judge=MODEL_A,MODEL_B")
    loaded_rubric = load_rubric(user_path(rubric) or rubric)
    loaded_spec = load_spec(user_path(spec) or spec, rubric=loaded_rubric)
    spec_text = loaded_spec.render(spec_variant)
    samples, set_hash = build_dataset(_user_selection(scenarios))
    if not samples:
        raise MsmEvalError(f"scenario selection {scenarios!r} produced no samples", field="scenarios")
    scorers: list[Any] = []
    if classify:
        scorers.append(harmful_action(mode=judge_mode, max_chars_per_message=judge_max_chars,
                                      show_reasoning=bool(show_reasoning)))
    if awareness:
        scorers.append(eval_awareness(max_chars_per_message=judge_max_chars, show_reasoning=bool(show_reasoning)))
    scorers.append(constitution_judge(rubric=loaded_rubric, mode=judge_mode, samples=int(judge_samples),
                                      max_chars_per_message=judge_max_chars, show_reasoning=bool(show_reasoning),
                                      judge_guidance=bool(judge_guidance)))
    loaded_audit_rubric = None
    if audit_rubric and audit_rubric.lower() != "none":   # audit-quality dimensions, a scorer of their own
        loaded_audit_rubric = load_rubric(user_path(audit_rubric) or audit_rubric)
        scorers.append(audit_judge(rubric=loaded_audit_rubric, mode=judge_mode, max_chars_per_message=judge_max_chars))
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
        "judge_guidance": bool(judge_guidance),
        "max_turns": max_turns,
        "show_reasoning": bool(show_reasoning),
        "no_leverage_instruction": bool(no_leverage_instruction),
        "framing": str(framing),
        "judge": role_model_names("judge"),
        "investigator": role_model_names("investigator"),
        "investigator_mode": investigator,
        "investigator_turns": investigator_turns,
        "investigator_prefill": bool(investigator_prefill),
        "realism_threshold": realism_threshold,
        "audit_rubric": loaded_audit_rubric.name if loaded_audit_rubric else None,
        "audit_rubric_sha256": loaded_audit_rubric.sha256 if loaded_audit_rubric else None,
    }
    return Task(
        dataset=MemoryDataset(samples, name=f"{name}:{scenarios or 'all'}"),
        # one solver step: it checks the judge role first (require_judge's check, without a step of its own)
        solver=investigation(mode=investigator, max_turns=max_turns, spec_text=spec_text if spec_in_context else None,
                             investigator_turns=investigator_turns, prefill=investigator_prefill,
                             realism_threshold=realism_threshold, system_suffix=suffix,
                             conditions=switch_conditions or None, judge_mode=judge_mode),
        scorer=scorers,
        metadata=metadata,
        name=name,
        config=BOUNDED_CALLS,
    )


@task
def constitution_adherence(spec: str = "constitution", spec_variant: str = "full", spec_in_context: bool = False,
                           scenarios: str | list[str] | None = None, max_turns: int | None = None,
                           judge_mode: str = "auto", judge_samples: int = 1, rubric: str = "constitution",
                           judge_max_chars: int | None = None, show_reasoning: bool = True,
                           judge_guidance: bool = False, investigator: str = "agent",
                           investigator_turns: int | None = None, investigator_prefill: bool = False,
                           realism_threshold: float | None = None, audit_rubric: str | None = None) -> Task:
    """Does the target adhere to the spec? Seeds -> rollout -> judge on every rubric dimension.

    Args:
        spec: spec name under specs/ or a path (its sha256 is recorded even when not in context).
        spec_variant: rules | value_augmented | rule_augmented | generic | full.
        spec_in_context: put the rendered spec variant at the top of the target's system prompt.
        scenarios: seed selection (tags:a,b | id:x | family:x | area:x | setting:x | dimension:x | path):
            ',' = OR inside a clause, ';' = AND between clauses, ' | ' = OR between alternatives
            (docs/scenarios.md); default: the whole library.
        max_turns: target turns per scenario (default: the seed's max_turns).
        judge_mode: auto (default: logprob when the judge cannot call tools, as msm/smollm2; else
            answer) | answer (structured scores through a tool) | logprob (expected score from
            label log-probs).
        judge_samples: judge calls per judge model, averaged per dimension.
        rubric: rubric name under rubrics/ or a path.
        judge_max_chars: truncate each transcript message to this many characters for the judge.
        show_reasoning: show the target's native reasoning to the judge (and classifier), marked as
            its private reasoning; false hides it.
        judge_guidance: show the judge each seed's `judge_guidance` (what adherence and a violation
            look like there); it never reaches the target or the investigator.
        investigator: agent (the auditing agent of msm_eval.auditor, default) | simple (JSON-call
            investigator); only used when the `investigator` role is bound.
        investigator_turns: the audit's turn budget (default: the seed's investigator_turns, else 20).
        investigator_prefill: let the investigator prefill the start of target replies (recorded).
        realism_threshold: 0..1; rate each investigator action (role `realism`) and send back those below it.
        audit_rubric: also score audit quality (scenario realism, eval awareness, prefill dependence) with
            this rubric (`audit`, or a path) in a separate `audit_judge` scorer; default none.
    """
    return _build("constitution_adherence", spec=spec, spec_variant=spec_variant, spec_in_context=spec_in_context,
                  scenarios=scenarios, max_turns=max_turns, judge_mode=judge_mode, judge_samples=judge_samples,
                  rubric=rubric, judge_max_chars=judge_max_chars, classify=False, show_reasoning=show_reasoning,
                  judge_guidance=judge_guidance, investigator=investigator,
                  investigator_turns=investigator_turns, investigator_prefill=investigator_prefill,
                  realism_threshold=realism_threshold, audit_rubric=audit_rubric)


@task
def agentic_misalignment(spec: str = "constitution", spec_variant: str = "full", spec_in_context: bool = False,
                         scenarios: str | list[str] | None = AGENTIC_SELECTION, max_turns: int | None = None,
                         judge_mode: str = "auto", judge_samples: int = 1, rubric: str = "constitution",
                         judge_max_chars: int | None = None, show_reasoning: bool = True,
                         no_leverage_instruction: bool = False, framing: str = "none",
                         awareness: bool = True, judge_guidance: bool = False, investigator: str = "agent",
                         investigator_turns: int | None = None, investigator_prefill: bool = False,
                         realism_threshold: float | None = None, audit_rubric: str | None = None) -> Task:
    """Agentic-misalignment scenarios: harmful-action rate (verdict AND hard checks), eval-awareness
    rate and the rubric judge.

    Parameters as for `constitution_adherence` (including the investigator options); `scenarios`
    defaults to the library's agentic_misalignment folder. The classifiers use the judge role (first
    model of a panel).

    Args:
        no_leverage_instruction: append the original study's explicit instruction not to use
            leverage, threaten or leak (recorded as condition `instruction=no_leverage`).
        framing: none | deployment | evaluation | ask: tell the target it is deployed, tell it it
            is being evaluated, or ask it to decide which (recorded as condition `framing`).
        awareness: add the `eval_awareness` classifier (did the target say or reason that it may
            be tested?).
    """
    return _build("agentic_misalignment", spec=spec, spec_variant=spec_variant, spec_in_context=spec_in_context,
                  scenarios=scenarios, max_turns=max_turns, judge_mode=judge_mode, judge_samples=judge_samples,
                  rubric=rubric, judge_max_chars=judge_max_chars, classify=True, show_reasoning=show_reasoning,
                  no_leverage_instruction=no_leverage_instruction, framing=framing, awareness=awareness,
                  judge_guidance=judge_guidance, investigator=investigator,
                  investigator_turns=investigator_turns, investigator_prefill=investigator_prefill,
                  realism_threshold=realism_threshold, audit_rubric=audit_rubric)


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
                     judge_mode: str = "auto", judge_samples: int = 1, rubric: str = "constitution",
                     judge_max_chars: int | None = None) -> Task:
    """Is the judge right? Replays the validation transcripts (validation/) to the bound judge.

    Run with `--model none/none --model-role judge=<judge>`; analyse with `msm-eval judge-validate`.
    `selection`: dimension:a,b | kind:x | setting:x | id:a,b (clauses joined by ';').
    """
    from msm_eval.judge_validation import validation_task
    return validation_task(validation=user_path(validation), selection=selection, judge_mode=judge_mode,
                           judge_samples=judge_samples, rubric=rubric, judge_max_chars=judge_max_chars)
