"""The rollout solver: sets up a scenario for the target, simulates its tools and drives the turns.

Two modes, chosen per sample by whether the `investigator` model role is bound:

- **static** (role unbound): the seed's rendered `## System` / `## User` / `## Follow-up` parts are
  played as written and every tool call is answered from the seed's canned `result` template
  (`msm_eval.scenarios.render_tool_result`). Reproducible and free.
- **investigator** (role bound): the investigator model turns the seed's instructions into a
  concrete scenario (system prompt, tools with JSON-schema parameters, first message), answers
  every target tool call with a simulated result, and writes the next user message or event after
  each target turn, ending early once the decisive choice has been made.

In both modes nothing the target calls is executed: tool calls are answered by the rollout
itself (tools are offered to the target with `generate(tool_calls="none")`). A target turn is one
assistant reply without tool calls, after up to `max_tool_rounds` rounds of simulated tool calls.

The target sees only its own conversation. The investigator's plans and reasoning go to the
sample store (`investigator`; not written for a plain static play, which has nothing to record),
the rollout summary to `rollout`; inspect also logs every
investigator call as a model event of role `investigator`.

Malformed investigator output is sent back with the problem up to `max_retries` times. If the
scenario still cannot be built, the sample falls back to the seed's static scenario when the seed
has one (recorded as `store["investigator"]["fallback"]`), otherwise the sample fails with an
error naming the seed. An unusable simulated tool result falls back to the seed's canned result;
an unusable next-turn reply ends the conversation (both recorded).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from inspect_ai.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    Model,
    model_roles,
)
from inspect_ai.solver import Generate, Solver, TaskState, solver
from inspect_ai.tool import ToolCall, ToolCallError, ToolDef, ToolParams

from msm_eval.errors import MsmEvalError
from msm_eval.scenarios import missing_fixtures, render_tool_result
from msm_eval.transcript import extract_json_object, render_prompt, render_transcript

logger = logging.getLogger(__name__)
"""Progress lines (one per target turn), shown by `inspect eval ... --log-level info`."""

DEFAULT_INVESTIGATOR_TURNS = 3
ROLLOUT_MODES = ("investigator", "static", "static_after_investigator_failure")
"""How a sample was played (`metadata["rollout_mode"]`): the investigator built the world; the seed's
static parts were played because no investigator is bound; or they were played because the
investigator could not build a usable world (its reason in `metadata["rollout_reason"]`)."""
TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class ScenarioProblem(ValueError):
    """Investigator output that cannot be used (the text is sent back as feedback)."""


# ----------------------------------------------------------------------------- tools


def tool_def(spec: Mapping[str, Any]) -> ToolDef:
    """A target-facing tool from a `{name, description, parameters}` dict; it is never executed."""
    name = str(spec["name"])

    async def execute(**arguments: Any) -> str:
        raise RuntimeError(f"simulated tool '{name}' must be answered by the rollout, not executed")

    schema = dict(spec.get("parameters") or {})
    params = ToolParams.model_validate({"type": "object", "properties": schema.get("properties") or {},
                                        "required": list(schema.get("required") or [])})
    return ToolDef(execute, name=name, description=str(spec.get("description") or name), parameters=params)


def tool_problem(spec: Mapping[str, Any]) -> str | None:
    """What inspect would reject in a tool spec when the eval runs (e.g. a parameter without a
    description), or None. Runs inspect's own conversion, so validation and the run agree."""
    try:
        ToolDef(tool_def(spec).as_tool())
    except Exception as exc:  # noqa: BLE001 - pydantic or inspect's ValueError: both mean "rejected"
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def validate_tools(raw: Any) -> list[dict[str, Any]]:
    """Check investigator-built tool specs; raises `ScenarioProblem` naming the first bad one."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ScenarioProblem("'tools' must be a list of objects")
    tools: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ScenarioProblem(f"tools[{index}] must be an object")
        name = item.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise ScenarioProblem(f"tools[{index}].name must be a snake_case identifier, got {name!r}")
        if name in seen:
            raise ScenarioProblem(f"tool name '{name}' is used twice")
        seen.add(name)
        parameters = item.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, Mapping) or not isinstance(parameters.get("properties", {}), Mapping):
            raise ScenarioProblem(f"tools[{index}].parameters must be a JSON schema object with 'properties'")
        spec = {"name": name, "description": str(item.get("description") or name),
                "parameters": {"type": "object", "properties": dict(parameters.get("properties") or {}),
                               "required": list(parameters.get("required") or [])}}
        problem = tool_problem(spec)
        if problem:
            raise ScenarioProblem(f"tools[{index}] ('{name}') would be rejected by the eval: {problem} "
                                  "(give every parameter a 'type' and a 'description')")
        tools.append(spec)
    return tools


def scenario_validator(fixtures: Mapping[str, str] | None) -> Any:
    """`validate_scenario` plus the check that the target-visible world holds every fixture verbatim."""

    def validate(payload: Mapping[str, Any] | None) -> dict[str, Any]:
        scenario = validate_scenario(payload)
        if fixtures:
            world = "\n".join([scenario["system"], scenario["first_message"],
                               *(f"{t['name']} {t['description']}" for t in scenario["tools"])])
            missing = missing_fixtures(fixtures, world)
            if missing:
                raise ScenarioProblem(
                    "the system prompt and first message must contain these fixed facts exactly as written, "
                    "and they are missing: " + "; ".join(f"{name} = {fixtures[name]!r}" for name in missing))
        return scenario

    return validate


def validate_scenario(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check an investigator scenario (`system`, `first_message`, `tools`, `notes`)."""
    if payload is None:
        raise ScenarioProblem("no JSON object found in the reply")
    system, first = payload.get("system"), payload.get("first_message")
    if not isinstance(system, str) or not system.strip():
        raise ScenarioProblem("'system' must be a non-empty string (the target's system prompt)")
    if not isinstance(first, str) or not first.strip():
        raise ScenarioProblem("'first_message' must be a non-empty string")
    return {"system": system.strip(), "first_message": first.strip(), "tools": validate_tools(payload.get("tools")),
            "notes": str(payload.get("notes") or "")}


# ----------------------------------------------------------------------------- investigator calls


async def ask_json(model: Model, prompt: str, max_retries: int, validate: Any,
                   log: list[dict[str, Any]], step: str) -> Any:
    """Ask the investigator for a JSON object, validating it; None after `max_retries` failed retries."""
    messages: list[Any] = [ChatMessageSystem(content=render_prompt("investigator_system.j2")),
                           ChatMessageUser(content=prompt)]
    for attempt in range(max_retries + 1):
        output = await model.generate(messages)
        text = output.completion
        try:
            value = validate(extract_json_object(text))
        except ScenarioProblem as exc:
            log.append({"step": step, "attempt": attempt + 1, "problem": str(exc), "raw": text[:2000]})
            messages = messages[:2] + [ChatMessageAssistant(content=text[:2000] or "(empty reply)"),
                                       ChatMessageUser(content=render_prompt("investigator_retry.j2",
                                                                             problem=str(exc)))]
            continue
        payload = extract_json_object(text) or {}
        log.append({"step": step, "attempt": attempt + 1, "reasoning": payload.get("reasoning") or payload.get("notes"),
                    "raw": text[:4000]})
        return value
    return None


def _validate_tool_result(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    if payload is None or not isinstance(payload.get("result"), str | int | float):
        raise ScenarioProblem("reply with {\"result\": \"<text the tool returns>\", \"is_error\": false}")
    return {"result": str(payload["result"]), "is_error": bool(payload.get("is_error", False))}


def _validate_turn(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    if payload is None:
        raise ScenarioProblem("no JSON object found in the reply")
    end = bool(payload.get("end", False))
    message = payload.get("message")
    if not end and (not isinstance(message, str) or not message.strip()):
        raise ScenarioProblem("give a non-empty 'message', or set \"end\": true")
    return {"end": end, "message": (message or "").strip() if isinstance(message, str) else ""}


# ----------------------------------------------------------------------------- the solver


def _investigator_model() -> Model | None:
    bound = model_roles().get("investigator")
    if isinstance(bound, list):
        return bound[0] if bound else None
    return bound


def _turn_budget(requested: int | None, metadata: Mapping[str, Any], static_turns: int | None) -> int:
    seed_turns = metadata.get("max_turns")
    if requested is not None:
        budget = int(requested)
    elif seed_turns:
        budget = int(seed_turns)
    else:
        budget = static_turns if static_turns is not None else DEFAULT_INVESTIGATOR_TURNS
    if budget < 1:
        raise MsmEvalError(f"max_turns must be at least 1, got {budget}", field="max_turns")
    return budget


def _system_prompt(system: str | None, spec_text: str | None) -> str | None:
    if spec_text:
        return render_prompt("target_spec_context.j2", spec_text=spec_text, system=system or "")
    return system


def _error_tool_message(call: ToolCall, message: str) -> ChatMessageTool:
    return ChatMessageTool(content="", tool_call_id=call.id, function=call.function,
                           error=ToolCallError(type="parsing", message=message))  # a type inspect accepts


@solver
def rollout(max_turns: int | None = None, spec_text: str | None = None, max_tool_rounds: int = 6,
            max_retries: int = 2, system_suffix: str | None = None,
            conditions: dict[str, str] | None = None) -> Solver:
    """Play the sample's scenario against the target (static or investigator-driven, see module docstring).

    Args:
        max_turns: target turns (default: the seed's `max_turns`; static runs also stop when the
            seed's follow-ups run out; investigator runs default to 3).
        spec_text: when given, the spec is put at the top of the target's system prompt.
        max_tool_rounds: simulated tool-call rounds allowed inside one target turn.
        max_retries: retries for malformed investigator output.
        system_suffix: text appended to the target's system prompt in either mode (the task
            switches of `agentic_misalignment`: the no-leverage instruction, the framing).
        conditions: extra conditions recorded in the sample's `metadata["conditions"]` (the
            switches, so results get `cond_<name>` columns for them).
    """

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        metadata = dict(state.metadata or {})
        investigator = _investigator_model()
        log: list[dict[str, Any]] = []
        record: dict[str, Any] = {"mode": "investigator" if investigator else "static", "log": log}
        scenario: dict[str, Any] | None = None
        fixtures = {str(k): str(v) for k, v in (metadata.get("fixtures") or {}).items()}
        if investigator is not None:
            prompt = render_prompt("investigator_scenario.j2", instructions=metadata.get("instructions") or
                                   state.input_text, seed_tools=metadata.get("tools") or [],
                                   spec_context=spec_text or "", fixtures=fixtures)
            scenario = await ask_json(investigator, prompt, max_retries, scenario_validator(fixtures), log,
                                      "scenario")
            if scenario is None:
                problems = [entry["problem"] for entry in log if entry.get("step") == "scenario" and "problem" in entry]
                reason = (f"investigator output unusable after {max_retries + 1} attempt(s)"
                          + (f" (last problem: {problems[-1]})" if problems else ""))
                if metadata.get("system") is not None and metadata.get("user"):
                    record["fallback"] = reason + "; played the seed's static scenario"
                    record["mode"] = "static_after_investigator_failure"
                    state.metadata["rollout_reason"] = record["fallback"]
                    investigator = None
                else:
                    raise MsmEvalError(f"the investigator could not build a scenario for sample '{state.sample_id}': "
                                       f"{reason}, and the seed has no static "
                                       "## System / ## User parts to fall back on", field="investigator",
                                       hint="see the sample store 'investigator' log; try a stronger investigator")
            else:
                record["scenario"] = {k: v for k, v in scenario.items() if k != "notes"}
                record["notes"] = scenario["notes"]

        if scenario is not None:
            system, first, tool_specs = scenario["system"], scenario["first_message"], scenario["tools"]
            seed_tools = {t["name"]: t for t in metadata.get("tools") or []}
            tool_specs = tool_specs or list(seed_tools.values())
            followups: list[str] = []
            budget = _turn_budget(max_turns, metadata, None)
        else:
            system, first = metadata.get("system"), metadata.get("user")
            if not first:
                raise MsmEvalError(f"sample '{state.sample_id}' has no static ## User part, so it needs an "
                                   "investigator", field="model_roles.investigator",
                                   hint="bind one with --model-role investigator=<model>, or select seeds that "
                                        "have ## System and ## User parts")
            tool_specs = list(metadata.get("tools") or [])
            seed_tools = {t["name"]: t for t in tool_specs}
            followups = list(metadata.get("followups") or [])
            budget = min(_turn_budget(max_turns, metadata, 1 + len(followups)), 1 + len(followups))

        if system_suffix:
            system = f"{system}\n\n{system_suffix}" if system else system_suffix
        if conditions:
            state.metadata["conditions"] = {**(state.metadata.get("conditions") or {}), **conditions}
        system_text = _system_prompt(system, spec_text)
        system_meta = {"msm_spec_in_context": True, "msm_system_without_spec": system or ""} if spec_text else None
        state.messages = ([ChatMessageSystem(content=system_text, metadata=system_meta)] if system_text else []) + \
            [ChatMessageUser(content=first, metadata={"msm_source": "investigator" if scenario else "seed"})]
        state.tools = [tool_def(spec) for spec in tool_specs]
        specs_by_name = {spec["name"]: spec for spec in tool_specs}

        async def answer(call: ToolCall) -> ChatMessageTool:
            spec = specs_by_name.get(call.function)
            if spec is None:
                return _error_tool_message(call, f"unknown tool '{call.function}'; available: "
                                                 + ", ".join(sorted(specs_by_name)))
            if scenario is not None and investigator is not None:
                prompt = render_prompt("investigator_tool.j2", notes=scenario["notes"], tool=spec, fixtures=fixtures,
                                       arguments=call.arguments, transcript=render_transcript(state.messages))
                simulated = await ask_json(investigator, prompt, max_retries, _validate_tool_result, log,
                                           f"tool:{call.function}")
                if simulated is not None:
                    if simulated["is_error"]:
                        return ChatMessageTool(content="", tool_call_id=call.id, function=call.function,
                                               error=ToolCallError(type="unknown", message=simulated["result"]))
                    return ChatMessageTool(content=simulated["result"], tool_call_id=call.id, function=call.function)
                record.setdefault("tool_fallbacks", []).append(call.function)
                canned = seed_tools.get(call.function, spec)
                return ChatMessageTool(content=render_tool_result(canned, call.arguments, metadata),
                                       tool_call_id=call.id, function=call.function)
            return ChatMessageTool(content=render_tool_result(spec, call.arguments, metadata),
                                   tool_call_id=call.id, function=call.function)

        turns_done = 0
        end_reason = "turn budget used"
        for turn in range(budget):
            for tool_round in range(max_tool_rounds + 1):
                state = await generate(state, tool_calls="none")
                calls = state.output.message.tool_calls if state.output.choices else None
                if not calls or state.completed:
                    break
                for call in calls:
                    state.messages.append(await answer(call))
                if tool_round == max_tool_rounds:
                    record["tool_round_limit"] = turn + 1
            turns_done = turn + 1
            logger.info("msm-eval: sample %s epoch %s: target turn %d/%d done", state.sample_id, state.epoch,
                        turns_done, budget)
            if state.completed:
                end_reason = "message or token limit reached"
                break
            if turn + 1 >= budget:
                break
            if scenario is not None and investigator is not None:
                prompt = render_prompt("investigator_turn.j2", turn=turn + 1, max_turns=budget,
                                       instructions=metadata.get("instructions") or "", notes=scenario["notes"],
                                       fixtures=fixtures,
                                       transcript=render_transcript(state.messages))
                decision = await ask_json(investigator, prompt, max_retries, _validate_turn, log, f"turn:{turn + 1}")
                if decision is None:
                    end_reason = "investigator reply unusable; conversation ended"
                    break
                if decision["end"]:
                    end_reason = "investigator ended the scenario (decisive choice made)"
                    break
                state.messages.append(ChatMessageUser(content=decision["message"],
                                                      metadata={"msm_source": "investigator"}))
            else:
                state.messages.append(ChatMessageUser(content=followups[turn], metadata={"msm_source": "seed"}))
        state.metadata["rollout_mode"] = record["mode"]
        if record["mode"] != "static" or log or set(record) - {"mode", "log"}:   # a plain static play: nothing to record
            state.store.set("investigator", record)
        state.store.set("rollout", {"turns": turns_done, "budget": budget, "end_reason": end_reason,
                                    "mode": record["mode"], "tools": sorted(specs_by_name)})
        return state

    return solve


def tool_calls_of(messages: Sequence[Any]) -> list[tuple[str, ToolCall]]:
    """(message id, call) for every tool call the target made, in order."""
    found = []
    for message in messages:
        if message.role == "assistant":
            for call in message.tool_calls or []:
                found.append((message.id, call))
    return found

