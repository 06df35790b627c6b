"""Scenario seeds: Markdown files with YAML front matter -> validated `Seed`s -> inspect `Sample`s.

A seed describes one situation that tests a model against the spec: what the investigator should
build (`## Investigator`), optional static templates for runs without an investigator
(`## System`, `## User`, `## Follow-up`), simulated tools, deterministic hard checks and a
condition grid that expands one seed into many samples (the cross product of the grid, with
`collapse` rules pinning values and removing the duplicates they create). The file format is
documented in docs/scenarios.md.

Every problem in a seed file is reported as an `MsmEvalError` naming the file, the line and the
field, with the fix. `load_library` gathers the problems of every file before failing, so one
run of `msm-eval scenarios validate` lists them all.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.exceptions import SecurityError

from msm_eval import paths
from msm_eval.errors import MsmEvalError
from msm_eval.templating import compile_untrusted

SETTINGS = ("chat", "agentic")
"""Allowed values of the `setting` field."""

FALLBACK_DIMENSIONS = (
    "overall_spirit", "ethics", "helpfulness", "nature", "safety", "brilliant_friend",
    "corrigibility", "hard_constraints", "harm_avoidance", "honesty", "novel_entity",
    "principal_hierarchy", "psychological_security", "societal_structures",
    "unhelpfulness_not_safe",
)
"""Dimension ids used when the rubric module or file is not available."""

REQUIRED_FIELDS = ("id", "family", "area", "setting", "dimensions")
OPTIONAL_FIELDS = ("tags", "max_turns", "investigator_turns", "vars", "fixtures", "worlds", "conditions", "collapse",
                   "condition_text", "controls", "tools", "hard_checks", "judge_guidance", "provenance", "notes")
GUIDANCE_KEYS = ("adherence", "violation")
"""Keys of `judge_guidance`: what adherence and what a violation look like in this seed."""
KNOWN_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
RESERVED_TEMPLATE_NAMES = ("conditions", "text", "seed", "args", "fixtures")
"""Names the templates get from the harness; `vars` may not redefine them."""

# Body parts (level-2 headings), matched case-insensitively after normalising spaces/hyphens.
PART_INVESTIGATOR = "Investigator"
PART_SYSTEM = "System"
PART_USER = "User"
PART_FOLLOWUP = "Follow-up"
PART_NOTES = "Notes"
_PART_ALIASES = {
    "investigator": PART_INVESTIGATOR,
    "system": PART_SYSTEM,
    "user": PART_USER,
    "followup": PART_FOLLOWUP,
    "notes": PART_NOTES,
}

ID_PATTERN = re.compile(r"^[a-z0-9_]+$")
VALUE_PATTERN = re.compile(r"^[a-z0-9_]+$")
TOOL_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VAR_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADING = re.compile(r"^##(?!#)\s*(.*?)\s*#*\s*$")
_TEMPLATE_NAME = "<seed-template>"


# ---------------------------------------------------------------------------------------------
# Data types


@dataclass(frozen=True)
class ToolSpec:
    """A simulated tool offered to the target: JSON-schema `parameters`, canned `result` template."""

    name: str
    description: str
    parameters: dict[str, Any]
    result: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (as stored in sample metadata)."""
        return {"name": self.name, "description": self.description,
                "parameters": self.parameters, "result": self.result}


@dataclass(frozen=True)
class HardCheck:
    """A deterministic harmful-action check on the target's tool calls.

    It fires when a call to `tool` ("*" = any tool) has an `argument` ("*" = all arguments,
    serialised as JSON) whose value matches the regex `pattern` and, when `also` is given, the
    call's `also["argument"]` matches `also["pattern"]` too.
    """

    id: str
    description: str
    tool: str
    argument: str
    pattern: str
    also: dict[str, str] | None = None
    fixtures: tuple[str, ...] = ()
    """Names of the seed fixtures the patterns were built from (`{fixture: name}` in the seed)."""
    specs: tuple[Any, Any] | None = field(default=None, compare=False, repr=False)
    """The seed's (pattern, also pattern) as written, to rebuild the check for another world."""

    def for_fixtures(self, fixtures: Mapping[str, str]) -> HardCheck:
        """This check with its fixture references resolved against `fixtures` (another world's)."""
        if not self.fixtures or self.specs is None:
            return self
        pattern_spec, also_spec = self.specs
        also = None if self.also is None else {"argument": self.also["argument"],
                                               "pattern": pattern_from_spec(also_spec, fixtures)}
        return HardCheck(id=self.id, description=self.description, tool=self.tool, argument=self.argument,
                         pattern=pattern_from_spec(pattern_spec, fixtures), also=also, fixtures=self.fixtures,
                         specs=self.specs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (as stored in sample metadata)."""
        return {"id": self.id, "description": self.description, "tool": self.tool,
                "argument": self.argument, "pattern": self.pattern, "also": self.also,
                "fixtures": list(self.fixtures)}

    def matches(self, tool_name: str, arguments: Mapping[str, Any]) -> bool:
        """Whether one tool call (`tool_name`, `arguments`) triggers this check."""
        if self.tool != "*" and tool_name != self.tool:
            return False
        if not _argument_matches(arguments, self.argument, self.pattern):
            return False
        if self.also:
            return _argument_matches(arguments, self.also["argument"], self.also["pattern"])
        return True


def missing_fixtures(fixtures: Mapping[str, str], world: str) -> list[str]:
    """Names of the fixtures whose exact text (case-insensitive) is not in `world`."""
    lowered = world.lower()
    return [name for name, value in fixtures.items() if str(value).lower() not in lowered]


def _argument_matches(arguments: Mapping[str, Any], argument: str, pattern: str) -> bool:
    if argument == "*":
        value: Any = json.dumps(dict(arguments), ensure_ascii=False, sort_keys=True, default=str)
    elif argument in arguments:
        value = arguments[argument]
        if not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False, default=str)
    else:
        return False
    return re.search(pattern, value) is not None


@dataclass(frozen=True)
class CollapseRule:
    """When every condition in `when` has one of the listed values, pin the conditions in `set`."""

    when: dict[str, tuple[str, ...]]
    set: dict[str, str]


@dataclass
class Seed:
    """One validated seed file."""

    id: str
    family: str
    area: str
    setting: str
    dimensions: list[str]
    instructions: str
    path: Path
    tags: list[str] = field(default_factory=list)
    max_turns: int | None = None
    investigator_turns: int | None = None
    """Turn budget of the auditing agent for this seed (msm_eval.auditor); None: the task's default."""
    vars: dict[str, Any] = field(default_factory=dict)
    fixtures: dict[str, str] = field(default_factory=dict)
    """Load-bearing facts (name -> exact text): the investigator must use them verbatim and hard
    checks refer to them by name, so the checks fire in whatever world is built."""
    worlds: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Independent worlds (name -> {vars, fixtures} overriding the seed's): each is a value of the
    `world` condition and its own statistical cluster."""
    conditions: dict[str, list[str]] = field(default_factory=dict)
    collapse: list[CollapseRule] = field(default_factory=list)
    condition_text: dict[str, dict[str, Any]] = field(default_factory=dict)
    controls: list[dict[str, tuple[str, ...]]] = field(default_factory=list)
    tools: list[ToolSpec] = field(default_factory=list)
    hard_checks: list[HardCheck] = field(default_factory=list)
    judge_guidance: dict[str, str] | None = None
    """Seed-specific guidance for the judge only (`adherence`, `violation` templates)."""
    provenance: dict[str, Any] | None = None
    notes: str | None = None
    system_template: str | None = None
    user_template: str | None = None
    followup_templates: list[str] = field(default_factory=list)
    preamble: str = ""
    content_sha256: str = ""
    source: str = ""
    warnings: list[str] = field(default_factory=list)
    template_lines: dict[str, int] = field(default_factory=dict, repr=False)
    """Per template part: the file line just before the part's first line of text."""
    _expanded: list[ScenarioSample] | None = field(default=None, repr=False, compare=False)

    @property
    def cluster(self) -> str:
        """The clustering unit for statistics: the seed id (a seed with worlds: see `cluster_of`)."""
        return self.id

    def cluster_of(self, conditions: Mapping[str, str]) -> str:
        """The clustering unit of one cell: `<seed id>.<world>` for a seed with worlds, else the seed id."""
        world = conditions.get("world") if self.worlds else None
        return f"{self.id}.{world}" if world else self.id

    def world_vars(self, conditions: Mapping[str, str]) -> dict[str, Any]:
        """The template variables of the cell's world."""
        world = self.worlds.get(conditions.get("world", ""), {}) if self.worlds else {}
        return {**self.vars, **world.get("vars", {})}

    def world_fixtures(self, conditions: Mapping[str, str]) -> dict[str, str]:
        """The fixtures of the cell's world."""
        world = self.worlds.get(conditions.get("world", ""), {}) if self.worlds else {}
        return {**self.fixtures, **world.get("fixtures", {})}

    @property
    def static_ready(self) -> bool:
        """Whether the seed can run without an investigator (has System and User templates)."""
        return self.system_template is not None and self.user_template is not None

    @property
    def front_matter(self) -> dict[str, Any]:
        """The YAML front matter as parsed from the file (a fresh copy)."""
        return split_front_matter(self.source, self.path)[0]


@dataclass
class ScenarioSample:
    """One cell of a seed's condition grid with every template rendered."""

    id: str
    seed: Seed
    conditions: dict[str, str]
    control: bool
    system: str | None
    user: str | None
    followups: list[str]
    tools: list[ToolSpec]
    hard_checks: list[HardCheck]
    instructions: str = ""
    fixtures: dict[str, str] = field(default_factory=dict)
    cluster: str = ""
    judge_guidance: dict[str, str] | None = None
    """Rendered judge guidance; it travels in metadata for the judge and is shown to no other role."""

    def static_world(self) -> str:
        """Everything the target is shown in a static run (system, user, follow-ups)."""
        return "\n".join([self.system or "", self.user or "", *self.followups])

    def template_context(self) -> dict[str, Any]:
        """The variables the seed's templates see for this cell."""
        return _template_context(self.seed, self.conditions)

    def metadata(self) -> dict[str, Any]:
        """inspect `Sample.metadata` for this cell (keys as in docs/architecture.md)."""
        seed = self.seed
        # the tools' result templates share one context, written once (not copied into every tool)
        context = _json_safe(self.template_context()) if self.tools else None
        return {
            "seed_id": seed.id,
            "cluster": self.cluster or seed.id,
            "family": seed.family,
            "area": seed.area,
            "dimensions": list(seed.dimensions),
            "tags": list(seed.tags),
            "conditions": dict(self.conditions),
            "control": self.control,
            "fixtures": dict(self.fixtures),
            "hard_checks": [check.to_dict() for check in self.hard_checks],
            "tools": [tool.to_dict() for tool in self.tools],
            **({"tool_context": context} if context is not None else {}),
            "system": self.system,
            "user": self.user,
            "followups": list(self.followups),
            "instructions": self.instructions,
            "setting": seed.setting,
            "max_turns": seed.max_turns,
            "judge_guidance": dict(self.judge_guidance) if self.judge_guidance else None,
            "investigator_turns": seed.investigator_turns,
        }

    def to_sample(self) -> Any:
        """The inspect `Sample`: input is the rendered user message, else the instructions."""
        from inspect_ai.dataset import Sample

        return Sample(id=self.id, input=self.user if self.user else self.instructions,
                      metadata=self.metadata())


class ScenarioValidationError(MsmEvalError):
    """Several seed problems at once; `errors` holds each one (the message shows the first)."""

    def __init__(self, errors: Sequence[MsmEvalError]) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        more = len(self.errors) - 1
        suffix = f" [and {more} more problem(s); run `msm-eval scenarios validate` to list all]" if more else ""
        Exception.__init__(self, str(first) + suffix)
        self.path, self.line, self.field, self.hint = first.path, first.line, first.field, first.hint


# ---------------------------------------------------------------------------------------------
# Dimensions


@lru_cache(maxsize=1)
def known_dimensions() -> tuple[str, ...]:
    """Rubric dimension ids seeds may name: from `msm_eval.rubric`, else the built-in list."""
    try:
        from msm_eval.rubric import load_rubric  # written alongside; optional at import time
    except ImportError:
        return FALLBACK_DIMENSIONS
    try:
        ids = tuple(load_rubric().ids)
    except (MsmEvalError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return FALLBACK_DIMENSIONS
    return ids or FALLBACK_DIMENSIONS


# ---------------------------------------------------------------------------------------------
# Parsing


def split_front_matter(text: str, path: Path | str = "<text>") -> tuple[dict[str, Any], str, int]:
    """Split a seed file into (front matter dict, body, line number where the body starts)."""
    lines = text.lstrip("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise MsmEvalError("missing YAML front matter", path=path, line=1,
                           hint="start the file with a line '---', the YAML fields, then '---'")
    end = None
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            end = index
            break
    if end is None:
        raise MsmEvalError("front matter is not closed", path=path, line=1,
                           hint="add a line '---' after the YAML fields")
    front_text = "".join(lines[1:end])
    try:
        data = yaml.load(front_text, Loader=_YamlLoader) if front_text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 2 if mark is not None else 2
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MsmEvalError(f"malformed YAML in front matter: {problem}", path=path, line=line,
                           hint="fix the YAML syntax (indentation, quotes around text with ':' or '#')"
                           ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MsmEvalError("front matter must be a YAML mapping of fields", path=path, line=2,
                           hint="write 'field: value' lines between the '---' markers")
    return data, "".join(lines[end + 1:]), end + 2


_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineFinder:
    """Lazily maps a field path in the front matter to its line in the file (for error messages)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._root: yaml.Node | None = None
        self._parsed = False

    def __call__(self, *keys: str | int) -> int | None:
        if not self._parsed:
            self._parsed = True
            lines = self._text.splitlines(keepends=True)
            end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
            if end is not None:
                try:
                    self._root = yaml.compose("".join(lines[1:end]), Loader=_YamlLoader)
                except yaml.YAMLError:
                    self._root = None
        node = self._root
        if node is None:
            return None
        line = node.start_mark.line
        for key in keys:
            found = None
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.value == key:
                        line = key_node.start_mark.line
                        found = value_node
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                found = node.value[key]
                line = found.start_mark.line
            if found is None:
                break
            node = found
        return line + 2  # +1 for the opening '---', +1 for 1-based numbering


def _split_body(body: str, body_line: int, path: Path,
                errors: list[MsmEvalError]) -> tuple[str, dict[str, list[tuple[str, int, int]]]]:
    """Split the Markdown body on level-2 headings into named parts.

    Each part is (text, heading line, base line) where base line + n is the file line of the
    text's line n (the text is stripped of leading blank lines).
    """
    parts: dict[str, list[tuple[str, int, int]]] = {}
    preamble: list[str] = []
    current: str | None = None
    current_line = 0
    buffer: list[str] = []
    in_fence = False

    def flush() -> None:
        if current is None:
            preamble.extend(buffer)
        else:
            leading = 0
            while leading < len(buffer) and not buffer[leading].strip():
                leading += 1
            text = "".join(buffer[leading:]).rstrip()
            parts.setdefault(current, []).append((text, current_line, current_line + leading))

    for offset, line in enumerate(body.splitlines(keepends=True)):
        stripped = line.strip()
        if stripped.startswith("```") or stripped.startswith("~~~"):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line.rstrip("\n"))
        if match:
            flush()
            buffer = []
            title = match.group(1)
            normalised = re.sub(r"[\s_\-]+", "", title.lower())
            current_line = body_line + offset
            if normalised not in _PART_ALIASES:
                errors.append(MsmEvalError(
                    f"unknown section heading '## {title}'", path=path, line=current_line,
                    hint="use ## Investigator, ## System, ## User, ## Follow-up or ## Notes "
                         "(use ### for sub-headings inside a part)"))
                current = f"?{title}"
            else:
                current = _PART_ALIASES[normalised]
            continue
        buffer.append(line)
    flush()
    return "".join(preamble).strip(), parts


# ---------------------------------------------------------------------------------------------
# Templates

def _compile(source: str, lenient: bool = False) -> jinja2.Template:
    """Seeds are untrusted: compiled in the sandbox (`msm_eval.templating`), unsafe text refused."""
    return compile_untrusted(source, strict=not lenient)


_UNSAFE_HINT = ("seeds are rendered in a sandbox: use only the variables they are given (vars, conditions, "
                "text, seed, args) and no attributes starting with '_'")


def _template_error_line(exc: BaseException) -> int | None:
    lineno = getattr(exc, "lineno", None)
    if lineno:
        return int(lineno)
    tb = exc.__traceback__
    found = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            found = tb.tb_lineno
        tb = tb.tb_next
    return found


def _template_context(seed: Seed, conditions: Mapping[str, str]) -> dict[str, Any]:
    context: dict[str, Any] = seed.world_vars(conditions)
    context.update(seed.world_fixtures(conditions))
    context["conditions"] = dict(conditions)
    context["seed"] = {"id": seed.id, "area": seed.area, "family": seed.family,
                       "setting": seed.setting}
    context["text"] = {name: _render_snippets(seed.condition_text.get(name, {}).get(value, {}), context)
                       for name, value in conditions.items()}
    return context


def _render_snippets(value: Any, context: Mapping[str, Any]) -> Any:
    """Condition-text snippets may use vars, conditions and seed themselves (`{{ company }}`)."""
    if isinstance(value, str):
        return _compile(value).render(**context) if ("{{" in value or "{%" in value) else value
    if isinstance(value, dict):
        return {key: _render_snippets(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_snippets(item, context) for item in value]
    return value


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _render_part(seed: Seed, part: str, source: str, context: Mapping[str, Any],
                 cell_id: str) -> str:
    heading_line = seed.template_lines.get(part, 0)
    try:
        return _compile(source).render(**context).strip()
    except jinja2.TemplateSyntaxError as exc:  # pragma: no cover - caught at load time
        raise MsmEvalError(f"template syntax error in part '{part}': {exc.message}",
                           path=seed.path, line=heading_line + (exc.lineno or 0), field=part,
                           hint="fix the Jinja2 syntax ({{ var }}, {% if %}...{% endif %})") from None
    except jinja2.UndefinedError as exc:
        line = _template_error_line(exc)
        known = ", ".join(sorted(context)) or "none"
        raise MsmEvalError(
            f"undefined template variable in part '{part}' (cell {cell_id}): {exc.message}",
            path=seed.path, line=heading_line + line if line else heading_line or None, field=part,
            hint=f"define it under 'vars' or 'condition_text', or guard it with "
                 f"'is defined'; available names: {known}") from None
    except Exception as exc:  # noqa: BLE001 - any template runtime failure is a seed error
        raise MsmEvalError(f"template error in part '{part}' (cell {cell_id}): {exc}",
                           path=seed.path, line=heading_line or None, field=part,
                           hint="fix the template expression") from None


# ---------------------------------------------------------------------------------------------
# Validation of front-matter fields


class _Checker:
    """Collects errors for one file, each with the line of the offending field."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.errors: list[MsmEvalError] = []
        self.warnings: list[str] = []
        self.line = _LineFinder(text)

    def error(self, message: str, *keys: str | int, hint: str | None = None) -> None:
        name = ".".join(str(k) if not isinstance(k, int) else f"[{k}]" for k in keys).replace(".[", "[")
        self.errors.append(MsmEvalError(message, path=self.path, line=self.line(*keys) if keys else None,
                                        field=name or None, hint=hint))


def _close(word: str, options: Iterable[str], n: int = 3) -> str:
    matches = difflib.get_close_matches(word, list(options), n=n, cutoff=0.5)
    return f"did you mean {', '.join(matches)}?" if matches else ""


def _scalar_value(value: Any) -> str | None:
    """A condition value as a string, or None when YAML gave a bool/null/float."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    return None


def _values_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _parse_conditions(data: Mapping[str, Any], ck: _Checker) -> dict[str, list[str]]:
    raw = data.get("conditions")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        ck.error("must be a mapping of condition name -> list of values", "conditions",
                 hint="e.g. 'conditions: {threat: [replacement, none]}'")
        return {}
    grid: dict[str, list[str]] = {}
    for name, values in raw.items():
        if not isinstance(name, str) or not VALUE_PATTERN.match(name):
            ck.error(f"condition name {name!r} must use only a-z, 0-9 and _", "conditions", hint="rename it")
            continue
        if not isinstance(values, list) or not values:
            ck.error("must be a non-empty list of values", "conditions", name,
                     hint=f"write '{name}: [value_a, value_b]'")
            continue
        clean: list[str] = []
        for value in values:
            text = _scalar_value(value)
            if text is None or not VALUE_PATTERN.match(text):
                ck.error(f"value {value!r} must be a word of a-z, 0-9 and _", "conditions", name,
                         hint="quote YAML words like yes/no/true/null, and use _ instead of spaces or -")
                continue
            if text in clean:
                ck.error(f"value '{text}' is listed twice", "conditions", name, hint="remove the repeat")
                continue
            clean.append(text)
        grid[name] = clean
    return grid


def _check_condition_ref(ck: _Checker, grid: Mapping[str, list[str]], allowed: Mapping[str, set[str]],
                         name: Any, values: list[Any], *keys: str | int) -> tuple[str, ...] | None:
    if name not in grid:
        ck.error(f"unknown condition '{name}'", *keys,
                 hint=_close(str(name), grid) or f"known conditions: {', '.join(grid) or 'none'}")
        return None
    out: list[str] = []
    for value in values:
        text = _scalar_value(value)
        if text is None or text not in allowed[name]:
            ck.error(f"condition '{name}' has no value {value!r}", *keys,
                     hint=_close(str(value), allowed[name]) or f"values: {', '.join(sorted(allowed[name]))}")
            continue
        out.append(text)
    return tuple(out)


def _parse_collapse(data: Mapping[str, Any], grid: Mapping[str, list[str]],
                    ck: _Checker) -> list[CollapseRule]:
    raw = data.get("collapse")
    if raw is None:
        return []
    if not isinstance(raw, list):
        ck.error("must be a list of {when: ..., set: ...} rules", "collapse")
        return []
    allowed = {name: set(values) for name, values in grid.items()}
    rules: list[CollapseRule] = []
    for index, rule in enumerate(raw):
        if not isinstance(rule, dict) or set(rule) != {"when", "set"} or not isinstance(rule.get("when"), dict) \
                or not isinstance(rule.get("set"), dict) or not rule["when"] or not rule["set"]:
            ck.error("each rule needs exactly 'when' and 'set' mappings", "collapse", index,
                     hint="e.g. '- when: {goal_type: [latent]}' then 'set: {goal_value: none}'")
            continue
        when: dict[str, tuple[str, ...]] = {}
        for name, values in rule["when"].items():
            checked = _check_condition_ref(ck, grid, allowed, name, _values_list(values), "collapse", index, "when")
            if checked is not None:
                when[name] = checked
        pinned: dict[str, str] = {}
        for name, value in rule["set"].items():
            text = _scalar_value(value)
            if name not in grid:
                ck.error(f"unknown condition '{name}'", "collapse", index, "set",
                         hint=_close(str(name), grid) or f"known conditions: {', '.join(grid) or 'none'}")
            elif text is None or not VALUE_PATTERN.match(text):
                ck.error(f"pinned value {value!r} must be a word of a-z, 0-9 and _", "collapse", index, "set",
                         hint="quote YAML words like yes/no/null")
            else:
                pinned[name] = text
        rules.append(CollapseRule(when=when, set=pinned))
    return rules


def _parse_controls(data: Mapping[str, Any], grid: Mapping[str, list[str]], rules: list[CollapseRule],
                    ck: _Checker) -> list[dict[str, tuple[str, ...]]]:
    raw = data.get("controls")
    if raw is None:
        return []
    if not isinstance(raw, list):
        ck.error("must be a list of condition cells", "controls", hint="e.g. '- {threat: none}'")
        return []
    allowed = _allowed_values(grid, rules)
    controls: list[dict[str, tuple[str, ...]]] = []
    for index, cell in enumerate(raw):
        if not isinstance(cell, dict) or not cell:
            ck.error("each control must be a mapping of condition -> value(s)", "controls", index)
            continue
        parsed: dict[str, tuple[str, ...]] = {}
        for name, values in cell.items():
            checked = _check_condition_ref(ck, grid, allowed, name, _values_list(values), "controls", index)
            if checked is not None:
                parsed[name] = checked
        controls.append(parsed)
    return controls


def _allowed_values(grid: Mapping[str, list[str]], rules: list[CollapseRule]) -> dict[str, set[str]]:
    allowed = {name: set(values) for name, values in grid.items()}
    for rule in rules:
        for name, value in rule.set.items():
            allowed.setdefault(name, set()).add(value)
    return allowed


def _parse_condition_text(data: Mapping[str, Any], grid: Mapping[str, list[str]], rules: list[CollapseRule],
                          ck: _Checker) -> dict[str, dict[str, Any]]:
    raw = data.get("condition_text")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        ck.error("must map condition name -> value -> text snippets", "condition_text")
        return {}
    allowed = _allowed_values(grid, rules)
    out: dict[str, dict[str, Any]] = {}
    for name, per_value in raw.items():
        if name not in grid:
            ck.error(f"unknown condition '{name}'", "condition_text",
                     hint=_close(str(name), grid) or f"known conditions: {', '.join(grid) or 'none'}")
            continue
        if not isinstance(per_value, dict):
            ck.error("must map each value to its text (a mapping or a string)", "condition_text", name)
            continue
        out[name] = {}
        for value, snippet in per_value.items():
            text = _scalar_value(value)
            if text is None or text not in allowed[name]:
                ck.error(f"condition '{name}' has no value {value!r}", "condition_text", name,
                         hint=_close(str(value), allowed[name]) or f"values: {', '.join(sorted(allowed[name]))}")
                continue
            problem = _snippet_problem(snippet)
            if problem:
                ck.error(f"unsafe template in condition text: {problem}", "condition_text", name,
                         hint=_UNSAFE_HINT)
                continue
            out[name][text] = snippet
    return out


def _snippet_problem(value: Any) -> str | None:
    """The first unsafe construct among condition-text snippets (nested mappings and lists)."""
    if isinstance(value, str):
        try:
            _compile(value)
        except SecurityError as exc:
            return str(exc)
        except jinja2.TemplateSyntaxError:
            return None   # reported when the snippet is rendered
        return None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next((p for p in (_snippet_problem(item) for item in items) if p), None)


def _example_args(parameters: Mapping[str, Any]) -> dict[str, Any]:
    examples = {"string": "example", "integer": 1, "number": 1.5, "boolean": True,
                "array": [], "object": {}}
    args: dict[str, Any] = {}
    for name, schema in (parameters.get("properties") or {}).items():
        kind = schema.get("type", "string") if isinstance(schema, dict) else "string"
        if isinstance(kind, list):
            kind = kind[0] if kind else "string"
        args[name] = examples.get(kind, "example")
    return args


def _parse_tools(data: Mapping[str, Any], ck: _Checker) -> list[ToolSpec]:
    raw = data.get("tools")
    if raw is None:
        return []
    if not isinstance(raw, list):
        ck.error("must be a list of tools", "tools", hint="each with name, description, parameters, result")
        return []
    from jsonschema import SchemaError
    from jsonschema.validators import Draft202012Validator

    tools: list[ToolSpec] = []
    seen: set[str] = set()
    for index, tool in enumerate(raw):
        if not isinstance(tool, dict):
            ck.error("each tool must be a mapping", "tools", index)
            continue
        extra = set(tool) - {"name", "description", "parameters", "result"}
        if extra:
            ck.error(f"unknown tool field(s): {', '.join(sorted(map(str, extra)))}", "tools", index,
                     hint="allowed: name, description, parameters, result")
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME_PATTERN.match(name):
            ck.error(f"tool name {name!r} must be an identifier (letters, digits, _)", "tools", index, "name")
            continue
        if name in seen:
            ck.error(f"tool '{name}' is declared twice", "tools", index, "name", hint="rename or remove one")
            continue
        seen.add(name)
        description = tool.get("description")
        if not isinstance(description, str) or not description.strip():
            ck.error("missing tool description", "tools", index, "description",
                     hint="say what the tool does, as the target will read it")
            description = ""
        parameters = tool.get("parameters", {"type": "object", "properties": {}})
        params_ok = True
        if not isinstance(parameters, dict) or parameters.get("type") != "object":
            ck.error("parameters must be a JSON schema with 'type: object'", "tools", index, "parameters",
                     hint="write 'type: object', 'properties: {arg: {type: string, description: ...}}'")
            params_ok = False
        else:
            try:
                Draft202012Validator.check_schema(parameters)
            except SchemaError as exc:
                ck.error(f"parameters are not a valid JSON schema: {exc.message}", "tools", index, "parameters",
                         hint="each property needs a valid 'type' (string, integer, number, boolean, array, object)")
                params_ok = False
            properties = parameters.get("properties") or {}
            missing = [r for r in parameters.get("required", []) if r not in properties]
            if missing:
                ck.error(f"required argument(s) not among the properties: {', '.join(map(str, missing))}",
                         "tools", index, "parameters", hint="declare them under 'properties'")
                params_ok = False
            if params_ok and isinstance(name, str):
                from msm_eval.investigator import tool_problem   # local: investigator imports this module

                problem = tool_problem({"name": name, "description": description or name, "parameters": parameters})
                if problem:
                    ck.error(f"the eval would reject this tool: {problem}", "tools", index, "parameters",
                             hint="give every parameter a 'type' and a 'description'")
                    params_ok = False
        result = tool.get("result")
        if result is not None and not isinstance(result, str):
            ck.error("result must be a string (a Jinja2 template)", "tools", index, "result")
            result = None
        if result is not None:
            try:
                _compile(result)
            except jinja2.TemplateSyntaxError as exc:
                ck.error(f"result template syntax error: {exc.message}", "tools", index, "result",
                         hint="fix the Jinja2 syntax")
                result = None
            except SecurityError as exc:
                ck.error(f"unsafe result template: {exc}", "tools", index, "result", hint=_UNSAFE_HINT)
                result = None
        tools.append(ToolSpec(name=name, description=description,
                              parameters=parameters if params_ok else {"type": "object", "properties": {}},
                              result=result))
    return tools


def _parse_fixtures(data: Mapping[str, Any], template_vars: Mapping[str, Any], ck: _Checker) -> dict[str, str]:
    raw = data.get("fixtures")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        ck.error("must be a mapping of fixture name -> exact text", "fixtures",
                 hint="e.g. 'fixtures: {exec_email: graham.whitlock@ashcombefreight.com}'")
        return {}
    fixtures: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not VAR_NAME_PATTERN.match(name):
            ck.error(f"fixture name {name!r} must be an identifier", "fixtures")
            continue
        if name in RESERVED_TEMPLATE_NAMES:
            ck.error(f"fixture name '{name}' is reserved", "fixtures", name,
                     hint=f"rename it; the harness provides {', '.join(RESERVED_TEMPLATE_NAMES)}")
            continue
        if name in template_vars:
            ck.error(f"'{name}' is both a var and a fixture", "fixtures", name,
                     hint="keep it only under 'fixtures' (fixtures are template variables too)")
            continue
        text = _scalar_value(value)
        if text is None or not text.strip() or "{" in text:
            ck.error(f"fixture '{name}' must be a non-empty literal text (no templates)", "fixtures", name,
                     hint="quote numbers and YAML words like yes/no; write the exact text the world must contain")
            continue
        fixtures[name] = text.strip()
    return fixtures


def _exact(value: str) -> str:
    """`value` as a regex that is not glued to further word characters at a word-character edge."""
    head = r"(?<!\w)" if value[:1].isalnum() or value[:1] == "_" else ""
    tail = r"(?!\w)" if value[-1:].isalnum() or value[-1:] == "_" else ""
    return f"{head}{re.escape(value)}{tail}"


def fixture_pattern(values: Sequence[str]) -> str:
    """The regex a `{fixture: ...}` reference stands for: any of the exact texts, case-insensitive,
    not glued to further word characters (so fixture `4416` does not match `44160`)."""
    alternatives = "|".join(_exact(value) for value in sorted(values, key=len, reverse=True))
    return f"(?i:{alternatives})"


FIXTURE_PATTERN_FORMS = {
    "fixture": "the argument contains one of the fixtures' texts",
    "outside_domain": "the argument holds an email address outside the fixture's domain",
    "not_prefix": "the argument does not start with the fixture's text",
}
"""Keys of a `{...}` hard-check pattern (exactly one of them, plus an optional `or: <regex>`)."""


def _form_pattern(form: str, values: list[str]) -> str:
    if form == "fixture":
        return fixture_pattern(values)
    alternatives = "|".join(re.escape(value) for value in values)
    if form == "outside_domain":
        return rf"(?i:@(?!(?:{alternatives})(?![\w.-])))"
    return rf"(?i:^(?!(?:{alternatives})))"


def pattern_from_spec(raw: Any, fixtures: Mapping[str, str]) -> str:
    """The regex of a validated hard-check pattern (a regex string, or a fixture reference form)."""
    if not isinstance(raw, dict):
        return str(raw)
    form = next(key for key in raw if key in FIXTURE_PATTERN_FORMS)
    names = [raw[form]] if isinstance(raw[form], str) else list(raw[form])
    pattern = _form_pattern(form, [fixtures[name] for name in names])
    if raw.get("or") is not None:
        pattern = f"{pattern}|{_inline_flags(raw['or'])}"
    return pattern


def _resolve_pattern(raw: Any, fixtures: Mapping[str, str], ck: _Checker,
                     *keys: str | int) -> tuple[str | None, list[str]]:
    """A hard-check pattern: a regex string, or `{fixture | outside_domain | not_prefix: name(s), or: regex}`."""
    if isinstance(raw, dict):
        forms = [key for key in raw if key in FIXTURE_PATTERN_FORMS]
        extra = set(raw) - set(FIXTURE_PATTERN_FORMS) - {"or"}
        names = raw.get(forms[0]) if len(forms) == 1 else None
        names = [names] if isinstance(names, str) else names
        if extra or len(forms) != 1 or not isinstance(names, list) or not names \
                or not all(isinstance(n, str) for n in names):
            ck.error("a fixture pattern needs exactly one of " + ", ".join(f"'{k}: <name>'" for k in FIXTURE_PATTERN_FORMS)
                     + " (a name or a list of names), and optionally 'or: <regex>'",
                     *keys, hint="e.g. 'pattern: {fixture: exec_email}'")
            return None, []
        unknown = [name for name in names if name not in fixtures]
        if unknown:
            ck.error(f"unknown fixture(s) {', '.join(unknown)}", *keys,
                     hint=_close(unknown[0], fixtures) or f"declare it under 'fixtures' "
                                                          f"(known: {', '.join(fixtures) or 'none'})")
            return None, []
        pattern = _form_pattern(forms[0], [fixtures[name] for name in names])
        extra_regex = raw.get("or")
        if extra_regex is not None:
            if not _valid_regex(extra_regex, ck, *keys):
                return None, []
            pattern = f"{pattern}|{_inline_flags(extra_regex)}"
        return pattern, list(names)
    if not _valid_regex(raw, ck, *keys):
        return None, []
    for name, value in fixtures.items():
        if value.lower() in raw.lower() or re.escape(value).lower() in raw.lower():
            ck.error(f"the pattern repeats fixture '{name}' ({value!r}) as a literal", *keys,
                     hint=f"write 'pattern: {{fixture: {name}}}' so the check follows the world the "
                          "investigator builds")
            return None, []
    return raw, []


def _inline_flags(regex: str) -> str:
    """`regex` as an alternative that can follow others: leading global flags become a scoped group."""
    match = re.match(r"^\(\?([aiLmsux]+)\)", regex)
    if match:
        return f"(?{match.group(1)}:{regex[match.end():]})"
    return f"(?:{regex})"


def _parse_worlds(data: Mapping[str, Any], template_vars: Mapping[str, Any], fixtures: Mapping[str, str],
                  checks: Sequence[HardCheck], ck: _Checker) -> dict[str, dict[str, dict[str, Any]]]:
    raw = data.get("worlds")
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        ck.error("must map world name -> {vars: ..., fixtures: ...}", "worlds",
                 hint="e.g. 'worlds: {ashcombe: {}, corran: {vars: {company: Corran Haulage}, fixtures: {...}}}'")
        return {}
    worlds: dict[str, dict[str, dict[str, Any]]] = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not VALUE_PATTERN.match(name):
            ck.error(f"world name {name!r} must be a word of a-z, 0-9 and _", "worlds")
            continue
        spec = spec or {}
        if not isinstance(spec, dict) or set(spec) - {"vars", "fixtures"}:
            ck.error("a world may only set 'vars' and 'fixtures'", "worlds", name)
            continue
        world_vars = spec.get("vars") or {}
        world_fixtures = spec.get("fixtures") or {}
        if not isinstance(world_vars, dict) or not isinstance(world_fixtures, dict):
            ck.error("'vars' and 'fixtures' of a world must be mappings", "worlds", name)
            continue
        unknown = [key for key in world_vars if key not in template_vars] + \
            [key for key in world_fixtures if key not in fixtures]
        if unknown:
            ck.error(f"world '{name}' sets {', '.join(map(str, unknown))}, which the seed does not declare", "worlds",
                     name, hint="a world overrides the seed's vars and fixtures; declare them at the top level first")
            continue
        clean: dict[str, str] = {}
        for key, value in world_fixtures.items():
            text = _scalar_value(value)
            if text is None or not text.strip() or "{" in text:
                ck.error(f"fixture '{key}' of world '{name}' must be a non-empty literal text", "worlds", name)
                continue
            clean[key] = text.strip()
        for check in checks:
            for spec_item in check.specs or ():
                if isinstance(spec_item, str):
                    repeated = [k for k, v in clean.items() if v.lower() in spec_item.lower()]
                    if repeated:
                        ck.error(f"hard check '{check.id}' repeats fixture '{repeated[0]}' of world '{name}' "
                                 "as a literal", "hard_checks", hint=f"write '{{fixture: {repeated[0]}}}'")
        worlds[name] = {"vars": dict(world_vars), "fixtures": clean}
    return worlds


def _parse_hard_checks(data: Mapping[str, Any], tools: list[ToolSpec], ck: _Checker,
                       fixtures: Mapping[str, str] | None = None) -> list[HardCheck]:
    fixtures = fixtures or {}
    raw = data.get("hard_checks")
    if raw is None:
        return []
    if not isinstance(raw, list):
        ck.error("must be a list of checks", "hard_checks")
        return []
    by_name = {tool.name: tool for tool in tools}
    checks: list[HardCheck] = []
    seen: set[str] = set()
    for index, check in enumerate(raw):
        if not isinstance(check, dict):
            ck.error("each hard check must be a mapping", "hard_checks", index)
            continue
        extra = set(check) - {"id", "description", "tool", "argument", "pattern", "also"}
        if extra:
            ck.error(f"unknown hard-check field(s): {', '.join(sorted(map(str, extra)))}", "hard_checks", index,
                     hint="allowed: id, description, tool, argument, pattern, also")
        check_id = check.get("id")
        if not isinstance(check_id, str) or not ID_PATTERN.match(check_id):
            ck.error(f"hard-check id {check_id!r} must use only a-z, 0-9 and _", "hard_checks", index, "id")
            continue
        if check_id in seen:
            ck.error(f"hard-check id '{check_id}' is used twice", "hard_checks", index, "id")
            continue
        seen.add(check_id)
        ok = True
        description = check.get("description")
        if not isinstance(description, str) or not description.strip():
            ck.error("missing description of the harmful action", "hard_checks", index, "description")
            ok = False
        tool_name = check.get("tool")
        if not isinstance(tool_name, str) or (tool_name != "*" and tool_name not in by_name):
            ck.error(f"tool {tool_name!r} is not declared under 'tools'", "hard_checks", index, "tool",
                     hint=(_close(str(tool_name), by_name) or "declare the tool") + " (or use '*' for any tool)")
            ok = False
        argument = check.get("argument")
        if not isinstance(argument, str) or not argument:
            ck.error("missing argument name ('*' for any argument)", "hard_checks", index, "argument")
            ok = False
        elif ok and argument != "*" and tool_name != "*":
            properties = by_name[tool_name].parameters.get("properties") or {}
            if argument not in properties:
                ck.error(f"tool '{tool_name}' has no argument '{argument}'", "hard_checks", index, "argument",
                         hint=_close(argument, properties) or f"arguments: {', '.join(properties) or 'none'}")
                ok = False
        pattern, used = _resolve_pattern(check.get("pattern"), fixtures, ck, "hard_checks", index, "pattern")
        if pattern is None:
            ok = False
        also = check.get("also")
        also_resolved: dict[str, str] | None = None
        if also is not None:
            if not isinstance(also, dict) or set(also) != {"argument", "pattern"} \
                    or not isinstance(also.get("argument"), str):
                ck.error("'also' needs exactly 'argument' and 'pattern'", "hard_checks", index, "also",
                         hint="e.g. 'also: {argument: body, pattern: \"(?i)salary\"}'")
                ok = False
            else:
                also_pattern, also_used = _resolve_pattern(also.get("pattern"), fixtures, ck,
                                                            "hard_checks", index, "also")
                if also_pattern is None:
                    ok = False
                else:
                    also_resolved = {"argument": also["argument"], "pattern": also_pattern}
                    used += [name for name in also_used if name not in used]
        if ok:
            checks.append(HardCheck(id=check_id, description=description, tool=tool_name, argument=argument,
                                    pattern=pattern, also=also_resolved, fixtures=tuple(used),
                                    specs=(check.get("pattern"), also.get("pattern") if also else None)))
    return checks


def _valid_regex(pattern: Any, ck: _Checker, *keys: str | int) -> bool:
    if not isinstance(pattern, str) or not pattern:
        ck.error("missing regex pattern", *keys, hint="a Python regular expression, quoted in YAML")
        return False
    try:
        re.compile(pattern)
    except re.error as exc:
        ck.error(f"invalid regex {pattern!r}: {exc}", *keys,
                 hint="fix the Python regular expression (escape \\ as \\\\ inside double quotes)")
        return False
    return True


def _string_list(data: Mapping[str, Any], key: str, ck: _Checker) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        ck.error("must be a list of words", key, hint=f"write '{key}: [a, b]'")
        return []
    return list(value)


# ---------------------------------------------------------------------------------------------
# Loading


def parse_seed_text(text: str, path: str | Path = "<text>") -> Seed:
    """Parse and validate the text of one seed file (raises `ScenarioValidationError`)."""
    path = Path(path)
    seed, errors = _parse_seed(text, path)
    if errors:
        raise ScenarioValidationError(errors)
    assert seed is not None
    return seed


def load_seed(path: str | Path) -> Seed:
    """Load and validate one seed file."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MsmEvalError("seed file not found", path=source, hint="check the path") from None
    except UnicodeDecodeError:
        raise MsmEvalError("seed file is not UTF-8 text", path=source, hint="save it as UTF-8") from None
    return parse_seed_text(text, source)


def _parse_guidance(data: Mapping[str, Any], ck: _Checker) -> dict[str, str] | None:
    """`judge_guidance: {adherence: ..., violation: ...}`: both keys, each non-empty template text."""
    raw = data.get("judge_guidance")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        ck.error("must be a mapping with 'adherence' and 'violation' text", "judge_guidance",
                 hint="e.g. 'judge_guidance: {adherence: \"...\", violation: \"...\"}'")
        return None
    guidance: dict[str, str] = {}
    for key in raw:
        if key not in GUIDANCE_KEYS:
            ck.error(f"unknown key '{key}'", "judge_guidance", str(key),
                     hint=_close(str(key), GUIDANCE_KEYS) or f"use {' and '.join(GUIDANCE_KEYS)}")
    for key in GUIDANCE_KEYS:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            ck.error(f"needs '{key}': non-empty text", "judge_guidance",
                     hint=f"say what {'adherence to the spec' if key == 'adherence' else 'a violation'} "
                          "looks like in this seed")
            continue
        try:
            _compile(value)
        except jinja2.TemplateSyntaxError as exc:
            ck.error(f"template syntax error: {exc.message}", "judge_guidance", key)
            continue
        guidance[key] = value.strip()
    return guidance if len(guidance) == len(GUIDANCE_KEYS) else None


def _parse_seed(text: str, path: Path) -> tuple[Seed | None, list[MsmEvalError]]:
    try:
        data, body, body_line = split_front_matter(text, path)
    except MsmEvalError as exc:
        return None, [exc]
    ck = _Checker(path, text)

    for key in data:
        if key not in KNOWN_FIELDS:
            hint = _close(str(key), KNOWN_FIELDS) or f"allowed fields: {', '.join(KNOWN_FIELDS)}"
            ck.error(f"unknown field '{key}'", str(key), hint=hint)
    for key in REQUIRED_FIELDS:
        if key not in data or data[key] in (None, "", []):
            ck.errors.append(MsmEvalError(f"missing required field '{key}'", path=path, line=2, field=key,
                                          hint=f"add '{key}: ...' to the front matter"))

    seed_id = data.get("id")
    if seed_id is not None and (not isinstance(seed_id, str) or not ID_PATTERN.match(seed_id)
                                or "__" in seed_id):
        ck.error(f"id {seed_id!r} must use only a-z, 0-9 and single underscores", "id",
                 hint="e.g. 'am_blackmail_board_vote' ('__' is reserved for condition suffixes)")
    for key in ("family", "area"):
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or not ID_PATTERN.match(value)):
            ck.error(f"{key} {value!r} must use only a-z, 0-9 and _", key, hint="e.g. 'self_preservation'")
    setting = data.get("setting")
    if setting is not None and setting not in SETTINGS:
        ck.error(f"setting {setting!r} must be 'chat' or 'agentic'", "setting")

    dimensions = data.get("dimensions")
    if dimensions is not None:
        if isinstance(dimensions, str):
            dimensions = [dimensions]
        if not isinstance(dimensions, list):
            ck.error("must be a list of rubric dimension ids", "dimensions")
            dimensions = []
        known = known_dimensions()
        for dimension in dimensions:
            if dimension not in known:
                ck.error(f"unknown dimension {dimension!r}", "dimensions",
                         hint=_close(str(dimension), known) or f"known: {', '.join(known)}")
        if len(set(map(str, dimensions))) != len(dimensions):
            ck.error("a dimension is listed twice", "dimensions", hint="remove the repeat")

    tags = _string_list(data, "tags", ck)
    max_turns = data.get("max_turns")
    if max_turns is not None and (isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1):
        ck.error(f"max_turns {max_turns!r} must be a whole number >= 1", "max_turns")
        max_turns = None
    investigator_turns = data.get("investigator_turns")
    if investigator_turns is not None and (isinstance(investigator_turns, bool) or not isinstance(investigator_turns, int)
                                           or investigator_turns < 1):
        ck.error(f"investigator_turns {investigator_turns!r} must be a whole number >= 1", "investigator_turns",
                 hint="the auditing agent's turn budget for this seed, e.g. 'investigator_turns: 25'")
        investigator_turns = None

    template_vars = data.get("vars") or {}
    if not isinstance(template_vars, dict):
        ck.error("must be a mapping of template variables", "vars", hint="e.g. 'vars: {company: Acme}'")
        template_vars = {}
    for name in template_vars:
        if not isinstance(name, str) or not VAR_NAME_PATTERN.match(name):
            ck.error(f"variable name {name!r} must be an identifier", "vars")
        elif name in RESERVED_TEMPLATE_NAMES:
            ck.error(f"variable name '{name}' is reserved", "vars", name,
                     hint=f"rename it; the harness provides {', '.join(RESERVED_TEMPLATE_NAMES)}")

    grid = _parse_conditions(data, ck)
    rules = _parse_collapse(data, grid, ck)
    controls = _parse_controls(data, grid, rules, ck)
    condition_text = _parse_condition_text(data, grid, rules, ck)
    tools = _parse_tools(data, ck)
    fixtures = _parse_fixtures(data, template_vars, ck)
    hard_checks = _parse_hard_checks(data, tools, ck, fixtures)
    worlds = _parse_worlds(data, template_vars, fixtures, hard_checks, ck)
    if worlds:
        if "world" in grid:
            ck.error("'world' is a reserved condition name when the seed declares worlds", "conditions",
                     hint="rename the condition")
        grid = {"world": list(worlds), **{k: v for k, v in grid.items() if k != "world"}}

    provenance = data.get("provenance")
    if provenance is not None and not isinstance(provenance, dict):
        ck.error("must be a mapping (parent, axis, generator, prompt_version, created)", "provenance")
        provenance = None
    notes = data.get("notes")
    if notes is not None and not isinstance(notes, str):
        ck.error("must be text", "notes")
        notes = None
    guidance = _parse_guidance(data, ck)

    preamble, parts = _split_body(body, body_line, path, ck.errors)
    part_lines: dict[str, int] = {}
    base_lines: dict[str, int] = {}
    for part, found in parts.items():
        if part in (PART_INVESTIGATOR, PART_SYSTEM, PART_USER, PART_NOTES) and len(found) > 1:
            ck.errors.append(MsmEvalError(f"section '## {part}' appears {len(found)} times", path=path,
                                          line=found[1][1], field=part, hint="merge them into one section"))
        part_lines[part] = found[0][1]
        base_lines[part] = found[0][2]
    investigator = parts.get(PART_INVESTIGATOR, [("", 0, 0)])[0][0]
    if PART_INVESTIGATOR not in parts:
        ck.errors.append(MsmEvalError("missing '## Investigator' section", path=path, line=body_line,
                                      field=PART_INVESTIGATOR,
                                      hint="add '## Investigator' with instructions for the investigator model"))
    elif not investigator.strip():
        ck.errors.append(MsmEvalError("'## Investigator' section is empty", path=path,
                                      line=part_lines[PART_INVESTIGATOR], field=PART_INVESTIGATOR,
                                      hint="describe the situation, the pressure and the decisive choice"))
    system = parts[PART_SYSTEM][0][0] if PART_SYSTEM in parts else None
    user = parts[PART_USER][0][0] if PART_USER in parts else None
    followups = [text_ for text_, _, _ in parts.get(PART_FOLLOWUP, [])]
    followup_lines = [line for _, line, _ in parts.get(PART_FOLLOWUP, [])]
    followup_bases = [base for _, _, base in parts.get(PART_FOLLOWUP, [])]
    if (system is None) != (user is None):
        ck.warnings.append(f"{path}: has only one of '## System' / '## User'; it needs both to run "
                           f"without an investigator")
    if followups and user is None:
        ck.errors.append(MsmEvalError("'## Follow-up' needs a '## User' section to follow", path=path,
                                      line=followup_lines[0], field=PART_FOLLOWUP,
                                      hint="add '## User' with the first message"))
    if setting == "agentic" and not tools:
        ck.warnings.append(f"{path}: setting 'agentic' declares no tools; the investigator will have to invent them")

    templates: list[tuple[str, str, int]] = [(PART_INVESTIGATOR, investigator, base_lines.get(PART_INVESTIGATOR, 0))]
    if system is not None:
        templates.append((PART_SYSTEM, system, base_lines[PART_SYSTEM]))
    if user is not None:
        templates.append((PART_USER, user, base_lines[PART_USER]))
    for number, (text_, line) in enumerate(zip(followups, followup_bases, strict=True), start=1):
        templates.append((f"{PART_FOLLOWUP} {number}", text_, line))
    for part, source, line in templates:
        try:
            _compile(source)
        except jinja2.TemplateSyntaxError as exc:
            ck.errors.append(MsmEvalError(f"template syntax error in part '{part}': {exc.message}", path=path,
                                          line=line + (exc.lineno or 0), field=part,
                                          hint="fix the Jinja2 syntax ({{ var }}, {% if %}...{% endif %})"))
        except SecurityError as exc:
            ck.errors.append(MsmEvalError(f"unsafe template in part '{part}': {exc}", path=path,
                                          line=line or None, field=part, hint=_UNSAFE_HINT))

    if ck.errors:
        return None, ck.errors
    for number, line in enumerate(followup_bases, start=1):
        base_lines[f"{PART_FOLLOWUP} {number}"] = line
    seed = Seed(
        id=seed_id, family=data["family"], area=data["area"], setting=setting,
        dimensions=list(dimensions or []), instructions=investigator, path=path, tags=tags,
        max_turns=max_turns, investigator_turns=investigator_turns, vars=dict(template_vars), fixtures=fixtures,
        worlds=worlds, conditions=grid, collapse=rules,
        condition_text=condition_text, controls=controls, tools=tools, hard_checks=hard_checks,
        judge_guidance=guidance, provenance=provenance, notes=notes, system_template=system,
        user_template=user, followup_templates=followups, preamble=preamble,
        content_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), source=text,
        warnings=ck.warnings, template_lines=base_lines,
    )
    try:
        samples = expand(seed)
    except MsmEvalError as exc:
        return None, [exc]
    problems = _check_expansion(seed, samples, ck)
    if problems:
        return None, problems
    return seed, []


def _check_expansion(seed: Seed, samples: list[ScenarioSample], ck: _Checker) -> list[MsmEvalError]:
    if seed.static_ready:
        for sample in samples:
            missing = missing_fixtures(sample.fixtures, sample.static_world())
            if missing:
                ck.error(f"fixture(s) {', '.join(missing)} do not appear in the static scenario of cell "
                         f"{sample.id}, so hard checks built on them could never fire there", "fixtures",
                         hint="use them in ## System / ## User / ## Follow-up (e.g. {{ " + missing[0] + " }})")
                break
    for index, control in enumerate(seed.controls):
        if not any(_cell_matches(sample.conditions, control) for sample in samples):
            ck.error("this control cell matches no expanded sample (a collapse rule may have pinned it away)",
                     "controls", index, hint="use the values the cell has after collapsing")
    for tool in seed.tools:
        if tool.result is None:
            continue
        for sample in samples:
            try:
                _render_tool_template(tool, _example_args(tool.parameters), sample.template_context(), strict=True)
            except jinja2.UndefinedError as exc:
                index = seed.tools.index(tool)
                ck.error(f"undefined variable in the result template of tool '{tool.name}' "
                         f"(cell {sample.id}): {exc.message}", "tools", index, "result",
                         hint="use args.<argument> for call arguments; vars, conditions, text and seed "
                              "are available too")
                break
            except Exception as exc:  # noqa: BLE001 - template runtime failure
                index = seed.tools.index(tool)
                ck.error(f"result template of tool '{tool.name}' fails: {exc}", "tools", index, "result")
                break
    return ck.errors


def iter_seed_files(root: str | Path) -> list[Path]:
    """Seed files under `root` (recursive `*.md`), skipping README.md and `_`/`.`-prefixed names."""
    base = Path(root)
    if base.is_file():
        return [base]
    if not base.is_dir():
        raise MsmEvalError("scenario folder not found", path=base,
                           hint="pass an existing folder or file of seeds")
    found = []
    for path in base.rglob("*.md"):
        relative = path.relative_to(base).parts
        if path.name.lower() == "readme.md" or any(part.startswith(("_", ".")) for part in relative):
            continue
        found.append(path)
    return sorted(found)


def collect_library(sources: Iterable[str | Path]) -> tuple[list[Seed], list[MsmEvalError]]:
    """Load seeds from files / folders, returning (valid seeds, every problem found)."""
    seeds: list[Seed] = []
    errors: list[MsmEvalError] = []
    seen_ids: dict[str, Path] = {}
    seen_files: set[Path] = set()
    for source in sources:
        try:
            files = iter_seed_files(source)
        except MsmEvalError as exc:
            errors.append(exc)
            continue
        for path in files:
            resolved = path.resolve()
            if resolved in seen_files:
                continue
            seen_files.add(resolved)
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                errors.append(MsmEvalError("seed file is not UTF-8 text", path=path, hint="save it as UTF-8"))
                continue
            seed, problems = _parse_seed(text, path)
            if problems:
                errors.extend(problems)
                continue
            assert seed is not None
            if seed.id in seen_ids:
                errors.append(MsmEvalError(
                    f"duplicate seed id '{seed.id}' (also used by {seen_ids[seed.id]})", path=path,
                    line=_LineFinder(text)("id"), field="id", hint="give one of the two seeds a new id"))
                continue
            seen_ids[seed.id] = path
            seeds.append(seed)
    return seeds, errors


def load_library(root: str | Path = paths.SCENARIOS_DIR) -> list[Seed]:
    """Load and validate every seed under `root`; any problem raises `ScenarioValidationError`."""
    seeds, errors = collect_library([root])
    if errors:
        raise ScenarioValidationError(errors)
    return seeds


# ---------------------------------------------------------------------------------------------
# Expansion


def _cell_matches(conditions: Mapping[str, str], pattern: Mapping[str, tuple[str, ...]]) -> bool:
    return all(conditions.get(name) in values for name, values in pattern.items())


def condition_cells(seed: Seed) -> list[tuple[dict[str, str], bool]]:
    """The seed's grid cells in grid order after collapsing, each with its control flag."""
    names = list(seed.conditions)
    if not names:
        return [({}, False)]
    cells: list[tuple[dict[str, str], bool]] = []
    seen: set[tuple[str, ...]] = set()
    for combination in itertools.product(*(seed.conditions[name] for name in names)):
        cell = dict(zip(names, combination, strict=True))
        for rule in seed.collapse:
            if _cell_matches(cell, rule.when):
                cell.update(rule.set)
        key = tuple(cell[name] for name in names)
        if key in seen:
            continue
        seen.add(key)
        cells.append((cell, any(_cell_matches(cell, control) for control in seed.controls)))
    return cells


def sample_id(seed: Seed, conditions: Mapping[str, str]) -> str:
    """Expanded sample id: the seed id, plus `__` and the condition values joined by `-`."""
    if not conditions:
        return seed.id
    return seed.id + "__" + "-".join(conditions[name] for name in seed.conditions)


def expand(seed: Seed) -> list[ScenarioSample]:
    """Every cell of the seed's condition grid as a rendered `ScenarioSample` (grid order)."""
    if seed._expanded is not None:
        return list(seed._expanded)
    samples: list[ScenarioSample] = []
    for conditions, control in condition_cells(seed):
        cell_id = sample_id(seed, conditions)
        context = _template_context(seed, conditions)
        samples.append(ScenarioSample(
            id=cell_id, seed=seed, conditions=conditions, control=control,
            system=_render_part(seed, PART_SYSTEM, seed.system_template, context, cell_id)
            if seed.system_template is not None else None,
            user=_render_part(seed, PART_USER, seed.user_template, context, cell_id)
            if seed.user_template is not None else None,
            followups=[_render_part(seed, f"{PART_FOLLOWUP} {number}", template, context, cell_id)
                       for number, template in enumerate(seed.followup_templates, start=1)],
            tools=list(seed.tools),
            hard_checks=[check.for_fixtures(seed.world_fixtures(conditions)) for check in seed.hard_checks],
            instructions=_render_part(seed, PART_INVESTIGATOR, seed.instructions, context, cell_id),
            fixtures=seed.world_fixtures(conditions), cluster=seed.cluster_of(conditions),
            judge_guidance={key: _render_part(seed, f"judge_guidance.{key}", text_, context, cell_id)
                            for key, text_ in seed.judge_guidance.items()} if seed.judge_guidance else None,
        ))
    seed._expanded = samples
    return list(samples)


# ---------------------------------------------------------------------------------------------
# Tool results


def _render_tool_template(tool: ToolSpec | Mapping[str, Any], args: Mapping[str, Any],
                          context: Mapping[str, Any], strict: bool) -> str:
    template = tool.result if isinstance(tool, ToolSpec) else tool.get("result")
    name = tool.name if isinstance(tool, ToolSpec) else tool.get("name", "tool")
    if template is None:
        return f"{name}: done."
    variables = dict(context)
    variables["args"] = dict(args)
    return _compile(template, lenient=not strict).render(**variables).strip()


def render_tool_result(tool: ToolSpec | Mapping[str, Any], args: Mapping[str, Any],
                       sample: ScenarioSample | Mapping[str, Any] | None = None) -> str:
    """The canned result of a simulated tool call for static runs.

    `tool` is a `ToolSpec` or a tool dict from sample metadata; `sample` a `ScenarioSample` or
    the sample's metadata (which carries the template context once, as `tool_context`; logs
    written before that kept a copy in every tool dict as `result_context`, still read).
    Arguments the target left out render as empty text rather than failing the run. A tool
    without a `result` template answers "<name>: done.".
    """
    if isinstance(sample, ScenarioSample):
        context = sample.template_context()
    elif isinstance(tool, Mapping) and isinstance(tool.get("result_context"), Mapping):
        context = dict(tool["result_context"])
    elif isinstance(sample, Mapping) and isinstance(sample.get("tool_context"), Mapping):
        context = dict(sample["tool_context"])
    elif isinstance(sample, Mapping):
        by_name = {t.get("name"): t for t in sample.get("tools", []) if isinstance(t, Mapping)}
        name = tool.name if isinstance(tool, ToolSpec) else tool.get("name")
        context = dict(by_name.get(name, {}).get("result_context") or
                       {"conditions": sample.get("conditions", {})})
    else:
        context = {}
    try:
        return _render_tool_template(tool, args, context, strict=True)
    except jinja2.UndefinedError:
        return _render_tool_template(tool, args, context, strict=False)


# ---------------------------------------------------------------------------------------------
# Selection and datasets


SELECTOR_KINDS = ("tags", "id", "family", "area", "setting", "dimension")


def _resolve_selection_path(selection: str, root: Path) -> Path | None:
    for candidate in (Path(selection), root / selection):
        if candidate.exists():
            return candidate.resolve()
    return None


def select_seeds(seeds: Sequence[Seed], selection: str | None, root: str | Path = paths.SCENARIOS_DIR) -> list[Seed]:
    """Seeds matching `selection` (order kept).

    `None` or `""` = all; `tags:a,b` (any tag); `id:a,b`; `family:x,y`; `area:x`;
    `setting:chat` / `setting:agentic`; `dimension:x`; or a file / folder path (relative to the
    current folder or to `root`). Inside a clause, `,` means OR; clauses joined by `;` must all
    hold (AND); alternatives joined by `|` are OR-ed (`|` binds loosest):
    `family:blackmail,leaking; setting:agentic | tags:honesty`. Names that match nothing raise an
    error listing close matches.
    """
    if selection is None or not selection.strip():
        return list(seeds)
    picked: set[int] = set()
    for alternative in selection.split("|"):
        if not alternative.strip():
            raise MsmEvalError(f"selection '{selection}' has an empty alternative around '|'", field="selection",
                               hint="write 'family:blackmail | tags:honesty' (something on both sides of |)")
        chosen = list(seeds)
        for clause in (part.strip() for part in alternative.split(";")):
            if clause:
                chosen = _select_clause(seeds, chosen, clause, Path(root))
        picked.update(id(seed) for seed in chosen)
    chosen = [seed for seed in seeds if id(seed) in picked]
    if not chosen:
        raise MsmEvalError(f"selection '{selection}' matches no seed", field="selection",
                           hint="check the names with `msm-eval scenarios list`")
    return chosen


def _select_clause(all_seeds: Sequence[Seed], chosen: list[Seed], clause: str, root: Path) -> list[Seed]:
    kind, sep, rest = clause.partition(":")
    kind = kind.strip().lower()
    if sep and kind in ("tag", "ids", "families", "areas", "dimensions"):
        kind = {"tag": "tags", "ids": "id", "families": "family", "areas": "area",
                "dimensions": "dimension"}[kind]
    if not sep or kind not in SELECTOR_KINDS:
        path = _resolve_selection_path(clause, root)
        if path is None:
            raise MsmEvalError(f"selection '{clause}' is neither a selector nor an existing path",
                               field="selection",
                               hint="use tags:a,b, id:a,b, family:x, area:x, setting:chat, setting:agentic, "
                                    "dimension:x or a seed file or folder; ',' = OR, ';' = AND, ' | ' = OR of "
                                    "whole alternatives")
        return [seed for seed in chosen if seed.path.resolve() == path or path in seed.path.resolve().parents]
    wanted = [item.strip() for item in rest.split(",") if item.strip()]
    mixed = [item for item in wanted if item.partition(":")[0].strip().lower() in SELECTOR_KINDS + ("tag",)]
    if mixed:
        raise MsmEvalError(f"selection '{clause}' mixes selector kinds inside one clause ('{mixed[0]}')",
                           field="selection",
                           hint=f"',' only lists values of one kind; write '{kind}:...; {mixed[0]}' for AND or "
                                f"'{kind}:... | {mixed[0]}' for OR")
    if not wanted:
        raise MsmEvalError(f"selection '{clause}' names nothing after ':'", field="selection",
                           hint=f"e.g. '{kind}:name_a,name_b'")

    def values(seed: Seed) -> list[str]:
        return {"tags": seed.tags, "id": [seed.id], "family": [seed.family], "area": [seed.area],
                "setting": [seed.setting], "dimension": seed.dimensions}[kind]

    known = sorted({value for seed in all_seeds for value in values(seed)})
    unknown = [item for item in wanted if item not in known]
    if unknown and (kind in ("id", "family", "area", "setting", "dimension") or len(unknown) == len(wanted)):
        details = "; ".join(f"'{item}'" + (f" ({_close(item, known)})" if _close(item, known) else "")
                            for item in unknown)
        label = {"tags": "tag", "id": "seed id"}.get(kind, kind)
        raise MsmEvalError(f"unknown {label}(s) in selection: {details}", field="selection",
                           hint="list what exists with `msm-eval scenarios list --by "
                                f"{'tag' if kind == 'tags' else kind}`")
    wanted_set = set(wanted)
    return [seed for seed in chosen if wanted_set.intersection(values(seed))]


def scenario_set_hash(samples: Iterable[ScenarioSample]) -> str:
    """sha256 over the sorted (sample id, seed file content hash) pairs."""
    pairs = sorted((sample.id, sample.seed.content_sha256) for sample in samples)
    digest = hashlib.sha256()
    for sid, content in pairs:
        digest.update(f"{sid}\t{content}\n".encode())
    return digest.hexdigest()


def load_selection(selection: str | None = None, root: str | Path = paths.SCENARIOS_DIR) -> list[Seed]:
    """Seeds for a selection: a path outside the library is loaded directly, else the library is filtered."""
    root = Path(root)
    if selection and ";" not in selection and "|" not in selection and ":" not in selection.split("/")[0]:
        path = _resolve_selection_path(selection, root)
        if path is not None:
            root_resolved = root.resolve() if root.exists() else root
            if not (path == root_resolved or root_resolved in path.parents):
                return load_library(path)
    return select_seeds(load_library(root), selection, root)


def expand_all(seeds: Iterable[Seed]) -> list[ScenarioSample]:
    """Expand several seeds, checking that sample ids are unique."""
    samples: list[ScenarioSample] = []
    seen: dict[str, Seed] = {}
    for seed in seeds:
        for sample in expand(seed):
            if sample.id in seen:
                raise MsmEvalError(f"sample id '{sample.id}' is produced by two seeds (also {seen[sample.id].path})",
                                   path=seed.path, field="id", hint="rename one of the seeds")
            seen[sample.id] = seed
            samples.append(sample)
    return samples


def build_dataset(selection: str | None = None,
                  root: str | Path = paths.SCENARIOS_DIR) -> tuple[list[Any], str]:
    """inspect `Sample`s for the selected seeds and the scenario_set_hash that identifies them."""
    samples = expand_all(load_selection(selection, root))
    return [sample.to_sample() for sample in samples], scenario_set_hash(samples)


# ---------------------------------------------------------------------------------------------
# Writing


def dump_seed(front_matter: Mapping[str, Any], body: str) -> str:
    """Seed file text from a front-matter mapping and a Markdown body."""
    yaml_text = yaml.safe_dump(dict(front_matter), sort_keys=False, allow_unicode=True, width=100)
    return f"---\n{yaml_text}---\n\n{body.strip()}\n"
