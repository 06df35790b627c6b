"""The compact trainer: one loop for midtraining (packed documents) and AFT (assistant-only chats).

Read it top to bottom: load the model (optionally continuing a previous run's adapter), build the
packed rows, then for each optimizer step run `grad_accum` micro-batches of next-token loss,
clip, step AdamW and the warmup+cosine schedule, log, evaluate, checkpoint. `accelerate` supplies
the device and multi-GPU data parallelism (`accelerate launch -m msm_eval ...`); on one CPU process
it is a thin no-op. bf16 autocast is plain `torch.autocast`, set by the config's `bf16` (not by
accelerate's `--mixed_precision`). peft supplies LoRA.

Resuming is exact: a checkpoint holds the trainable weights, the optimizer and scheduler states,
the RNG states and the step; the data order is a pure function of (seed, epoch), so the step
number is the data position. A killed run restarted with the same config continues from its
latest checkpoint and ends with the same weights and loss log as an uninterrupted run.

Run folder layout (`out_dir`): `run_config.json`, `metrics.jsonl`, `checkpoints/step_XXXXXXXX/`
(written to a temp folder, then renamed), `final/trainable.safetensors` and `run.json` (what
`export.py` and a following stage read).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import append_jsonl, atomic_dir, atomic_write_json, read_jsonl, remove_stale_temps
from msm_eval.train.config import TrainConfig
from msm_eval.train.data import PackedRows, build_rows, file_sha256

RUN_FILE = "run.json"
TRAINABLE_FILE = "trainable.safetensors"


# ----------------------------------------------------------------------------- model loading

def resolve_model_path(name: str) -> Path:
    """`smollm2` -> the converted embedded model folder; otherwise an existing HF model folder."""
    if name == "smollm2":
        from msm_eval.models.smollm2 import prepare
        return Path(prepare())
    path = Path(name).expanduser()
    if not (path / "config.json").exists():
        raise MsmEvalError("not a Hugging Face model folder (no config.json)", path=path, field="model",
                           hint="use 'smollm2' or a folder written by save_pretrained / msm-eval export")
    return path


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_base(model_path: Path, dtype: str = "float32") -> tuple[Any, Any]:
    """Load (model, tokenizer) from a Hugging Face folder, offline."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=_dtype(dtype))
    model.config.use_cache = False
    return model, tokenizer


def add_lora(model: Any, lora: dict[str, Any]) -> Any:
    """Wrap `model` with a fresh peft LoRA adapter (dropout 0, no bias, as in the published setup)."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in lora["target_modules"] if t in present]
    if not targets:
        raise MsmEvalError(f"none of the LoRA target modules {lora['target_modules']} exist in this model",
                           field="lora.target_modules", hint=f"pick from: {', '.join(sorted(present)[:20])}")
    config = PeftLoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                            target_modules=targets, bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft 0.21 calls a transformers API renamed in 5.x (harmless)
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    """The parameters being trained (LoRA weights, or every weight in full fine-tuning), on CPU."""
    return {name: p.detach().to("cpu").contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: Any, path: Path) -> None:
    """Copy saved trainable weights into `model`; every saved name must exist and be trainable."""
    from safetensors.torch import load_file
    saved = load_file(str(path))
    params = dict(model.named_parameters())
    missing = [k for k in saved if k not in params]
    if missing:
        raise MsmEvalError(f"saved weight '{missing[0]}' does not exist in the model", path=path,
                           hint="the checkpoint belongs to a different model or LoRA setup")
    with torch.no_grad():
        for name, tensor in saved.items():
            params[name].copy_(tensor.to(params[name].dtype))


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The `run.json` of a finished training run."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        raise MsmEvalError("not a finished training run (no run.json)", path=run_dir,
                           hint="train it to the end first (msm-eval train ...)")
    return json.loads(path.read_text(encoding="utf-8"))


def load_trained(run_dir: str | Path, dtype: str = "float32") -> tuple[Any, Any, dict[str, Any]]:
    """(model with the run's trained weights, tokenizer, run.json) — LoRA stays as a peft wrapper."""
    run = read_run(run_dir)
    model, tokenizer = load_base(Path(run["base_model_path"]), dtype)
    if run.get("lora"):
        model = add_lora(model, run["lora"])
    load_trainable(model, Path(run_dir) / "final" / TRAINABLE_FILE)
    return model, tokenizer, run


# ----------------------------------------------------------------------------- helpers

def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast is worth it on CUDA with bf16 and on CPUs with AVX512_BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def lr_at(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def row_order(n_rows: int, epochs: float, seed: int) -> torch.Tensor:
    """The training order of row indices: one seeded permutation per (possibly partial) epoch."""
    chunks = []
    for epoch in range(math.ceil(epochs)):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n_rows, generator=gen)
        take = n_rows if epoch + 1 <= epochs else max(1, int(round(n_rows * (epochs - epoch))))
        chunks.append(perm[:take])
    return torch.cat(chunks)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_revision() -> str | None:
    """The project's git commit (None outside a checkout)."""
    import subprocess
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# ----------------------------------------------------------------------------- the run

@dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    out_dir: Path
    steps: int
    total_steps: int
    train_loss: float | None
    eval_loss: float | None
    tokens: int
    finished: bool


_RESUME_KEYS = ("stage", "model", "data", "init_from", "lora", "seq_len", "batch_size", "grad_accum", "epochs",
                "max_steps", "lr", "weight_decay", "warmup_ratio", "min_lr_ratio", "betas", "clip_grad",
                "eval_fraction", "seed", "model_dtype", "long_chats")


def train(cfg: TrainConfig, *, stop_after: int | None = None) -> TrainResult:
    """Train (or resume) one stage as configured; `stop_after=k` stops after step k as if killed."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_path = Path(cfg.data)
    if not data_path.exists():
        raise MsmEvalError("training data not found", path=data_path, field="data",
                           hint="generate it first or fix the path")
    _check_same_run(out, cfg)

    probe_device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    use_bf16 = bf16_supported(probe_device) if cfg.bf16 == "auto" else bool(cfg.bf16)
    # autocast is ours, not accelerate's: accelerate keeps its precision in process-wide state, which
    # would refuse a second run in the same process (e.g. the pipeline) with a different bf16 setting
    accelerator = Accelerator(mixed_precision="no", cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    seed_everything(cfg.seed)

    # --- model: a fresh base, or the previous stage's weights to continue (AFT continues the MSM adapter)
    history: list[dict[str, Any]] = []
    lora = cfg.to_dict()["lora"]
    if cfg.init_from:
        prev = read_run(cfg.init_from)
        base_path, base_name = Path(prev["base_model_path"]), prev["base_model"]
        history = list(prev.get("stage_history", []))
        if prev.get("lora") and lora is None:
            raise MsmEvalError("the previous run trained a LoRA adapter; this stage has lora: null",
                               field="lora", hint="keep LoRA on to continue the adapter (or export and "
                               "train the merged model with model: <export dir>)")
        lora = prev.get("lora") if prev.get("lora") else lora
        model, tokenizer = load_base(base_path, cfg.model_dtype)
        if lora:
            model = add_lora(model, lora)
        if prev.get("lora") or not lora:
            load_trainable(model, Path(cfg.init_from) / "final" / TRAINABLE_FILE)
        elif not prev.get("lora"):
            raise MsmEvalError("cannot add a new LoRA adapter on top of a fully fine-tuned run",
                               field="init_from", hint="export the run and use model: <export dir> instead")
    else:
        base_name = cfg.model
        base_path = resolve_model_path(cfg.model)
        model, tokenizer = load_base(base_path, cfg.model_dtype)
        if lora:
            model = add_lora(model, lora)
    if cfg.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # --- data
    train_rows, held_rows = build_rows(cfg.stage, data_path, tokenizer, cfg.seq_len, cfg.eval_fraction, cfg.seed,
                                       long_chats=cfg.long_chats)
    if main and train_rows.n_dropped:
        print(f"msm-eval train: {train_rows.n_dropped} of {train_rows.n_dropped + train_rows.n_examples} training "
              f"chats left out: their assistant reply does not fit in seq_len {cfg.seq_len} "
              "(raise seq_len to keep them; counted as chats_dropped in metrics.jsonl)", file=sys.stderr)
    order = row_order(len(train_rows), cfg.epochs, cfg.seed)
    rows_per_step = cfg.batch_size * cfg.grad_accum * accelerator.num_processes
    total_steps = math.ceil(len(order) / rows_per_step)
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    warmup = int(round(cfg.warmup_ratio * total_steps))

    # --- optimizer (no weight decay on biases and norms) and schedule
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in params if p.ndim < 2], "weight_decay": 0.0}]
    fused = probe_device.type in ("cpu", "cuda") and cfg.model_dtype != "float16"
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, total_steps, warmup, cfg.min_lr_ratio))
    model, optimizer = accelerator.prepare(model, optimizer)
    if cfg.compile:   # checkpoints and the final weights are written from the unwrapped module
        model = torch.compile(model)

    # --- resume (a run killed while writing a checkpoint leaves a temp folder; the previous one counts)
    step, tokens_seen = 0, 0
    if main:
        remove_stale_temps(out / "checkpoints", "step_")
        remove_stale_temps(out, "final.")
    accelerator.wait_for_everyone()
    latest = _latest_checkpoint(out)
    if latest is not None:
        step, tokens_seen = _load_checkpoint(latest, _plain(accelerator, model), optimizer, scheduler)
        if main:
            _truncate_metrics(out / "metrics.jsonl", step)
    elif main:
        (out / "metrics.jsonl").unlink(missing_ok=True)
        atomic_write_json(out / "run_config.json", cfg.to_dict())
    if main and step == 0:
        append_jsonl(out / "metrics.jsonl", [{
            "event": "start", "stage": cfg.stage, "train_rows": len(train_rows), "seq_len": cfg.seq_len,
            "train_tokens": train_rows.n_tokens, "padding_waste": round(train_rows.padding_waste, 6),
            **_chat_counts(train_rows),
            "heldout_rows": len(held_rows) if held_rows is not None else 0, "total_steps": total_steps,
            "trainable_params": sum(p.numel() for _, p in params), "bf16": use_bf16,
            "device": str(accelerator.device), "processes": accelerator.num_processes}])

    # --- the loop
    bar = tqdm(total=total_steps, initial=step, disable=not (cfg.progress and main), desc=cfg.stage,
               dynamic_ncols=True)
    last_loss: float | None = None
    eval_loss: float | None = None
    t0 = time.perf_counter()
    model.train()
    while step < total_steps:
        step_rows = order[step * rows_per_step:(step + 1) * rows_per_step]
        mine = step_rows[accelerator.process_index::accelerator.num_processes]
        # every process runs the same number of micro-batches (DDP syncs on each backward); a process
        # whose share of a short last step runs out uses a stand-in row with weight 0
        n_micro = math.ceil(math.ceil(len(step_rows) / accelerator.num_processes) / cfg.batch_size)
        n_targets = (train_rows.targets[mine] != -100).sum().to(accelerator.device)
        global_targets = accelerator.reduce(n_targets.clone(), reduction="sum").clamp(min=1)
        loss_sum = torch.zeros((), device=accelerator.device)
        for i in range(n_micro):
            rows = mine[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            weight = 1.0 if len(rows) else 0.0
            batch = {k: v.to(accelerator.device) for k, v in train_rows.select(rows if len(rows) else
                                                                              step_rows[:1]).items()}
            sync = accelerator.no_sync(model) if i < n_micro - 1 else nullcontext()
            with sync, _autocast(accelerator, use_bf16):
                token_loss = _loss_sum(model, batch) * weight
                # DDP averages gradients over processes; scale so the step's gradient is the mean over
                # every target token of the global batch
                accelerator.backward(token_loss * accelerator.num_processes / global_targets)
            loss_sum += token_loss.detach()
        grad_norm = None
        if cfg.clip_grad:
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), cfg.clip_grad))
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        step_tokens = int(accelerator.reduce(torch.tensor(len(mine) * cfg.seq_len, device=accelerator.device),
                                             reduction="sum"))
        tokens_seen += step_tokens
        last_loss = float(accelerator.reduce(loss_sum, reduction="sum") / global_targets)
        elapsed = time.perf_counter() - t0
        if main and (step % cfg.log_every == 0 or step == total_steps):
            append_jsonl(out / "metrics.jsonl", [{
                "step": step, "loss": round(last_loss, 6), "lr": lr, "grad_norm": grad_norm,
                "tokens": tokens_seen, "epoch": round(step * rows_per_step / max(1, len(train_rows)), 4),
                "elapsed_s": round(elapsed, 3)}])
        bar.update(1)
        bar.set_postfix(loss=f"{last_loss:.4f}", tok_s=f"{step_tokens / max(1e-9, elapsed):.0f}" if step else "")
        t0 = time.perf_counter()
        if held_rows is not None and (step == total_steps or (cfg.eval_every and step % cfg.eval_every == 0)):
            eval_loss = evaluate(model, held_rows, cfg.batch_size, accelerator, bf16=use_bf16)
            if main:
                append_jsonl(out / "metrics.jsonl", [{"step": step, "eval_loss": round(eval_loss, 6)}])
        if step % cfg.save_every == 0 or step == total_steps or step == stop_after:
            if main:
                _save_checkpoint(out, step, tokens_seen, _plain(accelerator, model), optimizer, scheduler,
                                 cfg.keep_checkpoints)
            accelerator.wait_for_everyone()
        if stop_after is not None and step >= stop_after and step < total_steps:
            bar.close()
            return TrainResult(out, step, total_steps, last_loss, eval_loss, tokens_seen, finished=False)
    bar.close()

    if main:
        _write_final(out, cfg, _plain(accelerator, model), base_name, base_path, lora, history,
                     train_rows, total_steps, tokens_seen, last_loss, eval_loss, use_bf16)
    accelerator.wait_for_everyone()
    return TrainResult(out, step, total_steps, last_loss, eval_loss, tokens_seen, finished=True)


def _chat_counts(rows: PackedRows) -> dict[str, int]:
    """What packing did to the chats of an AFT run (empty for documents): how many were packed, left
    out because their reply did not fit (`long_chats: drop`), trained on a cut reply (only with
    `long_chats: truncate`), and how many template tokens were cut from chat tails."""
    if not rows.n_examples and not rows.n_dropped:
        return {}
    return {"chats": rows.n_examples, "chats_dropped": rows.n_dropped,
            "truncated_replies": rows.n_cut_replies, "truncated_tokens": rows.n_truncated}


def _plain(accelerator: Any, model: Any) -> Any:
    """The trained module without its wrappers (torch.compile's, then DDP's): what checkpoints and
    the final weights are read from, so their parameter names do not depend on `compile`."""
    return accelerator.unwrap_model(getattr(model, "_orig_mod", model))


def _autocast(accelerator: Any, enabled: bool) -> Any:
    """bf16 autocast on the accelerator's device (weights stay in their dtype; a no-op when disabled)."""
    return torch.autocast(device_type=accelerator.device.type, dtype=torch.bfloat16, enabled=enabled)


# Attention kernels that separate packed documents from `position_ids` alone (varlen); all others
# (sdpa, eager) get the block-diagonal mask built here.
_VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention")


def document_attention_mask(position_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive `[batch, 1, seq, seq]` mask letting each token see only earlier tokens of its own document.

    A document starts wherever `position_ids` is 0. Built here rather than left to transformers,
    whose derivation of this mask from `position_ids` exists only in recent releases (older ones
    silently let packed documents attend to each other); a 4D mask is used as given by every
    release the project supports.
    """
    doc = (position_ids == 0).cumsum(dim=-1)
    seq = position_ids.shape[-1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=position_ids.device).tril()
    allowed = (doc[:, :, None] == doc[:, None, :]) & causal
    mask = torch.zeros(allowed.shape, dtype=dtype, device=position_ids.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def packed_logits(model: Any, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """Logits of packed rows, with attention kept inside each document (no cache)."""
    inner = getattr(model, "module", model)          # unwrap DistributedDataParallel
    implementation = getattr(getattr(inner, "config", None), "_attn_implementation", None)
    mask = None
    if implementation not in _VARLEN_ATTENTION:
        mask = document_attention_mask(position_ids, inner.get_input_embeddings().weight.dtype)
    return model(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, use_cache=False).logits


def _loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed next-token cross-entropy over the batch's target tokens (targets are pre-shifted).

    Packed documents do not see each other (`packed_logits`).
    """
    logits = packed_logits(model, batch["input_ids"], batch["position_ids"])
    return F.cross_entropy(logits.flatten(0, 1).float(), batch["targets"].flatten(), ignore_index=-100,
                           reduction="sum")


@torch.no_grad()
def evaluate(model: Any, rows: PackedRows, batch_size: int, accelerator: Any, *, bf16: bool = False) -> float:
    """Mean next-token loss per target token on held-out rows (split across processes)."""
    model.eval()
    mine = torch.arange(len(rows))[accelerator.process_index::accelerator.num_processes]
    total = torch.zeros((), device=accelerator.device)
    count = torch.zeros((), device=accelerator.device)
    for i in range(0, len(mine), batch_size):
        batch = {k: v.to(accelerator.device) for k, v in rows.select(mine[i:i + batch_size]).items()}
        with _autocast(accelerator, bf16):
            total += _loss_sum(model, batch)
        count += (batch["targets"] != -100).sum()
    model.train()
    total = accelerator.reduce(total, reduction="sum")
    count = accelerator.reduce(count, reduction="sum")
    return float(total / count.clamp(min=1))


# ----------------------------------------------------------------------------- checkpoints

def _check_same_run(out: Path, cfg: TrainConfig) -> None:
    saved = out / "run_config.json"
    if not saved.exists() or _latest_checkpoint(out) is None:
        return
    old = json.loads(saved.read_text(encoding="utf-8"))
    new = cfg.to_dict()
    changed = [k for k in _RESUME_KEYS if old.get(k) != new.get(k)]
    if changed:
        raise MsmEvalError(f"out_dir holds a run with a different setting '{changed[0]}' "
                           f"({old.get(changed[0])!r} -> {new.get(changed[0])!r})", path=out,
                           field=changed[0], hint="use a new out_dir, or delete the folder to start over")


def _latest_checkpoint(out: Path) -> Path | None:
    folder = out / "checkpoints"
    if not folder.is_dir():
        return None
    done = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step_"))
    return done[-1] if done else None


def _save_checkpoint(out: Path, step: int, tokens: int, model: Any, optimizer: Any, scheduler: Any,
                     keep: int) -> Path:
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file(trainable_state(model), str(tmp / TRAINABLE_FILE))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": _rng_state()}, tmp / "state.pt")
        (tmp / "progress.json").write_text(json.dumps({"step": step, "tokens": tokens}))

    final = out / "checkpoints" / f"step_{step:08d}"
    atomic_dir(final, write)
    old = sorted(p for p in final.parent.iterdir() if p.is_dir() and p.name.startswith("step_"))
    for stale in old[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> tuple[int, int]:
    load_trainable(model, path / TRAINABLE_FILE)
    state = torch.load(path / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    progress = json.loads((path / "progress.json").read_text())
    return int(progress["step"]), int(progress["tokens"])


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint we resume from (they will be logged again)."""
    if not path.exists():
        return
    from msm_eval.fileio import atomic_write_text
    keep = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep))


def _write_final(out: Path, cfg: TrainConfig, model: Any, base_name: str, base_path: Path,
                 lora: dict[str, Any] | None, history: list[dict[str, Any]], rows: PackedRows, steps: int,
                 tokens: int, train_loss: float | None, eval_loss: float | None, bf16: bool) -> None:
    from safetensors.torch import save_file
    atomic_dir(out / "final", lambda tmp: save_file(trainable_state(model), str(tmp / TRAINABLE_FILE)))
    spec_sha = cfg.spec_sha256 or _spec_sha_from_documents(cfg)
    entry = {"stage": cfg.stage, "data": str(cfg.data), "data_sha256": file_sha256(cfg.data),
             "spec_sha256": spec_sha, "steps": steps, "tokens": tokens, "train_tokens": rows.n_tokens,
             "padding_waste": round(rows.padding_waste, 6), **_chat_counts(rows),
             "train_loss": train_loss, "eval_loss": eval_loss,
             "bf16": bf16, "config": cfg.to_dict()}
    atomic_write_json(out / RUN_FILE, {
        "base_model": base_name, "base_model_path": str(base_path), "lora": lora,
        "stage_history": history + [entry], "git_revision": git_revision(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _spec_sha_from_documents(cfg: TrainConfig) -> str | None:
    if cfg.stage != "midtrain":
        return None
    for record in read_jsonl(cfg.data):
        return record.get("spec_sha256")
    return None
