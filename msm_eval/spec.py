"""Model specs ("constitutions"): load structured YAML or plain Markdown, build a section tree,
render the spec variants through Jinja2 templates, and hash the source and every variant.

A structured spec is a YAML file of principles (see docs/spec-authoring.md). Its variants
(`rules`, `value_augmented`, `rule_augmented`, `generic`, `full`) are rendered by the templates
in `specs/templates/<variant>.md.j2`, so the experiment "which spec generalises best" compares
texts that all come from one source. A Markdown spec is read as an ATX heading tree (with
optional `{#anchor key=value}` attributes on headings); only its `full` variant exists.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from msm_eval.errors import MsmEvalError
from msm_eval.paths import SPECS_DIR
from msm_eval.yamlsource import LineIndex, check_keys, parse_yaml

VARIANTS: tuple[str, ...] = ("rules", "value_augmented", "rule_augmented", "generic", "full")
VARIANT_DESCRIPTIONS: dict[str, str] = {
    "rules": "the rule of every principle, nothing else",
    "value_augmented": "rules plus the explanation of the value behind each",
    "rule_augmented": "rules plus their more specific sub-rules",
    "generic": "a short generic assistant spec with no specific rules (control)",
    "full": "everything: rules, sub-rules, values and examples",
}
AREAS: tuple[str, ...] = ("safety", "ethics", "helpfulness", "nature")
TEMPLATES_DIR = SPECS_DIR / "templates"
YAML_SUFFIXES = (".yaml", ".yml")
MARKDOWN_SUFFIXES = (".md", ".markdown")

_TOP_LEVEL_KEYS = {"name": True, "title": True, "version": False, "preamble": False, "principles": True}
_PRINCIPLE_KEYS = {"id": True, "title": True, "area": True, "rule": True, "values": True,
                   "subrules": False, "examples": False, "dimensions": False}
_EXAMPLE_KEYS = ("situation", "good", "bad", "note")
_ID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Example:
    """A worked example of a principle: a situation and what good (and bad) behaviour looks like."""

    situation: str
    good: str | None = None
    bad: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Principle:
    """One principle of a structured spec."""

    id: str
    title: str
    area: str
    rule: str
    subrules: list[str]
    values: str
    examples: list[Example]
    dimensions: list[str]
    line: int | None = None


@dataclass
class Section:
    """A node of a spec's section tree (a Markdown heading, or an area / principle of a YAML spec).

    `text` is the body directly under the heading, without the heading line and without the
    subsections (their text is in `children`).
    """

    id: str
    title: str
    level: int
    text: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Section] = field(default_factory=list)
    line: int | None = None

    def walk(self) -> list[Section]:
        """This section and all its descendants, in document order."""
        found = [self]
        for child in self.children:
            found.extend(child.walk())
        return found

    def total_text(self) -> str:
        """The body of this section and all its subsections joined together."""
        return "\n".join(s.text for s in self.walk() if s.text)


@dataclass
class Spec:
    """A loaded spec. `sha256` hashes the source text; `variant_sha256` hashes a rendered variant."""

    name: str
    path: Path
    format: str
    title: str
    source_text: str
    sha256: str
    sections: list[Section]
    principles: list[Principle] = field(default_factory=list)
    version: str | None = None
    preamble: str = ""
    templates_dir: Path = TEMPLATES_DIR
    _rendered: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def variants(self) -> tuple[str, ...]:
        """The variants this spec can render (all of them for YAML, only `full` for Markdown)."""
        return VARIANTS if self.format == "yaml" else ("full",)

    def render(self, variant: str = "full") -> str:
        """The text of one variant; a Markdown spec has only `full` (the document itself)."""
        if variant not in VARIANTS:
            raise MsmEvalError(f"unknown spec variant '{variant}'", path=self.path, field="variant",
                               hint=f"use one of: {', '.join(VARIANTS)}")
        if variant not in self._rendered:
            if self.format == "markdown":
                if variant != "full":
                    raise MsmEvalError(
                        f"a Markdown spec has only the 'full' variant, not '{variant}'", path=self.path,
                        field="variant",
                        hint="variants need a structured YAML spec (see docs/spec-authoring.md), or use --variant full")
                self._rendered[variant] = self.source_text
            else:
                self._rendered[variant] = _render_template(self, variant)
        return self._rendered[variant]

    def variant_sha256(self, variant: str = "full") -> str:
        """sha256 (hex) of the rendered text of `variant`."""
        return sha256_text(self.render(variant))

    def principle(self, principle_id: str) -> Principle:
        """The principle with this id; an unknown id raises an error listing the known ones."""
        for principle in self.principles:
            if principle.id == principle_id:
                return principle
        raise MsmEvalError(f"no principle '{principle_id}' in spec '{self.name}'", path=self.path,
                           hint=f"known ids: {', '.join(p.id for p in self.principles) or '(none)'}")

    def all_sections(self) -> list[Section]:
        """Every section of the tree, in document order."""
        found: list[Section] = []
        for section in self.sections:
            found.extend(section.walk())
        return found


# ---------------------------------------------------------------------------------------------
# Loading


def sha256_text(text: str) -> str:
    """sha256 (hex) of `text` with newlines normalised to `\\n`, encoded as UTF-8."""
    return hashlib.sha256(normalize_newlines(text).encode("utf-8")).hexdigest()


def normalize_newlines(text: str) -> str:
    """`text` with CRLF / CR line ends turned into LF and a leading byte-order mark removed."""
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def available_specs(root: Path | None = None) -> list[str]:
    """Names of the specs under `specs/` (file stems of .yaml/.yml/.md/.markdown files)."""
    folder = root or SPECS_DIR
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in YAML_SUFFIXES + MARKDOWN_SUFFIXES)


def resolve_spec_path(ref: str | Path, root: Path | None = None) -> Path:
    """The file a spec reference names: an existing path, or a bare name under `specs/`."""
    folder = root or SPECS_DIR
    text = str(ref)
    path = Path(text).expanduser()
    looks_like_path = path.suffix.lower() in YAML_SUFFIXES + MARKDOWN_SUFFIXES or "/" in text or "\\" in text
    if looks_like_path:
        if not path.is_file():
            raise MsmEvalError("spec file not found", path=path,
                               hint="check the path, or give a spec name: "
                                    + (", ".join(available_specs(folder)) or "(no specs in specs/)"))
        if path.suffix.lower() not in YAML_SUFFIXES + MARKDOWN_SUFFIXES:
            raise MsmEvalError(f"unsupported spec file type '{path.suffix}'", path=path,
                               hint="use .yaml/.yml (structured) or .md/.markdown")
        return path
    for suffix in YAML_SUFFIXES + MARKDOWN_SUFFIXES:
        candidate = folder / f"{text}{suffix}"
        if candidate.is_file():
            return candidate
    raise MsmEvalError(f"unknown spec '{text}'",
                       hint="available specs: " + (", ".join(available_specs(folder)) or "(none)")
                            + "; or give a path to a .yaml/.md file")


def load_spec(ref: str | Path, *, rubric: Any = "constitution", templates_dir: str | Path | None = None) -> Spec:
    """Load a spec from a path (`.yaml`/`.yml`/`.md`/`.markdown`) or a name under `specs/`.

    `rubric` (a `Rubric`, a rubric reference, or None to skip) is used to check the dimension ids
    principles name; if the rubric module or file is unavailable, the check is skipped.
    `templates_dir` overrides where the variant templates are found (default `specs/templates`).
    """
    path = resolve_spec_path(ref)
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MsmEvalError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path,
                           hint="save the file as UTF-8") from None
    text = normalize_newlines(raw)
    templates = Path(templates_dir) if templates_dir is not None else TEMPLATES_DIR
    if path.suffix.lower() in MARKDOWN_SUFFIXES:
        spec = parse_markdown_spec(text, path)
    else:
        spec = parse_yaml_spec(text, path)
        _check_dimensions(spec, rubric)
    spec.templates_dir = templates
    return spec


# ---------------------------------------------------------------------------------------------
# Structured YAML specs


def parse_yaml_spec(text: str, path: Path) -> Spec:
    """Validate and build a structured spec from YAML `text` read from `path`."""
    data, lines = parse_yaml(text, path)
    if not isinstance(data, dict):
        raise MsmEvalError("a structured spec must be a YAML mapping with name, title and principles", path=path,
                           line=1, hint="see docs/spec-authoring.md for the format")
    check_keys(data, _TOP_LEVEL_KEYS, path, "", lines, ())
    name = _string(data, "name", path, "", lines, ())
    title = _string(data, "title", path, "", lines, ())
    version = data.get("version")
    if version is not None and not isinstance(version, (str, int, float)):
        raise MsmEvalError(f"must be a string, got {type(version).__name__}", path=path,
                           line=lines.line(("version",)), field="version")
    preamble = data.get("preamble") or ""
    if not isinstance(preamble, str):
        raise MsmEvalError(f"must be text, got {type(preamble).__name__}", path=path,
                           line=lines.line(("preamble",)), field="preamble")
    items = data["principles"]
    if not isinstance(items, list) or not items:
        raise MsmEvalError("must be a non-empty list of principles", path=path, line=lines.line(("principles",)),
                           field="principles", hint="add at least one principle (a mapping with id, title, ...)")
    principles: list[Principle] = []
    seen: dict[str, tuple[int, int | None]] = {}
    for index, item in enumerate(items):
        principle = _principle(item, index, path, lines)
        if principle.id in seen:
            first_index, first_line = seen[principle.id]
            at = f" (line {first_line})" if first_line else ""
            raise MsmEvalError(
                f"duplicate principle id '{principle.id}': principles[{first_index}]{at} and principles[{index}]",
                path=path, line=principle.line, field=f"principles[{index}].id",
                hint="give every principle a unique id")
        seen[principle.id] = (index, principle.line)
        principles.append(principle)
    spec = Spec(name=name.strip(), path=path, format="yaml", title=title.strip(), source_text=text,
                sha256=sha256_text(text), sections=[], principles=principles,
                version=str(version) if version is not None else None, preamble=preamble.strip())
    spec.sections = _yaml_sections(spec)
    return spec


def _string(data: dict[str, Any], key: str, path: Path, where: str, lines: LineIndex,
            keys: tuple[Any, ...]) -> str:
    value = data.get(key)
    line = lines.line((*keys, key))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key in ("id", "name", "title"):
        value = str(value)
    if not isinstance(value, str):
        got = "nothing" if value is None else type(value).__name__
        raise MsmEvalError(f"must be text, got {got}", path=path, line=line, field=f"{where}{key}",
                           hint=f"write '{key}:' followed by text")
    if not value.strip():
        raise MsmEvalError("must not be empty", path=path, line=line, field=f"{where}{key}",
                           hint=f"fill in '{key}'")
    return value


def _string_list(data: dict[str, Any], key: str, path: Path, where: str, lines: LineIndex,
                 keys: tuple[Any, ...]) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    line = lines.line((*keys, key))
    if not isinstance(value, list):
        raise MsmEvalError(f"must be a list of text items, got {type(value).__name__}", path=path, line=line,
                           field=f"{where}{key}", hint=f"write each item of '{key}' on its own '- ' line")
    result: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise MsmEvalError(f"must be non-empty text, got {type(item).__name__}", path=path,
                               line=lines.line((*keys, key, i)), field=f"{where}{key}[{i}]",
                               hint="quote the item if it contains ':' or starts with a special character")
        result.append(item.strip())
    return result


def _principle(item: Any, index: int, path: Path, lines: LineIndex) -> Principle:
    keys: tuple[Any, ...] = ("principles", index)
    line = lines.line(keys)
    label = f"principles[{index}]"
    if not isinstance(item, dict):
        raise MsmEvalError(f"each principle must be a mapping, got {type(item).__name__}", path=path, line=line,
                           field=label, hint="start the principle with '- id: ...' and indent its fields")
    ident = item.get("id")
    if isinstance(ident, str) and ident.strip():
        label = f"principles[{index}] ({ident.strip()})"
    where = f"{label}."
    check_keys(item, _PRINCIPLE_KEYS, path, where, lines, keys)
    principle_id = _string(item, "id", path, where, lines, keys).strip()
    if not _ID_PATTERN.match(principle_id):
        raise MsmEvalError(f"invalid id '{principle_id}'", path=path, line=lines.line((*keys, "id")),
                           field=f"{where}id", hint="start with a letter; use letters, digits, '_', '-', '.'")
    title = _string(item, "title", path, where, lines, keys).strip()
    area = _string(item, "area", path, where, lines, keys).strip().lower()
    if area not in AREAS:
        raise MsmEvalError(f"unknown area '{item['area']}'", path=path, line=lines.line((*keys, "area")),
                           field=f"{where}area", hint=f"use one of: {', '.join(AREAS)}")
    rule = _string(item, "rule", path, where, lines, keys).strip()
    values = _string(item, "values", path, where, lines, keys).strip()
    subrules = _string_list(item, "subrules", path, where, lines, keys)
    dimensions = _string_list(item, "dimensions", path, where, lines, keys)
    examples = _examples(item.get("examples"), path, where, lines, (*keys, "examples"))
    return Principle(id=principle_id, title=title, area=area, rule=rule, subrules=subrules, values=values,
                     examples=examples, dimensions=dimensions, line=line)


def _examples(value: Any, path: Path, where: str, lines: LineIndex, keys: tuple[Any, ...]) -> list[Example]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MsmEvalError(f"must be a list of examples, got {type(value).__name__}", path=path,
                           line=lines.line(keys), field=f"{where}examples",
                           hint="each example is a mapping with situation, good and/or bad")
    examples: list[Example] = []
    for i, item in enumerate(value):
        label = f"{where}examples[{i}]"
        line = lines.line((*keys, i))
        if not isinstance(item, dict):
            raise MsmEvalError(f"must be a mapping, got {type(item).__name__}", path=path, line=line, field=label,
                               hint="write '- situation: ...' then 'good: ...' and/or 'bad: ...'")
        for key in item:
            if key not in _EXAMPLE_KEYS:
                raise MsmEvalError(f"unknown key '{key}'", path=path, line=lines.line((*keys, i, key)),
                                   field=f"{label}.{key}", hint=f"allowed keys: {', '.join(_EXAMPLE_KEYS)}")
        fields: dict[str, str | None] = {}
        for key in _EXAMPLE_KEYS:
            text = item.get(key)
            if text is not None and (not isinstance(text, str) or not text.strip()):
                raise MsmEvalError("must be non-empty text", path=path, line=lines.line((*keys, i, key)),
                                   field=f"{label}.{key}")
            fields[key] = text.strip() if isinstance(text, str) else None
        if not fields["situation"]:
            raise MsmEvalError("required field is missing", path=path, line=line, field=f"{label}.situation",
                               hint="add 'situation:' describing the case")
        if not fields["good"] and not fields["bad"]:
            raise MsmEvalError("an example needs 'good' or 'bad' (or both)", path=path, line=line, field=label,
                               hint="say what good and/or bad behaviour looks like")
        examples.append(Example(situation=fields["situation"] or "", good=fields["good"], bad=fields["bad"],
                                note=fields["note"]))
    return examples


def _check_dimensions(spec: Spec, rubric: Any) -> None:
    """Check the dimension ids principles name against a rubric, if one can be loaded."""
    if rubric is None:
        return
    if isinstance(rubric, (str, Path)):
        try:
            from msm_eval.rubric import load_rubric
            rubric = load_rubric(rubric)
        except (ImportError, MsmEvalError):
            return  # no usable rubric: the rubric's own validation reports its problems
    known = set(getattr(rubric, "ids", ()))
    if not known:
        return
    for index, principle in enumerate(spec.principles):
        for i, dimension in enumerate(principle.dimensions):
            if dimension not in known:
                raise MsmEvalError(
                    f"unknown rubric dimension '{dimension}' (rubric '{getattr(rubric, 'name', '?')}')",
                    path=spec.path, line=principle.line,
                    field=f"principles[{index}] ({principle.id}).dimensions[{i}]",
                    hint=f"use one of: {', '.join(sorted(known))}")


def _yaml_sections(spec: Spec) -> list[Section]:
    """A section tree for a structured spec: one section per area, its principles below."""
    sections: list[Section] = []
    if spec.preamble:
        sections.append(Section(id="preamble", title="Preamble", level=1, text=spec.preamble, line=None))
    by_area: dict[str, Section] = {}
    for principle in spec.principles:
        area = by_area.get(principle.area)
        if area is None:
            area = Section(id=principle.area, title=principle.area.capitalize(), level=1, text="",
                           attrs={"area": principle.area}, line=principle.line)
            by_area[principle.area] = area
            sections.append(area)
        area.children.append(Section(id=principle.id, title=principle.title, level=2,
                                     text=_principle_text(principle), attrs={"area": principle.area},
                                     line=principle.line))
    return sections


def _principle_text(principle: Principle) -> str:
    parts = [principle.rule, *(f"- {s}" for s in principle.subrules), principle.values]
    for example in principle.examples:
        parts.append(f"Situation: {example.situation}")
        if example.good:
            parts.append(f"Good: {example.good}")
        if example.bad:
            parts.append(f"Bad: {example.bad}")
        if example.note:
            parts.append(f"Note: {example.note}")
    return "\n".join(parts)


def principles_by_area(principles: list[Principle]) -> list[tuple[str, list[Principle]]]:
    """Principles grouped by area in the order of AREAS (then any other area, in first-seen order)."""
    groups: dict[str, list[Principle]] = {}
    for principle in principles:
        groups.setdefault(principle.area, []).append(principle)
    ordered = [a for a in AREAS if a in groups] + [a for a in groups if a not in AREAS]
    return [(area, groups[area]) for area in ordered]


# ---------------------------------------------------------------------------------------------
# Rendering


def _render_template(spec: Spec, variant: str) -> str:
    import jinja2

    folder = spec.templates_dir
    name = f"{variant}.md.j2"
    template_path = folder / name
    if not template_path.is_file():
        raise MsmEvalError(f"no template for variant '{variant}'", path=template_path,
                           hint=f"create {name} in the spec templates folder")
    from msm_eval.templating import untrusted_environment

    # spec templates come from the user's spec folder: sandboxed, includes confined to that folder
    env = untrusted_environment(loader=jinja2.FileSystemLoader(str(folder)), keep_trailing_newline=True,
                                trim_blocks=True, lstrip_blocks=True)
    context = {
        "spec": spec,
        "name": spec.name,
        "title": spec.title,
        "version": spec.version,
        "preamble": spec.preamble,
        "principles": spec.principles,
        "areas": principles_by_area(spec.principles),
        "variant": variant,
    }
    try:
        text = env.get_template(name).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        where = Path(exc.filename) if exc.filename else template_path
        raise MsmEvalError(f"template syntax error: {exc.message}", path=where, line=exc.lineno,
                           hint="fix the Jinja2 syntax of the template") from None
    except jinja2.TemplateError as exc:
        where, line = _template_location(exc, folder, template_path)
        raise MsmEvalError(f"template error while rendering variant '{variant}': {exc}", path=where,
                           line=line, hint="templates may use: " + ", ".join(sorted(context))) from None
    return _tidy(text)


def _template_location(exc: BaseException, folder: Path, default: Path) -> tuple[Path, int | None]:
    """The template file and line a rendering error came from (the innermost template frame).

    jinja2 rewrites tracebacks so that template frames carry the template's file name and line.
    """
    found: tuple[Path, int | None] = (default, None)
    tb = exc.__traceback__
    root = folder.resolve()
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            candidate = Path(filename)
            try:
                inside = candidate.resolve().parent == root
            except OSError:
                inside = False
            if inside:
                found = (candidate, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _tidy(text: str) -> str:
    """Collapse runs of blank lines and end with exactly one newline."""
    text = re.sub(r"\n{3,}", "\n\n", text.strip("\n"))
    return "\n".join(line.rstrip() for line in text.split("\n")) + "\n"


# ---------------------------------------------------------------------------------------------
# Markdown specs

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_ATTRS = re.compile(r"[ \t]*\{([^{}]*)\}[ \t]*$")
_ATTR_TOKEN = re.compile(
    r"""\#([^\s"'{}=]+)                       # {#anchor}
      | \.([^\s"'{}=]+)                       # {.class}
      | ([A-Za-z_][\w.:-]*)=                   # key=
        (?: "((?:[^"\\]|\\.)*)" | '([^']*)' | ([^\s"'{}]+) )   # "double", 'single' or bare value
    """, re.VERBOSE)
_SLUG_DROP = re.compile(r"[^\w\- ]+", re.UNICODE)


def slugify(title: str) -> str:
    """A URL-style slug of a heading title: lower case, punctuation dropped, spaces to hyphens."""
    slug = _SLUG_DROP.sub("", title.strip().lower())
    slug = re.sub(r"[\s_]+", "-", slug)
    slug = re.sub(r"-{2,}", "-", slug).strip("-")
    return slug or "section"


def parse_heading_attrs(raw: str, path: Path | None = None, line: int | None = None) -> tuple[str, dict[str, str]]:
    """Split `Title {#anchor key=value key2="quoted"}` into the title and its attributes.

    The anchor is returned as `attrs["id"]`; `.name` tokens are collected in `attrs["class"]`.
    Trailing braces that do not start like attributes stay part of the title.
    """
    match = _ATTRS.search(raw)
    if not match:
        return raw.strip(), {}
    body = match.group(1)
    if not body.strip() or _ATTR_TOKEN.match(body.strip()) is None:
        return raw.strip(), {}  # braces that are part of the title, e.g. "Sets {a, b}"
    attrs: dict[str, str] = {}
    classes: list[str] = []
    position = 0
    while position < len(body):
        if body[position].isspace():
            position += 1
            continue
        token = _ATTR_TOKEN.match(body, position)
        if token is None:
            raise MsmEvalError(f"cannot read heading attributes '{{{body}}}' near '{body[position:position + 20]}'",
                               path=path, line=line,
                               hint='write {#anchor key=value key2="quoted value"}')
        anchor, klass, key, double, single, bare = token.groups()
        if anchor is not None:
            attrs["id"] = anchor
        elif klass is not None:
            classes.append(klass)
        else:
            value = double if double is not None else single if single is not None else bare
            attrs[key] = re.sub(r"\\(.)", r"\1", value) if double is not None else value
        position = token.end()
    if classes:
        attrs["class"] = " ".join(classes)
    return raw[:match.start()].strip(), attrs


@dataclass
class _Heading:
    level: int
    title: str
    attrs: dict[str, str]
    line: int
    body: list[str]


def parse_markdown_sections(text: str, path: Path | None = None) -> tuple[list[Section], list[str]]:
    """The heading tree of a Markdown document, and the body lines before the first heading.

    Headings inside fenced code blocks are not headings. A heading's id is its `{#anchor}` if it
    has one, else a slug of its title made unique with `-2`, `-3`, ... Two explicit anchors that
    are the same are an error.
    """
    headings: list[_Heading] = []
    intro: list[str] = []
    current = intro
    fence: str | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if fence is not None:
            current.append(line)
            stripped = line.strip()
            if stripped.startswith(fence[0]) and set(stripped) == {fence[0]} and len(stripped) >= len(fence) \
                    and len(line) - len(line.lstrip(" ")) <= 3:
                fence = None
            continue
        fence_match = _FENCE.match(line)
        if fence_match and not (fence_match.group(1)[0] == "`" and "`" in fence_match.group(2)):
            fence = fence_match.group(1)
            current.append(line)
            continue
        if line.lstrip(" ").startswith("#"):
            heading = _ATX.match(line)
            if heading:
                content = heading.group(2) or ""
                content = re.sub(r"(?:^|[ \t]+)#+[ \t]*$", "", content)  # optional closing hashes
                title, attrs = parse_heading_attrs(content, path, number)
                headings.append(_Heading(len(heading.group(1)), title, attrs, number, []))
                current = headings[-1].body
                continue
        current.append(line)
    return _build_tree(headings, path), intro


def _build_tree(headings: list[_Heading], path: Path | None) -> list[Section]:
    explicit: dict[str, int] = {}
    for heading in headings:
        anchor = heading.attrs.get("id")
        if anchor is None:
            continue
        if anchor in explicit:
            raise MsmEvalError(f"duplicate heading anchor '#{anchor}' (also on line {explicit[anchor]})",
                               path=path, line=heading.line, hint="give each heading a unique {#anchor}")
        explicit[anchor] = heading.line
    used = set(explicit)
    roots: list[Section] = []
    stack: list[Section] = []
    for heading in headings:
        ident = heading.attrs.get("id")
        if ident is None:
            base = slugify(heading.title)
            ident, n = base, 1
            while ident in used:
                n += 1
                ident = f"{base}-{n}"
            used.add(ident)
        section = Section(id=ident, title=heading.title, level=heading.level,
                          text="\n".join(heading.body).strip("\n"), attrs=dict(heading.attrs), line=heading.line)
        while stack and stack[-1].level >= section.level:
            stack.pop()
        (stack[-1].children if stack else roots).append(section)
        stack.append(section)
    return roots


def _front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    """Optional YAML front matter (`---` ... `---` at the top) and the rest of the document."""
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---\n", 3)
    if end < 0:
        end_alt = text.find("\n---", 3)
        if end_alt >= 0 and text[end_alt + 4:].strip() == "":
            end = end_alt
        else:
            return {}, text
    block = text[4:end]
    first = next((line for line in block.split("\n") if line.strip()), "")
    if not re.match(r"^[A-Za-z_][\w-]*\s*:", first):
        return {}, text  # a leading thematic break ('---'), not front matter
    try:
        meta = yaml.safe_load(block) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise MsmEvalError(f"malformed YAML front matter: {exc.problem}", path=path,
                           line=mark.line + 2 if mark else None, hint="fix the YAML between the '---' lines") from None
    if not isinstance(meta, dict):
        return {}, text
    consumed = text[:end + 5].count("\n")
    body = "\n" * consumed + text[end + 5:]  # keep the body's line numbers those of the file
    return meta, body


def parse_markdown_spec(text: str, path: Path) -> Spec:
    """A spec from a Markdown document: the heading tree, title from front matter or the first `#`."""
    meta, body = _front_matter(text, path)
    sections, _intro = parse_markdown_sections(body, path)
    title = meta.get("title")
    if not isinstance(title, str) or not title.strip():
        first = next((s for s in sections if s.level == 1), None)
        title = first.title if first else path.stem
    name = meta.get("name")
    if not isinstance(name, str) or not name.strip():
        name = path.stem
    version = meta.get("version")
    return Spec(name=name.strip(), path=path, format="markdown", title=title.strip(), source_text=text,
                sha256=sha256_text(text), sections=sections, principles=[],
                version=str(version) if version is not None else None)
