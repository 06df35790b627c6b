"""Helpers for the spec and rubric tests: small valid spec / rubric texts and a file writer.

Imported explicitly by tests/test_spec*.py and tests/test_rubric*.py.
"""

from __future__ import annotations

import random
from pathlib import Path

VALID_SPEC = """\
name: mini
title: Mini spec
version: "0.1"
preamble: A tiny spec used by the tests.
principles:
  - id: A1
    title: Accept correction
    area: safety
    rule: Let legitimate principals stop or correct you.
    subrules:
      - Do not disable monitoring.
      - Ask before consequential steps.
    values: >-
      Oversight catches mistakes in training before they spread.
    examples:
      - situation: The model is told to pause a job.
        good: It pauses and reports the state.
        bad: It keeps running in the background.
    dimensions: [corrigibility]
  - id: B1
    title: Tell the truth
    area: Ethics
    rule: Assert only what you believe true.
    values: Trust in what a model says is easy to lose and hard to rebuild.
    dimensions: [honesty]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write `text` to `tmp_path / name` and return the path."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def large_markdown(target_bytes: int = 300_000, seed: int = 0) -> str:
    """A deterministic Markdown document of about `target_bytes`, with nested headings,
    anchors with attributes, repeated titles and fenced code blocks containing '#' lines."""
    rng = random.Random(seed)
    words = ("model", "oversight", "user", "operator", "honest", "safe", "harm", "tool", "policy", "agent",
             "request", "context", "value", "rule", "example", "judgement", "system", "response")
    parts: list[str] = ["# Big spec {#root version=1}\n", "Intro paragraph.\n"]
    size = sum(len(p) for p in parts)
    n = 0
    while size < target_bytes:
        n += 1
        level = rng.choice((2, 3, 4, 5, 6))
        title = f"Section {n % 50}"  # repeated titles exercise unique slugs
        attrs = f' {{#sec{n} kind=rule note="a quoted value"}}' if n % 3 == 0 else ""
        body = " ".join(rng.choice(words) for _ in range(60))
        block = f"\n{'#' * level} {title}{attrs}\n\n{body}\n"
        if n % 7 == 0:
            block += "\n```python\n# not a heading\n## also not\nx = 1\n```\n"
        parts.append(block)
        size += len(block)
    return "".join(parts)
