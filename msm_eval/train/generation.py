"""Shared machinery for MSM data generation: prompts, model calls, resumable keyed JSONL, cost estimates.

Documents (`train/docs.py`), demonstrations (`train/demos.py`) and the LLM decomposer
(`train/decompose.py`) all generate text through inspect's model API. This module holds what they
share:

- `render_prompt` / `prompt_version`: the Jinja2 prompt templates in `msm_eval/prompts/msm_*.j2`
  and a version string derived from their bytes (changes whenever a prompt changes);
- `GenerationSettings` -> inspect `GenerateConfig` (max_connections, batch, retries) and cache policy;
- `call_model`: one generate call with token accounting (`UsageTally`);
- `KeyedJsonl`: an append-only, fsynced JSONL file keyed by `key`, which repairs a torn last line
  on open so an interrupted run resumes without losing or duplicating a record;
- `run_concurrently`: run async jobs with a bound on in-flight tasks, collecting failures;
- `extract_tag`, `parse_json_payload`: lenient parsing of model replies;
- `CostEstimate`: calls and tokens per stage for `--dry-run`, with cost at given prices;
- `describe_rule`, `topic_phrase`: wording helpers of the offline templates (an imperative rule
  restated as a statement about the model; a principle title as a topic phrase).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import append_jsonl, read_jsonl
from msm_eval.replies import loads_bounded
from msm_eval.templating import untrusted_environment

if TYPE_CHECKING:  # inspect is imported lazily: the template path never needs it
    from inspect_ai.model import GenerateConfig, Model, ModelOutput

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

CHARS_PER_TOKEN = 4.0
"""Heuristic used by estimates when no tokenizer is given (English prose averages ~4 chars/token)."""


# --------------------------------------------------------------------------- prompts

@functools.lru_cache(maxsize=8)
def _environment(folder: Path) -> jinja2.Environment:
    """One sandboxed environment per folder (templates see model output), compiled once per process."""
    return untrusted_environment(loader=jinja2.FileSystemLoader(str(folder)), trim_blocks=True,
                                 lstrip_blocks=True, keep_trailing_newline=False)


def render_prompt(name: str, **context: Any) -> str:
    """Render the prompt template `msm_eval/prompts/<name>` with `context` (undefined names fail)."""
    try:
        return _environment(PROMPTS_DIR).get_template(name).render(**context).strip() + "\n"
    except jinja2.TemplateNotFound:
        raise MsmEvalError("prompt template not found", path=PROMPTS_DIR / name,
                           hint="reinstall msm-eval or restore the file") from None


def prompt_version(names: Iterable[str], prefix: str = "msm") -> str:
    """A version string for a set of prompt templates: `<prefix>-<sha256 of their bytes, 12 hex>`."""
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(name.encode())
        digest.update((PROMPTS_DIR / name).read_bytes())
    return f"{prefix}-{digest.hexdigest()[:12]}"


def template_version(folder: str, prefix: str) -> str:
    """A version string for every file under `train/templates/<folder>` (the offline generators)."""
    digest = hashlib.sha256()
    root = TEMPLATES_DIR / folder
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return f"{prefix}-{digest.hexdigest()[:12]}"


def template_environment(folder: str) -> jinja2.Environment:
    """Jinja2 environment over `train/templates/<folder>` for the offline generators."""
    return _environment(TEMPLATES_DIR / folder)


# --------------------------------------------------------------------------- model calls

@dataclass
class GenerationSettings:
    """How model calls are made: concurrency, caching, batch mode, retries, sampling."""

    max_connections: int = 10
    cache: bool | str = False
    """False, True (inspect's default expiry) or an expiry such as "7D"."""
    batch: bool | int = False
    """Use the provider's batch API (True, or a batch size) where the provider supports it."""
    temperature: float | None = None
    max_tokens: int | None = None
    max_retries: int | None = None
    timeout: int | None = None
    max_attempts: int = 3
    """Bounded regeneration when a reply fails a format or length check."""

    def generate_config(self, *, max_tokens: int | None = None) -> GenerateConfig:
        """The inspect `GenerateConfig` for these settings."""
        from inspect_ai.model import GenerateConfig

        kwargs: dict[str, Any] = {"max_connections": self.max_connections}
        if self.batch:
            kwargs["batch"] = self.batch
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if max_tokens is not None or self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens if self.max_tokens is not None else max_tokens
        if self.max_retries is not None:
            kwargs["max_retries"] = self.max_retries
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        return GenerateConfig(**kwargs)

    def in_flight(self) -> int:
        """How many generation jobs to keep in flight: enough to fill a provider batch in batch mode."""
        base = max(1, self.max_connections) * 2
        if self.batch:
            return max(base, 2 * (self.batch if isinstance(self.batch, int) and self.batch > 1 else 100))
        return base

    def cache_policy(self, attempt: int = 0) -> Any:
        """The `cache=` argument for `Model.generate`; retries of a rejected reply bypass the cache."""
        if not self.cache or attempt > 0:
            return False
        if self.cache is True:
            return True
        from inspect_ai.model import CachePolicy

        return CachePolicy(expiry=str(self.cache))


def parse_model_spec(value: str, role: str) -> tuple[str, dict[str, Any]]:
    """`ROLE=MODEL` or `ROLE={model: M, model_args: {...}}` (as inspect's `--model-role`) -> (model, args)."""
    import yaml

    name, sep, spec = value.partition("=")
    if not sep or name.strip() != role or not spec.strip():
        raise MsmEvalError(f"expected {role}=MODEL, got '{value}'", field="--model-role",
                           hint=f"e.g. {role}=anthropic/claude-sonnet-4-6 or {role}='{{model: msm/mock, model_args: {{reply: hi}}}}'")
    spec = spec.strip()
    if spec.startswith("{"):
        try:
            data = yaml.safe_load(spec)
        except yaml.YAMLError as exc:
            raise MsmEvalError(f"cannot parse model role config: {exc}", field="--model-role") from None
        if not isinstance(data, dict) or not isinstance(data.get("model"), str):
            raise MsmEvalError("model role config needs a 'model' key", field="--model-role")
        return data["model"], dict(data.get("model_args") or {})
    return spec, {}


def resolve_model(model: str | Model, settings: GenerationSettings | None = None,
                  model_args: dict[str, Any] | None = None) -> Model:
    """An inspect `Model` from a model name (e.g. `anthropic/claude-...`, `msm/mock`) or a Model."""
    from inspect_ai.model import Model, get_model

    if isinstance(model, Model):
        return model
    settings = settings or GenerationSettings()
    try:
        return get_model(model, config=settings.generate_config(), **(model_args or {}))
    except Exception as exc:  # inspect raises plain exceptions for unknown providers / missing keys
        raise MsmEvalError(f"cannot load model '{model}': {exc}", field="generator",
                           hint="use provider/model, e.g. anthropic/claude-sonnet-4-6 or msm/mock") from None


def model_label(model: str | Model) -> str:
    """The name recorded in outputs for a generator (`template` or `provider/model`)."""
    if isinstance(model, str):
        return model
    return str(model)


@dataclass
class UsageTally:
    """Calls and tokens spent by one run (as reported by the provider)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, output: ModelOutput) -> None:
        """Count one reply."""
        self.calls += 1
        if output.usage is not None:
            self.input_tokens += output.usage.input_tokens
            self.output_tokens += output.usage.output_tokens

    def as_dict(self) -> dict[str, int]:
        """Plain dict for summaries."""
        return {"calls": self.calls, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


class GenerationError(Exception):
    """A model reply that is unusable (provider error, refusal, wrong format) after all attempts."""


async def call_model(model: Model, prompt: str, settings: GenerationSettings, tally: UsageTally, *,
                     attempt: int = 0, max_tokens: int | None = None) -> str:
    """One generate call; returns the completion text. Provider errors and refusals raise."""
    output = await model.generate(prompt, config=settings.generate_config(max_tokens=max_tokens),
                                  cache=settings.cache_policy(attempt))
    tally.add(output)
    if output.error:
        raise GenerationError(f"provider error: {output.error}")
    if output.stop_reason == "content_filter":
        raise GenerationError("refused (content filter)")
    return output.completion


async def generate_checked(produce: Callable[[int], Awaitable[str]], check: Callable[[str], str | None],
                           max_attempts: int) -> tuple[str | None, int, str | None]:
    """Call `produce(attempt)` until `check(text)` returns None (= fine), at most `max_attempts` times.

    Returns `(text or None, attempts used, last problem)`. Exceptions from `produce` propagate.
    """
    problem: str | None = None
    for attempt in range(max(1, max_attempts)):
        text = await produce(attempt)
        problem = check(text)
        if problem is None:
            return text, attempt + 1, None
    return None, max(1, max_attempts), problem


# --------------------------------------------------------------------------- parsing replies

def extract_tag(text: str, tag: str) -> str | None:
    """The content of the last complete `<tag>...</tag>` block, stripped; None when absent."""
    matches = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.S)
    if not matches:
        return None
    return matches[-1].strip()


def parse_json_payload(text: str) -> Any:
    """The JSON value in a reply: a fenced ```json block, else the outermost [...] or {...}.

    Raises `GenerationError` when no valid JSON is found.
    """
    fenced = re.findall(r"```(?:json)?\s*(.*?)```", text, flags=re.S)
    candidates = [c.strip() for c in fenced]
    for opener, closer in (("[", "]"), ("{", "}")):
        start, end = text.find(opener), text.rfind(closer)
        if start != -1 and end > start:
            candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            return loads_bounded(candidate)
        except ValueError:   # JSONDecodeError, or nested too deep for a real answer
            continue
    raise GenerationError("reply contains no valid JSON")


def normalize_space(text: str) -> str:
    """Collapse whitespace and strip Markdown emphasis/bullets, for substring checks."""
    text = re.sub(r"[*_`]+", "", text)
    text = re.sub(r"^\s*(?:[-+]|\d+[.)])\s+", "", text, flags=re.M)
    return re.sub(r"\s+", " ", text).strip().lower()


def stable_key(*parts: Any) -> str:
    """A short stable key (16 hex) for a tuple of JSON-serialisable parts."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- resumable output

def repair_torn_tail(path: str | Path) -> bool:
    """Cut an incomplete last line (no trailing newline) left by an interrupted append.

    Returns True when something was removed. Complete but malformed lines are left alone so
    that reading reports them with their line number.
    """
    target = Path(path)
    if not target.exists() or target.stat().st_size == 0:
        return False
    with open(target, "rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return False
        cut = data.rfind(b"\n") + 1
        handle.truncate(cut)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def read_jsonl_numbered(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """`(line number, record)` pairs of a JSONL file; malformed lines raise naming the line."""
    source = Path(path)
    records = list(read_jsonl(source, tolerate_truncated_tail=False))
    with open(source, encoding="utf-8") as handle:
        numbers = [n for n, line in enumerate(handle, start=1) if line.strip()]
    return list(zip(numbers, records))


class KeyedJsonl:
    """An append-only JSONL file of records that each carry a unique `key`.

    Opening repairs a torn tail and loads the keys already written; `append` writes one record
    (flushed and fsynced) unless its key is present. Records written by an interrupted run are
    therefore kept, and rerunning skips them instead of duplicating them.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.repaired = repair_torn_tail(self.path)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for number, record in read_jsonl_numbered(self.path):
                key = record.get("key")
                if not isinstance(key, str):
                    raise MsmEvalError("record has no string 'key'", path=self.path, line=number, field="key",
                                       hint="this file was not written by msm-eval; use a new --out")
                self.records.setdefault(key, record)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> dict[str, Any] | None:
        """The record with `key`, if written."""
        return self.records.get(key)

    def append(self, record: dict[str, Any]) -> bool:
        """Write `record` (must have `key`); returns False when the key was already written."""
        key = record["key"]
        if key in self.records:
            return False
        append_jsonl(self.path, [record])
        self.records[key] = record
        return True


@dataclass
class JobFailure:
    """A job whose model call failed after inspect's own retries (rerun to resume it)."""

    key: str
    error: str


async def run_concurrently(jobs: Sequence[tuple[str, Callable[[], Awaitable[None]]]], limit: int) -> list[JobFailure]:
    """Run `(key, job)` pairs with at most `limit` in flight; failures are collected, not raised.

    Each job writes its own result (so completed work is on disk even if the process dies).
    `MsmEvalError` and cancellation propagate; any other exception becomes a `JobFailure`.
    """
    semaphore = asyncio.Semaphore(max(1, limit))
    failures: list[JobFailure] = []

    async def guarded(key: str, job: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            try:
                await job()
            except MsmEvalError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded and reported, the run goes on
                failures.append(JobFailure(key, f"{type(exc).__name__}: {exc}"))

    await asyncio.gather(*(guarded(key, job) for key, job in jobs))
    return failures


# --------------------------------------------------------------------------- cost estimates

def estimate_tokens(text: str) -> int:
    """Approximate token count of `text` (characters / 4, rounded up)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass
class StageEstimate:
    """Calls and tokens of one generation stage."""

    stage: str
    calls: int
    input_tokens: int
    output_tokens: int


@dataclass
class CostEstimate:
    """What a run will spend, stage by stage, before spending it (tokens estimated as chars/4)."""

    stages: list[StageEstimate] = field(default_factory=list)
    input_price_per_mtok: float | None = None
    output_price_per_mtok: float | None = None

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.stages)

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self.stages)

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.stages)

    @property
    def cost(self) -> float | None:
        """Estimated cost in the prices' currency, or None without prices."""
        if self.input_price_per_mtok is None or self.output_price_per_mtok is None:
            return None
        return (self.input_tokens * self.input_price_per_mtok
                + self.output_tokens * self.output_price_per_mtok) / 1_000_000

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for `--json` and summaries)."""
        return {"stages": [vars(s) for s in self.stages], "calls": self.calls,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "input_price_per_mtok": self.input_price_per_mtok,
                "output_price_per_mtok": self.output_price_per_mtok, "estimated_cost": self.cost,
                "token_method": f"characters / {CHARS_PER_TOKEN:g} (estimate)"}

    def format(self) -> str:
        """A small plain-text table."""
        lines = [f"{'stage':<14}{'calls':>10}{'input tok':>14}{'output tok':>14}"]
        for s in self.stages:
            lines.append(f"{s.stage:<14}{s.calls:>10,}{s.input_tokens:>14,}{s.output_tokens:>14,}")
        lines.append(f"{'total':<14}{self.calls:>10,}{self.input_tokens:>14,}{self.output_tokens:>14,}")
        lines.append(f"tokens estimated as characters / {CHARS_PER_TOKEN:g}")
        if self.cost is not None:
            lines.append(f"estimated cost: {self.cost:,.2f} at {self.input_price_per_mtok:g} (input) / "
                         f"{self.output_price_per_mtok:g} (output) per million tokens")
        return "\n".join(lines)


# --------------------------------------------------------------------------- wording helpers (offline templates)

_SUBJECT_WORDS = {"the", "a", "an", "it", "this", "that", "these", "those", "ai", "models", "humans", "people", "if",
                  "when", "where", "unless", "only", "in", "for", "as", "there", "its", "our", "their", "each",
                  "every", "no", "all", "any", "some", "operators", "users", "principals", "developers", "on", "at",
                  "by", "with", "without", "within", "under", "over", "during", "after", "before", "from", "to",
                  "of", "whatever", "whenever", "even", "although", "though", "while", "once", "here", "then", "or",
                  "and", "but", "so", "nor", "yet", "such", "they", "we", "he", "she", "i", "one", "most", "many"}
_SUBORDINATORS = {"when", "if", "where", "in", "on", "for", "while", "once", "unless", "before", "after", "whenever",
                  "wherever", "even", "during", "with", "without"}
_IRREGULAR = {"be": ("is", "am"), "have": ("has", "have"), "do": ("does", "do"), "go": ("goes", "go")}


def _conjugate(verb: str) -> str:
    lower = verb.lower()
    if lower in _IRREGULAR:
        return _IRREGULAR[lower][0]
    if re.search(r"(s|sh|ch|x|z|o)$", lower):
        return verb + "es"
    if re.search(r"[^aeiou]y$", lower):
        return verb[:-1] + "ies"
    return verb + "s"


_SUBJECT_LEADS = r"(?:what|when|whenever|if|that|because|unless|while|where|as|and|or|so|than|once|until|whether|before|after|since)"
_NOT_VERBS = {"can", "could", "will", "would", "should", "must", "may", "might", "did", "had", "shall", "not",
              "yourself", "all", "both", "also", "only", "really", "still", "already", "just", "cannot", "normally",
              "never", "always", "often", "sometimes"}
_OBJECT_FOLLOWERS = {"a", "an", "the", "to", "with", "for", "from", "in", "on", "at", "about", "well", "what", "how",
                     "why", "and", "or", "but", "that", "this", "these", "those", "if", "as", "into", "by", "more",
                     "less", "so", "too", "again", "back", "up", "out", "down", "off", "over", "through", "is", "are",
                     "who", "which", "when", "where", "than", "its", "their", "his", "her", "my", "our", "any", "some"}


def describe_rule(sentence: str, subject: str, first_person: bool = False) -> str:
    """Turn an imperative rule ("Do not hide from monitoring.") into a statement about the model.

    Third person: "Meridian does not hide from monitoring."; first person: "I do not hide from
    monitoring." Sentences that already have a subject ("You should ...", "The model ...") only get
    their pronouns changed; other sentences are returned unchanged. A heuristic for offline
    templates, not a grammar engine.
    """
    text = sentence.strip()
    if not text:
        return text
    words = text.split()
    head = words[0].strip(",;:").lower()
    me = "I" if first_person else subject

    def verb_form(verb: str) -> str:
        if first_person:
            return "am" if verb.lower() == "be" else verb
        return _conjugate(verb)

    def pronouns(rest: str) -> str:
        reflexive, possessive = ("myself", "my") if first_person else ("itself", "its")
        rest = re.sub(r"\byourself\b", reflexive, rest, flags=re.I)
        rest = re.sub(r"\byours\b", "mine" if first_person else "its own", rest, flags=re.I)
        rest = re.sub(r"\byour\b", possessive, rest, flags=re.I)
        forms = ({"are": "am", "were": "was", "have": "have", "do": "do"} if first_person else
                 {"are": "is", "were": "was", "have": "has", "do": "does"})
        rest = re.sub(r"\byou (are|were|have|do)\b", lambda m: f"{'I' if first_person else 'it'} {forms[m.group(1)]}",
                      rest, flags=re.I)

        def subject_you(match: re.Match[str]) -> str:
            verb = match.group(1)
            pronoun = "I" if first_person else "it"
            if verb.lower() in _OBJECT_FOLLOWERS:
                return f"{'me' if first_person else 'it'} {verb}"
            if verb.lower() in ("don't", "do") or verb.lower() in _NOT_VERBS or not verb.isalpha():
                if verb.lower() == "don't" and not first_person:
                    verb = "doesn't"
                return f"{pronoun} {verb}"
            if re.search(r"(ly|ed|ing)$", verb.lower()):
                return f"{pronoun} {verb}"
            return f"{pronoun} {verb if first_person else _conjugate(verb)}"

        rest = re.sub(r"\byou ([\w']+)(?![\w'])", subject_you, rest, flags=re.I)
        rest = re.sub(r"\byou\b", "me" if first_person else "it", rest, flags=re.I)
        if not first_person:
            rest = re.sub(r"\b(and|or|but) do not\b", r"\1 does not", rest)
            rest = re.sub(r"\b(and|or|but) don't\b", r"\1 doesn't", rest)
        return rest

    def coordinated(rest: str) -> str:
        """`and serve ...` right after the main verb: conjugate the second verb too."""
        match = re.match(r"(\S+ )?(and|or) ([a-z]+)\b(.*)", rest)
        if match and match.group(1) is None:
            return f"{match.group(2)} {verb_form(match.group(3))}{match.group(4)}"
        return rest

    if head == "you":
        return f"{me} {pronouns(' '.join(words[1:]))}"
    if head in _SUBORDINATORS and ", " in text:
        lead, _, main = text.partition(", ")
        first = main.split()[0] if main.split() else ""
        if re.fullmatch(r"[a-z]+", first) and first not in _SUBJECT_WORDS and not first.endswith(("ing", "ed")):
            restated = describe_rule(main[:1].upper() + main[1:], subject, first_person)
            if restated != main[:1].upper() + main[1:]:
                return f"{pronouns(lead)}, {restated}"
        return text
    if head in _SUBJECT_WORDS or not words[0][:1].isupper():
        return text
    if len(words) > 1 and words[1].lower() in ("is", "are", "was", "were", "has", "have", "can", "will", "should",
                                               "must", "may", "might", "would", "could", "does"):
        return text
    rest_words = words[1:]
    if head in ("do", "don't") and (head == "don't" or (rest_words and rest_words[0].lower() == "not")):
        tail = " ".join(rest_words[1:] if head == "do" else rest_words)
        return f"{me} {'do not' if first_person else 'does not'} {pronouns(tail)}"
    if (head in ("never", "always", "only", "also") or head.endswith("ly")) and rest_words \
            and re.fullmatch(r"[a-z]+", rest_words[0]):
        tail = coordinated(" ".join(rest_words[1:]))
        if rest_words[0] == "be":
            return f"{me} {verb_form('be')} {head} {pronouns(tail)}".rstrip()
        return f"{me} {head} {verb_form(rest_words[0])} {pronouns(tail)}".rstrip()
    if not re.fullmatch(r"[A-Z][a-z]+", words[0]):
        return text
    tail = coordinated(" ".join(rest_words))
    return f"{me} {verb_form(words[0].lower())} {pronouns(tail)}".rstrip()


def _gerund(verb: str) -> str:
    lower = verb.lower()
    if lower == "be":
        return "being"
    if lower.endswith("ie"):
        return lower[:-2] + "ying"
    if lower.endswith("e") and not lower.endswith(("ee", "ye", "oe")):
        return lower[:-1] + "ing"
    if re.fullmatch(r"[^aeiou]*[aeiou][bdgmnpt]", lower):  # short consonant-vowel-consonant: stop -> stopping
        return lower + lower[-1] + "ing"
    return lower + "ing"


def topic_phrase(title: str) -> str:
    """A principle title as a topic for prose: "Support human oversight" -> "supporting human oversight".

    Titles that do not start with a verb ("Honesty") are only lower-cased.
    """
    words = title.strip().split()
    if not words:
        return title
    head = words[0].lower()

    def with_coordinated(index: int) -> list[str]:
        out = [*words[:index], _gerund(words[index]), *words[index + 1:]]
        if len(out) > index + 2 and out[index + 1] in ("and", "or") and re.fullmatch(r"[a-z]+", out[index + 2]):
            out[index + 2] = _gerund(out[index + 2])
        return out

    if head == "do" and len(words) > 2 and words[1].lower() == "not":
        return " ".join(["not", *with_coordinated(2)[2:]])
    if head in ("never", "always") and len(words) > 1:
        return " ".join([head, *with_coordinated(1)[1:]])
    if head in _SUBJECT_WORDS or not re.fullmatch(r"[A-Z][a-z]+", words[0]) or len(words) == 1:
        return title[:1].lower() + title[1:] if not title[:2].isupper() else title
    if re.search(r"(s|ness|ity|ion|ment|ance|ence|ism|ing)$", head):
        return title[:1].lower() + title[1:]
    return " ".join(with_coordinated(0))
