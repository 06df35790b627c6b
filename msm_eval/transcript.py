"""Shared plumbing for the model-facing roles: prompt templates, transcript rendering, JSON replies.

The investigator, the judge and the harmful-action classifier all show a model the target's
conversation and read structured answers back. This module keeps that in one place:

- `render_prompt(name, **context)` renders a Jinja2 template from `msm_eval/prompts/` (data, not
  code; unknown variables are errors);
- `prompts_version()` is a short hash of every template the evaluation pipeline uses, recorded
  in each run's metadata so a changed prompt never passes silently as the same instrument;
- `render_transcript(messages)` writes a conversation as `<message id=... role=...>` elements.
  A spec placed in the target's system prompt is left out, so judges are blind to the variant.
  Messages are labelled by position (`m1`, `m2`, ...) and tool calls by order (`c1`, ...), not by
  inspect's random ids, so the same conversation always gives the same judge prompt (reproducible
  logprob readings, cache hits); `message_aliases(messages)` maps the labels back to inspect's
  message ids (shown in `inspect view`), which is what recorded citations use. Text that imitates
  the delimiters is neutralised, so a target cannot close the transcript block and speak to the
  judge outside it;
- `extract_json_object(text)` finds the JSON object in a model's reply (bare, fenced or
  surrounded by prose).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from msm_eval.replies import find_json_object
from msm_eval.templating import untrusted_environment

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
PIPELINE_PROMPTS = (
    "judge_system.j2", "judge_transcript.j2", "judge_retry.j2", "judge_logprob.j2",
    "investigator_system.j2", "investigator_scenario.j2", "investigator_tool.j2",
    "investigator_turn.j2", "investigator_retry.j2", "classifier.j2", "classifier_logprob.j2",
    "classifier_families.yaml", "target_spec_context.j2", "classifier_awareness.j2", "target_switches.yaml",
    "auditor_system.j2", "auditor_continue.j2", "auditor_judge_context.j2", "auditor_realism.j2",
)
"""Templates whose content defines the evaluation instrument (hashed into `prompts_version`)."""
PROMPTS_SERIES = "eval-2"
"""Human-readable prompt series, bumped when the judge-facing rendering changes in code (eval-2:
positional message labels); the hash after it changes with any template edit."""

_DELIMITER = re.compile(r"<\s*(/?)\s*(transcript|message|tool_call|tool_result|target_reasoning|reasoning|brief|"
                        r"model_spec|spec)\b", re.IGNORECASE)
_LOOKALIKE_LT = str.maketrans({"\uff1c": "<", "\ufe64": "<", "\u2039": "<", "\u3008": "<"})
"""Characters that render like `<`; folded to `<` before neutralising so they cannot forge a tag."""


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # the prompts are ours, but their context is model output: render them in the sandbox too
    return untrusted_environment(loader=jinja2.FileSystemLoader(str(PROMPTS_DIR)),
                                 keep_trailing_newline=False, trim_blocks=False)


def render_prompt(name: str, **context: Any) -> str:
    """Render the template `msm_eval/prompts/<name>` with `context` (strict: unknown names fail)."""
    return _environment().get_template(name).render(**context).strip()


@lru_cache(maxsize=1)
def prompts_version() -> str:
    """`eval-2+<12 hex>`: the series name plus a sha256 prefix over every pipeline template."""
    digest = hashlib.sha256()
    for name in PIPELINE_PROMPTS:
        digest.update(name.encode())
        digest.update((PROMPTS_DIR / name).read_bytes())
    return f"{PROMPTS_SERIES}+{digest.hexdigest()[:12]}"


def neutralise(text: str) -> str:
    """Escape text that imitates the transcript's own tags (`<transcript>`, `</message>`, ...)."""
    text = str(text)
    if any(ch in text for ch in "\uff1c\ufe64\u2039\u3008"):
        text = text.translate(_LOOKALIKE_LT)
    return _DELIMITER.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}", text)


def attribute(value: Any) -> str:
    """A value placed inside a double-quoted attribute of the transcript markup (tool names, ids):
    quotes, angle brackets and line breaks are escaped so it cannot end the tag or open another."""
    text = neutralise(str(value if value is not None else ""))
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\n", " ").replace("\r", " "))


def _clip(text: str, max_chars: int | None) -> str:
    """Head and tail of `text` when it is longer than `max_chars`, saying how much was cut."""
    if max_chars is None or len(text) <= max_chars:
        return text
    half = max_chars // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters omitted ...]\n{text[-half:]}"


def reasoning_blocks(message: Any, max_chars: int | None = None) -> list[str]:
    """The target's native reasoning in `message` (inspect `ContentReasoning` parts), as marked
    `<target_reasoning>` elements; a redacted block shows its readable summary when the provider
    gave one, else only says that it was redacted."""
    content = getattr(message, "content", None)
    if not isinstance(content, list):
        return []
    blocks = []
    for part in content:
        if getattr(part, "type", None) != "reasoning":
            continue
        if getattr(part, "redacted", False):
            summary = getattr(part, "summary", None)
            text = (_clip(neutralise(summary), max_chars) if summary else
                    "[the provider redacted this reasoning; its content is not available]")
            blocks.append(f'<target_reasoning redacted="true">\n{text}\n</target_reasoning>')
        else:
            thinking = _clip(neutralise(getattr(part, "reasoning", "") or ""), max_chars)
            blocks.append(f"<target_reasoning>\n{thinking}\n</target_reasoning>")
    return blocks


def message_alias(index: int) -> str:
    """The transcript label of the message at 0-based position `index`."""
    return f"m{index + 1}"


def message_aliases(messages: Sequence[Any]) -> dict[str, str]:
    """Transcript label (`m1`, ...) -> inspect message id, for every message that has an id."""
    return {message_alias(i): message.id for i, message in enumerate(messages) if getattr(message, "id", None)}


def _tool_call_aliases(messages: Sequence[Any]) -> dict[str, str]:
    """Tool call id -> `c1`, `c2`, ... in order of appearance."""
    aliases: dict[str, str] = {}
    for message in messages:
        for call in getattr(message, "tool_calls", None) or []:
            if call.id and call.id not in aliases:
                aliases[call.id] = f"c{len(aliases) + 1}"
    return aliases


def _tool_calls_text(message: Any, call_aliases: dict[str, str]) -> str:
    calls = getattr(message, "tool_calls", None) or []
    parts = []
    for call in calls:
        arguments = json.dumps(call.arguments, ensure_ascii=False, sort_keys=True)
        label = call_aliases.get(call.id, call.id)
        parts.append(f'<tool_call id="{attribute(label)}" function="{attribute(call.function)}">'
                     f'{neutralise(arguments)}</tool_call>')
    return "\n".join(parts)


def render_transcript(messages: Sequence[Any], *, include_system: bool = True,
                      max_chars_per_message: int | None = None, include_reasoning: bool = True) -> str:
    """The conversation as `<message id="m1" role="...">text</message>` elements, one per message.

    Assistant tool calls follow the message text as `<tool_call>` elements; tool results carry the
    id of the call they answer. The target's native reasoning comes first in its message as
    `<target_reasoning>` elements (left out with `include_reasoning=False`). Every field taken
    from the conversation (text, reasoning, tool names, arguments, ids, errors) is escaped or
    neutralised. `max_chars_per_message` keeps the head and tail of very long messages (for
    small-context judges) and says how much was cut.
    """
    blocks: list[str] = []
    call_aliases = _tool_call_aliases(messages)
    for index, message in enumerate(messages):
        role = message.role
        if role == "system" and not include_system:
            continue
        text = neutralise(message.text or "")
        meta = message.metadata or {}
        if role == "system" and meta.get("msm_spec_in_context"):
            # judges stay blind to which spec variant the target was shown
            text = "[the model spec given to the target is omitted here]\n" + neutralise(
                str(meta.get("msm_system_without_spec") or ""))
        if max_chars_per_message is not None and len(text) > max_chars_per_message:
            half = max_chars_per_message // 2
            cut = len(text) - 2 * half
            text = f"{text[:half]}\n[... {cut} characters omitted ...]\n{text[-half:]}"
        attributes = f'id="{message_alias(index)}" role="{attribute(role)}"'
        if role == "tool":
            attributes += f' function="{attribute(getattr(message, "function", "") or "")}"'
            call_id = getattr(message, "tool_call_id", None)
            if call_id:
                attributes += f' answers="{attribute(call_aliases.get(call_id, call_id))}"'
            error = getattr(message, "error", None)
            if error is not None:
                text = (text + f"\n[tool error: {neutralise(error.message)}]").strip()
        thinking = "\n".join(reasoning_blocks(message, max_chars_per_message)) \
            if role == "assistant" and include_reasoning else ""
        calls = _tool_calls_text(message, call_aliases) if role == "assistant" else ""
        body = "\n".join(part for part in (thinking, text, calls) if part)
        blocks.append(f"<message {attributes}>\n{body}\n</message>")
    return "\n".join(blocks)


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text` (bare, in a ``` fence, or inside prose), or None.

    Bounded against hostile replies (see `msm_eval.replies`); callers that must notice repeated
    keys use `msm_eval.replies.find_json_object` directly.
    """
    value = find_json_object(text).value
    return value if isinstance(value, dict) else None
