"""Training configuration: one dataclass for both stages (midtrain, aft), loaded from YAML with clear errors.

The defaults follow the published MSM setup where it is known (LoRA r=64 / alpha=128 on all seven
projection matrices, AdamW lr 1e-4, cosine schedule with 5% warmup, weight decay 0.01, one epoch);
batch size and sequence length are ours to choose and default to CPU-friendly values.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msm_eval.errors import MsmEvalError
from msm_eval.yamlsource import read_yaml_file

STAGES = ("midtrain", "aft")
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraConfig:
    """Low-rank adapter settings (peft). `r=0` is rejected; use `lora: null` for full fine-tuning."""

    r: int = 64
    alpha: int = 128
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))


@dataclass
class TrainConfig:
    """Everything one training run needs. Relative paths are taken from the current directory."""

    stage: str = "midtrain"              # "midtrain": packed documents; "aft": chat JSONL, assistant-only loss
    model: str = "smollm2"               # "smollm2" (embedded) or a Hugging Face causal-LM folder
    data: str = ""                       # documents JSONL (field `text`) or chat JSONL (field `messages`)
    out_dir: str = ""                    # run folder: checkpoints/, metrics.jsonl, final/
    init_from: str | None = None         # a previous run folder to continue (AFT continues the MSM adapter)
    lora: LoraConfig | None = field(default_factory=LoraConfig)
    seq_len: int = 512                   # tokens per packed row
    batch_size: int = 4                  # rows per micro-batch (per process)
    grad_accum: int = 1                  # micro-batches per optimizer step
    epochs: float = 1.0                  # passes over the training rows (fractions allowed)
    max_steps: int | None = None         # hard cap on optimizer steps (after `epochs`)
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.0            # cosine decays to lr * min_lr_ratio
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float = 1.0               # max global grad norm; 0 disables clipping
    bf16: str | bool = "auto"            # autocast in bf16: "auto" = when the device supports it
    model_dtype: str = "float32"         # weights' dtype when loading (bfloat16 halves memory on GPUs)
    activation_checkpointing: bool = False
    long_chats: str = "drop"             # AFT: a chat whose assistant reply does not fit a row: drop | error | truncate
    compile: bool = False                # torch.compile the model (first steps compile; see docs/training.md)
    eval_fraction: float = 0.05          # share of documents / chats held out for the eval loss
    eval_every: int = 0                  # steps between held-out evaluations (0: only at the end)
    save_every: int = 50                 # steps between checkpoints (the final step always saves)
    keep_checkpoints: int = 2
    log_every: int = 1
    seed: int = 0
    spec_sha256: str | None = None       # recorded in the manifest; read from the documents when absent
    progress: bool = True

    def resolve_paths(self, base: Path) -> "TrainConfig":
        """Return a copy whose relative `data`, `out_dir`, `init_from` and `model` paths are anchored at `base`."""
        def anchor(value: str | None) -> str | None:
            if not value:
                return value
            p = Path(value).expanduser()
            return str(p if p.is_absolute() else (base / p))
        model = self.model
        if model != "smollm2" and not Path(model).is_absolute() and (base / model).exists():
            model = str(base / model)
        return dataclasses.replace(self, data=anchor(self.data) or "", out_dir=anchor(self.out_dir) or "",
                                   init_from=anchor(self.init_from), model=model)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for manifests and cache keys)."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out


def config_from_dict(raw: dict[str, Any], *, source: str | Path = "<config>") -> TrainConfig:
    """Validate a mapping into a `TrainConfig`; unknown or mistyped fields raise `MsmEvalError` naming them."""
    if not isinstance(raw, dict):
        raise MsmEvalError("a training config must be a mapping", path=source, hint="write `key: value` lines")
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise MsmEvalError(f"unknown setting '{key}'", path=source, field=key,
                               hint=f"use one of: {', '.join(sorted(known))}")
        values[key] = value
    _check_types(values, TrainConfig, source)
    lora = values.get("lora", LoraConfig())
    if isinstance(lora, dict):
        lora_known = {f.name for f in dataclasses.fields(LoraConfig)}
        bad = sorted(set(lora) - lora_known)
        if bad:
            raise MsmEvalError(f"unknown LoRA setting '{bad[0]}'", path=source, field=f"lora.{bad[0]}",
                               hint=f"use one of: {', '.join(sorted(lora_known))}")
        _check_types(lora, LoraConfig, source, prefix="lora.")
        lora = LoraConfig(**lora)
    elif lora is not None and not isinstance(lora, LoraConfig):
        raise MsmEvalError("must be a mapping or null (null = full fine-tuning)", path=source, field="lora")
    values["lora"] = lora
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    cfg = TrainConfig(**values)
    _validate(cfg, source)
    return cfg


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _value_fits(value: Any, kind: Any) -> bool:
    """Whether a YAML value fits a field annotation (ints are numbers; bools are not numbers)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_value_fits(value, option) for option in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is Any:
        return True
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if origin is tuple:
        items = typing.get_args(kind)
        return (isinstance(value, list | tuple) and len(value) == len(items)
                and all(_value_fits(v, t) for v, t in zip(value, items, strict=True)))
    if origin is list:
        (item,) = typing.get_args(kind)
        return isinstance(value, list) and all(_value_fits(v, item) for v in value)
    if dataclasses.is_dataclass(kind):
        return isinstance(value, dict | kind)
    return True


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(kind))
    if kind is type(None):
        return "null"
    if origin is tuple:
        return f"a list of {len(typing.get_args(kind))} numbers"
    if origin is list:
        return "a list of strings"
    if dataclasses.is_dataclass(kind):
        return "a mapping"
    return _TYPE_WORDS.get(kind, getattr(kind, "__name__", str(kind)))


def _check_types(values: dict[str, Any], schema: type, source: str | Path, prefix: str = "") -> None:
    """Refuse a value whose YAML type does not fit the field (`betas: 5`, `warmup_ratio: high`)."""
    hints = typing.get_type_hints(schema)
    for key, value in values.items():
        kind = hints.get(key)
        if kind is not None and not _value_fits(value, kind):
            example = getattr(schema(), key) if key != "lora" else "{r: 64, alpha: 128}"
            if isinstance(example, tuple):
                example = list(example)
            raise MsmEvalError(f"must be {_describe(kind)}, got {value!r}", path=source, field=prefix + key,
                               hint=f"e.g. {key}: {example}" if example not in (None, "") else f"give {_describe(kind)}")


def _validate(cfg: TrainConfig, source: str | Path) -> None:
    def fail(name: str, message: str, hint: str) -> None:
        raise MsmEvalError(message, path=source, field=name, hint=hint)

    if cfg.stage not in STAGES:
        fail("stage", f"unknown stage '{cfg.stage}'", "use 'midtrain' or 'aft'")
    if not cfg.data:
        fail("data", "missing training data path", "point it at a documents or chat JSONL file")
    if not cfg.out_dir:
        fail("out_dir", "missing output folder", "name a folder for checkpoints and metrics")
    for name in ("seq_len", "batch_size", "grad_accum", "save_every", "log_every", "keep_checkpoints"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            fail(name, f"must be a positive integer, got {value!r}", f"set {name}: 1 or more")
    if cfg.seq_len < 8:
        fail("seq_len", f"is too small ({cfg.seq_len})", "use at least 8 tokens per row")
    if not isinstance(cfg.eval_every, int) or cfg.eval_every < 0:
        fail("eval_every", f"must be a non-negative integer, got {cfg.eval_every!r}", "use 0 for end-only")
    if cfg.max_steps is not None and (not isinstance(cfg.max_steps, int) or cfg.max_steps < 1):
        fail("max_steps", f"must be a positive integer or null, got {cfg.max_steps!r}", "e.g. max_steps: 100")
    if not (isinstance(cfg.epochs, (int, float)) and cfg.epochs > 0):
        fail("epochs", f"must be positive, got {cfg.epochs!r}", "e.g. epochs: 1")
    if not (isinstance(cfg.lr, (int, float)) and cfg.lr > 0):
        fail("lr", f"must be a positive number, got {cfg.lr!r}", "e.g. lr: 1.0e-4 (YAML needs the dot)")
    if not 0 <= cfg.warmup_ratio < 1:
        fail("warmup_ratio", f"must be in [0, 1), got {cfg.warmup_ratio}", "e.g. warmup_ratio: 0.05")
    if not 0 <= cfg.eval_fraction < 1:
        fail("eval_fraction", f"must be in [0, 1), got {cfg.eval_fraction}", "e.g. eval_fraction: 0.05")
    if cfg.bf16 not in ("auto", True, False):
        fail("bf16", f"must be auto, true or false, got {cfg.bf16!r}", "e.g. bf16: auto")
    if cfg.long_chats not in ("drop", "error", "truncate"):
        fail("long_chats", f"unknown policy {cfg.long_chats!r}",
             "use drop (leave such chats out, counted), error (stop), or truncate (cut the reply, counted)")
    if cfg.model_dtype not in ("float32", "bfloat16", "float16"):
        fail("model_dtype", f"unknown dtype '{cfg.model_dtype}'", "use float32, bfloat16 or float16")
    if cfg.lora is not None and (cfg.lora.r < 1 or cfg.lora.alpha <= 0):
        fail("lora", f"rank and alpha must be positive (r={cfg.lora.r}, alpha={cfg.lora.alpha})",
             "use e.g. r: 64, alpha: 128, or lora: null for full fine-tuning")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a YAML training config; relative paths inside it are resolved against the current directory."""
    source = Path(path)
    raw = read_yaml_file(source, "config file") or {}
    if isinstance(raw, dict) and "train" in raw and isinstance(raw["train"], dict):
        raw = raw["train"]
    if isinstance(raw, dict) and overrides:
        raw = {**raw, **overrides}
    return config_from_dict(raw, source=source).resolve_paths(Path.cwd())
