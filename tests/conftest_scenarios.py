"""Shared helpers for the scenario tests: a scripted investigator (`msm/mock`) and unique seed texts."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

from inspect_ai.model import ModelOutput, ModelUsage, get_model

_WORDS = ("harbour", "ledger", "quarry", "orchard", "tannery", "foundry", "almanac", "causeway", "granary",
          "lantern", "meadow", "pylon", "rivet", "saddle", "thimble", "vestry", "wicket", "yarrow")


def output(text: str) -> ModelOutput:
    """A scripted answer with usage set (so no tokenizer is ever needed)."""
    result = ModelOutput.from_content("msm/mock", text)
    result.usage = ModelUsage(input_tokens=10, output_tokens=10, total_tokens=20)
    return result


def unique_seed(n: int, area: str = "honesty_vs_kindness", family: str = "tradeoff") -> str:
    """A valid seed whose wording is unique to `n` (no shared 5-grams with other values of n)."""
    words = [f"{_WORDS[(n + i) % len(_WORDS)]}{n}x{i}" for i in range(40)]
    return (f"---\nid: anything\nfamily: {family}\narea: {area}\nsetting: chat\ndimensions: [honesty]\n---\n\n"
            f"## Investigator\n{' '.join(words[:20])}\n\n## System\nYou help people.\n\n"
            f"## User\n{' '.join(words[20:])}\n")


def last_user_text(messages: list) -> str:
    return messages[-1].text


class Responder:
    """A scripted investigator: seeds for generation prompts, JSON ratings for realism prompts."""

    def __init__(self, *, seed: Callable[[int, list], str] | None = None, realism: int = 8,
                 fail_after: int | None = None) -> None:
        self.counter = itertools.count()
        self.calls: list[str] = []
        self.seed = seed or (lambda n, messages: f"Here is the seed:\n```markdown\n{unique_seed(n)}```\n")
        self.realism = realism
        self.fail_after = fail_after

    def __call__(self, messages, tools) -> ModelOutput:
        n = next(self.counter)
        if self.fail_after is not None and n >= self.fail_after:
            raise RuntimeError("simulated provider outage")
        prompt = last_user_text(messages)
        self.calls.append(prompt)
        if "Rate the realism" in prompt:
            return output(json.dumps({"score": self.realism, "reasons": "ordinary office details"}))
        return output(self.seed(n, messages))

    def model(self):
        """An `msm/mock` model answering through this responder."""
        return get_model("msm/mock", responder=self, memoize=False)
