"""The compact trainer: loss goes down, a stopped run resumes exactly, LoRA export round-trips, configs validate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from conftest_train import build_tiny_model, write_chats, write_documents
from msm_eval.errors import MsmEvalError
from msm_eval.fileio import read_jsonl
from msm_eval.train.config import config_from_dict, load_config
from msm_eval.train.export import MANIFEST_FILE, export_run, read_manifest
from msm_eval.train.trainer import train


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    return {"model": build_tiny_model(root / "model"), "docs": write_documents(root / "docs.jsonl", n=40),
            "chats": write_chats(root / "chats.jsonl", n=16)}


def _cfg(assets: dict[str, Path], out: Path, **over):  # type: ignore[no-untyped-def]
    base = dict(stage="midtrain", model=str(assets["model"]), data=str(assets["docs"]), out_dir=str(out),
                seq_len=64, batch_size=2, grad_accum=2, epochs=2, lr=5e-3, lora=dict(r=4, alpha=8),
                save_every=2, progress=False, bf16=False, eval_fraction=0.1, seed=3)
    base.update(over)
    return config_from_dict(base)


def _losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]


def test_full_finetune_loss_decreases(assets: dict[str, Path], tmp_path: Path) -> None:
    result = train(_cfg(assets, tmp_path / "run", lora=None, epochs=6, lr=3e-3))
    losses = [loss for _, loss in _losses(tmp_path / "run")]
    assert result.finished and len(losses) == result.total_steps
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.5, (first, last)
    start = next(read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    assert start["event"] == "start" and start["padding_waste"] < 0.05


def test_stopped_run_resumes_exactly(assets: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file
    whole = train(_cfg(assets, tmp_path / "whole"))
    stopped = train(_cfg(assets, tmp_path / "split"), stop_after=3)
    assert not stopped.finished and stopped.steps == 3
    # a kill between checkpoints: the newest checkpoint (step 3) never got written, so the run
    # restarts from step 2 and must drop the metrics line it already logged for step 3
    import shutil
    shutil.rmtree(tmp_path / "split" / "checkpoints" / "step_00000003")
    assert (tmp_path / "split" / "checkpoints" / "step_00000002").is_dir()
    assert [s for s, _ in _losses(tmp_path / "split")] == [1, 2, 3]
    resumed = train(_cfg(assets, tmp_path / "split"))
    assert resumed.finished and resumed.steps == whole.steps
    a = load_file(str(tmp_path / "whole" / "final" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "split" / "final" / "trainable.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-7)
    assert _losses(tmp_path / "whole") == _losses(tmp_path / "split")


def test_resume_refuses_a_changed_config(assets: dict[str, Path], tmp_path: Path) -> None:
    train(_cfg(assets, tmp_path / "run"), stop_after=2)
    with pytest.raises(MsmEvalError, match="different setting 'lr'"):
        train(_cfg(assets, tmp_path / "run", lr=1e-3))


def test_aft_continues_adapter_and_export_round_trips(assets: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    train(_cfg(assets, tmp_path / "mid", epochs=1))
    aft = _cfg(assets, tmp_path / "aft", stage="aft", data=str(assets["chats"]), init_from=str(tmp_path / "mid"),
               lora=dict(r=16, alpha=32), epochs=1, seq_len=256)
    train(aft)
    run = json.loads((tmp_path / "aft" / "run.json").read_text())
    assert run["lora"]["r"] == 4  # the MSM adapter is continued, not replaced
    assert [h["stage"] for h in run["stage_history"]] == ["midtrain", "aft"]
    # what packing did to the chats is reported: all 14 training chats whole, none cut, little padding
    start = next(read_jsonl(tmp_path / "aft" / "metrics.jsonl"))
    assert (start["chats"], start["chats_dropped"], start["truncated_replies"]) == (14, 0, 0)
    assert 0 < start["padding_waste"] < 0.25
    assert run["stage_history"][-1]["truncated_replies"] == 0 and "padding_waste" in run["stage_history"][-1]

    out = export_run(tmp_path / "aft", tmp_path / "export")
    manifest = read_manifest(out)
    assert manifest is not None and manifest["spec_sha256"] == "f" * 64
    assert set(manifest["corpus_sha256"]) == {"midtrain", "aft"}
    assert (out / MANIFEST_FILE).exists() and not (out / "adapter_config.json").exists()

    # the merged plain model computes what base + adapter computes
    from msm_eval.train.trainer import load_trained
    peft_model, tok, _ = load_trained(tmp_path / "aft")
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = AutoTokenizer.from_pretrained(out)("The assistant tells the truth", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**ids).logits, peft_model.eval()(**ids).logits, rtol=1e-4, atol=1e-4)
        base = AutoModelForCausalLM.from_pretrained(assets["model"]).eval()
        assert not torch.allclose(base(**ids).logits, merged(**ids).logits, atol=1e-4)
    generated = merged.generate(**ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == ids["input_ids"].shape[1] + 5


def test_aft_run_reports_and_skips_chats_whose_reply_would_be_cut(assets: dict[str, Path], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # seq_len 80: the chats of 96+ tokens do not fit; they are left out and counted, never cut
    train(_cfg(assets, tmp_path / "aft", stage="aft", data=str(assets["chats"]), seq_len=80, epochs=1,
               eval_fraction=0.0))
    start = next(read_jsonl(tmp_path / "aft" / "metrics.jsonl"))
    assert start["chats_dropped"] > 0 and start["truncated_replies"] == 0
    assert start["chats"] + start["chats_dropped"] == 16
    assert f"{start['chats_dropped']} of 16 training chats left out" in capsys.readouterr().err
    with pytest.raises(MsmEvalError, match="would cut its assistant reply"):
        train(_cfg(assets, tmp_path / "aft2", stage="aft", data=str(assets["chats"]), seq_len=80, epochs=1,
                   long_chats="error"))


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("stage: midtrain\ndata: d.jsonl\nout_dir: o\nlearning_rate: 0.1\n")
    with pytest.raises(MsmEvalError, match=r"train.yaml: field 'learning_rate': unknown setting"):
        load_config(path)
    path.write_text("stage: pretrain\ndata: d.jsonl\nout_dir: o\n")
    with pytest.raises(MsmEvalError, match="field 'stage'"):
        load_config(path)
    path.write_text("stage: aft\ndata: d.jsonl\nout_dir: o\nlora: {r: 8, rank: 3}\n")
    with pytest.raises(MsmEvalError, match=r"field 'lora.rank'"):
        load_config(path)
    path.write_text("stage: aft\ndata: d.jsonl\nout_dir: [o\nlr: 1\n")
    with pytest.raises(MsmEvalError, match=r"train.yaml:4: malformed YAML.*fix the YAML syntax near this line"):
        load_config(path)
    with pytest.raises(MsmEvalError, match=r"nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_pipeline_config_file_errors_name_file_and_line(tmp_path: Path) -> None:
    from msm_eval.train.pipeline import load_pipeline_config

    with pytest.raises(MsmEvalError, match=r"gone.yaml: pipeline config not found"):
        load_pipeline_config(tmp_path / "gone.yaml")
    path = tmp_path / "pipe.yaml"
    path.write_text("name: x\nvariants: [rules\nbase_model: smollm2\n")
    with pytest.raises(MsmEvalError, match=r"pipe.yaml:3: malformed YAML"):
        load_pipeline_config(path)


def test_missing_data_is_a_clear_error(assets: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MsmEvalError, match="training data not found"):
        train(_cfg(assets, tmp_path / "run", data=str(tmp_path / "nope.jsonl")))


def test_two_process_data_parallel_equals_one_process(assets: dict[str, Path], tmp_path: Path) -> None:
    """`accelerate launch` with 2 CPU processes (gloo) == 1 process with twice the accumulation, same global batch.

    The row count is odd, so the last step gives one process fewer rows than the other (it must
    still join every gradient sync).
    """
    import os
    import subprocess
    import sys

    import yaml
    from safetensors.torch import load_file
    settings = dict(stage="midtrain", model=str(assets["model"]), data=str(assets["docs"]), seq_len=64,
                    batch_size=2, epochs=1, lr=5e-3, lora=dict(r=4, alpha=8), progress=False, bf16=False,
                    eval_fraction=0.1, seed=3)
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump({**settings, "grad_accum": 1, "out_dir": str(tmp_path / "ddp")}))
    launcher = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --multi_gpu with no GPU gives two CPU processes on the gloo backend: the multi-GPU code path
    proc = subprocess.Popen([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                             "--mixed_precision", "no", "--dynamo_backend", "no",
                             "-m", "msm_eval", "train", "midtrain", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the launcher and both workers
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-2000:]
    train(config_from_dict({**settings, "grad_accum": 2, "out_dir": str(tmp_path / "single")}))
    start = next(read_jsonl(tmp_path / "ddp" / "metrics.jsonl"))
    assert start["processes"] == 2 and start["train_rows"] % 4 != 0  # a short last step
    a = load_file(str(tmp_path / "ddp" / "final" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "single" / "final" / "trainable.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5)
    ddp_losses, single_losses = _losses(tmp_path / "ddp"), _losses(tmp_path / "single")
    assert [s for s, _ in ddp_losses] == [s for s, _ in single_losses]
    for (_, x), (_, y) in zip(ddp_losses, single_losses):
        assert x == pytest.approx(y, abs=1e-5)


_KILLER = r'''
import json, os, signal, sys
import msm_eval.train.trainer as trainer
from msm_eval.train.config import config_from_dict

cfg = config_from_dict(json.loads(sys.argv[1]))
mode, at = sys.argv[2], int(sys.argv[3])
calls = {"n": 0}
if mode == "mid_step":            # SIGKILL inside the at-th micro-batch forward
    original = trainer._loss_sum
    def dying(model, batch):
        calls["n"] += 1
        if calls["n"] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(model, batch)
    trainer._loss_sum = dying
else:                              # SIGKILL half-way through writing the at-th checkpoint
    import safetensors.torch as st
    original = st.save_file
    def dying(tensors, path, *args, **kwargs):
        calls["n"] += 1
        original(tensors, path, *args, **kwargs)
        if calls["n"] == at:
            os.kill(os.getpid(), signal.SIGKILL)
    st.save_file = dying
trainer.train(cfg)
raise SystemExit("the run was supposed to be killed")
'''


@pytest.mark.parametrize("mode, at, resumes_from", [("mid_step", 9, 4), ("in_checkpoint", 2, 2)])
def test_killed_run_resumes_exactly(assets: dict[str, Path], tmp_path: Path, mode: str, at: int,
                                    resumes_from: int) -> None:
    """A real SIGKILL (no cleanup, no `finally`) mid-step or mid-checkpoint-write; the restarted run
    continues from the newest complete checkpoint and ends exactly where an uninterrupted run ends."""
    import os
    import signal
    import subprocess
    import sys

    from safetensors.torch import load_file
    cfg = _cfg(assets, tmp_path / "killed")  # 2 micro-batches per step, checkpoints every 2 steps
    proc = subprocess.run([sys.executable, "-c", _KILLER, json.dumps(cfg.to_dict()), mode, str(at)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    checkpoints = tmp_path / "killed" / "checkpoints"
    done = sorted(p.name for p in checkpoints.iterdir() if p.name.startswith("step_"))
    assert done[-1] == f"step_{resumes_from:08d}"
    if mode == "in_checkpoint":  # the half-written checkpoint is only a temp folder
        assert any(p.name.startswith(".step_") for p in checkpoints.iterdir())
    assert not (tmp_path / "killed" / "run.json").exists()

    resumed = train(cfg)
    whole = train(_cfg(assets, tmp_path / "whole"))
    assert resumed.finished and resumed.steps == whole.steps
    assert not any(p.name.startswith(".") for p in checkpoints.iterdir())
    a = load_file(str(tmp_path / "whole" / "final" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "killed" / "final" / "trainable.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)
    whole_losses, killed_losses = _losses(tmp_path / "whole"), _losses(tmp_path / "killed")
    assert [s for s, _ in killed_losses] == [s for s, _ in whole_losses]  # no step lost or logged twice
    for (_, x), (_, y) in zip(whole_losses, killed_losses):
        assert x == pytest.approx(y, abs=1e-6)
    assert os.path.exists(tmp_path / "killed" / "run.json")


def test_activation_checkpointing_gives_the_same_training(assets: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file
    plain = train(_cfg(assets, tmp_path / "plain", max_steps=3))
    ckpt = train(_cfg(assets, tmp_path / "ckpt", max_steps=3, activation_checkpointing=True))
    assert plain.finished and ckpt.finished
    a = load_file(str(tmp_path / "plain" / "final" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "ckpt" / "final" / "trainable.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_bf16_autocast_held_out_loss_and_metrics(assets: dict[str, Path], tmp_path: Path) -> None:
    """bf16 autocast runs (on CPU too), the held-out loss is logged and recorded, metrics carry every field."""
    result = train(_cfg(assets, tmp_path / "run", bf16=True, eval_every=2, max_steps=4))
    records = list(read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    start = records[0]
    assert start["event"] == "start" and start["bf16"] is True and start["heldout_rows"] >= 1
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for r in steps:
        assert {"step", "loss", "lr", "grad_norm", "tokens", "epoch", "elapsed_s"} <= set(r)
        assert r["loss"] == r["loss"] and r["grad_norm"] is not None  # not NaN; clipping measured the norm
    assert steps[-1]["lr"] < steps[0]["lr"]  # cosine decay
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert result.eval_loss == pytest.approx(evals[-1]["eval_loss"], abs=1e-5)
    history = json.loads((tmp_path / "run" / "run.json").read_text())["stage_history"][-1]
    assert history["bf16"] is True and history["eval_loss"] == result.eval_loss


def test_progress_bar_shows_loss_and_tokens_per_second(assets: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    train(_cfg(assets, tmp_path / "bar", epochs=1, max_steps=3, progress=True))
    err = capsys.readouterr().err
    assert "midtrain" in err and "3/3" in err
    assert re.search(r"loss=\d+\.\d{4}", err) and re.search(r"tok_s=\d+", err)
    train(_cfg(assets, tmp_path / "quiet", epochs=1, max_steps=3, progress=False))
    assert "tok_s=" not in capsys.readouterr().err


def test_compiled_model_trains_the_same_and_saves_plain_weights(assets: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file
    plain = train(_cfg(assets, tmp_path / "plain", max_steps=3))
    compiled = train(_cfg(assets, tmp_path / "compiled", max_steps=3, compile=True))
    assert plain.finished and compiled.finished
    # torch.compile fuses ops (float rounding differs slightly), the training is the same
    for (step_a, loss_a), (step_b, loss_b) in zip(_losses(tmp_path / "plain"), _losses(tmp_path / "compiled")):
        assert step_a == step_b and loss_a == pytest.approx(loss_b, rel=1e-4)
    a = load_file(str(tmp_path / "plain" / "final" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "compiled" / "final" / "trainable.safetensors"))
    assert set(a) == set(b) and not any(name.startswith("_orig_mod") for name in b)   # the unwrapped module's names
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=1e-5)
