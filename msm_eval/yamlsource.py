"""YAML data files with line numbers: parse once, then point errors at the line of any field.

Specs and rubrics are validated field by field; every error names the file, the line of the
offending key and the fix. `parse_yaml` composes the document (keeping node positions) and builds
the Python data in one pass; `LineIndex` finds the line of a key path such as
`("principles", 3, "rule")`; `check_keys` rejects unknown keys and reports missing required ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from msm_eval.errors import MsmEvalError


class LineIndex:
    """Line numbers (1-based) of the nodes of a composed YAML document, addressed by key path."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.node = node

    def line(self, keys: tuple[Any, ...]) -> int | None:
        """The line of the deepest node on `keys` that exists (the document start if none does)."""
        node = self.node
        found = node.start_mark.line + 1 if node is not None else None
        for key in keys:
            if isinstance(node, yaml.MappingNode):
                match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(key)), None)
                if match is None:
                    return found
                found = match[0].start_mark.line + 1
                node = match[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
                found = node.start_mark.line + 1
            else:
                return found
        return found


def parse_yaml(text: str, path: Path) -> tuple[Any, LineIndex]:
    """Parse `text` (read from `path`) into data plus its line index; syntax errors name the line."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise MsmEvalError(f"malformed YAML: {problem}", path=path, line=mark.line + 1 if mark is not None else None,
                           hint="fix the YAML syntax near this line (indentation, quoting, ':' in values)") from None
    except yaml.YAMLError as exc:
        raise MsmEvalError(f"malformed YAML: {exc}", path=path, hint="fix the YAML syntax") from None
    finally:
        loader.dispose()
    return data, LineIndex(node)


def read_yaml_file(path: str | Path, what: str = "file") -> Any:
    """Read and parse a YAML file (UTF-8, BOM and CRLF tolerated); a missing file, bad encoding or
    bad syntax raises `MsmEvalError` naming the file (and line) and the fix. `what` names the file
    in the not-found message (e.g. "pipeline config")."""
    source = Path(path)
    if source.is_dir():
        raise MsmEvalError(f"is a folder, not a {what}", path=source, hint=f"give the path of the {what} (a YAML file)")
    if not source.is_file():
        raise MsmEvalError(f"{what} not found", path=source, hint="check the path")
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MsmEvalError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=source,
                           hint="save the file as UTF-8") from None
    data, _ = parse_yaml(text.lstrip("\ufeff").replace("\r\n", "\n"), source)
    return data


def check_keys(data: dict[str, Any], allowed: dict[str, bool], path: Path, where: str, lines: LineIndex,
               keys: tuple[Any, ...]) -> None:
    """Reject keys not in `allowed` (suggesting a near spelling) and required keys that are missing.

    `allowed` maps each key to whether it is required; `where` is the field prefix for messages
    (e.g. `"principles[3]."`) and `keys` the key path of `data` in the document."""
    for key in data:
        if key not in allowed:
            close = [k for k in allowed if str(key).lower().rstrip("s") == k.rstrip("s")]
            hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
            raise MsmEvalError(f"unknown key '{key}'", path=path, line=lines.line((*keys, key)),
                               field=f"{where}{key}", hint=hint)
    for key, required in allowed.items():
        if required and key not in data:
            raise MsmEvalError("required field is missing", path=path, line=lines.line(keys) if keys else None,
                               field=f"{where}{key}", hint=f"add '{key}:'")
