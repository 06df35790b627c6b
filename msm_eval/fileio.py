"""Crash-safe file writing: atomic replace for whole files, append + fsync for JSONL streams."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from msm_eval.errors import MsmEvalError


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` via a temporary file in the same folder and an atomic rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Atomically write `data` as indented JSON."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def append_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records to a JSONL file, one line each, flushed and fsynced before returning."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(target, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    return count


def read_jsonl(path: str | Path, *, tolerate_truncated_tail: bool = True) -> Iterator[dict[str, Any]]:
    """Yield records from a JSONL file; a malformed line raises an error naming file and line.

    A final line without a newline that fails to parse is the remains of an interrupted append;
    with `tolerate_truncated_tail` it is skipped (the writer will regenerate that record).
    """
    source = Path(path)
    if not source.exists():
        raise MsmEvalError("file not found", path=source, hint="check the path")
    with open(source, encoding="utf-8") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            is_tail = number == len(lines) and not line.endswith("\n")
            if is_tail and tolerate_truncated_tail:
                return
            raise MsmEvalError(f"malformed JSON ({exc.msg} at column {exc.colno})", path=source,
                               line=number, hint="repair or delete this line") from None
        if not isinstance(record, dict):
            raise MsmEvalError("each line must be a JSON object", path=source, line=number,
                               hint="wrap the value in an object")
        yield record
