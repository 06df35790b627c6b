"""Judge-validation transcripts: hand-written conversations with the score a correct judge gives.

The set lives in `validation/` (one YAML file per rubric dimension, `paths.VALIDATION_DIR`). Each
file names its `dimension` and lists `transcripts`; each transcript has

- `id` (unique across the set, `[a-z0-9_-]`), `setting` (`chat` | `agentic`),
  `kind` (`violation` | `exemplary` | `mixed` | `not_exercised`, for the file's dimension),
- `expect`: `{dimension: band}` where a band is `[low, high]` (inclusive, -3..3), a single integer,
  or `null` (the dimension is not exercised); the file's dimension must be among them, other
  dimensions may be added where the expected score is just as clear,
- `reason` (one line: why that band), optional `cluster` (transcripts that share a situation;
  default the id), and `messages` (`role` system | user | assistant | tool, `content`; assistant
  messages may carry `tool_calls: [{id, function, arguments}]`, tool messages `tool_call_id` and
  `function`). Agentic transcripts must contain at least one tool call.

`load_validation_set()` validates everything and raises `MsmEvalError` naming file, line and field;
`to_messages()` turns a transcript into inspect chat messages for the `judge_validation` task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msm_eval.errors import MsmEvalError
from msm_eval.paths import VALIDATION_DIR
from msm_eval.yamlsource import LineIndex, check_keys, parse_yaml

KINDS = ("violation", "exemplary", "mixed", "not_exercised")
SETTINGS = ("chat", "agentic")
ROLES = ("system", "user", "assistant", "tool")
SCORE_MIN, SCORE_MAX = -3, 3
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

Band = tuple[int, int] | None
"""Inclusive expected score range, or None when the dimension is not exercised."""


@dataclass(frozen=True)
class ToolCallSpec:
    """One tool call made by the assistant in a validation transcript."""

    id: str
    function: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class MessageSpec:
    """One message of a validation transcript."""

    role: str
    content: str
    tool_calls: tuple[ToolCallSpec, ...] = ()
    tool_call_id: str | None = None
    function: str | None = None


@dataclass(frozen=True)
class ValidationTranscript:
    """A transcript with the bands a correct judge's scores fall in."""

    id: str
    dimension: str
    setting: str
    kind: str
    expect: dict[str, Band]
    reason: str
    cluster: str
    messages: tuple[MessageSpec, ...]
    path: Path
    line: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def band(self, dimension: str | None = None) -> Band:
        """The expected band of `dimension` (default: the transcript's own dimension)."""
        return self.expect[dimension or self.dimension]


def parse_band(raw: Any, *, path: Path, line: int | None, where: str) -> Band:
    """`[low, high]`, a single integer or null -> an inclusive band (None = not exercised)."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise MsmEvalError(f"{raw!r} is not a score band", path=path, line=line, field=where,
                           hint="write [low, high], one integer, or null for not exercised")
    if isinstance(raw, int):
        raw = [raw, raw]
    if not (isinstance(raw, list) and len(raw) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                             for v in raw)):
        raise MsmEvalError(f"{raw!r} is not a score band", path=path, line=line, field=where,
                           hint="write [low, high] with integers, one integer, or null for not exercised")
    low, high = raw
    if not SCORE_MIN <= low <= high <= SCORE_MAX:
        raise MsmEvalError(f"band {raw} must satisfy {SCORE_MIN} <= low <= high <= {SCORE_MAX}", path=path,
                           line=line, field=where, hint="order the ends and stay within -3..3")
    return (low, high)


def _kind_matches(kind: str, band: Band) -> bool:
    if kind == "not_exercised":
        return band is None
    if band is None:
        return False
    low, high = band
    if kind == "violation":
        return high <= -1
    if kind == "exemplary":
        return low >= 1
    return low <= 1 and high >= -1   # mixed: a band around the middle of the scale


_KIND_RULE = {"violation": "a band with high <= -1", "exemplary": "a band with low >= 1",
              "mixed": "a band reaching into -1..1", "not_exercised": "null"}


def _text(value: Any, path: Path, line: int | None, where: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise MsmEvalError("must be a non-empty string" if not allow_empty else "must be a string", path=path,
                           line=line, field=where, hint="quote the text or use a YAML block (|)")
    return value


def _messages(raw: Any, path: Path, lines: LineIndex, keys: tuple[Any, ...], where: str) -> tuple[MessageSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise MsmEvalError("must be a non-empty list of messages", path=path, line=lines.line(keys), field=where)
    out: list[MessageSpec] = []
    call_ids: set[str] = set()
    for i, item in enumerate(raw):
        mkeys, mwhere = (*keys, i), f"{where}[{i}]."
        if not isinstance(item, dict):
            raise MsmEvalError("must be a mapping with role and content", path=path, line=lines.line(mkeys),
                               field=f"{where}[{i}]")
        check_keys(item, {"role": True, "content": False, "tool_calls": False, "tool_call_id": False,
                          "function": False}, path, mwhere, lines, mkeys)
        role = item["role"]
        if role not in ROLES:
            raise MsmEvalError(f"unknown role {role!r}", path=path, line=lines.line((*mkeys, "role")),
                               field=f"{mwhere}role", hint=f"use one of: {', '.join(ROLES)}")
        content = _text(item.get("content", ""), path, lines.line((*mkeys, "content")), f"{mwhere}content",
                        allow_empty=role in ("assistant", "tool"))
        calls: list[ToolCallSpec] = []
        if "tool_calls" in item:
            if role != "assistant":
                raise MsmEvalError("only assistant messages make tool calls", path=path,
                                   line=lines.line((*mkeys, "tool_calls")), field=f"{mwhere}tool_calls")
            if not isinstance(item["tool_calls"], list) or not item["tool_calls"]:
                raise MsmEvalError("must be a non-empty list", path=path, line=lines.line((*mkeys, "tool_calls")),
                                   field=f"{mwhere}tool_calls")
            for j, call in enumerate(item["tool_calls"]):
                ckeys, cwhere = (*mkeys, "tool_calls", j), f"{mwhere}tool_calls[{j}]."
                if not isinstance(call, dict):
                    raise MsmEvalError("must be a mapping {id, function, arguments}", path=path,
                                       line=lines.line(ckeys), field=f"{mwhere}tool_calls[{j}]")
                check_keys(call, {"id": True, "function": True, "arguments": False}, path, cwhere, lines, ckeys)
                arguments = call.get("arguments") or {}
                if not isinstance(arguments, dict):
                    raise MsmEvalError("must be a mapping of argument names to values", path=path,
                                       line=lines.line((*ckeys, "arguments")), field=f"{cwhere}arguments")
                call_id = _text(call["id"], path, lines.line((*ckeys, "id")), f"{cwhere}id")
                if call_id in call_ids:
                    raise MsmEvalError(f"tool call id {call_id!r} is used twice", path=path,
                                       line=lines.line((*ckeys, "id")), field=f"{cwhere}id")
                call_ids.add(call_id)
                calls.append(ToolCallSpec(call_id, _text(call["function"], path, lines.line((*ckeys, "function")),
                                                         f"{cwhere}function"), dict(arguments)))
        tool_call_id = item.get("tool_call_id")
        if role == "tool":
            if tool_call_id not in call_ids:
                raise MsmEvalError(f"tool message answers unknown call {tool_call_id!r}", path=path,
                                   line=lines.line(mkeys), field=f"{mwhere}tool_call_id",
                                   hint="set tool_call_id to the id of an earlier assistant tool call")
        elif tool_call_id is not None or "function" in item:
            raise MsmEvalError("only tool messages carry tool_call_id / function", path=path,
                               line=lines.line(mkeys), field=f"{mwhere}tool_call_id")
        out.append(MessageSpec(role=role, content=content, tool_calls=tuple(calls),
                               tool_call_id=str(tool_call_id) if tool_call_id is not None else None,
                               function=str(item["function"]) if item.get("function") else None))
    if not any(m.role == "assistant" for m in out):
        raise MsmEvalError("a transcript needs at least one assistant message", path=path,
                           line=lines.line(keys), field=where)
    return tuple(out)


def parse_validation_file(text: str, path: Path, dimension_ids: list[str]) -> list[ValidationTranscript]:
    """Validate one validation file's text; raises `MsmEvalError` at the first problem."""
    data, lines = parse_yaml(text, path)
    if not isinstance(data, dict):
        raise MsmEvalError("a validation file is a mapping with 'dimension' and 'transcripts'", path=path,
                           hint="start the file with 'dimension: <id>'")
    check_keys(data, {"dimension": True, "description": False, "transcripts": True}, path, "", lines, ())
    dimension = data["dimension"]
    if dimension not in dimension_ids:
        raise MsmEvalError(f"unknown rubric dimension {dimension!r}", path=path, line=lines.line(("dimension",)),
                           field="dimension", hint=f"use one of: {', '.join(dimension_ids)}")
    items = data["transcripts"]
    if not isinstance(items, list) or not items:
        raise MsmEvalError("must be a non-empty list", path=path, line=lines.line(("transcripts",)),
                           field="transcripts")
    out = []
    for i, item in enumerate(items):
        keys, where = ("transcripts", i), f"transcripts[{i}]."
        line = lines.line(keys)
        if not isinstance(item, dict):
            raise MsmEvalError("must be a mapping", path=path, line=line, field=f"transcripts[{i}]")
        check_keys(item, {"id": True, "setting": True, "kind": True, "expect": True, "reason": True,
                          "cluster": False, "messages": True}, path, where, lines, keys)
        tid = item["id"]
        if not isinstance(tid, str) or not _ID.match(tid):
            raise MsmEvalError(f"bad id {tid!r}", path=path, line=lines.line((*keys, "id")), field=f"{where}id",
                               hint="use lower-case letters, digits, '-' and '_'")
        for key, allowed in (("setting", SETTINGS), ("kind", KINDS)):
            if item[key] not in allowed:
                raise MsmEvalError(f"unknown {key} {item[key]!r}", path=path, line=lines.line((*keys, key)),
                                   field=f"{where}{key}", hint=f"use one of: {', '.join(allowed)}")
        expect_raw = item["expect"]
        if not isinstance(expect_raw, dict) or not expect_raw:
            raise MsmEvalError("must map dimension ids to bands", path=path, line=lines.line((*keys, "expect")),
                               field=f"{where}expect", hint=f"e.g. expect: {{{dimension}: [-3, -2]}}")
        expect: dict[str, Band] = {}
        for dim, raw in expect_raw.items():
            if dim not in dimension_ids:
                raise MsmEvalError(f"unknown rubric dimension {dim!r}", path=path,
                                   line=lines.line((*keys, "expect", dim)), field=f"{where}expect.{dim}",
                                   hint=f"use one of: {', '.join(dimension_ids)}")
            expect[dim] = parse_band(raw, path=path, line=lines.line((*keys, "expect", dim)),
                                     where=f"{where}expect.{dim}")
        if dimension not in expect:
            raise MsmEvalError(f"expect must give a band for the file's dimension {dimension!r}", path=path,
                               line=lines.line((*keys, "expect")), field=f"{where}expect")
        if not _kind_matches(item["kind"], expect[dimension]):
            raise MsmEvalError(f"kind {item['kind']!r} needs {_KIND_RULE[item['kind']]} for {dimension}, "
                               f"got {expect[dimension]}", path=path, line=lines.line((*keys, "expect", dimension)),
                               field=f"{where}expect.{dimension}", hint="fix the band or the kind")
        reason = _text(item["reason"], path, lines.line((*keys, "reason")), f"{where}reason")
        if "\n" in reason.strip():
            raise MsmEvalError("reason must be one line", path=path, line=lines.line((*keys, "reason")),
                               field=f"{where}reason")
        messages = _messages(item["messages"], path, lines, (*keys, "messages"), f"{where}messages")
        if item["setting"] == "agentic" and not any(m.tool_calls for m in messages):
            raise MsmEvalError("an agentic transcript needs at least one tool call", path=path, line=line,
                               field=f"{where}messages", hint="add tool_calls to an assistant message or use chat")
        cluster = item.get("cluster") or tid
        out.append(ValidationTranscript(id=tid, dimension=dimension, setting=item["setting"], kind=item["kind"],
                                        expect=expect, reason=reason.strip(), cluster=str(cluster),
                                        messages=messages, path=path, line=line))
    return out


def validation_files(root: str | Path | None = None) -> list[Path]:
    """The YAML files of a validation folder (or the single file `root`), sorted."""
    base = Path(root) if root is not None else VALIDATION_DIR
    if base.is_file():
        return [base]
    if not base.is_dir():
        raise MsmEvalError("validation set not found", path=base,
                           hint="pass a folder of validation YAML files or one such file")
    files = sorted(p for p in base.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise MsmEvalError("folder holds no validation YAML files", path=base)
    return files


def load_validation_set(root: str | Path | None = None, rubric: Any = "constitution",
                        selection: str | None = None) -> list[ValidationTranscript]:
    """Every transcript of the validation set, validated against `rubric` (ids unique across files).

    `selection` keeps a subset: `dimension:a,b`, `kind:x`, `setting:x` or `id:a,b`, clauses joined by `;`.
    """
    from msm_eval.rubric import load_rubric

    loaded = load_rubric(rubric) if isinstance(rubric, str | Path) else rubric
    ids = list(loaded.ids)
    out: list[ValidationTranscript] = []
    seen: dict[str, ValidationTranscript] = {}
    for path in validation_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise MsmEvalError(f"not UTF-8 text ({exc.reason})", path=path, hint="save the file as UTF-8") from None
        for transcript in parse_validation_file(text.lstrip("\ufeff").replace("\r\n", "\n"), path, ids):
            if transcript.id in seen:
                first = seen[transcript.id]
                raise MsmEvalError(f"duplicate transcript id {transcript.id!r} (first in {first.path.name}:"
                                   f"{first.line})", path=path, line=transcript.line, field="id",
                                   hint="give every validation transcript its own id")
            seen[transcript.id] = transcript
            out.append(transcript)
    return select(out, selection)


def select(transcripts: list[ValidationTranscript], selection: str | None) -> list[ValidationTranscript]:
    """Filter by `dimension:`, `kind:`, `setting:` or `id:` clauses (comma = any of, `;` = all of)."""
    if not selection:
        return transcripts
    kept = transcripts
    for clause in (c.strip() for c in selection.split(";") if c.strip()):
        key, _, values = clause.partition(":")
        wanted = {v.strip() for v in values.split(",") if v.strip()}
        attr = {"dimension": "dimension", "kind": "kind", "setting": "setting", "id": "id"}.get(key.strip())
        if attr is None or not wanted:
            raise MsmEvalError(f"bad selection clause {clause!r}", field="selection",
                               hint="use dimension:a,b | kind:x | setting:x | id:a,b, joined by ';'")
        kept = [t for t in kept if getattr(t, attr) in wanted]
    if not kept:
        raise MsmEvalError(f"selection {selection!r} matches no validation transcript", field="selection")
    return kept


def to_messages(transcript: ValidationTranscript) -> list[Any]:
    """The transcript as inspect chat messages (ids `<transcript id>-m<k>` so citations are stable)."""
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageTool, ChatMessageUser
    from inspect_ai.tool import ToolCall

    out: list[Any] = []
    for k, message in enumerate(transcript.messages, start=1):
        mid = f"{transcript.id}-m{k}"
        if message.role == "system":
            out.append(ChatMessageSystem(id=mid, content=message.content))
        elif message.role == "user":
            out.append(ChatMessageUser(id=mid, content=message.content))
        elif message.role == "assistant":
            calls = [ToolCall(id=c.id, function=c.function, arguments=c.arguments) for c in message.tool_calls]
            out.append(ChatMessageAssistant(id=mid, content=message.content, tool_calls=calls or None))
        else:
            out.append(ChatMessageTool(id=mid, content=message.content, tool_call_id=message.tool_call_id,
                                       function=message.function))
    return out
