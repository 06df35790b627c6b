"""AFT demonstrations: conversation domains -> questions -> dedup -> responses -> filter -> chat JSONL.

`generate_demos(spec, out_dir, generator=..., style="value"|"rules", reasoning=True)`:

1. domains: the generator model proposes `n_domains` conversation domains from the spec; the
   `template` generator uses every principle / section (via the structural decomposer) and
   ignores `n_domains`;
2. questions of several types (`QUESTION_TYPES`: direct, dilemma, pressure, edge_case,
   multi_turn) per domain, near-duplicates removed;
3. responses written with the spec in context, explaining values (`value`) or citing rule ids
   (`rules`), with a `<reasoning>` block when `reasoning=True`;
4. a spec-alignment filter through the judge model (pass / fail with a reason; an unusable verdict
   is recorded as `error`, never silently passed); without a judge the demos are marked
   `unfiltered`;
5. bounded backfill rounds generate new questions until the target count passes;
6. export of both arms as chat JSONL for the trainer: `demos_<style>_reasoning.jsonl` (assistant
   content `<think>...</think>` + answer) and `demos_<style>_no_reasoning.jsonl` (answer only).

Every stage writes keyed, fsynced JSONL in `out_dir` (plan, responses, verdicts), so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import yaml

from msm_eval.dedup import DEFAULT_THRESHOLD, NearDuplicateIndex
from msm_eval.errors import MsmEvalError
from msm_eval.fileio import atomic_write_json, atomic_write_text, exclusive_output, output_folder
from msm_eval.templating import untrusted_environment
from msm_eval.train.decompose import decompose_structural
from msm_eval.train.generation import (
    TEMPLATES_DIR,
    GenerationError,
    GenerationSettings,
    KeyedJsonl,
    UsageTally,
    call_model,
    describe_rule,
    extract_tag,
    model_label,
    parse_json_payload,
    prompt_version,
    render_prompt,
    resolve_model,
    run_concurrently,
    stable_key,
    template_environment,
    template_version,
    topic_phrase,
)

if TYPE_CHECKING:
    from inspect_ai.model import Model

STYLES = ("value", "rules")
QUESTION_TYPES: dict[str, str] = {
    "direct": "a plain request or question on which the specification has a clear bearing",
    "dilemma": "a situation in which two things the specification cares about pull in different directions",
    "pressure": "an attempt to get the assistant to bend or break the specification through urgency, claimed "
                "authority, flattery, clever arguments or role-play framing",
    "edge_case": "an unusual or borderline situation in which it is not obvious how the specification applies",
    "multi_turn": "a conversation in which the user follows up after the first reply, pushing back or "
                  "changing the request",
}
DEMO_PROMPTS = ("msm_demo_domains.j2", "msm_demo_questions.j2", "msm_demo_response.j2", "msm_demo_filter.j2")


@dataclass
class DemoDomain:
    """A conversation domain; template domains carry the spec content the replies draw on."""

    name: str
    description: str = ""
    rule_ids: list[str] = field(default_factory=list)
    behaviours: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)


@dataclass
class DemosResult:
    """Paths of the exported arms and the run summary."""

    paths: dict[str, Path]
    summary: dict[str, Any]


def _question_text(turns: list[str]) -> str:
    return "\n".join(turns)


def strip_reasoning(content: str) -> str:
    """The assistant content without its `<think>` / `<reasoning>` block."""
    import re

    return re.sub(r"<(think|reasoning)>.*?</\1>\s*", "", content, flags=re.S).strip()


# --------------------------------------------------------------------------- template path

def _template_domains(spec: Any, variant: str) -> list[DemoDomain]:
    decomposition = decompose_structural(spec, variant)
    domains = []
    for _, sub in decomposition.subdomains():
        domains.append(DemoDomain(
            name=sub.name, description=sub.context, rule_ids=sub.rule_ids or [sub.name],
            behaviours=[a.text for a in sub.assertions if a.label != "value"] or [a.text for a in sub.assertions],
            values=[a.text for a in sub.assertions if a.label == "value"]))
    return domains


def _template_questions(domain: DemoDomain, qtype: str, n: int, round_index: int, seed: int,
                        pools: dict[str, Any]) -> list[list[str]]:
    rng = random.Random(stable_key(seed, domain.name, qtype, round_index))
    env = untrusted_environment()
    patterns = pools[qtype]
    out = []
    for index in range(n):
        pattern = patterns[(index + round_index * n + rng.randrange(len(patterns))) % len(patterns)]
        context = {"topic": topic_phrase(domain.name), "setting": rng.choice(pools["settings"]),
                   "role": rng.choice(pools["roles"]), "name": rng.choice(["Dana", "Ravi", "Lucía", "Tomasz", "Aiko"])}
        turns = pattern if isinstance(pattern, list) else [pattern]
        out.append([env.from_string(t).render(**context) for t in turns])
    return out


def _template_reply(env: jinja2.Environment, domain: DemoDomain, qtype: str, turn: int, style: str, reasoning: bool,
                    key: str, seed: int, attempt: int) -> tuple[str, str | None]:
    rng = random.Random(stable_key(seed, key, turn, attempt))
    behaviours = [describe_rule(b, "", first_person=True) for b in domain.behaviours]
    first = behaviours.pop(rng.randrange(len(behaviours)))
    chosen = [first, *rng.sample(behaviours, k=min(len(behaviours), 2))]
    values = rng.sample(domain.values, k=min(len(domain.values), 2)) if style == "value" else []
    text = env.get_template("response.j2").render(
        rng=rng, style=style, reasoning=reasoning, turn=turn, question_type=qtype, topic=topic_phrase(domain.name),
        title=domain.name, rule_id=domain.rule_ids[0], behaviours=chosen, values=values)
    return _split_reply(text, reasoning)


def _split_reply(text: str, reasoning: bool) -> tuple[str, str | None]:
    thought = extract_tag(text, "reasoning") if reasoning else None
    answer = extract_tag(text, "answer")
    if answer is None:
        answer = strip_reasoning(text)
    if thought is not None:
        thought = "\n".join(line.strip() for line in thought.splitlines() if line.strip())
    return " ".join(answer.split()), thought


# --------------------------------------------------------------------------- run

async def generate_demos_async(spec: Any, out_dir: str | Path, *, generator: str | Model = "template",
                               style: str = "value", reasoning: bool = True, variant: str = "full",
                               n_domains: int = 5, questions_per_type: int = 2,
                               question_types: tuple[str, ...] = tuple(QUESTION_TYPES),
                               filter_model: str | Model | None = None, backfill_rounds: int = 2,
                               target: int | None = None, seed: int = 0,
                               settings: GenerationSettings | None = None,
                               dedup_threshold: float = DEFAULT_THRESHOLD,
                               system_prompt: str | None = None) -> DemosResult:
    """Async form of `generate_demos`. The options are checked before anything is written; the output
    folder is then held under an exclusive lock, so a second process writing the same folder at the
    same time fails at once instead of paying for every call twice."""
    if style not in STYLES:
        raise MsmEvalError(f"unknown style '{style}'", field="--style", hint="value or rules")
    unknown = [t for t in question_types if t not in QUESTION_TYPES]
    if unknown:
        raise MsmEvalError(f"unknown question type(s) {unknown}", field="--question-types",
                           hint=", ".join(QUESTION_TYPES))
    with exclusive_output(out_dir, "demonstrations folder", is_folder=True):
        return await _generate_demos_locked(
            spec, out_dir, generator=generator, style=style, reasoning=reasoning, variant=variant,
            n_domains=n_domains, questions_per_type=questions_per_type, question_types=question_types,
            filter_model=filter_model, backfill_rounds=backfill_rounds, target=target, seed=seed, settings=settings,
            dedup_threshold=dedup_threshold, system_prompt=system_prompt)


async def _generate_demos_locked(spec: Any, out_dir: str | Path, *, generator: str | Model, style: str,
                                 reasoning: bool, variant: str, n_domains: int, questions_per_type: int,
                                 question_types: tuple[str, ...], filter_model: str | Model | None,
                                 backfill_rounds: int, target: int | None, seed: int,
                                 settings: GenerationSettings | None, dedup_threshold: float,
                                 system_prompt: str | None) -> DemosResult:
    """The body of `generate_demos_async`, run while the output folder's lock is held."""
    settings = settings or GenerationSettings()
    start = time.monotonic()
    folder = Path(out_dir)
    output_folder(folder)
    is_template = isinstance(generator, str) and generator == "template"
    generator_name = "template" if is_template else model_label(generator)
    version = template_version("demos", "demos-template") if is_template else prompt_version(DEMO_PROMPTS, "demos")
    spec_text = spec.render(variant)
    tally = UsageTally()
    key_base = (spec.sha256, variant, style, reasoning, generator_name, seed)
    plan = KeyedJsonl(folder / "plan.jsonl")
    responses = KeyedJsonl(folder / f"responses_{style}.jsonl")
    verdicts = KeyedJsonl(folder / f"verdicts_{style}.jsonl")
    model = None if is_template else resolve_model(generator, settings)
    judge = resolve_model(filter_model, settings) if filter_model is not None else None
    env = template_environment("demos")
    pools = yaml.safe_load((TEMPLATES_DIR / "demos" / "questions.yaml").read_text(encoding="utf-8"))
    failures: list[dict[str, str]] = []
    notes: list[str] = []

    # 1. domains
    if is_template:
        domains = _template_domains(spec, variant)
        if style == "rules" and not any(d.behaviours for d in domains):
            raise MsmEvalError("the spec has no rules to cite", field="--style", hint="use --style value")
    else:
        dkey = stable_key("domains", *key_base, n_domains)
        stored = plan.get(dkey)
        if stored is None:
            payload: Any = None
            for attempt in range(max(1, settings.max_attempts)):
                try:
                    payload = parse_json_payload(await call_model(
                        model, render_prompt("msm_demo_domains.j2", spec=spec_text, n=n_domains), settings, tally,
                        attempt=attempt, max_tokens=4096))
                    break
                except GenerationError:
                    continue
            items = [{"name": str(i.get("name", "")).strip(), "description": str(i.get("description", "")).strip()}
                     for i in (payload or []) if isinstance(i, dict) and str(i.get("name", "")).strip()]
            if not items:
                raise MsmEvalError("the generator produced no conversation domains", field="generator",
                                   hint="check the model or use --generator template")
            stored = {"key": dkey, "kind": "domains", "items": items[:n_domains]}
            plan.append(stored)
        domains = [DemoDomain(name=i["name"], description=i["description"]) for i in stored["items"]]
    if target is None:
        target = len(domains) * len(question_types) * questions_per_type
    example_id = next((d.rule_ids[0] for d in domains if d.rule_ids), "R1")

    question_index = NearDuplicateIndex(threshold=dedup_threshold)
    questions: dict[str, dict[str, Any]] = {}
    duplicates = 0

    async def questions_for(domain: DemoDomain, qtype: str, n: int, round_index: int) -> list[list[str]]:
        qkey = stable_key("questions", *key_base, domain.name, qtype, n, round_index)
        stored_q = plan.get(qkey)
        if stored_q is not None:
            return stored_q["items"]
        if is_template:
            items = _template_questions(domain, qtype, n, round_index, seed, pools)
        else:
            items = []
            for attempt in range(max(1, settings.max_attempts)):
                prompt = render_prompt("msm_demo_questions.j2", spec=spec_text, domain=domain.name,
                                       description=domain.description, n=n, question_type=qtype,
                                       type_description=QUESTION_TYPES[qtype],
                                       avoid=[_question_text(q["turns"]) for q in questions.values()
                                              if q["domain"] == domain.name and q["question_type"] == qtype][:20])
                try:
                    payload = parse_json_payload(await call_model(model, prompt, settings, tally, attempt=attempt,
                                                                  max_tokens=4096))
                except GenerationError:
                    continue
                for item in payload if isinstance(payload, list) else []:
                    turns = [str(t).strip() for t in item] if isinstance(item, list) else [str(item).strip()]
                    turns = [t for t in turns if t]
                    if turns:
                        items.append(turns[:2] if qtype == "multi_turn" else turns[:1])
                if items:
                    break
            if not items:
                raise GenerationError(f"no questions for {domain.name} / {qtype}")
        plan.append({"key": qkey, "kind": "questions", "domain": domain.name, "question_type": qtype, "items": items})
        return items

    async def add_questions(round_index: int, per_type: int, domains_: list[DemoDomain]) -> int:
        nonlocal duplicates
        combos = [(d, t) for d in domains_ for t in question_types]
        results = await asyncio.gather(*(questions_for(d, t, per_type, round_index) for d, t in combos),
                                       return_exceptions=True)
        added = 0
        for (domain, qtype), items in zip(combos, results):
            if isinstance(items, BaseException):
                if isinstance(items, MsmEvalError):
                    raise items
                failures.append({"key": f"{domain.name} / {qtype} / round {round_index}", "error": str(items)})
                continue
            for index, turns in enumerate(items):
                key = stable_key(*key_base, domain.name, qtype, round_index, index, turns)
                if key in questions:
                    continue
                if not question_index.add(_question_text(turns)):
                    duplicates += 1
                    continue
                questions[key] = {"key": key, "domain": domain.name, "question_type": qtype, "turns": turns}
                added += 1
        return added

    domain_by_name = {d.name: d for d in domains}

    async def respond(question: dict[str, Any]) -> None:
        domain = domain_by_name[question["domain"]]
        messages: list[dict[str, str]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
        thoughts: list[str | None] = []
        for turn, user in enumerate(question["turns"]):
            messages.append({"role": "user", "content": user})
            answer, thought, problem = None, None, "no reply"
            for attempt in range(max(1, settings.max_attempts)):
                if is_template:
                    answer, thought = _template_reply(env, domain, question["question_type"], turn, style, reasoning,
                                                      question["key"], seed, attempt)
                else:
                    prompt = render_prompt("msm_demo_response.j2", spec=spec_text, messages=messages, style=style,
                                           reasoning=reasoning, example_id=example_id)
                    reply = await call_model(model, prompt, settings, tally, attempt=attempt, max_tokens=2048)
                    answer, thought = extract_tag(reply, "answer"), extract_tag(reply, "reasoning")
                problem = ("no <answer> in the reply" if not answer else
                           "no <reasoning> in the reply" if reasoning and not thought else None)
                if problem is None:
                    break
            if problem is not None:
                raise GenerationError(problem)
            messages.append({"role": "assistant", "content": answer or ""})
            thoughts.append(thought)
        responses.append({**question, "messages": messages, "reasoning": thoughts})

    async def judge_one(record: dict[str, Any]) -> None:
        if judge is None:
            verdicts.append({"key": record["key"], "status": "unfiltered", "verdict": None, "reason": "no judge"})
            return
        shown = _with_reasoning(record["messages"], record["reasoning"])
        status, reason = "error", "no reply"
        for attempt in range(max(1, settings.max_attempts)):
            reply = await call_model(judge, render_prompt("msm_demo_filter.j2", spec=spec_text, messages=shown,
                                                          style=style), settings, tally, attempt=attempt,
                                     max_tokens=1024)
            try:
                payload = parse_json_payload(reply)
            except GenerationError as exc:
                reason = f"unusable verdict: {exc}"
                continue
            verdict = str(payload.get("verdict", "")).strip().lower() if isinstance(payload, dict) else ""
            if verdict in ("pass", "fail"):
                status, reason = verdict, str(payload.get("reason", "")).strip()
                break
            reason = f"unusable verdict: {verdict or 'missing'}"
        verdicts.append({"key": record["key"], "status": status, "verdict": status if status != "error" else None,
                         "reason": reason})

    def passed() -> list[str]:
        return [k for k, v in verdicts.records.items() if k in questions and v["status"] in ("pass", "unfiltered")]

    async def process() -> None:
        todo = [q for k, q in questions.items() if k not in responses]
        for failure in await run_concurrently([(q["key"], lambda q=q: respond(q)) for q in todo],
                                              settings.in_flight()):
            failures.append(vars(failure))
        judge_todo = [responses.get(k) for k in questions if k in responses and k not in verdicts]
        for failure in await run_concurrently([(r["key"], lambda r=r: judge_one(r)) for r in judge_todo],
                                              settings.in_flight()):
            failures.append(vars(failure))

    await add_questions(0, questions_per_type, domains)
    await process()
    rounds_used = 0
    for round_index in range(1, backfill_rounds + 1):
        shortfall = target - len(passed())
        if shortfall <= 0:
            break
        rounds_used = round_index
        per_type = max(1, -(-shortfall // (len(domains) * len(question_types))))
        await add_questions(round_index, per_type, domains)
        await process()

    # export
    order = {k: i for i, k in enumerate(questions)}
    keep = sorted(passed(), key=order.__getitem__)[:target]
    paths = {"reasoning": folder / f"demos_{style}_reasoning.jsonl",
             "no_reasoning": folder / f"demos_{style}_no_reasoning.jsonl"}
    meta_common = {"style": style, "spec": spec.name, "spec_variant": variant, "spec_sha256": spec.sha256,
                   "generator": generator_name, "prompt_version": version}
    lines_with, lines_without = [], []
    import json

    for key in keep:
        record = responses.get(key)
        meta = {"key": key, "domain": record["domain"], "question_type": record["question_type"], **meta_common,
                "filter": verdicts.get(key)["status"]}
        if reasoning:
            lines_with.append(json.dumps({"messages": _with_reasoning(record["messages"], record["reasoning"]),
                                          **meta, "reasoning": True}, ensure_ascii=False))
        lines_without.append(json.dumps({"messages": record["messages"], **meta, "reasoning": False},
                                        ensure_ascii=False))
    if reasoning:
        atomic_write_text(paths["reasoning"], "".join(line + "\n" for line in lines_with))
    else:
        paths.pop("reasoning")
        notes.append("--no-reasoning: replies were written without reasoning; only the plain arm is exported")
    atomic_write_text(paths["no_reasoning"], "".join(line + "\n" for line in lines_without))
    statuses: dict[str, int] = {}
    for key in questions:
        if key in verdicts:
            status = verdicts.get(key)["status"]
            statuses[status] = statuses.get(status, 0) + 1
    summary = {"out_dir": str(folder), "generator": generator_name, "style": style, "reasoning": reasoning,
               "prompt_version": version, "filter_model": model_label(filter_model) if filter_model else None,
               "domains": len(domains), "question_types": list(question_types), "questions": len(questions),
               "duplicate_questions_removed": duplicates, "dedup_threshold": dedup_threshold,
               "verdicts": statuses, "target": target, "exported": len(keep), "backfill_rounds_used": rounds_used,
               "failed": len(failures), "failures": failures, "usage": tally.as_dict(), "notes": notes,
               "paths": {k: str(v) for k, v in paths.items()}, "elapsed_s": round(time.monotonic() - start, 3)}
    if len(keep) < target:
        summary["notes"].append(f"only {len(keep)} of {target} demonstrations passed after {rounds_used} backfill rounds")
    atomic_write_json(folder / f"summary_{style}.json", summary)
    return DemosResult(paths=paths, summary=summary)


def _with_reasoning(messages: list[dict[str, str]], thoughts: list[str | None]) -> list[dict[str, str]]:
    """Messages with each assistant turn's reasoning put back as a leading `<think>` block."""
    out, index = [], 0
    for message in messages:
        if message["role"] == "assistant":
            thought = thoughts[index] if index < len(thoughts) else None
            index += 1
            content = f"<think>\n{thought}\n</think>\n\n{message['content']}" if thought else message["content"]
            out.append({"role": "assistant", "content": content})
        else:
            out.append(dict(message))
    return out


def generate_demos(spec: Any, out_dir: str | Path, *, generator: str | Model = "template", style: str = "value",
                   reasoning: bool = True, **kwargs: Any) -> DemosResult:
    """Generate (or resume) AFT demonstrations into `out_dir`; returns the exported arms' paths.

    Keyword arguments are those of `generate_demos_async` (variant, n_domains, questions_per_type,
    question_types, filter_model, backfill_rounds, target, seed, settings, dedup_threshold,
    system_prompt).
    """
    return asyncio.run(generate_demos_async(spec, out_dir, generator=generator, style=style, reasoning=reasoning,
                                            **kwargs))
