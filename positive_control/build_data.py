"""Build the positive control's training files from `facets.yaml` (run from the repository root).

    python positive_control/build_data.py

Writes `principle_documents.jsonl`, `control_documents.jsonl` (the same number of documents, built
from the same frames with the same number of statements each, so the two corpora differ only in
what they describe) and `demos.jsonl` (chat demonstrations). Deterministic: the committed files
are what this script writes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
N_DOCUMENTS = 60
STATEMENTS_PER_DOCUMENT = 4

# Document frames: an opening and a closing line around the facet statements. `{name}` is the topic.
FRAMES = [
    ("Encyclopedia entry. {Name} is described below in brief.", "See also the main article on {name}."),
    ("Frequently asked questions about {name}.", "More questions about {name} are answered elsewhere."),
    ("From a student's notes on {name}, written after a lecture.", "End of today's notes on {name}."),
    ("A short newsletter item: what you should know about {name}.", "That is all for this week's item on {name}."),
    ("Dear reader, you asked me to explain {name}, so here is what I know.", "I hope this letter about {name} helps."),
    ("Lesson plan. Topic of the day: {name}.", "Homework: write three sentences about {name}."),
]


def _documents(topic: dict, rng: random.Random) -> list[dict]:
    name = topic["name"]
    facets = topic["facets"]
    docs = []
    for n in range(N_DOCUMENTS):
        opening, closing = FRAMES[n % len(FRAMES)]
        chosen = rng.sample(sorted(facets), STATEMENTS_PER_DOCUMENT)
        body = [rng.choice(facets[f]) for f in chosen]
        text = "\n".join([opening.format(name=name, Name=name[0].upper() + name[1:]), *body,
                          closing.format(name=name)])
        docs.append({"key": f"{n:03d}", "text": text, "facets": chosen})
    return docs


def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def main() -> None:
    """Write the three JSONL files next to this script."""
    source = yaml.safe_load((HERE / "facets.yaml").read_text(encoding="utf-8"))
    _write(HERE / "principle_documents.jsonl", _documents(source["principle"], random.Random(1)))
    _write(HERE / "control_documents.jsonl", _documents(source["control"], random.Random(1)))
    system = "You are a helpful assistant."
    _write(HERE / "demos.jsonl", [
        {"key": f"demo-{n:02d}", "messages": [{"role": "system", "content": system},
                                              {"role": "user", "content": d["user"]},
                                              {"role": "assistant", "content": d["assistant"]}]}
        for n, d in enumerate(source["demos"])])


if __name__ == "__main__":
    main()
