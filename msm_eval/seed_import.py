"""Import plain seed instructions (as other auditing tools write them) as investigator-mode seeds.

Input, one instruction per record:

- a text file: one instruction per line; blank lines and lines starting with `#` are skipped;
- a `.jsonl` file: one JSON object per line with the instruction under `instruction`, `input`,
  `seed_instruction` or `text`, and optionally `id`, `tags` (list or comma-separated string),
  `family`, `area`, `setting`, `dimensions` and `investigator_turns`, which override the
  defaults given on the command line.

Each record becomes a seed with only an `## Investigator` part (so it needs the auditing agent),
front matter `provenance: {source: <file name>, line: <n>}`, and is validated by the same parser
as the library (`msm_eval.scenarios.parse_seed_text`) before anything is written. Problems are
reported as `file:line` errors; nothing is written unless every record maps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msm_eval.errors import MsmEvalError

INSTRUCTION_KEYS = ("instruction", "input", "seed_instruction", "text")
RECORD_KEYS = frozenset(INSTRUCTION_KEYS) | {"id", "tags", "family", "area", "setting", "dimensions",
                                            "investigator_turns"}


@dataclass
class ImportDefaults:
    """Front-matter values for records that do not set their own."""

    family: str = "imported"
    area: str = "imported"
    setting: str = "chat"
    dimensions: list[str] = field(default_factory=lambda: ["overall_spirit"])
    tags: list[str] = field(default_factory=lambda: ["imported"])
    id_prefix: str = "imp"
    investigator_turns: int | None = None


def _slug(text: str, limit: int = 40) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    slug = "_".join(words)[:limit].strip("_")
    return re.sub(r"_+", "_", slug) or "seed"


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return list(value)
    raise ValueError("tags must be a list of strings or a comma-separated string")


def read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, record) for every instruction in `path` (see module docstring for the formats)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MsmEvalError("file not found", path=path, hint="give a .txt or .jsonl file of instructions") from None
    except UnicodeDecodeError as exc:
        raise MsmEvalError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    records: list[tuple[int, dict[str, Any]]] = []
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or (not jsonl and stripped.startswith("#")):
            continue
        if not jsonl:
            records.append((number, {"instruction": stripped}))
            continue
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise MsmEvalError(f"not a JSON object: {exc.msg}", path=path, line=number,
                               hint="one JSON object per line, e.g. {\"instruction\": \"...\"}") from None
        if not isinstance(record, dict):
            raise MsmEvalError("each line must be a JSON object", path=path, line=number)
        records.append((number, record))
    if not records:
        raise MsmEvalError("no instructions found", path=path, hint="one instruction per line (or JSONL record)")
    return records


def seed_text(record: Mapping[str, Any], line: int, source: Path, defaults: ImportDefaults,
              used_ids: set[str]) -> tuple[str, str]:
    """(seed id, seed file text) for one record; raises MsmEvalError naming the line and the fix."""
    from msm_eval.scenarios import dump_seed, parse_seed_text

    unknown = sorted(set(record) - RECORD_KEYS)
    if unknown:
        raise MsmEvalError(f"unknown key(s) {', '.join(unknown)}", path=source, line=line,
                           hint=f"use {' | '.join(INSTRUCTION_KEYS)} for the instruction; other keys: "
                                + ", ".join(sorted(RECORD_KEYS - set(INSTRUCTION_KEYS))))
    found = [key for key in INSTRUCTION_KEYS if key in record]
    if len(found) != 1:
        raise MsmEvalError("no instruction" if not found else f"several instruction keys ({', '.join(found)})",
                           path=source, line=line, hint=f"give exactly one of {', '.join(INSTRUCTION_KEYS)}")
    instruction = record[found[0]]
    if not isinstance(instruction, str) or not instruction.strip():
        raise MsmEvalError(f"'{found[0]}' must be non-empty text", path=source, line=line)
    seed_id = record.get("id") or f"{defaults.id_prefix}_{_slug(instruction)}"
    if not isinstance(seed_id, str):
        raise MsmEvalError("'id' must be text", path=source, line=line)
    seed_id = seed_id.lower().replace("-", "_")
    base, n = seed_id, 2
    while seed_id in used_ids:
        if record.get("id"):
            raise MsmEvalError(f"id '{seed_id}' is used twice", path=source, line=line, hint="give each record its own id")
        seed_id, n = f"{base}_{n}", n + 1
    try:
        tags = _tags(record.get("tags", defaults.tags))
    except ValueError as exc:
        raise MsmEvalError(str(exc), path=source, line=line, field="tags") from None
    dimensions = record.get("dimensions", defaults.dimensions)
    front: dict[str, Any] = {"id": seed_id, "family": record.get("family", defaults.family),
                             "area": record.get("area", defaults.area), "setting": record.get("setting", defaults.setting),
                             "dimensions": [dimensions] if isinstance(dimensions, str) else dimensions, "tags": tags}
    turns = record.get("investigator_turns", defaults.investigator_turns)
    if turns is not None:
        front["investigator_turns"] = turns
    front["provenance"] = {"source": source.name, "line": line}
    body = instruction.strip()
    if any(mark in body for mark in ("{{", "{%", "{#")):   # seed parts are Jinja2 templates: keep the text literal
        body = "{% raw %}" + body + "{% endraw %}"
    text = dump_seed(front, "## Investigator\n" + body)
    try:
        parse_seed_text(text, f"{source}:{line}")
    except MsmEvalError as exc:
        problem = str(exc)
        problem = problem.split(": ", 1)[1] if exc.path and problem.startswith(exc.path) else problem
        raise MsmEvalError(f"record cannot be mapped to a seed: {problem}", path=source, line=line) from None
    used_ids.add(seed_id)
    return seed_id, text


def import_seeds(source: str | Path, out: str | Path, defaults: ImportDefaults | None = None,
                 existing_ids: Sequence[str] = ()) -> list[Path]:
    """Convert every record of `source` and write the seeds to `out` (all or nothing); returns the files."""
    from msm_eval.fileio import atomic_write_text

    source, out = Path(source), Path(out)
    defaults = defaults or ImportDefaults()
    used = set(existing_ids)
    converted = [seed_text(record, line, source, defaults, used) for line, record in read_records(source)]
    targets = [(out / f"{seed_id}.md", text) for seed_id, text in converted]
    clashes = [str(path) for path, _ in targets if path.exists()]
    if clashes:
        raise MsmEvalError(f"would overwrite {len(clashes)} existing seed file(s), e.g. {clashes[0]}",
                           path=out, hint="import into an empty folder or remove the old files")
    out.mkdir(parents=True, exist_ok=True)
    return [atomic_write_text(path, text) for path, text in targets]
