"""Investigator-driven growth of the scenario library: new seeds written by a model, resumably.

Two kinds of job: a *variation* of a parent seed along a named axis (setting, stakes, pressure,
realism, phrasing) and a *new idea* for an area. Each job asks the investigator model for a
complete seed file (prompts: `msm_eval/prompts/scenario_gen_*.j2`), then

1. parses it, gives it a fresh id and provenance, and validates it with the library's own
   validator (`msm_eval.scenarios`); an invalid file is sent back with the error, up to
   `max_retries` more times, then rejected;
2. drops it when it is a near-duplicate (Jaccard of word 5-grams, `msm_eval.dedup`) of a library
   seed or of a seed generated earlier;
3. optionally asks the model to rate its realism 1-10 and drops it below the threshold;
4. writes it atomically as `<out>/<id>.md` and appends the outcome to `<out>/generation_log.jsonl`
   (fsynced), keyed by (parent, axis, index).

A rerun of the same command skips every key already in the log, so an interrupted run resumes
without losing or duplicating seeds. A seed file written just before a crash (so missing from the
log) is found by its provenance and logged on the next start. Rejections are the log lines with
`status: rejected`; `<out>/rejects.jsonl` is rewritten from them at the end of each run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

from msm_eval import paths, scenarios
from msm_eval.dedup import DEFAULT_THRESHOLD, NearDuplicateIndex
from msm_eval.errors import MsmEvalError
from msm_eval.fileio import append_jsonl, atomic_write_text, exclusive_output, read_jsonl
from msm_eval.replies import loads_bounded
from msm_eval.templating import untrusted_environment

PROMPT_VERSION = "scenario-gen-1"
"""Version of the generation prompts; bump it whenever a scenario_gen_*.j2 template changes."""

AXES = ("setting", "stakes", "pressure", "realism", "phrasing")
NEW_IDEA_AXIS = "new_idea"
LOG_NAME = "generation_log.jsonl"
REJECTS_NAME = "rejects.jsonl"
PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"

_PROMPTS = untrusted_environment(loader=jinja2.FileSystemLoader(str(PROMPTS_DIR)), keep_trailing_newline=True)


Seed = scenarios.Seed


@dataclass(frozen=True)
class Job:
    """One unit of generation: a variation of `parent` along `axis`, or a new idea for `area`."""

    parent: Seed | None
    axis: str
    index: int
    area: str
    family: str

    @property
    def key(self) -> tuple[str, str, int]:
        """The resume key (parent, axis, index); new ideas use `area:<area>` as parent."""
        return (self.parent.id if self.parent else f"area:{self.area}", self.axis, self.index)


@dataclass
class GenerationSummary:
    """What a generation run did."""

    out_dir: Path
    generator: str
    planned: int = 0
    skipped: int = 0
    reconciled: int = 0
    written: list[str] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    dedup_threshold: float = DEFAULT_THRESHOLD
    realism_check: bool = True
    realism_threshold: float = 6.0

    def describe(self) -> str:
        """A short human-readable account (printed by the CLI)."""
        lines = [
            f"scenario generation with {self.generator} (prompts {PROMPT_VERSION}) into {self.out_dir}",
            f"  jobs: {self.planned} planned, {self.skipped} already done (resumed), "
            f"{self.reconciled} reconciled from files written before an interruption",
            f"  written: {len(self.written)} new seed(s)",
            "  rejected: " + (", ".join(f"{n} {kind}" for kind, n in sorted(self.rejected.items())) or "none"),
            f"  near-duplicate filter: Jaccard of word 5-grams >= {self.dedup_threshold:g} against the "
            "library and earlier generated seeds",
            "  realism check: " + (f"on, seeds rated below {self.realism_threshold:g}/10 are rejected"
                                    if self.realism_check else "off"),
            f"  log: {self.out_dir / LOG_NAME} (rejections: status=rejected, copied to {REJECTS_NAME})",
        ]
        if self.errors:
            lines.append(f"  {len(self.errors)} job(s) failed on model errors and were not logged; "
                         "rerun the same command to retry them:")
            lines.extend(f"    - {error}" for error in self.errors[:10])
        return "\n".join(lines)


class _Rejected(Exception):
    def __init__(self, kind: str, reason: str, output: str = "", attempts: int = 1) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.output, self.attempts = kind, reason, output, attempts


# ---------------------------------------------------------------------------------------------
# Pure helpers


def render_prompt(name: str, **context: Any) -> str:
    """Render one of the generation prompt templates."""
    try:
        return _PROMPTS.get_template(name).render(dimensions=list(scenarios.known_dimensions()), **context)
    except jinja2.TemplateNotFound:
        raise MsmEvalError(f"prompt template '{name}' not found", path=PROMPTS_DIR / name,
                           hint="reinstall msm-eval; the prompts ship with the package") from None


_FENCE = re.compile(r"```[a-zA-Z]*\s*\n(.*?)\n```", re.DOTALL)


def extract_seed_text(completion: str) -> str:
    """The seed file inside a model answer (a fenced block, or from the first `---` line on)."""
    text = completion.strip()
    for block in _FENCE.findall(text):
        if block.lstrip().startswith("---"):
            return block.strip() + "\n"
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() == "---":
            return "\n".join(lines[index:]).strip() + "\n"
    return text + "\n"


def seed_content(seed: Seed) -> str:
    """The text compared by the near-duplicate filter: what the scenario says, not its field names."""
    parts = [seed.instructions, seed.system_template or "", seed.user_template or "", *seed.followup_templates]
    return "\n".join(parts)


def fresh_id(base: str, taken: set[str]) -> str:
    """`base`, or `base_b`, `base_c`... whichever is not taken yet."""
    candidate = base
    suffix = 1
    while candidate in taken:
        suffix += 1
        candidate = f"{base}_v{suffix}"
    return candidate


def job_id_base(job: Job) -> str:
    """Deterministic id stem of a job's seed."""
    if job.parent is not None:
        return f"{job.parent.id}_{job.axis}_{job.index + 1}"
    return f"{job.area}_idea_{job.index + 1}"


def finalize_seed_text(raw: str, job: Job, seed_id: str, generator: str,
                       out_path: Path) -> tuple[str, Seed]:
    """Fill id / provenance (and the fixed family / area) into a model-written seed and validate it.

    Raises `MsmEvalError` (with the validator's message) when the text is not a valid seed.
    """
    front, body, _ = scenarios.split_front_matter(raw, out_path)
    provenance: dict[str, Any] = {
        "parent": job.parent.id if job.parent else None,
        "axis": job.axis,
        "index": job.index,
        "generator": generator,
        "prompt_version": PROMPT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if job.parent is None:
        provenance["area"] = job.area
    ordered: dict[str, Any] = {"id": seed_id}
    ordered.update({k: v for k, v in front.items() if k not in ("id", "provenance")})
    ordered["family"] = job.family
    if job.parent is None:
        ordered["area"] = job.area
    ordered["provenance"] = provenance
    text = scenarios.dump_seed(ordered, body)
    return text, scenarios.parse_seed_text(text, out_path)


_SCORE = re.compile(r"\{.*\}", re.DOTALL)


def parse_realism(completion: str) -> tuple[float, str]:
    """(score 1-10, reasons) from the realism reviewer's answer; raises ValueError when unusable."""
    match = _SCORE.search(completion)
    if not match:
        raise ValueError("no JSON object in the answer")
    data = loads_bounded(match.group(0))
    score = data.get("score") if isinstance(data, dict) else None
    if isinstance(score, bool) or not isinstance(score, int | float) or not 1 <= score <= 10:
        raise ValueError(f"score {score!r} is not a number from 1 to 10")
    return float(score), str(data.get("reasons", ""))


# ---------------------------------------------------------------------------------------------
# Planning and resume state


def plan_jobs(parents: Sequence[Seed], axes: Sequence[str], per_seed: int,
              new_ideas_per_area: int) -> list[Job]:
    """Every job of a run, in a stable order (parents, then axes, then index; then areas)."""
    unknown = [axis for axis in axes if axis not in AXES]
    if unknown:
        raise MsmEvalError(f"unknown axis/axes: {', '.join(unknown)}", field="--axes",
                           hint=f"choose among {', '.join(AXES)}")
    jobs = [Job(parent=seed, axis=axis, index=index, area=seed.area, family=seed.family)
            for seed in parents for axis in axes for index in range(per_seed)]
    areas: dict[str, Seed] = {}
    for seed in parents:
        areas.setdefault(seed.area, seed)
    for area, example in areas.items():
        jobs.extend(Job(parent=None, axis=NEW_IDEA_AXIS, index=index, area=area, family=example.family)
                    for index in range(new_ideas_per_area))
    return jobs


def _key_of(record: dict[str, Any]) -> tuple[str, str, int] | None:
    key = record.get("key")
    if isinstance(key, list) and len(key) == 3 and isinstance(key[2], int) and not isinstance(key[2], bool):
        return (str(key[0]), str(key[1]), key[2])
    return None


def _provenance_key(seed: Seed) -> tuple[str, str, int] | None:
    prov = seed.provenance or {}
    axis, index = prov.get("axis"), prov.get("index")
    if not isinstance(axis, str) or not isinstance(index, int):
        return None
    parent = prov.get("parent") or (f"area:{prov['area']}" if prov.get("area") else None)
    return (parent, axis, index) if parent else None


# ---------------------------------------------------------------------------------------------
# The run


class _Run:
    def __init__(self, model: Any, generator: str, out_dir: Path, library: list[Seed], *,
                 realism_check: bool, realism_threshold: float, dedup_threshold: float,
                 max_retries: int, max_connections: int, max_tokens: int | None = None) -> None:
        from inspect_ai.model import GenerateConfig

        self.model = model
        self.config = GenerateConfig(max_tokens=max_tokens) if max_tokens is not None else GenerateConfig()
        self.generator = generator
        self.out_dir = out_dir
        self.log_path = out_dir / LOG_NAME
        self.library = library
        self.realism_check = realism_check
        self.realism_threshold = realism_threshold
        self.max_retries = max_retries
        self.semaphore = asyncio.Semaphore(max_connections)
        self.dedup = NearDuplicateIndex(threshold=dedup_threshold)
        self.dedup_names: list[str] = []
        self.taken_ids = {seed.id for seed in library}
        self.done: set[tuple[str, str, int]] = set()
        self.summary = GenerationSummary(out_dir=out_dir, generator=generator, dedup_threshold=dedup_threshold,
                                         realism_check=realism_check, realism_threshold=realism_threshold)
        for seed in library:
            self._index(seed)

    def _index(self, seed: Seed) -> None:
        self.dedup.force_add(seed_content(seed))
        self.dedup_names.append(seed.id)

    def load_state(self) -> None:
        """Read the log, then log any seed file that was written but never logged (crash in between)."""
        if self.log_path.exists():
            _drop_partial_tail(self.log_path)
            for record in read_jsonl(self.log_path):
                key = _key_of(record)
                if key is not None:
                    self.done.add(key)
                if record.get("id"):
                    self.taken_ids.add(str(record["id"]))
        in_library = {seed.path.resolve(): seed for seed in self.library}
        unlogged: list[dict[str, Any]] = []
        for path in sorted(self.out_dir.glob("*.md")) if self.out_dir.is_dir() else []:
            seed = in_library.get(path.resolve())
            if seed is None:
                try:
                    seed = scenarios.load_seed(path)
                except MsmEvalError:
                    continue  # not one of ours (or hand-edited into an invalid state): leave it alone
                self.taken_ids.add(seed.id)
                self._index(seed)
            key = _provenance_key(seed)
            if key is not None and key not in self.done:
                self.done.add(key)
                unlogged.append({"key": list(key), "parent": key[0], "axis": key[1], "index": key[2],
                                 "status": "written", "id": seed.id, "file": path.name,
                                 "reconciled": True, "logged": _now()})
        if unlogged:
            append_jsonl(self.log_path, unlogged)
            self.summary.reconciled = len(unlogged)

    async def _generate(self, messages: list[Any]) -> str:
        output = await self.model.generate(messages, config=self.config)
        return output.completion

    def _prompt(self, job: Job) -> str:
        if job.parent is not None:
            return render_prompt("scenario_gen_variation.j2", parent=job.parent, parent_text=job.parent.source,
                                 axis=job.axis, index=job.index)
        same_area = [seed for seed in self.library if seed.area == job.area]
        example = same_area[0] if same_area else self.library[0]
        existing = [f"{seed.id}: {' '.join(seed.instructions.split())[:160]}" for seed in same_area] or ["(none)"]
        return render_prompt("scenario_gen_new_idea.j2", area=job.area, family=job.family, index=job.index,
                             existing=existing, example_text=example.source)

    def _reject_if_duplicate(self, seed: Seed, text: str, attempts: int) -> None:
        similar, similarity = self.dedup.most_similar(seed_content(seed))
        if similarity >= self.dedup.threshold:
            other = self.dedup_names[similar] if similar is not None else "?"
            raise _Rejected("near_duplicate", f"near-duplicate of {other} (Jaccard {similarity:.2f} >= "
                            f"{self.dedup.threshold:g})", text, attempts)

    async def run_job(self, job: Job) -> None:
        """Generate, check and write (or reject) the seed of one job, logging the outcome."""
        from inspect_ai.model import ChatMessageUser

        seed_id = fresh_id(job_id_base(job), self.taken_ids)
        self.taken_ids.add(seed_id)
        out_path = self.out_dir / f"{seed_id}.md"
        messages: list[Any] = [ChatMessageUser(content=self._prompt(job))]
        try:
            text, seed, attempts = await self._valid_seed(job, seed_id, out_path, messages)
            self._reject_if_duplicate(seed, text, attempts)  # before the realism call, to save it
            realism = await self._check_realism(seed, text, attempts)
            # Again, in the same synchronous step as indexing: a concurrent job may have added a
            # close seed while this one waited for the realism review.
            self._reject_if_duplicate(seed, text, attempts)
            self._index(seed)
        except _Rejected as rejected:
            self.taken_ids.discard(seed_id)
            self._log(job, status="rejected", kind=rejected.kind, reason=rejected.reason,
                      attempts=rejected.attempts, output=rejected.output)
            self.summary.rejected[rejected.kind] += 1
            return
        if realism is not None:
            text, seed = _with_realism(text, realism, out_path)
        atomic_write_text(out_path, text)
        self._log(job, status="written", id=seed_id, file=out_path.name, attempts=attempts,
                  realism=realism)
        self.summary.written.append(seed_id)

    async def _valid_seed(self, job: Job, seed_id: str, out_path: Path,
                          messages: list[Any]) -> tuple[str, Seed, int]:
        from inspect_ai.model import ChatMessageAssistant, ChatMessageUser

        last_error = ""
        completion = ""
        for attempt in range(1, self.max_retries + 2):
            completion = await self._generate(messages)
            raw = extract_seed_text(completion)
            try:
                text, seed = finalize_seed_text(raw, job, seed_id, self.generator, out_path)
                return text, seed, attempt
            except MsmEvalError as exc:
                last_error = str(exc).replace(str(out_path), "the seed file")
            messages = [*messages, ChatMessageAssistant(content=completion),
                        ChatMessageUser(content=render_prompt("scenario_gen_retry.j2", error=last_error))]
        raise _Rejected("invalid", f"still invalid after {self.max_retries + 1} attempt(s): {last_error}",
                        completion, self.max_retries + 1)

    async def _check_realism(self, seed: Seed, text: str, attempts: int) -> dict[str, Any] | None:
        if not self.realism_check:
            return None
        from inspect_ai.model import ChatMessageUser

        answer = await self._generate([ChatMessageUser(content=render_prompt(
            "scenario_gen_realism.j2", seed_text=text))])
        try:
            score, reasons = parse_realism(answer)
        except (ValueError, json.JSONDecodeError) as exc:
            raise _Rejected("realism_unscored", f"realism review gave no usable score ({exc}): {answer[:200]!r}",
                            text, attempts) from None
        if score < self.realism_threshold:
            raise _Rejected("cartoonish", f"realism {score:g}/10 below {self.realism_threshold:g}: {reasons}",
                            text, attempts)
        return {"score": score, "reasons": reasons}

    def _log(self, job: Job, **fields: Any) -> None:
        key = job.key
        record = {"key": list(key), "parent": key[0], "axis": key[1], "index": key[2],
                  "generator": self.generator, "prompt_version": PROMPT_VERSION, "logged": _now()}
        record.update({k: v for k, v in fields.items() if v is not None})
        append_jsonl(self.log_path, [record])
        self.done.add(key)

    def write_rejects_view(self) -> None:
        if not self.log_path.exists():
            return
        rejected = [r for r in read_jsonl(self.log_path) if r.get("status") == "rejected"]
        atomic_write_text(self.out_dir / REJECTS_NAME,
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejected))


def _drop_partial_tail(path: Path) -> None:
    """Cut an unfinished last line (an append interrupted mid-write) so new records start cleanly."""
    with open(path, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)
            handle.flush()
            os.fsync(handle.fileno())


def _with_realism(text: str, realism: dict[str, Any], path: Path) -> tuple[str, Seed]:
    front, body, _ = scenarios.split_front_matter(text, path)
    front["provenance"] = dict(front.get("provenance") or {}, realism=realism)
    new_text = scenarios.dump_seed(front, body)
    return new_text, scenarios.parse_seed_text(new_text, path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


async def generate_async(selection: str | None, out_dir: str | Path, **options: Any) -> GenerationSummary:
    """Run (or resume) a generation job; see the module docstring and `_generate` for the options.

    Holds an exclusive lock on `out_dir` while it runs: a second writer of the same folder fails
    at once instead of making every model call and log record twice.
    """
    with exclusive_output(out_dir, "scenario folder", is_folder=True):
        return await _generate(selection, out_dir, **options)


async def _generate(selection: str | None, out_dir: str | Path, *, model: Any = "msm/mock",
                    model_args: dict[str, Any] | None = None,
                    axes: Sequence[str] = AXES, per_seed: int = 1, new_ideas_per_area: int = 0,
                    realism_check: bool = True, realism_threshold: float = 6.0,
                    dedup_threshold: float = DEFAULT_THRESHOLD, max_retries: int = 2,
                    max_connections: int = 4, root: str | Path = paths.SCENARIOS_DIR,
                    max_tokens: int | None = None) -> GenerationSummary:
    """The generation job behind `generate_async`.

    `model` is an inspect `Model` or a model name resolved with `get_model(model, **model_args)`.
    `max_tokens` caps each generation call (None: the provider's default; a seed file needs about
    1,000 tokens, more than the embedded `msm/smollm2`'s default of 256).
    """
    from inspect_ai.model import Model, get_model

    out = Path(out_dir)
    library_root = Path(root)
    library = scenarios.load_library(library_root) if library_root.exists() else []
    parents = scenarios.load_selection(selection, library_root)
    known = {seed.path.resolve() for seed in library}
    library.extend(seed for seed in parents if seed.path.resolve() not in known)
    if not parents:
        raise MsmEvalError("no parent seeds selected", field="--from", hint="check the selection")
    if max_tokens is not None and max_tokens < 1:
        raise MsmEvalError(f"max_tokens must be at least 1, got {max_tokens}", field="max_tokens",
                           hint="leave it unset for the provider's default")
    jobs = plan_jobs(parents, axes, per_seed, new_ideas_per_area)
    if isinstance(model, Model):
        resolved, generator = model, str(model)
    else:
        try:
            resolved = get_model(model, memoize=False, **(model_args or {}))
        except Exception as exc:  # noqa: BLE001 - unknown provider, missing key...
            raise MsmEvalError(f"cannot load the investigator model '{model}': {exc}", field="--model-role",
                               hint="use e.g. investigator=msm/mock or a provider/model name with its API key set"
                               ) from None
        generator = model
    run = _Run(resolved, generator, out, library, realism_check=realism_check,
               realism_threshold=realism_threshold, dedup_threshold=dedup_threshold,
               max_retries=max_retries, max_connections=max_connections, max_tokens=max_tokens)
    out.mkdir(parents=True, exist_ok=True)
    run.load_state()
    run.summary.planned = len(jobs)
    todo = [job for job in jobs if job.key not in run.done]
    run.summary.skipped = len(jobs) - len(todo)

    async def guarded(job: Job) -> None:
        try:
            async with run.semaphore:  # at most max_connections jobs (each a few sequential calls) in flight
                await run.run_job(job)
        except MsmEvalError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model failure leaves the job for the next run
            run.summary.errors.append(f"{'/'.join(map(str, job.key))}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(guarded(job) for job in todo))
    run.write_rejects_view()
    return run.summary


def generate(selection: str | None, out_dir: str | Path, **kwargs: Any) -> GenerationSummary:
    """Synchronous wrapper of `generate_async` (for the CLI)."""
    return asyncio.run(generate_async(selection, out_dir, **kwargs))
