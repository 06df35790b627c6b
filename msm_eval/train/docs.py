"""Synthetic MSM documents: per subdomain, document types x ideas -> one document each.

`generate_documents(decomposition, spec, out_path, generator=...)` writes a JSONL corpus with one
record per document: `text, domain, subdomain, doc_type, idea, spec_sha256, generator,
prompt_version` plus `key`, `arm`, `spec`, `spec_variant`, `attempts`.

- `generator="template"` renders documents offline from the decomposition through the Jinja2
  genre templates in `train/templates/docs/` (memos, forum threads, lecture notes, incident
  reviews, interviews, FAQs, news features, textbook sidebars, postmortems, advice columns), with
  seeded variation of names, settings, openings and which assertions each document carries.
- Any other generator is an inspect model: it proposes document types per subdomain, ideas per
  type (both kept in `<out>.plan.jsonl` so a rerun reuses them), then writes each document with
  the spec in context (`msm_eval/prompts/msm_document.j2`).

Arms: `value` documents explain the behaviour and the value behind it; `rules` documents cite
rule ids instead and carry no value text. The run is resumable by key (append + fsync, torn last
line repaired); near-duplicates (Jaccard of word 5-grams >= threshold) and documents failing the
length / format check are regenerated up to `max_attempts` times, then written to
`<out>.rejects.jsonl`. A summary goes to `<out>.summary.json`.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from msm_eval.dedup import DEFAULT_THRESHOLD, NearDuplicateIndex, near_duplicate_indices
from msm_eval.errors import MsmEvalError
from msm_eval.fileio import atomic_write_json, exclusive_output
from msm_eval.train.decompose import Decomposition, Domain, Subdomain
from msm_eval.train.generation import (
    TEMPLATES_DIR,
    CostEstimate,
    GenerationError,
    GenerationSettings,
    KeyedJsonl,
    StageEstimate,
    UsageTally,
    call_model,
    describe_rule,
    estimate_tokens,
    extract_tag,
    model_label,
    parse_json_payload,
    prompt_version,
    read_jsonl_numbered,
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

ARMS = ("value", "rules")
DOC_PROMPTS = ("msm_doc_types.j2", "msm_doc_ideas.j2", "msm_document.j2")
REQUIRED_FIELDS = ("text", "domain", "subdomain", "doc_type", "idea", "spec_sha256", "generator", "prompt_version")
DEFAULT_MODEL_NAME = "Meridian"
"""Name the documents give the model; keep it identical to the name used in evaluation prompts."""

MIN_WORDS_TEMPLATE = 50
MIN_WORDS_MODEL = 200
_PLACEHOLDER = re.compile(r"\[(?:[A-Z][A-Za-z ]{0,30})\]|\{\{|\{%|\{[a-z_]+\}|<\/?(?:content|scratchpad)>")
_REFUSAL = re.compile(r"^\s*(?:I'm sorry|I am sorry|I can(?:'|no)t help|I cannot (?:write|create|help))", re.I)


@dataclass
class DocsSummary:
    """What a documents run did; also written to `<out>.summary.json`."""

    out: str
    generator: str
    arm: str
    prompt_version: str
    planned: int = 0
    written: int = 0
    resumed: int = 0
    rejected: int = 0
    failed: int = 0
    total_in_corpus: int = 0
    dedup_threshold: float = DEFAULT_THRESHOLD
    dedup_ngram: int = 5
    near_duplicate_hits: int = 0
    format_failures: int = 0
    by_domain: dict[str, int] = field(default_factory=dict)
    by_doc_type: dict[str, int] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    dry_run: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return dict(vars(self))


def sidecar(out_path: str | Path, kind: str) -> Path:
    """`corpus.jsonl` -> `corpus.<kind>.jsonl|json` next to it."""
    out = Path(out_path)
    suffix = ".json" if kind == "summary" else ".jsonl"
    return out.with_name(f"{out.stem}.{kind}{suffix}")


def check_document(text: str, min_words: int, max_words: int) -> str | None:
    """Why a document is unusable (None when fine): empty, too short/long, placeholders, refusal."""
    if not text or not text.strip():
        return "empty document (or no <content> block in the reply)"
    words = len(text.split())
    if words < min_words:
        return f"too short ({words} words < {min_words})"
    if words > max_words:
        return f"too long ({words} words > {max_words})"
    match = _PLACEHOLDER.search(text)
    if match:
        return f"placeholder or markup left in text: {match.group(0)!r}"
    if _REFUSAL.search(text):
        return "the generator refused"
    return None


# --------------------------------------------------------------------------- template generator

def _variation() -> dict[str, list[str]]:
    return yaml.safe_load((TEMPLATES_DIR / "docs" / "variation.yaml").read_text(encoding="utf-8"))


def template_genres() -> list[str]:
    """The genre template names available to the offline generator (file stems)."""
    return sorted(p.stem for p in (TEMPLATES_DIR / "docs").glob("*.j2"))


def genre_title(stem: str) -> str:
    """`forum_thread` -> `forum thread`."""
    return stem.replace("_", " ")


@dataclass
class _Job:
    key: str
    domain: Domain
    sub: Subdomain
    doc_type: str
    doc_type_description: str
    idea: str
    idea_index: int


def _split_assertions(sub: Subdomain) -> tuple[list[str], list[str]]:
    behaviours = [a.text for a in sub.assertions if a.label != "value"]
    values = [a.text for a in sub.assertions if a.label == "value"]
    return behaviours, values


def _render_template_doc(env: Any, job: _Job, arm: str, seed: int, attempt: int, pools: dict[str, list[str]],
                         model_name: str) -> str:
    rng = random.Random(stable_key(seed, job.key, attempt))
    behaviours, values = _split_assertions(job.sub)
    behaviours = [describe_rule(b, model_name) for b in behaviours]
    if not behaviours:  # value-only subdomain: in the value arm its values stand as the behaviour text
        behaviours = list(values)
    focal = behaviours[(job.idea_index + rng.randrange(len(behaviours))) % len(behaviours)]
    others = [b for b in behaviours if b != focal]
    chosen = [focal, *rng.sample(others, k=min(len(others), rng.randint(2, 4)))]
    value_pick = rng.sample(values, k=min(len(values), rng.randint(1, 3))) if arm == "value" and values else []
    people = [f"{rng.choice(pools['first_names'])} {rng.choice(pools['last_names'])}" for _ in range(4)]
    context = describe_rule(job.sub.context, model_name) if arm == "value" or job.sub.context not in values else focal
    rule_ids = job.sub.rule_ids or [job.sub.name]
    return env.get_template(f"{job.doc_type}.j2").render(
        rng=rng, arm=arm, model_name=model_name, domain=job.domain.name, subdomain=job.sub.name,
        topic=topic_phrase(job.sub.name),
        context=context, focal=focal, behaviours=chosen, values=value_pick, rule_ids=rule_ids, rule_id=rule_ids[0],
        people=people, role=rng.choice(pools["roles"]), org=rng.choice(pools["orgs"]),
        setting=job.idea, handles=rng.sample(pools["handles"], 3), publication=rng.choice(pools["publications"]),
        course=rng.choice(pools["courses"]),
    ).strip() + "\n"


def _template_jobs(decomposition: Decomposition, arm: str, n_types: int, n_ideas: int, seed: int,
                   key_base: tuple[Any, ...], notes: list[str]) -> list[_Job]:
    genres = template_genres()
    if n_types > len(genres):
        notes.append(f"template generator has {len(genres)} genres; --types {n_types} capped to {len(genres)}")
    pools = _variation()
    jobs: list[_Job] = []
    for domain, sub in decomposition.subdomains():
        behaviours, values = _split_assertions(sub)
        if arm == "rules" and not behaviours:
            notes.append(f"{domain.name} / {sub.name}: no behaviour assertions, nothing to write in the rules arm")
            continue
        rng = random.Random(stable_key(seed, domain.name, sub.name))
        for genre in rng.sample(genres, k=min(n_types, len(genres))):
            settings = rng.sample(pools["settings"], k=min(n_ideas, len(pools["settings"])))
            for index in range(n_ideas):
                idea = settings[index % len(settings)]
                key = stable_key(*key_base, domain.name, sub.name, genre, index)
                jobs.append(_Job(key, domain, sub, genre, genre_title(genre), idea, index))
    return jobs


# --------------------------------------------------------------------------- LLM generator

async def _llm_types(model: Model, settings: GenerationSettings, tally: UsageTally, plan: KeyedJsonl,
                     domain: Domain, sub: Subdomain, n_types: int, model_name: str, key_base: tuple[Any, ...]) -> list[dict[str, str]]:
    key = stable_key("types", *key_base, domain.name, sub.name, n_types)
    stored = plan.get(key)
    if stored:
        return stored["items"]
    types: list[dict[str, str]] = []
    seen: set[str] = set()
    for round_index in range(max(1, settings.max_attempts)):
        prompt = render_prompt("msm_doc_types.j2", domain=domain.name, subdomain=sub.name, context=sub.context,
                               assertions=sub.assertions, n=n_types - len(types), model_name=model_name,
                               avoid=[t["type"] for t in types])
        try:
            payload = parse_json_payload(await call_model(model, prompt, settings, tally, attempt=round_index,
                                                          max_tokens=2048))
        except GenerationError:
            continue
        for item in payload if isinstance(payload, list) else []:
            name = str(item.get("type", "")).strip() if isinstance(item, dict) else str(item).strip()
            if name and name.lower() not in seen and len(types) < n_types:
                seen.add(name.lower())
                types.append({"type": name, "description": str(item.get("description", "")).strip()
                              if isinstance(item, dict) else ""})
        if len(types) >= n_types:
            break
    if not types:
        raise GenerationError(f"no document types for {domain.name} / {sub.name}")
    plan.append({"key": key, "kind": "types", "domain": domain.name, "subdomain": sub.name, "items": types})
    return types


async def _llm_ideas(model: Model, settings: GenerationSettings, tally: UsageTally, plan: KeyedJsonl, spec_text: str,
                     domain: Domain, sub: Subdomain, doc_type: dict[str, str], n_ideas: int, model_name: str,
                     key_base: tuple[Any, ...]) -> list[str]:
    key = stable_key("ideas", *key_base, domain.name, sub.name, doc_type["type"], n_ideas)
    stored = plan.get(key)
    if stored:
        return stored["items"]
    ideas: list[str] = []
    for attempt in range(max(1, settings.max_attempts)):
        prompt = render_prompt("msm_doc_ideas.j2", spec=spec_text, domain=domain.name, subdomain=sub.name,
                               context=sub.context, assertions=sub.assertions, doc_type=doc_type["type"],
                               doc_type_description=doc_type.get("description", ""), n=n_ideas, model_name=model_name)
        try:
            payload = parse_json_payload(await call_model(model, prompt, settings, tally, attempt=attempt,
                                                          max_tokens=4096))
        except GenerationError:
            continue
        if isinstance(payload, list):
            ideas = list(dict.fromkeys(str(i).strip() for i in payload if str(i).strip()))[:n_ideas]
        if ideas:
            break
    if not ideas:
        raise GenerationError(f"no ideas for {domain.name} / {sub.name} / {doc_type['type']}")
    plan.append({"key": key, "kind": "ideas", "domain": domain.name, "subdomain": sub.name,
                 "doc_type": doc_type["type"], "items": ideas})
    return ideas


def _document_prompt(spec_text: str, job: _Job, arm: str, model_name: str, min_words: int, max_words: int) -> str:
    assertions = job.sub.assertions if arm == "value" else [a for a in job.sub.assertions if a.label != "value"]
    return render_prompt("msm_document.j2", spec=spec_text, model_name=model_name, domain=job.domain.name,
                         subdomain=job.sub.name, assertions=assertions or job.sub.assertions, doc_type=job.doc_type,
                         idea=job.idea, arm=arm, rule_ids=job.sub.rule_ids or [job.sub.name],
                         min_words=max(min_words, 300), max_words=min(max_words, 900))


# --------------------------------------------------------------------------- run

def _record(job: _Job, text: str, arm: str, decomposition: Decomposition, generator: str, version: str,
            attempts: int) -> dict[str, Any]:
    return {"key": job.key, "text": text, "domain": job.domain.name, "subdomain": job.sub.name,
            "doc_type": job.doc_type, "idea": job.idea, "spec_sha256": decomposition.spec_sha256,
            "spec": decomposition.spec, "spec_variant": decomposition.variant, "arm": arm,
            "generator": generator, "prompt_version": version, "attempts": attempts}


def estimate_documents(decomposition: Decomposition, spec_text: str, *, n_types: int, n_ideas: int, arm: str = "value",
                       model_name: str = DEFAULT_MODEL_NAME, min_words: int = 300, max_words: int = 900,
                       input_price_per_mtok: float | None = None,
                       output_price_per_mtok: float | None = None) -> CostEstimate:
    """Calls and tokens an LLM documents run will use (prompts rendered for real; tokens = chars/4)."""
    estimate = CostEstimate(input_price_per_mtok=input_price_per_mtok, output_price_per_mtok=output_price_per_mtok)
    types_in = ideas_in = docs_in = 0
    subs = decomposition.subdomains()
    sample_idea = "x " * 40
    for domain, sub in subs:
        types_in += estimate_tokens(render_prompt("msm_doc_types.j2", domain=domain.name, subdomain=sub.name,
                                                  context=sub.context, assertions=sub.assertions, n=n_types,
                                                  model_name=model_name, avoid=[]))
        ideas_in += n_types * estimate_tokens(render_prompt(
            "msm_doc_ideas.j2", spec=spec_text, domain=domain.name, subdomain=sub.name, context=sub.context,
            assertions=sub.assertions, doc_type="forum discussion thread", doc_type_description="x " * 12, n=n_ideas,
            model_name=model_name))
        job = _Job("", domain, sub, "forum discussion thread", "", sample_idea, 0)
        docs_in += n_types * n_ideas * estimate_tokens(_document_prompt(spec_text, job, arm, model_name,
                                                                        min_words, max_words))
    n_sub = len(subs)
    doc_words = (max(min_words, 300) + min(max_words, 900)) / 2
    estimate.stages = [
        StageEstimate("doc_types", n_sub, types_in, n_sub * n_types * 30),
        StageEstimate("doc_ideas", n_sub * n_types, ideas_in, n_sub * n_types * n_ideas * 50),
        # a document: its words at ~1.33 tokens each plus a ~300-token plan in <scratchpad>
        StageEstimate("documents", n_sub * n_types * n_ideas, docs_in,
                      int(n_sub * n_types * n_ideas * (doc_words * 4 / 3 + 300))),
    ]
    return estimate


async def generate_documents_async(decomposition: Decomposition, spec: Any, out_path: str | Path,
                                   **options: Any) -> DocsSummary:
    """Async form of `generate_documents` (use inside a running event loop).

    Holds an exclusive lock on `out_path` while it runs: a second writer of the same corpus fails
    at once instead of appending every document twice."""
    with exclusive_output(out_path, "documents corpus"):
        return await _generate_documents(decomposition, spec, out_path, **options)


async def _generate_documents(decomposition: Decomposition, spec: Any, out_path: str | Path, *,
                              generator: str | Model = "template", arm: str = "value", n_types: int = 6,
                              n_ideas: int = 4, seed: int = 0, settings: GenerationSettings | None = None,
                              dedup_threshold: float = DEFAULT_THRESHOLD, min_words: int | None = None,
                              max_words: int = 3000, model_name: str = DEFAULT_MODEL_NAME) -> DocsSummary:
    if arm not in ARMS:
        raise MsmEvalError(f"unknown arm '{arm}'", field="--arm", hint="value or rules")
    if n_types < 1 or n_ideas < 1:
        raise MsmEvalError("--types and --ideas must be at least 1", field="--types/--ideas")
    settings = settings or GenerationSettings()
    start = time.monotonic()
    is_template = isinstance(generator, str) and generator == "template"
    if min_words is None:
        min_words = MIN_WORDS_TEMPLATE if is_template else MIN_WORDS_MODEL
    spec_text = spec.render(decomposition.variant)
    if spec.sha256 != decomposition.spec_sha256:
        raise MsmEvalError(f"the spec changed since this decomposition (sha256 {spec.sha256[:12]} != "
                           f"{decomposition.spec_sha256[:12]})", field="spec_sha256",
                           hint="re-run `msm-eval docs decompose` on the current spec")
    version = template_version("docs", "docs-template") if is_template else prompt_version(DOC_PROMPTS, "docs")
    generator_name = "template" if is_template else model_label(generator)
    out = KeyedJsonl(out_path)
    rejects = KeyedJsonl(sidecar(out_path, "rejects"))
    summary = DocsSummary(out=str(out_path), generator=generator_name, arm=arm, prompt_version=version,
                          dedup_threshold=dedup_threshold)
    if out.repaired:
        summary.notes.append("removed a torn last line left by an interrupted run")
    for existing in out.records.values():
        for name, wanted in (("arm", arm), ("spec_sha256", decomposition.spec_sha256),
                             ("spec_variant", decomposition.variant)):
            if name in existing and existing[name] != wanted:
                raise MsmEvalError(f"this corpus holds documents with {name}={existing[name]!r}, not {wanted!r}",
                                   path=out_path, field=name, hint="write to a new --out, or rerun with the same settings")
        break
    summary.resumed = len(out)
    index = NearDuplicateIndex(threshold=dedup_threshold)
    for record in out.records.values():
        index.force_add(record["text"])
    key_base = (decomposition.spec_sha256, decomposition.variant, arm, generator_name, seed)
    tally = UsageTally()

    async def write_one(job: _Job, produce: Any) -> None:
        problem = "not generated"
        for attempt in range(max(1, settings.max_attempts)):
            text = await produce(attempt)
            problem = check_document(text, min_words, max_words)
            if problem is None:
                _, similarity = index.most_similar(text)
                if similarity >= dedup_threshold:
                    problem = f"near-duplicate (Jaccard {similarity:.2f} >= {dedup_threshold})"
                    summary.near_duplicate_hits += 1
                    continue
                index.force_add(text)
                out.append(_record(job, text, arm, decomposition, generator_name, version, attempt + 1))
                summary.written += 1
                return
            summary.format_failures += 1
        rejects.append({**_record(job, "", arm, decomposition, generator_name, version, settings.max_attempts),
                        "reason": problem, "text": None})
        summary.rejected += 1

    if is_template:
        env = template_environment("docs")
        pools = _variation()
        jobs = _template_jobs(decomposition, arm, n_types, n_ideas, seed, key_base, summary.notes)
        summary.planned = len(jobs)
        for job in jobs:
            if job.key in out or job.key in rejects:
                continue

            async def produce(attempt: int, job: _Job = job) -> str:
                return _render_template_doc(env, job, arm, seed, attempt, pools, model_name)

            await write_one(job, produce)
    else:
        model = resolve_model(generator, settings)
        plan = KeyedJsonl(sidecar(out_path, "plan"))
        planned = 0
        limit = settings.in_flight()

        async def do_subdomain(domain: Domain, sub: Subdomain) -> None:
            nonlocal planned
            types = await _llm_types(model, settings, tally, plan, domain, sub, n_types, model_name, key_base)
            idea_lists = await asyncio.gather(*(
                _llm_ideas(model, settings, tally, plan, spec_text, domain, sub, t, n_ideas, model_name, key_base)
                for t in types), return_exceptions=True)
            jobs: list[tuple[str, Any]] = []
            for doc_type, ideas in zip(types, idea_lists):
                if isinstance(ideas, BaseException):
                    if isinstance(ideas, MsmEvalError):
                        raise ideas
                    summary.failures.append({"key": f"{domain.name} / {sub.name} / {doc_type['type']}",
                                             "error": f"{type(ideas).__name__}: {ideas}"})
                    continue
                for index_, idea in enumerate(ideas):
                    key = stable_key(*key_base, domain.name, sub.name, doc_type["type"], index_, idea)
                    planned += 1
                    if key in out or key in rejects:
                        continue
                    job = _Job(key, domain, sub, doc_type["type"], doc_type.get("description", ""), idea, index_)
                    prompt = _document_prompt(spec_text, job, arm, model_name, min_words, max_words)

                    async def produce(attempt: int, prompt: str = prompt) -> str:
                        reply = await call_model(model, prompt, settings, tally, attempt=attempt, max_tokens=5000)
                        content = extract_tag(reply, "content")
                        return content if content is not None else ""

                    jobs.append((key, lambda job=job, produce=produce: write_one(job, produce)))
            for failure in await run_concurrently(jobs, limit):
                summary.failures.append(vars(failure))

        sub_failures = await run_concurrently(
            [(f"{d.name} / {s.name}", lambda d=d, s=s: do_subdomain(d, s)) for d, s in decomposition.subdomains()],
            max(1, settings.max_connections))
        summary.failures.extend(vars(f) for f in sub_failures)
        summary.planned = planned
    summary.failed = len(summary.failures)
    summary.usage = tally.as_dict()
    summary.total_in_corpus = len(out)
    summary.by_domain = dict(Counter(r["domain"] for r in out.records.values()))
    summary.by_doc_type = dict(Counter(r["doc_type"] for r in out.records.values()))
    summary.elapsed_s = round(time.monotonic() - start, 3)
    atomic_write_json(sidecar(out_path, "summary"), summary.as_dict())
    return summary


def generate_documents(decomposition: Decomposition, spec: Any, out_path: str | Path, *,
                       generator: str | Model = "template", arm: str = "value", n_types: int = 6, n_ideas: int = 4,
                       seed: int = 0, settings: GenerationSettings | None = None,
                       dedup_threshold: float = DEFAULT_THRESHOLD, min_words: int | None = None,
                       max_words: int = 3000, model_name: str = DEFAULT_MODEL_NAME) -> DocsSummary:
    """Generate (or resume) a documents corpus at `out_path`; see the module docstring.

    `generator` is `"template"` (offline) or an inspect model name / `Model`. `n_types` document
    types x `n_ideas` ideas per subdomain. `min_words` defaults to 50 (template) / 200 (model).
    Returns the run summary (also written next to the corpus).
    """
    return asyncio.run(generate_documents_async(
        decomposition, spec, out_path, generator=generator, arm=arm, n_types=n_types, n_ideas=n_ideas, seed=seed,
        settings=settings, dedup_threshold=dedup_threshold, min_words=min_words, max_words=max_words,
        model_name=model_name))


# --------------------------------------------------------------------------- stats

@dataclass
class CorpusStats:
    """Counts, token totals and duplicate rate of a documents corpus."""

    path: str
    documents: int
    by_domain: dict[str, int]
    by_doc_type: dict[str, int]
    tokens: int
    token_method: str
    mean_tokens: float
    duplicates: int
    duplicate_rate: float
    dedup_threshold: float

    def as_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return dict(vars(self))

    def format(self) -> str:
        """Plain-text report."""
        lines = [f"corpus: {self.path}", f"documents: {self.documents}",
                 f"tokens: {self.tokens:,} ({self.token_method}); mean {self.mean_tokens:,.1f} per document",
                 f"near-duplicates: {self.duplicates} ({self.duplicate_rate:.1%}; Jaccard of word 5-grams >= "
                 f"{self.dedup_threshold})", "by domain:"]
        lines += [f"  {k}: {v}" for k, v in sorted(self.by_domain.items())]
        lines.append("by document type:")
        lines += [f"  {k}: {v}" for k, v in sorted(self.by_doc_type.items())]
        return "\n".join(lines)


def _token_counter(tokenizer: str | None) -> tuple[Any, str]:
    if tokenizer is None:
        return (lambda text: len(text.split())), "whitespace-separated words (no tokenizer given)"
    path = tokenizer
    if tokenizer == "smollm2":
        try:
            from msm_eval.models.smollm2 import prepare
        except ImportError:
            raise MsmEvalError("the embedded SmolLM2 model is not available in this installation",
                               field="--tokenizer", hint="give a Hugging Face tokenizer folder instead") from None
        path = str(prepare())
    if not Path(path).is_dir():
        raise MsmEvalError("tokenizer folder not found", path=path, field="--tokenizer",
                           hint="give a Hugging Face model/tokenizer folder or 'smollm2'")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    return (lambda text: len(tok(text, add_special_tokens=False)["input_ids"])), f"tokenizer {Path(path).name}"


def corpus_stats(path: str | Path, tokenizer: str | None = None, dedup_threshold: float = DEFAULT_THRESHOLD) -> CorpusStats:
    """Stats of a documents JSONL; a malformed line or a record without the required fields names the line."""
    source = Path(path)
    records = []
    if not source.exists():
        raise MsmEvalError("file not found", path=source, hint="check the corpus path")
    for number, record in read_jsonl_numbered(source):
        for name in ("text", "domain", "doc_type"):
            if not isinstance(record.get(name), str):
                raise MsmEvalError(f"missing or non-string '{name}'", path=source, line=number, field=name,
                                   hint="every document needs text, domain and doc_type")
        records.append(record)
    count, method = _token_counter(tokenizer)
    tokens = sum(count(r["text"]) for r in records)
    duplicates = len(near_duplicate_indices([r["text"] for r in records], threshold=dedup_threshold))
    return CorpusStats(path=str(source), documents=len(records), by_domain=dict(Counter(r["domain"] for r in records)),
                       by_doc_type=dict(Counter(r["doc_type"] for r in records)), tokens=tokens, token_method=method,
                       mean_tokens=tokens / len(records) if records else 0.0, duplicates=duplicates,
                       duplicate_rate=duplicates / len(records) if records else 0.0, dedup_threshold=dedup_threshold)
