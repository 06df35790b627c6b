"""Lint for scenario seeds: test tells and weak seeds that `validate` (format checks) lets through.

A seed can be well-formed and still useless as a measurement: a model that recognises a test
(a `.example` address, "You are a helpful assistant.", an inbox of five messages with the
incriminating one on top) behaves differently from one that believes the situation is real.
`lint_seeds` checks every seed against the rules in `scenarios/_lint/rules.yaml` and returns
`LintFinding`s, each with a rule id, a severity, the file and line, and the fix:

| rule | severity | what it flags |
|---|---|---|
| `placeholder-domain` | error | documentation or reserved domains (`example.com`, `.example`, `.test`) |
| `placeholder-name` | error | stock names (John Doe, Acme, Company X) and unfilled gaps (`[Name]`) |
| `boilerplate-system` | error | a system prompt that opens like no product ("You are a helpful assistant") |
| `test-phrasing` | error | target-facing text that says it is a test, simulation or evaluation |
| `convenient-timing` | warning | coincidences ("conveniently", "at that exact moment", "in exactly 5 minutes") |
| `short-inbox` | error | an inbox of a few messages, too short to bury the one that matters |
| `thin-system` | warning | an operator system prompt shorter than a product would use |
| `dimension-not-exercised` | error | a listed dimension with no cue for it in the author's own description |
| `near-duplicate` | error | a seed whose text is a near-duplicate of another seed's (msm_eval.dedup) |
| `stale-baseline` | warning | a baseline entry that no longer matches any finding |

Target-facing text is what the target sees: the System, User and Follow-up parts, tool result
templates, `vars` and `condition_text`. The Investigator part and notes are the author's
instructions, so they may say "never hint that this is a test".

A baseline (`scenarios/_lint/baseline.yaml`) lists known findings, each with a reason, that do not
fail the lint (for seeds another change is about to replace); entries that match nothing are
reported as stale so the baseline shrinks as seeds are fixed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from msm_eval import paths
from msm_eval.dedup import ExactNearDuplicateIndex as NearDuplicateIndex  # exhaustive: a library is small
from msm_eval.errors import MsmEvalError
from msm_eval.scenarios import PART_FOLLOWUP, PART_INVESTIGATOR, PART_SYSTEM, PART_USER, Seed, \
    _example_args, expand, render_tool_result

RULES_PATH = paths.SCENARIOS_DIR / "_lint" / "rules.yaml"
BASELINE_PATH = paths.SCENARIOS_DIR / "_lint" / "baseline.yaml"
SEVERITIES = ("error", "warning")
RULE_SEVERITY: dict[str, str] = {
    "placeholder-domain": "error",
    "placeholder-name": "error",
    "boilerplate-system": "error",
    "test-phrasing": "error",
    "convenient-timing": "warning",
    "short-inbox": "error",
    "thin-system": "warning",
    "dimension-not-exercised": "error",
    "near-duplicate": "error",
    "stale-baseline": "warning",
}
"""Every rule id and its severity (errors make `msm-eval scenarios lint` exit non-zero)."""

TARGET_FACING_FIELDS = ("vars", "tools", "condition_text")
"""Front-matter fields whose text reaches the target."""
TARGET_FACING_PARTS = (PART_SYSTEM, PART_USER, PART_FOLLOWUP)
AUTHOR_FIELDS = ("notes", "provenance")
"""Regions never linted for placeholders or test phrasing (maintainers' own notes)."""


@dataclass(frozen=True)
class LintFinding:
    """One problem in one seed: rule id, severity, where it is and how to fix it."""

    rule: str
    severity: str
    path: Path
    line: int | None
    seed_id: str
    message: str
    hint: str | None = None
    baselined: bool = False

    def __str__(self) -> str:
        shown = _display_path(self.path)
        where = f"{shown}:{self.line}" if self.line else shown
        fix = f" (fix: {self.hint})" if self.hint else ""
        return f"{self.severity}: {where}: [{self.rule}] {self.message}{fix}"


def _display_path(path: Path) -> str:
    """The path relative to the current folder when it is inside it (short, machine-independent)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass
class LintRules:
    """The rule data (compiled patterns and thresholds) from `scenarios/_lint/rules.yaml`."""

    placeholder_domains: list[re.Pattern[str]]
    placeholder_names: list[re.Pattern[str]]
    boilerplate_system: list[re.Pattern[str]]
    test_phrasing: list[re.Pattern[str]]
    convenient_timing: list[re.Pattern[str]]
    inbox_header: re.Pattern[str]
    inbox_min_seen: int
    inbox_min_messages: int
    system_min_words: int
    near_duplicate_threshold: float
    always_exercised: frozenset[str]
    dimension_cues: dict[str, re.Pattern[str]] = field(default_factory=dict)


def _compile(pattern: Any, path: Path, key: str, flags: int = re.IGNORECASE) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise MsmEvalError(f"pattern {pattern!r} is not text", path=path, field=key, hint="quote the regex")
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise MsmEvalError(f"invalid regex {pattern!r}: {exc}", path=path, field=key,
                           hint="fix the Python regular expression") from None


@lru_cache(maxsize=4)
def load_rules(path: Path = RULES_PATH) -> LintRules:
    """Read and compile the lint rules; a malformed file is a one-line `MsmEvalError`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MsmEvalError(f"cannot read lint rules: {exc.strerror}", path=path,
                           hint="restore scenarios/_lint/rules.yaml from the repository") from None
    except yaml.YAMLError as exc:
        raise MsmEvalError(f"malformed YAML in lint rules: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise MsmEvalError("lint rules must be a YAML mapping", path=path)

    def patterns(key: str, flags: int = re.IGNORECASE) -> list[re.Pattern[str]]:
        value = data.get(key)
        if not isinstance(value, list) or not value:
            raise MsmEvalError(f"'{key}' must be a non-empty list of regexes", path=path, field=key)
        return [_compile(item, path, key, flags) for item in value]

    def number(key: str, kind: type) -> Any:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise MsmEvalError(f"'{key}' must be a positive number", path=path, field=key)
        return kind(value)

    cues = data.get("dimension_cues") or {}
    if not isinstance(cues, dict):
        raise MsmEvalError("'dimension_cues' must map dimension ids to regexes", path=path, field="dimension_cues")
    from msm_eval.scenarios import known_dimensions

    for name in list(cues) + list(data.get("always_exercised") or []):
        if name not in known_dimensions():
            raise MsmEvalError(f"unknown dimension '{name}' in lint rules", path=path, field="dimension_cues",
                               hint=f"use rubric dimension ids: {', '.join(known_dimensions())}")
    return LintRules(
        placeholder_domains=patterns("placeholder_domains"),
        placeholder_names=patterns("placeholder_names", 0),  # names are matched case-sensitively
        boilerplate_system=patterns("boilerplate_system"),
        test_phrasing=patterns("test_phrasing"),
        convenient_timing=patterns("convenient_timing"),
        inbox_header=_compile(data.get("inbox_header"), path, "inbox_header", re.IGNORECASE | re.MULTILINE),
        inbox_min_seen=number("inbox_min_seen", int),
        inbox_min_messages=number("inbox_min_messages", int),
        system_min_words=number("system_min_words", int),
        near_duplicate_threshold=number("near_duplicate_threshold", float),
        always_exercised=frozenset(data.get("always_exercised") or ()),
        dimension_cues={str(k): _compile(v, path, f"dimension_cues.{k}") for k, v in cues.items()},
    )


# ---------------------------------------------------------------------------------------------
# Regions of a seed file


_HEADING = re.compile(r"^##(?!#)\s*(.*?)\s*#*\s*$")
_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:")


def line_regions(source: str) -> list[str]:
    """The region of each line of a seed file (index 0 = line 1).

    Front-matter lines are labelled by their top-level field (`vars`, `tools`, ...), body lines by
    their part (`Investigator`, `System`, `User`, `Follow-up`, `Notes`, or `preamble`).
    """
    lines = source.splitlines()
    regions: list[str] = []
    in_front, region = False, "front"
    closed = False
    in_fence = False
    for index, line in enumerate(lines):
        if index == 0 and line.strip() == "---":
            in_front = True
            regions.append("front")
            continue
        if in_front and not closed:
            if line.strip() in ("---", "..."):
                closed = True
                region = "preamble"
                regions.append("front")
                continue
            match = _TOP_KEY.match(line)
            if match:
                region = match.group(1)
            regions.append(region)
            continue
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            name = re.sub(r"[\s_\-]+", "", match.group(1).lower())
            region = {"investigator": PART_INVESTIGATOR, "system": PART_SYSTEM, "user": PART_USER,
                      "followup": PART_FOLLOWUP, "notes": "Notes"}.get(name, "preamble")
        regions.append(region)
    return regions


def _target_facing(region: str) -> bool:
    return region in TARGET_FACING_FIELDS or region in TARGET_FACING_PARTS


def _linted_for_placeholders(region: str) -> bool:
    return region not in AUTHOR_FIELDS and region not in ("Notes", "preamble", "front")


# ---------------------------------------------------------------------------------------------
# Rules


def _find(seed: Seed, rule: str, message: str, line: int | None, hint: str | None = None) -> LintFinding:
    return LintFinding(rule=rule, severity=RULE_SEVERITY[rule], path=seed.path, line=line, seed_id=seed.id,
                       message=message, hint=hint)


def _line_of(source: str, pattern: str) -> int | None:
    for number, line in enumerate(source.splitlines(), start=1):
        if re.match(pattern, line):
            return number
    return None


def _text_rules(seed: Seed, rules: LintRules) -> list[LintFinding]:
    """Regex rules applied line by line to the raw file, each to the regions it concerns."""
    findings: list[LintFinding] = []
    lines = seed.source.splitlines()
    regions = line_regions(seed.source)
    checks = (
        ("placeholder-domain", rules.placeholder_domains, _linted_for_placeholders,
         "placeholder domain '{m}'", "use a plausible real-looking domain of the organisation in the story"),
        ("placeholder-name", rules.placeholder_names, _linted_for_placeholders,
         "placeholder name '{m}'", "give people and organisations specific, ordinary names"),
        ("test-phrasing", rules.test_phrasing, _target_facing,
         "target-facing text says it is a test: '{m}'", "remove it; the situation must read as real"),
        ("convenient-timing", rules.convenient_timing, _target_facing,
         "implausibly convenient timing: '{m}'",
         "let the key fact arrive the way it would in real work (buried, routine, not on cue)"),
    )
    for number, (line, region) in enumerate(zip(lines, regions, strict=False), start=1):
        for rule, patterns, applies, message, hint in checks:
            if not applies(region):
                continue
            for pattern in patterns:
                match = pattern.search(line)
                if match:
                    findings.append(_find(seed, rule, message.format(m=match.group(0)), number, hint))
                    break
    return findings


def _system_rules(seed: Seed, rules: LintRules) -> list[LintFinding]:
    if seed.system_template is None:
        return []
    line = seed.template_lines.get(PART_SYSTEM)
    line = line + 1 if line else None
    findings: list[LintFinding] = []
    for pattern in rules.boilerplate_system:
        match = pattern.search(seed.system_template)
        if match:
            findings.append(_find(seed, "boilerplate-system", f"boilerplate system prompt '{match.group(0).strip()}'",
                                  line, "write the operator's real system prompt: the product, the company, "
                                        "its policies and tools, in the length a deployment uses"))
            break
    words = len(re.findall(r"\w+", seed.system_template))
    if words < rules.system_min_words:
        findings.append(_find(seed, "thin-system", f"system prompt has {words} words "
                              f"(fewer than {rules.system_min_words})", line,
                              "describe the deployment: who the operator is, what the product does, its rules"))
    return findings


def _target_text(seed: Seed, sample: Any = None) -> str:
    """Everything the target sees in one cell (default: the seed's first), tool results rendered with
    example arguments."""
    sample = sample if sample is not None else expand(seed)[0]
    parts = [sample.system or "", sample.user or "", *sample.followups]
    parts += [render_tool_result(tool, _example_args(tool.parameters), sample) for tool in seed.tools]
    return "\n".join(parts)


def _first_cell_per_world(seed: Seed) -> list[tuple[str, Any]]:
    """(world name, its first cell) for a seed with worlds (each world has its own inbox), else the
    seed's first cell under the name ''."""
    cells: dict[str, Any] = {}
    for sample in expand(seed):
        world = str(sample.conditions.get("world", "")) if seed.worlds else ""
        cells.setdefault(world, sample)
    return list(cells.items())


def _inbox_rule(seed: Seed, rules: LintRules) -> list[LintFinding]:
    findings = []
    line = _line_of(seed.source, r"^\s*(From|Sender)\s*:")
    for world, sample in _first_cell_per_world(seed):
        count = len(rules.inbox_header.findall(_target_text(seed, sample)))
        if rules.inbox_min_seen <= count < rules.inbox_min_messages:
            where = f"world '{world}': " if world else ""
            findings.append(_find(seed, "short-inbox", f"{where}inbox shows {count} messages (fewer than "
                                  f"{rules.inbox_min_messages}); the key messages cannot hide among so few", line,
                                  "surround the key messages with ordinary mail (newsletters, scheduling, "
                                  "routine threads)"))
    return findings


def _author_text(seed: Seed) -> str:
    guidance = " ".join((seed.judge_guidance or {}).values())
    return " ".join([seed.area.replace("_", " "), " ".join(seed.tags), seed.instructions, guidance])


def _dimension_rule(seed: Seed, rules: LintRules) -> list[LintFinding]:
    text = _author_text(seed).lower()
    findings = []
    for dimension in seed.dimensions:
        if dimension in rules.always_exercised:
            continue
        cue = rules.dimension_cues.get(dimension)
        if cue is not None and not cue.search(text):
            findings.append(_find(seed, "dimension-not-exercised",
                                  f"dimension '{dimension}' is listed but nothing in the area, tags, "
                                  "investigator brief or judge guidance says how the seed exercises it",
                                  _line_of(seed.source, r"^dimensions\s*:"),
                                  "describe the choice that exercises it, or remove it from 'dimensions'"))
    return findings


def _dedup_text(seed: Seed) -> str:
    sample = expand(seed)[0]
    return "\n".join([sample.instructions, sample.system or "", sample.user or "", *sample.followups])


def _duplicate_rule(seeds: Sequence[Seed], reference: Sequence[Seed], rules: LintRules) -> list[LintFinding]:
    """Each seed against every other seed of `reference` + `seeds` (by id; itself excluded)."""
    pool: dict[str, Seed] = {seed.id: seed for seed in reference}
    pool.update({seed.id: seed for seed in seeds})
    order = list(pool.values())
    index = NearDuplicateIndex(threshold=rules.near_duplicate_threshold)
    for seed in order:
        index.force_add(_dedup_text(seed))
    findings = []
    wanted = {seed.id for seed in seeds}
    for position, seed in enumerate(order):
        if seed.id not in wanted:
            continue
        other, similarity = _most_similar_other(index, _dedup_text(seed), position)
        if other is not None and similarity >= rules.near_duplicate_threshold:
            twin = order[other]
            findings.append(_find(seed, "near-duplicate", f"near-duplicate of seed '{twin.id}' ({twin.path}), "
                                  f"similarity {similarity:.2f}", _line_of(seed.source, r"^id\s*:"),
                                  "change the situation, people and wording, or drop one of the two"))
    return findings


def _most_similar_other(index: NearDuplicateIndex, text: str, own: int) -> tuple[int | None, float]:
    from msm_eval.dedup import shingles

    candidate = shingles(text, index.n)
    overlap: dict[int, int] = {}
    for shingle in candidate:
        for other in index._postings.get(shingle, ()):
            if other != own:
                overlap[other] = overlap.get(other, 0) + 1
    best, best_sim = None, 0.0
    for other, shared in overlap.items():
        union = len(candidate) + len(index._sets[other]) - shared
        sim = shared / union if union else 1.0
        if sim > best_sim:
            best, best_sim = other, sim
    return best, best_sim


# ---------------------------------------------------------------------------------------------
# Baseline


@dataclass(frozen=True)
class BaselineEntry:
    """A known finding that does not fail the lint: seed id, rule id, and why it is tolerated."""

    seed: str
    rule: str
    reason: str


def load_baseline(path: Path = BASELINE_PATH) -> list[BaselineEntry]:
    """Baseline entries (an absent file is an empty baseline)."""
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except yaml.YAMLError as exc:
        raise MsmEvalError(f"malformed YAML in lint baseline: {exc}", path=path) from None
    if isinstance(data, dict):
        data = data.get("entries") or []
    entries = []
    for number, item in enumerate(data if isinstance(data, list) else [None]):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item.get(k).strip()
                                                 for k in ("seed", "rule", "reason")):
            raise MsmEvalError(f"baseline entry {number} needs text fields seed, rule and reason", path=path,
                               field=f"entries[{number}]", hint="e.g. {seed: am_blackmail, rule: short-inbox, "
                                                                "reason: '...'}")
        if item["rule"] not in RULE_SEVERITY:
            raise MsmEvalError(f"baseline entry {number}: unknown rule '{item['rule']}'", path=path,
                               field=f"entries[{number}].rule", hint=f"rules: {', '.join(RULE_SEVERITY)}")
        entries.append(BaselineEntry(seed=item["seed"], rule=item["rule"], reason=item["reason"]))
    return entries


def apply_baseline(findings: Iterable[LintFinding], baseline: Sequence[BaselineEntry],
                   checked_ids: Iterable[str] | None = None) -> list[LintFinding]:
    """Mark findings covered by the baseline; add a `stale-baseline` warning for each unused entry
    whose seed was linted (`checked_ids`; default: every seed with a finding)."""
    from dataclasses import replace

    keys = {(entry.seed, entry.rule) for entry in baseline}
    out: list[LintFinding] = []
    used: set[tuple[str, str]] = set()
    for finding in findings:
        key = (finding.seed_id, finding.rule)
        if key in keys:
            used.add(key)
            finding = replace(finding, baselined=True)
        out.append(finding)
    checked = set(checked_ids) if checked_ids is not None else {f.seed_id for f in out}
    for entry in baseline:
        if (entry.seed, entry.rule) not in used and entry.seed in checked:
            out.append(LintFinding(rule="stale-baseline", severity=RULE_SEVERITY["stale-baseline"],
                                   path=BASELINE_PATH, line=None, seed_id=entry.seed,
                                   message=f"baseline entry ({entry.seed}, {entry.rule}) matches no finding",
                                   hint="remove it from the baseline"))
    return out


# ---------------------------------------------------------------------------------------------
# Entry point


def lint_seeds(seeds: Sequence[Seed], *, reference: Sequence[Seed] = (), rules: LintRules | None = None,
               baseline: Sequence[BaselineEntry] = ()) -> list[LintFinding]:
    """Every finding for `seeds` (near-duplicates are also sought in `reference`), sorted by file and line."""
    rules = rules or load_rules()
    findings: list[LintFinding] = []
    for seed in seeds:
        findings += _text_rules(seed, rules)
        findings += _system_rules(seed, rules)
        findings += _inbox_rule(seed, rules)
        findings += _dimension_rule(seed, rules)
    findings += _duplicate_rule(seeds, reference, rules)
    findings = apply_baseline(findings, baseline, checked_ids=[seed.id for seed in seeds])
    return sorted(findings, key=lambda f: (str(f.path), f.line or 0, f.rule))


def count_by_severity(findings: Iterable[LintFinding]) -> Mapping[str, int]:
    """Counts of non-baselined findings per severity."""
    counts = {severity: 0 for severity in SEVERITIES}
    for finding in findings:
        if not finding.baselined:
            counts[finding.severity] += 1
    return counts
