"""Reading JSON out of model replies without trusting them: bounded, and loud about conflicts.

Every role that reads a structured answer (the judge, the harmful-action classifier, the
investigator, the training-data generators) gets model text, which may be hostile or broken:

- nesting is bounded (`MAX_DEPTH`): a reply of a thousand `[` or `{` is skipped as a candidate
  with a reason instead of raising `RecursionError` inside `json` and stopping the eval;
- length is bounded (`MAX_CHARS`): only the first part of a huge reply is searched;
- a key that appears twice in one object (`{"honesty": 1, "honesty": 3}`) is reported in
  `JsonReply.duplicates` with both values, so the caller records a conflict instead of letting
  `json` silently keep the last value.

`find_json_object(text)` returns a `JsonReply`; `find_json_value(text)` does the same for the
training generators, which also accept a top-level list.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 64
"""Deepest nesting of `{` / `[` accepted in a reply (real answers use fewer than ten levels)."""
MAX_CHARS = 400_000
"""Only this many characters of a reply are searched."""

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


@dataclass
class JsonReply:
    """What was found in a reply: the value (or None), why not, and repeated keys."""

    value: Any = None
    problem: str | None = None
    duplicates: list[tuple[str, Any, Any]] = field(default_factory=list)
    """(key, first value, later value) for each key that appears twice in one object."""

    def conflict(self) -> str | None:
        """A one-line description of the repeated keys, or None when there are none."""
        if not self.duplicates:
            return None
        parts = [f"'{key}' given twice ({_short(first)} then {_short(later)})" for key, first, later in self.duplicates]
        return "conflicting answer: " + "; ".join(parts[:5])


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]]', re.DOTALL)
MAX_TOKENS = 200_000
"""Bracket and string tokens scanned per reply before the search gives up (bounds the work)."""


def _span(text: str, start: int, max_depth: int, budget: list[int]) -> tuple[int | None, bool]:
    """End (exclusive) of the bracketed value opening at `start`, and whether it was too deep.

    Skips JSON strings; returns (None, False) for an unclosed value or a spent `budget`.
    """
    depth = 0
    for token in _TOKEN.finditer(text, start):
        budget[0] -= 1
        if budget[0] <= 0:
            return None, False
        char = token.group()
        if char in "{[":
            depth += 1
            if depth > max_depth:
                return None, True
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return token.end(), False
    return None, False


def _decode(candidate: str) -> tuple[Any, list[tuple[str, Any, Any]]]:
    duplicates: list[tuple[str, Any, Any]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out and out[key] != value:
                duplicates.append((key, out[key], value))
            out[key] = value
        return out

    return json.loads(candidate, object_pairs_hook=pairs), duplicates


def _search(text: str, openers: str, max_depth: int, max_chars: int) -> JsonReply:
    if not text:
        return JsonReply(problem="empty reply")
    text = text[:max_chars]
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    too_deep = False
    budget = [MAX_TOKENS]
    for candidate in candidates:
        for match in re.finditer("[" + re.escape(openers) + "]", candidate):
            if budget[0] <= 0:
                return JsonReply(problem="the reply is too large or tangled to search for JSON")
            end, deep = _span(candidate, match.start(), max_depth, budget)
            too_deep = too_deep or deep
            if end is None:
                continue
            try:
                value, duplicates = _decode(candidate[match.start():end])
            except (ValueError, RecursionError):
                continue
            return JsonReply(value=value, duplicates=duplicates)
    if too_deep:
        return JsonReply(problem=f"the reply nests brackets deeper than {max_depth} levels; no usable JSON in it")
    return JsonReply(problem="no JSON object in the reply")


def loads_bounded(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads` that refuses text nested deeper than `max_depth` (raises ValueError)."""
    depth = 0
    for token in _TOKEN.finditer(text):
        char = token.group()
        if char in "{[":
            depth += 1
            if depth > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth} levels")
        elif char in "}]":
            depth -= 1
    return json.loads(text)


def find_json_object(text: str | None, *, max_depth: int = MAX_DEPTH, max_chars: int = MAX_CHARS) -> JsonReply:
    """The first JSON object in `text` (in a ``` fence, bare, or inside prose), bounded."""
    return _search(text or "", "{", max_depth, max_chars)


def find_json_value(text: str | None, *, max_depth: int = MAX_DEPTH, max_chars: int = MAX_CHARS) -> JsonReply:
    """Like `find_json_object`, but a top-level list is accepted too (the first `[` or `{`)."""
    return _search(text or "", "{[", max_depth, max_chars)
