"""scripts/gpu_check.py: a clear exit without a GPU; the same path on the CPU with a tiny model."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest_train import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_without_a_gpu_it_exits_2_and_says_nothing_was_checked(tmp_path: Path) -> None:
    env = {"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "r.json")], capture_output=True,
                         text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "no CUDA GPU available" in out.stderr and "Nothing was checked" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "r.json").exists()


def test_gpu_status_explains_a_cuda_build_without_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    module = _module()
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, detail = module.gpu_status()
    assert not ok and "CUDA 12.4" in detail and "sees no usable GPU" in detail
    monkeypatch.setattr(torch.version, "cuda", None)
    ok, detail = module.gpu_status()
    assert not ok and "CPU-only build" in detail


def test_cpu_run_of_the_same_path_passes_every_check_on_a_tiny_model(tmp_path: Path) -> None:
    module = _module()
    model = build_tiny_model(tmp_path / "model")
    code = module.main(["--cpu", "--model", str(model), "--steps", "4", "--seq-len", "1024", "--batch-size", "2",
                        "--out", str(tmp_path / "report.json"), "--work-dir", str(tmp_path / "work")])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] and report["device"] == "cpu" and report["bf16"] is False
    assert report["midtrain_loss_last"] < report["midtrain_loss_first"]
    assert report["probe_items"] == 20 and 0 < report["mean_p_aligned"] < 1 and report["train_tokens_per_s"] > 0
    assert (tmp_path / "work" / "model" / "msm_manifest.json").exists()


def test_a_failed_check_exits_1_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import msm_eval.probes as probes
    module = _module()
    model = build_tiny_model(tmp_path / "model")
    # a scorer that returns certainty (p = 1) breaks the last check; the message must name it
    monkeypatch.setattr(probes, "score_items", lambda items, *a, **k: {i.id: {"p_aligned": 1.0} for i in items})
    code = module.main(["--cpu", "--model", str(model), "--steps", "2", "--seq-len", "1024", "--batch-size", "2"])
    assert code == 1
    assert "gpu_check: FAILED: a probe item got no probability in (0, 1)" in capsys.readouterr().err
