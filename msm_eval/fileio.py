"""Crash-safe file writing: atomic replace for whole files, append + fsync for JSONL streams."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from msm_eval.errors import MsmEvalError


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path` for a writer (pandas, matplotlib, ...) to fill;
    on success it is fsynced and renamed over `path`, on failure removed (the old file stays)."""
    target = output_file(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the file the mode open() would
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def output_file(path: str | Path) -> Path:
    """`path` as an output file: its folder is created; a folder (or a file used as a folder) in
    the way is an `MsmEvalError` naming the path, not a traceback."""
    target = Path(path)
    if target.is_dir():
        raise MsmEvalError("is a folder, but a file is written here", path=target,
                           hint="give a file name (e.g. inside that folder)")
    output_folder(target.parent)
    return target


def output_folder(path: str | Path) -> Path:
    """`path` as an output folder, created if missing; an existing file there is an `MsmEvalError`."""
    folder = Path(path)
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            raise MsmEvalError("is a file, but a folder is needed here", path=parent,
                               hint="choose another --out, or move the file away")
        if parent.exists():
            break
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def current_umask() -> int:
    """The process umask, read from /proc where possible (setting and restoring it, the portable
    way, would briefly change it for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_tree(folder: str | Path) -> None:
    """Make a freshly written temp folder ready to be renamed into place: give it and everything
    in it the modes a plain mkdir / open would (mkdtemp and mkstemp make them private) and fsync
    every file and folder."""
    root = Path(folder)
    umask = current_umask()
    for item in sorted(root.rglob("*"), reverse=True):  # files before the folders holding them
        if item.is_file() and not item.is_symlink():
            os.chmod(item, 0o666 & ~umask)
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
        elif item.is_dir() and not item.is_symlink():
            os.chmod(item, 0o777 & ~umask)
            fsync_dir(item)
    os.chmod(root, 0o777 & ~umask)
    fsync_dir(root)


def atomic_dir(final: str | Path, write: Callable[[Path], Any]) -> Path:
    """Create the folder `final` by letting `write(tmp)` fill a sibling temp folder `.<name>.*`,
    publishing it (`publish_tree`) and renaming it into place; an existing `final` is renamed
    aside first and deleted only after the new one is in place. A process killed while writing
    leaves only a temp folder, which `remove_stale_temps` deletes; `final` is always either the
    old complete folder or the new complete one."""
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        publish_tree(tmp)
        aside = None
        if target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, aside / target.name)
        os.replace(tmp, target)
        fsync_dir(target.parent)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def remove_stale_temps(folder: str | Path, name: str) -> list[Path]:
    """Delete the temp folders `.<name>*` that an interrupted `atomic_dir(folder / name...)` left
    in `folder` (e.g. `name="step_"` for `checkpoints/step_00000010`); returns what was removed."""
    root = Path(folder)
    if not root.is_dir():
        return []
    stale = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(f".{name}")]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def remove_stale_temp_files(folder: str | Path, name: str = "") -> list[Path]:
    """Delete the temp files `.<name>*.tmp` that a killed `atomic_output` left in `folder`.

    Only safe while no other process writes there: call it under `exclusive_output`."""
    root = Path(folder)
    if not root.is_dir():
        return []
    stale = [p for p in root.iterdir() if p.is_file() and p.name.startswith(f".{name}") and p.name.endswith(".tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextmanager
def exclusive_output(path: str | Path, what: str = "output", *, is_folder: bool = False) -> Iterator[Path]:
    """Hold an exclusive lock on an output that is being appended to, for the whole block.

    A second process that tries to write the same output at the same time fails at once with an
    `MsmEvalError` instead of appending every record a second time. The lock is an advisory
    `flock` on `.<name>.lock` next to `path` (or inside it when `is_folder`): the kernel drops it when
    the process ends, so a killed run never leaves a stale lock. While holding it, the temp files
    an earlier killed run left next to the output are removed.
    """
    target = Path(path)
    folder = output_folder(target) if is_folder else output_file(target).parent
    lock_path = folder / (".msm-eval.lock" if is_folder else f".{target.name}.lock")
    handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        try:
            import fcntl
        except ImportError:   # pragma: no cover - no flock on this platform: no protection, as before
            fcntl = None  # type: ignore[assignment]
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise MsmEvalError(f"another process is writing this {what} right now", path=target,
                                   hint="wait for it to finish (rerunning afterwards resumes), or write to "
                                        "another --out") from None
        remove_stale_temp_files(folder, "" if is_folder else f"{target.stem}.")
        yield target
    finally:
        handle.close()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file in the same folder and an atomic rename."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` via a temporary file in the same folder and an atomic rename."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Atomically write `data` as indented JSON."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def append_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records to a JSONL file, one line each, flushed and fsynced before returning."""
    target = output_file(path)
    _drop_torn_tail(target)
    count = 0
    with open(target, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    return count


def _drop_torn_tail(path: Path) -> None:
    """Cut a final line that has no newline: the remains of an append that was interrupted.

    `read_jsonl` skips such a line; appending after it would glue a new record onto it and
    turn it into a malformed line in the middle of the file."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        size = handle.seek(0, os.SEEK_END)
        position = size
        while position > 0:
            step = min(65536, position)
            handle.seek(position - step)
            chunk = handle.read(step)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                position = position - step + newline + 1
                break
            position -= step
        handle.truncate(position)
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | Path, *, tolerate_truncated_tail: bool = True) -> Iterator[dict[str, Any]]:
    """Yield records from a JSONL file; a malformed line raises an error naming file and line.

    A final line without a newline that fails to parse is the remains of an interrupted append;
    with `tolerate_truncated_tail` it is skipped (the writer will regenerate that record).
    """
    source = Path(path)
    if not source.exists():
        raise MsmEvalError("file not found", path=source, hint="check the path")
    if not source.is_file():
        raise MsmEvalError("is not a file", path=source, hint="give a JSONL file")
    try:
        with open(source, encoding="utf-8") as handle:
            lines = handle.readlines()
    except UnicodeDecodeError as exc:
        raise MsmEvalError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=source,
                           hint="give a JSONL file (one JSON object per line, UTF-8)") from None
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
