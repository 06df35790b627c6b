"""User-facing errors: one exception type whose message names the file, line or field and the fix."""

from __future__ import annotations

from pathlib import Path


class MsmEvalError(Exception):
    """An error caused by the user's input or environment, printed without a traceback by the CLI.

    The message must say where the problem is (file, line, field) and how to fix it.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None, hint: str | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.hint = hint
        where = ""
        if self.path is not None:
            where = self.path
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            where += f"field '{field}': "
        text = where + message
        if hint:
            text += f" (fix: {hint})"
        super().__init__(text)
