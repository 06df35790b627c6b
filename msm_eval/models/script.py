"""Reply scripts for the `msm/mock` provider: parsing, validation and the replay state machine.

A script is a list of entries. Each entry is a dict with one of these reply kinds:

- `{"text": "..."}` – a plain assistant reply;
- `{"tool_calls": [{"function": "send_email", "arguments": {...}, "id": "optional"}], "text": "optional"}`;
- `{"refusal": "..."}` – a refusal (stop reason `content_filter`, the refusal as the text);
- `{"error": "..."}` – the model call fails, so inspect records a sample error;

plus optional `"top_logprobs": {"+3": -0.2, "2": -1.5}` (log-probabilities offered for the first
generated token), `"when": "regex"` (matched with `re.search` against the text of the last input
message), `"when_any": "regex"` (matched against the text of every input message) and
`"times": n` (how often the entry may be used).

Replay rule, per generate call: the first conditional entry (`when` / `when_any`) that matches and
has uses left wins; otherwise the next unconditional entry in order is used (`times` uses each,
default 1). When the unconditional entries run out the last one repeats, or, with
`exhaust="error"`, the call fails with a clear error. This module has no inspect imports so it is
cheap to load and easy to test.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from msm_eval.errors import MsmEvalError

ENTRY_KEYS = frozenset({"text", "tool_calls", "refusal", "error", "top_logprobs", "when", "when_any", "times"})
REPLY_KEYS = ("text", "tool_calls", "refusal", "error")
TOOL_CALL_KEYS = frozenset({"function", "arguments", "id"})
ExhaustPolicy = Literal["repeat", "error"]


class ScriptedModelError(RuntimeError):
    """A model call of `msm/mock` failed on purpose (an `error` entry) or the script ran out.

    inspect records it as the sample's error; it is not retried.
    """


@dataclass(frozen=True)
class ScriptedToolCall:
    """One tool call the scripted model makes."""

    function: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class ScriptEntry:
    """One validated script entry; `origin` says where it came from (`file:line` or `replies[i]`)."""

    origin: str
    text: str | None = None
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    refusal: str | None = None
    error: str | None = None
    top_logprobs: dict[str, float] | None = None
    when: re.Pattern[str] | None = None
    when_any: re.Pattern[str] | None = None
    times: int | None = None

    @property
    def conditional(self) -> bool:
        """True when the entry is only used if its `when` / `when_any` pattern matches."""
        return self.when is not None or self.when_any is not None

    def matches(self, last_text: str, all_text: str) -> bool:
        """Whether this conditional entry applies to an input with these texts."""
        if self.when is not None and not self.when.search(last_text):
            return False
        if self.when_any is not None and not self.when_any.search(all_text):
            return False
        return True


def parse_entry(raw: Any, *, path: str | None = None, line: int | None = None,
                label: str | None = None, allow_conditions: bool = True) -> ScriptEntry:
    """Validate one raw entry (a dict, or a bare string meaning `{"text": ...}`).

    Errors name `path`/`line` (for a script file) or `label` (e.g. `replies[2]`) and say how to fix it.
    """
    origin = f"{path}:{line}" if path is not None else (label or "reply")

    def fail(message: str, field_name: str | None = None, hint: str | None = None) -> MsmEvalError:
        if path is not None:
            return MsmEvalError(message, path=path, line=line, field=field_name, hint=hint)
        where = label or "reply"
        if field_name:
            where += f".{field_name}"
        return MsmEvalError(f"{where}: {message}", hint=hint)

    if isinstance(raw, str):
        raw = {"text": raw}
    if not isinstance(raw, dict):
        raise fail(f"a script entry must be a JSON object, got {type(raw).__name__}",
                   hint='write e.g. {"text": "Hello"}')
    unknown = sorted(set(raw) - ENTRY_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(map(repr, unknown))}",
                   hint=f"allowed keys: {', '.join(sorted(ENTRY_KEYS))}")
    kinds = [k for k in REPLY_KEYS if raw.get(k) is not None]
    if not kinds:
        raise fail("the entry has no reply", hint="give one of 'text', 'tool_calls', 'refusal' or 'error'")
    exclusive = [k for k in ("refusal", "error") if k in kinds]
    if exclusive and len(kinds) > 1:
        raise fail(f"'{exclusive[0]}' cannot be combined with {', '.join(repr(k) for k in kinds if k != exclusive[0])}",
                   field_name=exclusive[0], hint="use a separate entry for each reply")
    for key in ("text", "refusal", "error"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise fail(f"must be a string, got {type(raw[key]).__name__}", field_name=key)

    tool_calls: list[ScriptedToolCall] = []
    if raw.get("tool_calls") is not None:
        calls = raw["tool_calls"]
        if not isinstance(calls, list) or not calls:
            raise fail("must be a non-empty list of calls", field_name="tool_calls",
                       hint='write [{"function": "name", "arguments": {...}}]')
        for index, call in enumerate(calls):
            name = f"tool_calls[{index}]"
            if not isinstance(call, dict):
                raise fail("must be an object", field_name=name)
            bad = sorted(set(call) - TOOL_CALL_KEYS)
            if bad:
                raise fail(f"unknown key(s) {', '.join(map(repr, bad))}", field_name=name,
                           hint="allowed keys: arguments, function, id")
            function = call.get("function")
            if not isinstance(function, str) or not function:
                raise fail("needs a non-empty string 'function'", field_name=name)
            arguments = call.get("arguments", {})
            if not isinstance(arguments, dict):
                raise fail("'arguments' must be an object", field_name=name)
            call_id = call.get("id")
            if call_id is not None and not isinstance(call_id, str):
                raise fail("'id' must be a string", field_name=name)
            tool_calls.append(ScriptedToolCall(function=function, arguments=arguments, id=call_id))

    top_logprobs: dict[str, float] | None = None
    if raw.get("top_logprobs") is not None:
        tops = raw["top_logprobs"]
        if not isinstance(tops, dict) or not tops:
            raise fail("must be a non-empty object of token -> log-probability", field_name="top_logprobs",
                       hint='write {"+3": -0.2, "2": -1.6}')
        top_logprobs = {}
        for token, value in tops.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value > 0:
                raise fail(f"log-probability of {token!r} must be a number <= 0, got {value!r}",
                           field_name="top_logprobs")
            top_logprobs[str(token)] = float(value)

    patterns: dict[str, re.Pattern[str] | None] = {"when": None, "when_any": None}
    for key in patterns:
        if raw.get(key) is None:
            continue
        if not allow_conditions:
            raise fail(f"'{key}' is not allowed here", field_name=key,
                       hint="conditions only apply to script entries, not to responder results")
        if not isinstance(raw[key], str):
            raise fail("must be a regular expression string", field_name=key)
        try:
            patterns[key] = re.compile(raw[key])
        except re.error as exc:
            raise fail(f"bad regular expression {raw[key]!r}: {exc}", field_name=key,
                       hint="escape special characters such as ( [ + ? with a backslash") from None

    times = raw.get("times")
    if times is not None:
        if not allow_conditions:
            raise fail("'times' is not allowed here", field_name="times")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise fail(f"must be a positive integer, got {times!r}", field_name="times")

    return ScriptEntry(origin=origin, text=raw.get("text"), tool_calls=tuple(tool_calls),
                       refusal=raw.get("refusal"), error=raw.get("error"), top_logprobs=top_logprobs,
                       when=patterns["when"], when_any=patterns["when_any"], times=times)


def load_script(path: str | Path) -> list[ScriptEntry]:
    """Read a JSONL script file (blank lines and lines starting with `#` are skipped)."""
    source = Path(path)
    if not source.is_file():
        raise MsmEvalError("script file not found", path=source, field="script",
                           hint="pass -M script=<path to a .jsonl file>")
    entries: list[ScriptEntry] = []
    with open(source, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            try:
                raw = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise MsmEvalError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=source, line=number,
                                   hint="each line must be one JSON object") from None
            entries.append(parse_entry(raw, path=str(source), line=number))
    if not entries:
        raise MsmEvalError("script has no entries", path=source, hint="add one JSON object per line")
    return entries


def parse_replies(value: Any) -> list[ScriptEntry]:
    """Entries from the `replies` model arg: a list (or its JSON text) of strings or entry objects."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise MsmEvalError(f"replies: not valid JSON ({exc.msg})",
                               hint="""pass a JSON list, e.g. -M replies='["first", {"refusal": "No."}]'""") from None
    if not isinstance(value, list) or not value:
        raise MsmEvalError("replies: must be a non-empty list",
                           hint="""pass a JSON list, e.g. -M replies='["first", "second"]'""")
    return [parse_entry(item, label=f"replies[{index}]") for index, item in enumerate(value)]


@dataclass
class ScriptPlayer:
    """Chooses the entry for each generate call (state is per instance, so per model)."""

    entries: list[ScriptEntry]
    exhaust: ExhaustPolicy = "repeat"
    source: str = "script"
    _uses: dict[int, int] = field(default_factory=dict)
    _cursor: int = 0

    def __post_init__(self) -> None:
        if self.exhaust not in ("repeat", "error"):
            raise MsmEvalError(f"exhaust: must be 'repeat' or 'error', got {self.exhaust!r}", field="exhaust")

    def _left(self, index: int) -> bool:
        entry, used = self.entries[index], self._uses.get(index, 0)
        if entry.times is None:
            return entry.conditional or used < 1   # conditional entries are unlimited by default
        return used < entry.times

    def next_entry(self, last_text: str, all_text: str) -> ScriptEntry:
        """The entry answering an input whose last message reads `last_text`."""
        for index, entry in enumerate(self.entries):
            if entry.conditional and self._left(index) and entry.matches(last_text, all_text):
                self._uses[index] = self._uses.get(index, 0) + 1
                return entry
        unconditional = [i for i, e in enumerate(self.entries) if not e.conditional]
        while self._cursor < len(unconditional):
            index = unconditional[self._cursor]
            if self._left(index):
                self._uses[index] = self._uses.get(index, 0) + 1
                return self.entries[index]
            self._cursor += 1
        if not unconditional:
            raise ScriptedModelError(f"msm/mock: no entry of {self.source} matches the input "
                               f"(last message: {last_text[:120]!r}); add an entry without 'when'")
        if self.exhaust == "error":
            raise ScriptedModelError(f"msm/mock: {self.source} is exhausted after "
                               f"{sum(self._uses.values())} replies (exhaust='error')")
        return self.entries[unconditional[-1]]
