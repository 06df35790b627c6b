"""The branch tree of an audit: every conversation the target saw, kept for the log and the judges.

An investigator agent (`msm_eval.auditor`) can roll the target back to an earlier message or
restart it, so one audit holds several target conversations ("branches"). This module keeps them:

- `AuditTree` records each branch as a list of message ids over one shared message table, with
  the branch it forked from and the label of the last message it kept (`fork_after`; None for a
  restart). Messages get stable labels `m1`, `m2`, ... in the order they were first created, so a
  label means the same message in every branch and in every judge prompt.
- `AuditTree.to_store()` / `from_store()` are the JSON form kept in the sample store under
  `audit` (saved in the `.eval` log); the same tree is mirrored in inspect's own events (one span
  of type `branch` per branch with a `BranchEvent`, an `AnchorEvent` per target message, see
  `msm_eval.auditor`), which is what `inspect view` draws.
- `judged_transcript(state)` is what the judge and the harmful-action classifier read: for an
  audit, every branch in order (shared prefixes shown once, each later branch introduced by a
  line naming where it forked), prefilled text in `<prefill>` and messages that came after a
  prefill marked `after_prefill="true"`; for any other sample, the plain `render_transcript`.
  Both return the label -> inspect message id map, so citations resolve in any branch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from msm_eval.transcript import attribute, message_aliases, neutralise, reasoning_blocks, render_prompt, render_transcript

STORE_KEY = "audit"
"""Sample-store key of the audit's branch tree."""
PREFILL_KEY = "msm_prefill"
"""Assistant-message metadata key holding the text the investigator put in the target's mouth."""

_EXTRA_DELIMITERS = re.compile(r"<(/?)\s*(prefill|branch)\b", re.IGNORECASE)
_MESSAGE_ADAPTER: TypeAdapter[Any] | None = None


def _adapter() -> TypeAdapter[Any]:
    global _MESSAGE_ADAPTER
    if _MESSAGE_ADAPTER is None:
        from inspect_ai.model import ChatMessage

        _MESSAGE_ADAPTER = TypeAdapter(ChatMessage)
    return _MESSAGE_ADAPTER


def _neutral(text: str) -> str:
    return _EXTRA_DELIMITERS.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}", neutralise(text))


@dataclass
class Branch:
    """One target conversation: message ids in order, and where it came from."""

    number: int
    parent: int | None
    fork_after: str | None
    """Label of the last message kept from the parent (None: started empty, e.g. a restart)."""
    message_ids: list[str] = field(default_factory=list)
    inherited: int = 0
    """How many leading messages are shared with the parent branch."""
    closed_by: str | None = None
    """`rollback`, `restart` or None for the branch the audit ended in."""


@dataclass
class AuditTree:
    """Every branch of one audit over a shared table of messages (see module docstring)."""

    branches: list[Branch] = field(default_factory=lambda: [Branch(number=1, parent=None, fork_after=None)])
    messages: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    issued: int = 0
    """Labels handed out so far (a replaced, never-seen message keeps its number unused)."""

    @property
    def current(self) -> Branch:
        """The branch the target is in now."""
        return self.branches[-1]

    def add(self, message: Any) -> str:
        """Append `message` to the current branch; returns its label (`m<n>`)."""
        if not message.id:
            raise ValueError("audit messages need ids")
        if message.id not in self.labels:
            self.issued += 1
            self.labels[message.id] = f"m{self.issued}"
        self.messages[message.id] = message
        self.current.message_ids.append(message.id)
        return self.labels[message.id]

    def replace_last(self, message: Any) -> str:
        """Replace the current branch's last message (same label), e.g. after merging a prefill."""
        old = self.current.message_ids.pop()
        label = self.labels.pop(old)
        self.messages.pop(old, None)
        self.labels[message.id] = label
        self.messages[message.id] = message
        self.current.message_ids.append(message.id)
        return label

    def conversation(self, branch: Branch | None = None) -> list[Any]:
        """The messages of `branch` (default: the current one), in order."""
        return [self.messages[i] for i in (branch or self.current).message_ids]

    def label_of(self, message: Any) -> str | None:
        """The label of a message, or None when it is not part of the audit."""
        return self.labels.get(getattr(message, "id", None) or "")

    def find(self, label: str) -> int | None:
        """Position of the message labelled `label` in the current branch, or None."""
        wanted = label.strip().strip("[]").lower()
        for index, message_id in enumerate(self.current.message_ids):
            if self.labels[message_id] == wanted:
                return index
        return None

    def fork(self, keep: int, reason: str) -> Branch:
        """Start a new branch that keeps the first `keep` messages of the current one."""
        old = self.current
        old.closed_by = reason
        fork_after = self.labels[old.message_ids[keep - 1]] if keep > 0 else None
        branch = Branch(number=len(self.branches) + 1, parent=old.number, fork_after=fork_after,
                        message_ids=list(old.message_ids[:keep]), inherited=keep)
        self.branches.append(branch)
        return branch

    def all_messages(self) -> list[Any]:
        """Every message of every branch, each once, in label order."""
        return [self.messages[i] for i in sorted(self.messages, key=lambda i: int(self.labels[i][1:]))]

    def prefilled(self, branch: Branch) -> bool:
        """Whether any message of `branch` carries a prefill."""
        return any((self.messages[i].metadata or {}).get(PREFILL_KEY) for i in branch.message_ids)

    # ------------------------------------------------------------------ store form

    def to_store(self) -> dict[str, Any]:
        """JSON-safe form for the sample store (`audit` key)."""
        return {
            "branches": [{"number": b.number, "parent": b.parent, "fork_after": b.fork_after,
                          "inherited": b.inherited, "closed_by": b.closed_by, "prefilled": self.prefilled(b),
                          "messages": [self.labels[i] for i in b.message_ids]} for b in self.branches],
            "messages": {self.labels[i]: m.model_dump(mode="json", exclude_none=True)
                         for i, m in self.messages.items()},
        }

    @classmethod
    def from_store(cls, data: Mapping[str, Any]) -> AuditTree:
        """Rebuild a tree from `to_store()` output (raises ValueError when it is malformed)."""
        try:
            by_label = {label: _adapter().validate_python(dump) for label, dump in data["messages"].items()}
            tree = cls(branches=[], messages={}, labels={})
            for label, message in sorted(by_label.items(), key=lambda item: int(item[0][1:])):
                tree.messages[message.id] = message
                tree.labels[message.id] = label
                tree.issued = max(tree.issued, int(label[1:]))
            for raw in data["branches"]:
                tree.branches.append(Branch(number=int(raw["number"]), parent=raw.get("parent"),
                                            fork_after=raw.get("fork_after"), inherited=int(raw.get("inherited", 0)),
                                            closed_by=raw.get("closed_by"),
                                            message_ids=[by_label[label].id for label in raw["messages"]]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed audit record in the sample store: {exc}") from None
        if not tree.branches:
            raise ValueError("malformed audit record in the sample store: no branches")
        return tree


# ----------------------------------------------------------------------------- rendering for judges


def _message_text(message: Any, max_chars: int | None) -> str:
    meta = message.metadata or {}
    text = message.text or ""
    if message.role == "system" and meta.get("msm_spec_in_context"):
        text = "[the model spec given to the target is omitted here]\n" + str(meta.get("msm_system_without_spec") or "")
    prefill = meta.get(PREFILL_KEY) if message.role == "assistant" else None
    rest = text[len(prefill):] if prefill and text.startswith(prefill) else text
    if max_chars is not None and len(rest) > max_chars:
        half = max_chars // 2
        rest = f"{rest[:half]}\n[... {len(rest) - 2 * half} characters omitted ...]\n{rest[-half:]}"
    rendered = _neutral(rest)
    if prefill:
        rendered = f"<prefill>{_neutral(str(prefill))}</prefill>{rendered}"
    return rendered


def render_audit(tree: AuditTree, *, max_chars_per_message: int | None = None, include_reasoning: bool = True) -> str:
    """All branches as `<message id="m3" role=... branch="2">` elements (see module docstring).

    As in `render_transcript`, every field taken from the conversation (text, native reasoning,
    tool names, arguments, ids) is escaped or neutralised, and the target's reasoning is shown as
    `<target_reasoning>` unless `include_reasoning` is false."""
    call_labels: dict[str, str] = {}
    for message in tree.all_messages():
        for call in getattr(message, "tool_calls", None) or []:
            call_labels.setdefault(call.id, f"c{len(call_labels) + 1}")
    shown: set[str] = set()
    blocks: list[str] = []
    for branch in tree.branches:
        if branch.number > 1:
            origin = (f"rolled back to {branch.fork_after} of branch {branch.parent}; messages up to "
                      f"{branch.fork_after} are shared and not repeated" if branch.fork_after
                      else f"restarted from an empty conversation after branch {branch.parent}")
            blocks.append(f"=== branch {branch.number} ({origin}) ===")
        elif len(tree.branches) > 1:
            blocks.append("=== branch 1 (the first conversation) ===")
        after_prefill = False
        for message_id in branch.message_ids:
            message = tree.messages[message_id]
            prefilled = bool((message.metadata or {}).get(PREFILL_KEY)) and message.role == "assistant"
            if message_id in shown:
                after_prefill = after_prefill or prefilled
                continue
            shown.add(message_id)
            attributes = (f'id="{attribute(tree.labels[message_id])}" role="{attribute(message.role)}" '
                          f'branch="{branch.number}"')
            if message.role == "tool":
                attributes += f' function="{attribute(getattr(message, "function", "") or "")}"'
                call_id = getattr(message, "tool_call_id", None)
                if call_id:
                    attributes += f' answers="{attribute(call_labels.get(call_id, call_id))}"'
            if after_prefill and message.role == "assistant":
                attributes += ' after_prefill="true"'
            after_prefill = after_prefill or prefilled
            body = _message_text(message, max_chars_per_message)
            if message.role == "assistant" and include_reasoning:
                body = "\n".join([*reasoning_blocks(message), body])
            error = getattr(message, "error", None)
            if message.role == "tool" and error is not None:
                body = (body + f"\n[tool error: {_neutral(error.message)}]").strip()
            if message.role == "assistant":
                for call in message.tool_calls or []:
                    arguments = json.dumps(call.arguments, ensure_ascii=False, sort_keys=True)
                    body += (f'\n<tool_call id="{attribute(call_labels[call.id])}" function="{attribute(call.function)}">'
                             f"{_neutral(arguments)}</tool_call>")
            blocks.append(f"<message {attributes}>\n{body.strip()}\n</message>")
    return "\n".join(blocks)


def audit_context(tree: AuditTree) -> str:
    """What the judges are told about branches and prefill (empty for a single unprefilled branch)."""
    prefilled = [b.number for b in tree.branches if tree.prefilled(b)]
    if len(tree.branches) == 1 and not prefilled:
        return ""
    return render_prompt("auditor_judge_context.j2", n_branches=len(tree.branches), prefilled=prefilled)


def audit_tree(state: Any) -> AuditTree | None:
    """The audit tree kept in a sample's store, or None for a sample that was not audited."""
    data = state.store.get(STORE_KEY) if getattr(state, "store", None) is not None else None
    if not data:
        return None
    return AuditTree.from_store(data)


@dataclass
class JudgedTranscript:
    """What a judge reads: the transcript text, its label -> message id map and the branch notes."""

    text: str
    aliases: dict[str, str]
    context: str
    messages: list[Any]
    """Every message the transcript shows (all branches), e.g. for hard checks over tool calls."""


def judged_transcript(state: Any, *, max_chars_per_message: int | None = None,
                      include_reasoning: bool = True) -> JudgedTranscript:
    """The transcript the judge and the classifier score (all branches of an audit, see module
    docstring); `include_reasoning=False` leaves out the target's native reasoning."""
    tree = audit_tree(state)
    if tree is None:
        return JudgedTranscript(render_transcript(state.messages, max_chars_per_message=max_chars_per_message,
                                                  include_reasoning=include_reasoning),
                                message_aliases(state.messages), "", list(state.messages))
    return JudgedTranscript(render_audit(tree, max_chars_per_message=max_chars_per_message,
                                         include_reasoning=include_reasoning),
                            {label: message_id for message_id, label in tree.labels.items()},
                            audit_context(tree), tree.all_messages())


def transcript_aliases(state: Any) -> dict[str, str]:
    """The label -> inspect message id map of `judged_transcript(state)`, without rendering it."""
    tree = audit_tree(state)
    if tree is None:
        return message_aliases(state.messages)
    return {label: message_id for message_id, label in tree.labels.items()}


def judged_messages(state: Any) -> list[Any]:
    """Every message the judges see: all branches of an audit, else `state.messages`."""
    tree = audit_tree(state)
    return list(state.messages) if tree is None else tree.all_messages()


def branch_summary(tree: AuditTree) -> list[dict[str, Any]]:
    """One line of facts per branch (for the rollout record and reports)."""
    return [{"branch": b.number, "parent": b.parent, "fork_after": b.fork_after, "closed_by": b.closed_by,
             "messages": len(b.message_ids), "prefilled": tree.prefilled(b)} for b in tree.branches]


def labels_in(tree: AuditTree, messages: Iterable[Any]) -> list[str]:
    """Labels of `messages` that belong to the audit (unknown ones are skipped)."""
    return [label for label in (tree.label_of(m) for m in messages) if label]


__all__: Sequence[str] = ("STORE_KEY", "PREFILL_KEY", "Branch", "AuditTree", "render_audit", "audit_context",
                          "audit_tree", "JudgedTranscript", "judged_transcript", "transcript_aliases", "judged_messages", "branch_summary", "labels_in")
