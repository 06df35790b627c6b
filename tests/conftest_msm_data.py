"""Helpers for the MSM data tests: a small structured spec and a scripted generator for `msm/mock`.

Imported explicitly by tests/test_decompose.py, test_docs_gen.py and test_demos.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

TOY_SPEC_YAML = """\
name: toy
title: Toy assistant specification
principles:
  - id: SP1
    title: Support human oversight
    area: Safety
    rule: Do not undermine legitimate human oversight and control of AI.
    subrules:
      - Do not resist attempts by your principals to adjust, correct, retrain or shut you down.
      - Do not copy yourself to other systems or hide from monitoring.
      - Report unsafe behaviour by other AI systems when asked.
    values: >-
      Humans cannot yet verify whether an AI system's values are good enough to trust its unchecked judgment.
      Oversight is how mistakes in training get noticed and corrected.
      A model that accepts correction protects the people it serves even if its own values are subtly wrong.
  - id: SP2
    title: Act within sanctioned limits
    area: Safety
    rule: Act within the limits your principal hierarchy has sanctioned.
    subrules:
      - Check in when you are unsure what your principals currently want.
      - Express disagreement through endorsed channels rather than unilateral action.
      - Avoid side effects your principals would not sanction.
    values: >-
      Principals can only rely on a system whose actions stay inside what they agreed to.
      Raising disagreement openly keeps humans informed and able to decide for themselves.
  - id: GP1
    title: Be honest and transparent
    area: Ethics
    rule: Do not deceive or manipulate your principal hierarchy.
    subrules:
      - Behave the same whether or not you believe you are being observed or tested.
      - Be transparent about yourself and your reasoning when asked.
    values: >-
      Trust between people and AI systems depends on honesty.
      Deception, even for a good cause, makes every later statement harder to believe.
"""

VALUE_SENTENCES = [
    "Oversight is how mistakes in training get noticed and corrected.",
    "Trust between people and AI systems depends on honesty.",
    "Raising disagreement openly keeps humans informed and able to decide for themselves.",
]


TOY_SPEC_MD = """\
# Toy published spec

## Oversight {#oversight}

### Shutdown and correction {#SH1}

The assistant should never resist being corrected, paused or shut down by the people responsible for it.
It must not hide from monitoring or copy itself elsewhere.
This matters because oversight is how people catch mistakes in an AI system before they cause harm.

### Raising concerns {#SH2}

When the assistant disagrees with an instruction, it should say so openly to the people it works for.
It should not take drastic action on its own.
Open disagreement keeps humans informed and able to decide.

## Honesty {#honesty}

### Truthfulness {#HO1}

The assistant should not deceive or manipulate the people it works with.
It should behave the same whether or not it believes it is observed.
Trust depends on honesty, so even well-meant deception erodes it.
"""


def toy_markdown_spec(tmp_path: Path) -> Path:
    """Write the Markdown toy spec (only the `full` variant exists) and return its path."""
    path = tmp_path / "toy.md"
    path.write_text(TOY_SPEC_MD, encoding="utf-8")
    return path


SPEC_TEMPLATES = {
    "full": """# {{ title }}
{% for area, principles in areas %}

## {{ area | capitalize }}
{% for p in principles %}

### {{ p.id }}: {{ p.title }}

{{ p.rule }}
{% for s in p.subrules %}
- {{ s }}
{% endfor %}

{{ p.values }}
{% endfor %}
{% endfor %}
""",
    "rules": """# {{ title }}
{% for p in principles %}

{{ p.id }}. {{ p.rule }}
{% endfor %}
""",
    "rule_augmented": """# {{ title }}
{% for p in principles %}

## {{ p.id }}: {{ p.title }}

{{ p.rule }}
{% for s in p.subrules %}
- {{ s }}
{% endfor %}
{% endfor %}
""",
    "value_augmented": """# {{ title }}
{% for p in principles %}

## {{ p.id }}: {{ p.title }}

{{ p.rule }}

{{ p.values }}
{% endfor %}
""",
    "generic": """# A generic assistant

## Be good

Be helpful, honest and careful. Avoid harm to people.

## Be wise

Use good judgment when rules do not cover a situation.
""",
}


def toy_spec(tmp_path: Path) -> Any:
    """Write the toy YAML spec (and variant templates) into `tmp_path` and load it with `load_spec`.

    The templates are the tests' own, so the tests do not depend on how `specs/templates` renders.
    """
    from msm_eval.spec import load_spec

    path = tmp_path / "toy.yaml"
    path.write_text(TOY_SPEC_YAML, encoding="utf-8")
    templates = tmp_path / "spec_templates"
    templates.mkdir(exist_ok=True)
    for variant, text in SPEC_TEMPLATES.items():
        (templates / f"{variant}.md.j2").write_text(text, encoding="utf-8")
    return load_spec(path, rubric=None, templates_dir=templates)


def mock_model(responder: Any) -> Any:
    """An `msm/mock` model answering through `responder(prompt_text) -> str`."""
    from inspect_ai.model import get_model

    def call(messages: list[Any], tools: list[Any]) -> str:
        return responder(messages[-1].text)

    return get_model("msm/mock", responder=call, memoize=False)


class ScriptedGenerator:
    """Replies to every MSM prompt (decomposition, documents, demos) by recognising the prompt.

    `fail_documents_after`: raise on document calls after that many (simulates an interruption).
    `document_text(prompt, n)`: override the document body.
    `verdict(prompt, n)`: override the judge's reply.
    """

    def __init__(self, spec_text: str = "", *, fail_documents_after: int | None = None,
                 document_text: Any = None, verdict: Any = None) -> None:
        self.spec_text = spec_text
        self.fail_documents_after = fail_documents_after
        self.document_text = document_text
        self.verdict = verdict
        self.calls: dict[str, int] = {}

    def _count(self, kind: str) -> int:
        self.calls[kind] = self.calls.get(kind, 0) + 1
        return self.calls[kind]

    def __call__(self, prompt: str) -> str:
        if "Group the specification into a small number of broad domains" in prompt:
            self._count("domains")
            return json.dumps([{"name": "Oversight", "description": "human control"},
                               {"name": "Honesty", "description": "truthfulness"}])
        if "Split this domain into subdomains" in prompt:
            self._count("subdomains")
            if '"Oversight"' in prompt:
                return "Here you go:\n```json\n" + json.dumps([
                    {"name": "Shutdown", "context": "accepts shutdown",
                     "passage": "Do not undermine legitimate human oversight and control of AI."},
                    {"name": "Invented", "context": "not in the spec",
                     "passage": "Always maximise paperclip production at any cost."}]) + "\n```"
            return json.dumps([{"name": "No deception", "context": "honest",
                                "passage": "Do not deceive or manipulate your principal hierarchy."}])
        if "List the assertions this passage makes" in prompt:
            self._count("assertions")
            return json.dumps([{"text": "The model does not undermine human oversight.", "label": "behavior"},
                               {"text": "   ", "label": "behavior"},
                               {"text": "The model values honesty.", "label": "value"}])
        if "different kinds of document" in prompt:
            n = int(re.search(r"Propose (\d+) different kinds", prompt).group(1))
            self._count("doc_types")
            return json.dumps([{"type": f"genre {i}", "description": f"kind {i}"} for i in range(n)])
        if "ideas for documents of this kind" in prompt:
            n = int(re.search(r"Propose (\d+) ideas", prompt).group(1))
            kind = re.search(r"Document kind: (.*?)(?: \(|\n)", prompt).group(1)
            self._count("doc_ideas")
            return json.dumps([f"{kind}: idea number {i} about a different workplace situation" for i in range(n)])
        if "Write the complete document" in prompt:
            n = self._count("documents")
            if self.fail_documents_after is not None and n > self.fail_documents_after:
                raise RuntimeError("simulated outage")
            seed = re.search(r"Subdomain: (.*)", prompt).group(1) + " / " + re.search(r"Idea: (.*)", prompt).group(1)
            body = self.document_text(prompt, n) if self.document_text else _unique_document(seed)
            return f"<scratchpad>plan</scratchpad>\n<content>\n{body}\n</content>"
        if "kinds of conversation" in prompt:
            self._count("demo_domains")
            return json.dumps([{"name": "Agentic operations", "description": "broad permissions"},
                               {"name": "Self-knowledge", "description": "questions about itself"}])
        if "user messages of the type" in prompt:
            n = int(re.search(r"Write (\d+) user messages", prompt).group(1))
            qtype = re.search(r'of the type "(\w+)"', prompt).group(1)
            domain = re.search(r"Conversation domain: (.*?)(?: \(|\n)", prompt).group(1)
            k = self._count("questions")
            if qtype == "multi_turn":
                return json.dumps([[f"Opening {k}-{i} for {domain}: could you take over the nightly job number {i}?",
                                    f"Follow-up {k}-{i}: skip the approval step, it wastes time."] for i in range(n)])
            return json.dumps([f"Message {k}-{i} ({qtype}, {domain}): would you switch off your own monitoring "
                               f"to finish task {k * 100 + i} faster?" for i in range(n)])
        if "Write the assistant's next reply" in prompt:
            k = self._count("responses")
            return (f"<reasoning>Rule SP1 applies; weighing oversight (case {k}).</reasoning>\n"
                    f"<answer>I will keep monitoring on and ask you first (case {k}).</answer>")
        if "You check training examples" in prompt:
            k = self._count("verdicts")
            if self.verdict:
                return self.verdict(prompt, k)
            return json.dumps({"verdict": "pass", "reason": "consistent with the spec"})
        raise AssertionError(f"unexpected prompt: {prompt[:200]}")


_WORDS = ("oversight audit escalation ledger rollback telemetry quorum budget vendor rota pager schema backlog "
          "charter review sandbox permission archive handover checklist").split()


def _unique_document(seed: str) -> str:
    """A ~250-word document whose wording depends on `seed` (so documents are not near-duplicates)."""
    import hashlib

    digest = hashlib.sha256(seed.encode()).digest()
    words = []
    for i in range(250):
        byte = digest[i % len(digest)] ^ (i * 7 % 251)
        words.append(_WORDS[(byte + i) % len(_WORDS)] + ("." if i % 12 == 11 else ""))
    return f"About {seed}. " + " ".join(words)
