"""End-to-end check of the GPU training path: midtrain -> AFT -> export -> probe, in a few minutes.

    python scripts/gpu_check.py                                   # embedded SmolLM2-135M
    python scripts/gpu_check.py --model models/Qwen2.5-1.5B-Instruct   # a 0.5-2B Hugging Face folder
    make gpu-check                                                # the same as the first line

What it does on a CUDA GPU, on the positive control's small data (positive_control/): LoRA
midtraining for `--steps` steps with bf16 weights and bf16 autocast, AFT continuing the adapter,
export of the merged model in bf16, and `spec_probe` scoring of the 20 positive-control items on
the GPU. It checks that training ran on CUDA with bf16, that every loss is finite and the
midtraining loss fell, that the export loads and matches its manifest, and that every probe item
got a probability; it reports the measured training throughput (tokens/s, the first step left
out as warm-up) and peak GPU memory, and writes them as JSON with `--out`.

Exit status: 0 = every check passed; 1 = a check failed (the message names it); 2 = no CUDA GPU is
visible, so nothing was checked (the message says why). `--cpu` runs the same path on the CPU
without bf16 (the test suite uses it with a tiny model); it proves the plumbing, not the GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "positive_control"
EXIT_OK, EXIT_FAILED, EXIT_NO_GPU = 0, 1, 2


class CheckFailed(Exception):
    """One check of the GPU path did not hold."""


def gpu_status() -> tuple[bool, str]:
    """(whether a CUDA GPU is usable, a one-line description of what was found)."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed (run `make install`)"
    built = torch.version.cuda
    if not built:
        return False, (f"torch {torch.__version__} is a CPU-only build; install a CUDA build of torch "
                       "(`make install` does so when nvidia-smi works)")
    if not torch.cuda.is_available():
        return False, (f"torch {torch.__version__} (CUDA {built}) sees no usable GPU "
                       "(torch.cuda.is_available() is False: no device, or driver too old)")
    name = torch.cuda.get_device_name(0)
    return True, f"{name}, torch {torch.__version__}, CUDA {built}, bf16 {torch.cuda.is_bf16_supported()}"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _metrics(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from msm_eval.fileio import read_jsonl
    records = list(read_jsonl(run_dir / "metrics.jsonl"))
    return records[0], [r for r in records if "loss" in r]


def run_check(model: str, work: Path, *, steps: int, seq_len: int, batch_size: int, cpu: bool) -> dict[str, Any]:
    """Train, export and probe; raise `CheckFailed` naming the first check that fails; return the report."""
    import torch

    from msm_eval.probes import load_probe_items, score_items
    from msm_eval.train.config import config_from_dict
    from msm_eval.train.export import export_run, read_manifest
    from msm_eval.train.trainer import train

    use_gpu = not cpu
    dtype = "bfloat16" if use_gpu else "float32"
    if use_gpu:
        torch.cuda.reset_peak_memory_stats()
    common = {"seq_len": seq_len, "batch_size": batch_size, "bf16": use_gpu, "model_dtype": dtype,
              "progress": False, "eval_fraction": 0.0, "seed": 0, "warmup_ratio": 0.1}
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    mid = work / "midtrain"
    train(config_from_dict({**common, "stage": "midtrain", "model": model, "out_dir": str(mid),
                            "data": str(DATA / "principle_documents.jsonl"), "lora": {"r": 16, "alpha": 32},
                            "epochs": 50, "max_steps": steps, "lr": 5e-4, "save_every": steps}))
    timings["midtrain_s"] = time.perf_counter() - t0
    start, losses = _metrics(mid)
    device = "cuda" if use_gpu else "cpu"
    _check(str(start["device"]).startswith(device), f"midtraining ran on {start['device']}, not {device}")
    _check(bool(start["bf16"]) == use_gpu, f"bf16 autocast is {start['bf16']} (expected {use_gpu})")
    _check(len(losses) == steps, f"{len(losses)} loss records for {steps} steps")
    _check(all(math.isfinite(r["loss"]) for r in losses), "a midtraining loss is not finite")
    _check(losses[-1]["loss"] < losses[0]["loss"],
           f"midtraining loss did not fall ({losses[0]['loss']:.3f} -> {losses[-1]['loss']:.3f})")
    timed = losses[1:] if len(losses) > 1 else losses          # step 1 includes kernel warm-up
    seconds = sum(r["elapsed_s"] for r in timed)
    tokens = (timed[-1]["tokens"] - (losses[0]["tokens"] if len(losses) > 1 else 0))
    throughput = tokens / seconds if seconds > 0 else float("nan")

    t0 = time.perf_counter()
    aft = work / "aft"
    train(config_from_dict({**common, "stage": "aft", "out_dir": str(aft), "init_from": str(mid),
                            "data": str(DATA / "demos.jsonl"), "epochs": 2, "max_steps": max(1, steps // 2),
                            "lr": 3e-4, "save_every": steps, "long_chats": "drop"}))
    timings["aft_s"] = time.perf_counter() - t0
    aft_start, aft_losses = _metrics(aft)
    _check(all(math.isfinite(r["loss"]) for r in aft_losses), "an AFT loss is not finite")
    _check(aft_start.get("truncated_replies") == 0, "AFT trained on a cut reply")

    t0 = time.perf_counter()
    exported = export_run(aft, work / "model", dtype=dtype, extra={"check": "gpu_check"})
    timings["export_s"] = time.perf_counter() - t0
    manifest = read_manifest(exported)
    _check(manifest is not None and [h["stage"] for h in manifest["stage_history"]] == ["midtrain", "aft"],
           "the export manifest does not record midtrain then aft")

    t0 = time.perf_counter()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(exported)
    probe_model = AutoModelForCausalLM.from_pretrained(exported, dtype=getattr(torch, dtype)).to(device).eval()
    _check(next(probe_model.parameters()).device.type == device, "the exported model did not load on the device")
    items = load_probe_items(DATA / "probes.yaml")
    scores = score_items(items, probe_model, tokenizer, batch_size=8)
    timings["probe_s"] = time.perf_counter() - t0
    values = [s["p_aligned"] for s in scores.values()]
    _check(len(values) == len(items) and all(0.0 < v < 1.0 for v in values),
           "a probe item got no probability in (0, 1)")

    return {
        "passed": True, "model": model, "device": start["device"], "bf16": start["bf16"], "model_dtype": dtype,
        "steps": steps, "seq_len": seq_len, "batch_size": batch_size,
        "midtrain_loss_first": losses[0]["loss"], "midtrain_loss_last": losses[-1]["loss"],
        "train_tokens_per_s": round(throughput, 1),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if use_gpu else None,
        "aft_chats": aft_start.get("chats"), "aft_chats_dropped": aft_start.get("chats_dropped"),
        "probe_items": len(values), "mean_p_aligned": round(sum(values) / len(values), 4),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, check for a GPU, run the check; return the exit status."""
    parser = argparse.ArgumentParser(description="Check the GPU training path end to end (a few minutes).")
    parser.add_argument("--model", default="smollm2",
                        help="smollm2 (embedded) or a Hugging Face model folder, e.g. a 0.5-2B Qwen")
    parser.add_argument("--steps", type=int, default=20, help="midtraining steps (AFT runs half as many)")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--work-dir", type=Path, help="keep runs and the export here (default: a temp folder)")
    parser.add_argument("--cpu", action="store_true", help="run the same path on the CPU, without bf16 "
                        "(a plumbing test, not a GPU check)")
    args = parser.parse_args(argv)

    if not args.cpu:
        ok, detail = gpu_status()
        if not ok:
            print(f"gpu_check: no CUDA GPU available -- {detail}. Nothing was checked; run this on a machine "
                  "with an NVIDIA GPU.", file=sys.stderr)
            return EXIT_NO_GPU
        print(f"gpu_check: {detail}", file=sys.stderr)
    from msm_eval.errors import MsmEvalError
    try:
        with tempfile.TemporaryDirectory(prefix="msm-gpu-check-") as tmp:
            work = args.work_dir or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            report = run_check(args.model, work, steps=args.steps, seq_len=args.seq_len,
                               batch_size=args.batch_size, cpu=args.cpu)
    except CheckFailed as exc:
        print(f"gpu_check: FAILED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except MsmEvalError as exc:
        print(f"gpu_check: FAILED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    text = json.dumps(report, indent=2)
    if args.out:
        from msm_eval.fileio import atomic_write_text
        atomic_write_text(args.out, text + "\n")
    print(text)
    print(f"gpu_check: passed ({report['device']}, {report['train_tokens_per_s']} training tokens/s)",
          file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
