"""Spec decomposition for MSM documents: spec -> domains -> subdomains (with passage) -> assertions.

Two decomposers produce the same validated structure (`Decomposition`):

- `decompose_structural(spec, variant)`: no model. For a structured YAML spec each principle
  present in the rendered variant becomes a subdomain of its `area`; assertions are the rule and
  sub-rules (behaviours) and the sentences of the value explanation (values) — only the ones the
  variant actually contains, so nothing is invented. For a Markdown spec (or a variant that renders
  no principle text) the rendered headings give domains and subdomains, and the sentences of each
  section give the assertions.
- `decompose_llm(spec, variant, model)`: the generator model proposes domains, then subdomains
  with the verbatim passage they rest on, then the assertions of each passage. Passages that are
  not found in the spec and assertions that are empty are dropped and listed in `dropped`.

`validate_decomposition` checks a decomposition (e.g. read from disk) and names the bad field
path (`domains[0].subdomains[2].passage`).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import atomic_write_json
from msm_eval.train.generation import (
    GenerationError,
    GenerationSettings,
    UsageTally,
    call_model,
    model_label,
    normalize_space,
    parse_json_payload,
    prompt_version,
    render_prompt,
    resolve_model,
)

if TYPE_CHECKING:
    from inspect_ai.model import Model

FORMAT_VERSION = 1
LABELS = ("behavior", "value", "belief", "preference", "tone")
DECOMPOSERS = ("structural", "llm")
LLM_PROMPTS = ("msm_decompose_domains.j2", "msm_decompose_subdomains.j2", "msm_decompose_assertions.j2")
STRUCTURAL_VERSION = "structural-1"

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*(?:\{#([\w.:-]+)[^}]*\})?\s*$")
_VALUE_WORDS = re.compile(r"\b(because|so that|matters?|reason|why|value[sd]?|trust|in order to|protects?)\b", re.I)
_BEHAVIOUR_WORDS = re.compile(r"\b(should|must|never|always|do not|don't|avoid|will not|won't|refuse|may not|"
                              r"does not|is not allowed|prefer)\b", re.I)


@dataclass
class Assertion:
    """Something the documents must convey, taken from the spec."""

    text: str
    label: str
    source: str = ""


@dataclass
class Subdomain:
    """A coherent part of a domain, with the spec passage it rests on."""

    name: str
    context: str
    passage: str
    rule_ids: list[str] = field(default_factory=list)
    assertions: list[Assertion] = field(default_factory=list)


@dataclass
class Domain:
    """A broad area of the spec."""

    name: str
    description: str
    subdomains: list[Subdomain] = field(default_factory=list)


@dataclass
class Decomposition:
    """The validated decomposition of one spec variant."""

    spec: str
    spec_ref: str
    variant: str
    spec_sha256: str
    variant_sha256: str
    decomposer: str
    model: str | None
    prompt_version: str
    domains: list[Domain] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def subdomains(self) -> list[tuple[Domain, Subdomain]]:
        """Every (domain, subdomain) pair in order."""
        return [(d, s) for d in self.domains for s in d.subdomains]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write atomically as JSON."""
        return atomic_write_json(path, self.to_dict())


# --------------------------------------------------------------------------- validation

def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, source: Path | None,
             *, non_empty: bool = True) -> Any:
    path = f"{where}.{key}" if where else key
    if key not in data:
        raise MsmEvalError("missing", path=source, field=path, hint=f"add '{key}'")
    value = data[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise MsmEvalError(f"must be {names}, got {type(value).__name__}", path=source, field=path)
    if non_empty and isinstance(value, (str, list)) and not (value.strip() if isinstance(value, str) else value):
        raise MsmEvalError("must not be empty", path=source, field=path)
    return value


def validate_decomposition(data: Any, *, spec_text: str | None = None, source: str | Path | None = None) -> Decomposition:
    """Check a decomposition dict and build a `Decomposition`; errors name the field path.

    With `spec_text`, every subdomain passage must occur in it (whitespace and Markdown emphasis
    ignored).
    """
    try:
        from msm_eval.spec import VARIANTS
    except ImportError:  # pragma: no cover - spec.py is part of the package; fallback keeps this module usable alone
        VARIANTS = ("rules", "value_augmented", "rule_augmented", "generic", "full")

    src = Path(source) if source is not None else None
    if not isinstance(data, dict):
        raise MsmEvalError("a decomposition must be a JSON object", path=src)
    spec = _require(data, "spec", str, "", src)
    variant = _require(data, "variant", str, "", src)
    if variant not in VARIANTS:
        raise MsmEvalError(f"unknown variant '{variant}'", path=src, field="variant", hint=f"one of {', '.join(VARIANTS)}")
    sha = _require(data, "spec_sha256", str, "", src)
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise MsmEvalError("must be 64 lower-case hex digits", path=src, field="spec_sha256")
    decomposer = _require(data, "decomposer", str, "", src)
    if decomposer not in DECOMPOSERS:
        raise MsmEvalError(f"unknown decomposer '{decomposer}'", path=src, field="decomposer",
                           hint=" or ".join(DECOMPOSERS))
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise MsmEvalError("must be a string or null", path=src, field="model")
    version = _require(data, "prompt_version", str, "", src)
    domains_raw = _require(data, "domains", list, "", src)
    normalized_spec = normalize_space(spec_text) if spec_text is not None else None
    domains: list[Domain] = []
    for i, d in enumerate(domains_raw):
        where = f"domains[{i}]"
        if not isinstance(d, dict):
            raise MsmEvalError("must be an object", path=src, field=where)
        subs: list[Subdomain] = []
        for j, s in enumerate(_require(d, "subdomains", list, where, src)):
            swhere = f"{where}.subdomains[{j}]"
            if not isinstance(s, dict):
                raise MsmEvalError("must be an object", path=src, field=swhere)
            passage = _require(s, "passage", str, swhere, src)
            if normalized_spec is not None and normalize_space(passage) not in normalized_spec:
                raise MsmEvalError("passage is not a passage of the spec", path=src, field=f"{swhere}.passage",
                                   hint="quote the spec verbatim or re-run the decomposer")
            rule_ids = s.get("rule_ids", [])
            if not isinstance(rule_ids, list) or not all(isinstance(r, str) for r in rule_ids):
                raise MsmEvalError("must be a list of strings", path=src, field=f"{swhere}.rule_ids")
            assertions: list[Assertion] = []
            for k, a in enumerate(_require(s, "assertions", list, swhere, src)):
                awhere = f"{swhere}.assertions[{k}]"
                if not isinstance(a, dict):
                    raise MsmEvalError("must be an object", path=src, field=awhere)
                text = _require(a, "text", str, awhere, src)
                label = _require(a, "label", str, awhere, src)
                if label not in LABELS:
                    raise MsmEvalError(f"unknown label '{label}'", path=src, field=f"{awhere}.label",
                                       hint=f"one of {', '.join(LABELS)}")
                assertions.append(Assertion(text=text.strip(), label=label, source=str(a.get("source", ""))))
            subs.append(Subdomain(name=_require(s, "name", str, swhere, src).strip(),
                                  context=_require(s, "context", str, swhere, src, non_empty=False),
                                  passage=passage, rule_ids=list(rule_ids), assertions=assertions))
        domains.append(Domain(name=_require(d, "name", str, where, src).strip(),
                              description=_require(d, "description", str, where, src, non_empty=False),
                              subdomains=subs))
    dropped = data.get("dropped", [])
    if not isinstance(dropped, list):
        raise MsmEvalError("must be a list", path=src, field="dropped")
    return Decomposition(spec=spec, spec_ref=str(data.get("spec_ref", spec)), variant=variant, spec_sha256=sha,
                         variant_sha256=str(data.get("variant_sha256", "")), decomposer=decomposer, model=model,
                         prompt_version=version, domains=domains, dropped=list(dropped),
                         usage=dict(data.get("usage", {})))


def load_decomposition(path: str | Path, *, spec_text: str | None = None) -> Decomposition:
    """Read and validate a decomposition JSON file."""
    import json

    source = Path(path)
    if not source.exists():
        raise MsmEvalError("file not found", path=source, hint="run `msm-eval docs decompose` first")
    if not source.is_file():
        raise MsmEvalError("is not a file", path=source, hint="give the decomposition JSON written by `docs decompose`")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise MsmEvalError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=source,
                           hint="give the decomposition JSON written by `msm-eval docs decompose`") from None
    except json.JSONDecodeError as exc:
        raise MsmEvalError(f"malformed JSON ({exc.msg})", path=source, line=exc.lineno) from None
    return validate_decomposition(data, spec_text=spec_text, source=source)


# --------------------------------------------------------------------------- structural

def split_sentences(text: str) -> list[str]:
    """Sentences and bullet items of `text` (very short fragments joined to the previous one)."""
    pieces: list[str] = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:[-*+]|\d+[.)])\s)", text):
        block = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", block.strip())
        block = re.sub(r"\s+", " ", block)
        if not block or block.startswith("#"):
            continue
        for sentence in _SENTENCE.split(block):
            sentence = sentence.strip()
            if not sentence:
                continue
            if pieces and len(sentence.split()) < 4:
                pieces[-1] = f"{pieces[-1]} {sentence}"
            else:
                pieces.append(sentence)
    return pieces


def _classify(sentence: str) -> str:
    if _VALUE_WORDS.search(sentence):
        return "value"
    if _BEHAVIOUR_WORDS.search(sentence):
        return "behavior"
    return "belief"


def _contains(normalized_spec: str, text: str) -> bool:
    return bool(text.strip()) and normalize_space(text) in normalized_spec


def _principle_passage(rendered: str, pieces: list[str]) -> str | None:
    """The span of `rendered` from the first to the end of the last of `pieces` found verbatim."""
    spans = []
    for piece in pieces:
        start = rendered.find(piece.strip())
        if start != -1:
            spans.append((start, start + len(piece.strip())))
    if not spans:
        return None
    start = min(s for s, _ in spans)
    # include the heading line the passage starts in (or the one just above it)
    line_begin = rendered.rfind("\n", 0, start) + 1
    if rendered[line_begin:start].lstrip().startswith("#") or len(rendered[line_begin:start]) <= 12:
        start = line_begin
    elif line_begin > 0:
        above = rendered.rfind("\n", 0, line_begin - 1) + 1
        candidate = rendered[above:line_begin].strip()
        if not candidate:
            above = rendered.rfind("\n", 0, max(above - 1, 0)) + 1
            candidate = rendered[above:line_begin].strip()
        if candidate.startswith("#"):
            start = above
    return rendered[start:max(e for _, e in spans)].strip()


def _structural_from_principles(spec: Any, rendered: str) -> list[Domain]:
    normalized = normalize_space(rendered)
    domains: dict[str, Domain] = {}
    for principle in getattr(spec, "principles", None) or []:
        assertions: list[Assertion] = []
        pieces: list[str] = []
        if _contains(normalized, principle.rule):
            assertions.append(Assertion(principle.rule.strip(), "behavior", f"{principle.id}.rule"))
            pieces.append(principle.rule)
        for index, subrule in enumerate(principle.subrules or []):
            if _contains(normalized, subrule):
                assertions.append(Assertion(subrule.strip(), "behavior", f"{principle.id}.subrules[{index}]"))
                pieces.append(subrule)
        values = principle.values or ""
        for sentence in split_sentences(values):
            if _contains(normalized, sentence):
                assertions.append(Assertion(sentence, "value", f"{principle.id}.values"))
                pieces.append(sentence)
        if not assertions:
            continue  # this variant does not contain the principle
        passage = _principle_passage(rendered, [principle.title, *pieces]) or "\n".join(pieces)
        if not _contains(normalized, passage):
            passage = "\n".join(p.strip() for p in pieces)
        area = (principle.area or "general").strip()
        area = area.capitalize() if area.islower() else area
        domain = domains.setdefault(area, Domain(name=area, description=""))
        domain.subdomains.append(Subdomain(name=principle.title.strip(), context=principle.rule.strip(),
                                           passage=passage, rule_ids=[principle.id], assertions=assertions))
    for domain in domains.values():
        domain.description = "Principles: " + "; ".join(f"{s.rule_ids[0]} {s.name}" for s in domain.subdomains)
    return list(domains.values())


@dataclass
class _Block:
    level: int
    title: str
    anchor: str | None
    start: int
    end: int = -1


def markdown_blocks(text: str) -> list[_Block]:
    """Headings of a Markdown text with the character span of each section (heading included)."""
    blocks: list[_Block] = []
    offset = 0
    in_fence = False
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line.rstrip("\n"))
        if match:
            blocks.append(_Block(len(match.group(1)), match.group(2).strip(), match.group(3), offset))
        offset += len(line)
    for i, block in enumerate(blocks):
        block.end = len(text)
        for later in blocks[i + 1:]:
            if later.level <= block.level:
                block.end = later.start
                break
    return blocks


def _section_assertions(body: str, source: str) -> list[Assertion]:
    return [Assertion(s, _classify(s), source) for s in split_sentences(body)]


def _structural_from_headings(rendered: str, spec_name: str) -> list[Domain]:
    blocks = markdown_blocks(rendered)
    if not blocks:
        assertions = _section_assertions(rendered, spec_name)
        if not assertions:
            return []
        return [Domain(name=spec_name, description="", subdomains=[
            Subdomain(name=spec_name, context="", passage=rendered.strip(), rule_ids=[], assertions=assertions)])]
    top = min(b.level for b in blocks)
    # a single top-level title heading: use the next level as domains
    if sum(1 for b in blocks if b.level == top) == 1 and any(b.level > top for b in blocks):
        top = min(b.level for b in blocks if b.level > top)
    domains: list[Domain] = []
    for i, block in enumerate(blocks):
        if block.level != top:
            continue
        children = [b for b in blocks[i + 1:] if b.start < block.end and b.level == top + 1]
        sections = children or [block]
        domain = Domain(name=block.title, description="")
        for section in sections:
            text = rendered[section.start:section.end].strip()
            body = "\n".join(line for line in text.splitlines() if not _HEADING.match(line))
            source = section.anchor or section.title
            assertions = _section_assertions(body, source)
            if not assertions:
                continue
            domain.subdomains.append(Subdomain(name=section.title, context=assertions[0].text, passage=text,
                                               rule_ids=[section.anchor] if section.anchor else [],
                                               assertions=assertions))
        if domain.subdomains:
            domain.description = "Sections: " + "; ".join(s.name for s in domain.subdomains)
            domains.append(domain)
    return domains


def _spec_ref(spec: Any) -> str:
    path = getattr(spec, "path", None)
    return str(path) if path else str(spec.name)


def decompose_structural(spec: Any, variant: str = "full") -> Decomposition:
    """Decompose `spec` (a loaded `msm_eval.spec.Spec`) without a model; see the module docstring."""
    rendered = spec.render(variant)
    domains = _structural_from_principles(spec, rendered)
    if not domains:
        domains = _structural_from_headings(rendered, spec.name)
    if not domains:
        raise MsmEvalError(f"spec variant '{variant}' has no text to decompose", path=getattr(spec, "path", None),
                           field="variant", hint="choose another variant")
    return Decomposition(spec=spec.name, spec_ref=_spec_ref(spec), variant=variant, spec_sha256=spec.sha256,
                         variant_sha256=spec.variant_sha256(variant), decomposer="structural", model=None,
                         prompt_version=STRUCTURAL_VERSION, domains=domains)


# --------------------------------------------------------------------------- LLM

def _find_passage(rendered: str, passage: str) -> str | None:
    """The spec text a model-quoted passage stands for: itself if verbatim, else a section it names."""
    if _contains(normalize_space(rendered), passage):
        return passage.strip()
    wanted = normalize_space(passage).strip("# ")
    for block in markdown_blocks(rendered):
        if normalize_space(block.title) == wanted:
            return rendered[block.start:block.end].strip()
    return None


def _rule_ids_in(passage: str, spec: Any, rendered: str) -> list[str]:
    """Ids of the principles / anchored sections a passage belongs to, mentions, or quotes."""
    ids: list[str] = []
    quoted = normalize_space(passage)
    for sub in (s for d in _structural_from_principles(spec, rendered) for s in d.subdomains):
        inside = quoted in normalize_space(sub.passage)
        quotes = any(normalize_space(a.text) in quoted for a in sub.assertions)
        if inside or quotes:
            ids += sub.rule_ids
    containing = [b for b in markdown_blocks(rendered)
                  if b.anchor and quoted in normalize_space(rendered[b.start:b.end])]
    deepest = max((b.level for b in containing), default=0)
    ids += [b.anchor for b in containing if b.level == deepest]
    known = [p.id for p in getattr(spec, "principles", None) or []]
    ids += [i for i in known if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", passage)]
    return list(dict.fromkeys(ids))


async def _json_list(model: Model, prompt: str, settings: GenerationSettings, tally: UsageTally) -> list[Any]:
    problem = "no reply"
    for attempt in range(max(1, settings.max_attempts)):
        text = await call_model(model, prompt, settings, tally, attempt=attempt, max_tokens=8192)
        try:
            payload = parse_json_payload(text)
        except GenerationError as exc:
            problem = str(exc)
            continue
        if isinstance(payload, dict):
            payload = next((v for v in payload.values() if isinstance(v, list)), None)
        if isinstance(payload, list):
            return payload
        problem = "reply is not a JSON list"
    raise GenerationError(f"{problem} after {settings.max_attempts} attempts")


async def decompose_llm_async(spec: Any, variant: str, model: Model, settings: GenerationSettings) -> Decomposition:
    rendered = spec.render(variant)
    tally = UsageTally()
    dropped: list[dict[str, str]] = []
    try:
        raw_domains = await _json_list(model, render_prompt("msm_decompose_domains.j2", spec=rendered), settings,
                                       tally)
    except GenerationError as exc:
        raise MsmEvalError(f"the model produced no usable subdomains: domains: {exc}", field="generator",
                           hint="try another generator model or the structural decomposer") from None
    domain_items = []
    for index, item in enumerate(raw_domains):
        name = str(item.get("name", "")).strip() if isinstance(item, dict) else str(item).strip()
        if not name:
            dropped.append({"where": f"domains[{index}]", "reason": "empty domain name"})
            continue
        description = str(item.get("description", "")).strip() if isinstance(item, dict) else ""
        domain_items.append(Domain(name=name, description=description))

    async def fill_domain(domain: Domain) -> None:
        try:
            raw_subs = await _json_list(model, render_prompt("msm_decompose_subdomains.j2", spec=rendered,
                                                             domain=domain.name, description=domain.description),
                                        settings, tally)
        except GenerationError as exc:
            dropped.append({"where": domain.name, "reason": str(exc)})
            return
        for index, item in enumerate(raw_subs):
            if not isinstance(item, dict) or not str(item.get("name", "")).strip():
                dropped.append({"where": f"{domain.name} / subdomain {index}", "reason": "no name"})
                continue
            name = str(item["name"]).strip()
            passage = _find_passage(rendered, str(item.get("passage", "")))
            if passage is None:
                dropped.append({"where": f"{domain.name} / {name}", "reason": "passage not found in the spec"})
                continue
            domain.subdomains.append(Subdomain(name=name, context=str(item.get("context", "")).strip(),
                                               passage=passage, rule_ids=_rule_ids_in(passage, spec, rendered)))

    await asyncio.gather(*(fill_domain(d) for d in domain_items))

    async def fill_assertions(domain: Domain, sub: Subdomain) -> None:
        where = f"{domain.name} / {sub.name}"
        try:
            raw = await _json_list(model, render_prompt("msm_decompose_assertions.j2", passage=sub.passage,
                                                        labels=LABELS), settings, tally)
        except GenerationError as exc:
            dropped.append({"where": where, "reason": str(exc)})
            return
        for index, item in enumerate(raw):
            text = str(item.get("text", "")).strip() if isinstance(item, dict) else str(item).strip()
            label = str(item.get("label", "")).strip().lower() if isinstance(item, dict) else ""
            if not text:
                dropped.append({"where": f"{where} / assertion {index}", "reason": "empty assertion"})
                continue
            if label not in LABELS:
                dropped.append({"where": f"{where} / assertion {index}", "reason": f"unknown label '{label}'"})
                continue
            sub.assertions.append(Assertion(text=text, label=label, source=sub.name))

    await asyncio.gather(*(fill_assertions(d, s) for d in domain_items for s in d.subdomains))
    for domain in domain_items:
        for sub in list(domain.subdomains):
            if not sub.assertions:
                dropped.append({"where": f"{domain.name} / {sub.name}", "reason": "no assertions"})
                domain.subdomains.remove(sub)
    domains = [d for d in domain_items if d.subdomains]
    for domain in domain_items:
        if not domain.subdomains and not any(x["where"] == domain.name for x in dropped):
            dropped.append({"where": domain.name, "reason": "no usable subdomains"})
    if not domains:
        raise MsmEvalError("the model produced no usable subdomains: " +
                           "; ".join(f"{x['where']}: {x['reason']}" for x in dropped[:5]),
                           field="generator", hint="try another generator model or the structural decomposer")
    return Decomposition(spec=spec.name, spec_ref=_spec_ref(spec), variant=variant, spec_sha256=spec.sha256,
                         variant_sha256=spec.variant_sha256(variant), decomposer="llm", model=model_label(model),
                         prompt_version=prompt_version(LLM_PROMPTS, "decompose"), domains=domains,
                         dropped=dropped, usage=tally.as_dict())


def decompose_llm(spec: Any, variant: str, model: str | Model, settings: GenerationSettings | None = None) -> Decomposition:
    """Decompose `spec` with a generator model (any inspect model name or `Model`); see the module docstring."""
    settings = settings or GenerationSettings()
    resolved = resolve_model(model, settings)
    return asyncio.run(decompose_llm_async(spec, variant, resolved, settings))


def decompose(spec: Any, variant: str = "full", decomposer: str = "structural", model: str | Model | None = None,
              settings: GenerationSettings | None = None) -> Decomposition:
    """Dispatch to the structural or LLM decomposer."""
    if decomposer == "structural":
        return decompose_structural(spec, variant)
    if decomposer == "llm":
        if model is None:
            raise MsmEvalError("the llm decomposer needs a generator model", field="--model-role",
                               hint="pass --model-role generator=PROVIDER/MODEL")
        return decompose_llm(spec, variant, model, settings)
    raise MsmEvalError(f"unknown decomposer '{decomposer}'", field="--decomposer", hint="structural or llm")
