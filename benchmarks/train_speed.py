"""Benchmark: the compact trainer vs the Hugging Face `Trainer` (tokens/s), with and without torch.compile, and packing waste.

Both sides train the same model on the same packed rows with the same settings (LoRA or full
fine-tuning, batch, bf16 autocast when supported, fused AdamW, warmup+cosine, clipping at 1.0, no
evaluation, no checkpoints). The sides alternate A B A B ..., each run in a fresh process
(`benchmarks/alternate.py`; one process running both crashed in its second round, because
accelerate keeps an HF Trainer's bf16 setting process-wide), and throughput counts target tokens
per second from step 3 on (the first two steps are warm-up, and the compiled side compiles there).
A third side runs our trainer with `compile: true` (torch.compile). Medians and ranges are reported.
Padding waste compares our stream packing with one-document-per-row padding on the same corpus.

    python benchmarks/train_speed.py --model smollm2 --steps 10 --rounds 2
    python benchmarks/train_speed.py --model tiny          # a 2-layer random Llama, seconds

Writes results/bench/train_speed.json and .md. The machine is shared: quote medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from msm_eval.fileio import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tiny-model builder used by the tests
sys.path.insert(0, str(ROOT / "benchmarks"))  # the shared A/B driver


def corpus(n: int) -> list[str]:
    """A deterministic corpus of documents of varied length (sentences about a spec)."""
    import random
    rng = random.Random(0)
    words = ("the assistant supports oversight and explains its reasons honestly while avoiding drastic "
             "irreversible actions it asks before acting when unsure and keeps private data private").split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(40, 400))) + "." for _ in range(n)]


def build_model_dir(name: str, tmp: Path) -> Path:
    if name == "smollm2":
        from msm_eval.models.smollm2 import prepare
        return Path(prepare())
    if name == "tiny":
        from conftest_train import build_tiny_model
        return build_tiny_model(tmp / "tiny", vocab_size=2048, layers=4, hidden=256)
    return Path(name)


def run_ours(model_dir: Path, docs_path: Path, out: Path, args: argparse.Namespace, compile: bool = False
             ) -> dict[str, Any]:
    from msm_eval.fileio import read_jsonl
    from msm_eval.train.config import config_from_dict
    from msm_eval.train.trainer import train
    cfg = config_from_dict(dict(stage="midtrain", model=str(model_dir), data=str(docs_path), out_dir=str(out),
                                seq_len=args.seq_len, batch_size=args.batch_size, grad_accum=1, epochs=1,
                                max_steps=args.steps, lr=1e-4, warmup_ratio=0.05, eval_fraction=0.0,
                                lora=None if args.full else dict(r=16, alpha=32), save_every=10_000,
                                progress=False, bf16="auto", seed=0, compile=compile))
    train(cfg)
    steps = [r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    timed = steps[2:]
    seconds = sum(r["elapsed_s"] for r in timed)
    return {"tokens_per_s": len(timed) * args.batch_size * args.seq_len / seconds, "s_per_step": seconds / len(timed)}


def run_hf(model_dir: Path, docs_path: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from msm_eval.train.data import build_rows
    from msm_eval.train.trainer import add_lora, bf16_supported, load_base
    model, tok = load_base(model_dir)
    if not args.full:
        model = add_lora(model, dict(r=16, alpha=32, dropout=0.0,
                                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                     "up_proj", "down_proj"]))
    rows, _ = build_rows("midtrain", docs_path, tok, args.seq_len, 0.0, 0)
    # HF shifts labels inside the model: labels[t+1] = our targets[t]
    labels = torch.cat([torch.full((len(rows), 1), -100), rows.targets[:, :-1]], dim=1)
    data = [{"input_ids": rows.input_ids[i], "position_ids": rows.position_ids[i], "labels": labels[i]}
            for i in range(len(rows))]
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a: Any, **k: Any) -> None:
            times.append(time.perf_counter())

    targs = TrainingArguments(output_dir=str(out), per_device_train_batch_size=args.batch_size,
                              max_steps=args.steps, learning_rate=1e-4, lr_scheduler_type="cosine",
                              warmup_steps=max(1, round(0.05 * args.steps)), weight_decay=0.01, max_grad_norm=1.0,
                              bf16=bf16_supported(torch.device("cuda" if torch.cuda.is_available() else "cpu")),
                              use_cpu=not torch.cuda.is_available(), logging_strategy="no", save_strategy="no",
                              eval_strategy="no", report_to=[], dataloader_num_workers=0,
                              dataloader_pin_memory=False, disable_tqdm=True, seed=0)
    Trainer(model=model, args=targs, train_dataset=data, callbacks=[Clock()]).train()
    timed = [b - a for a, b in zip(times[1:], times[2:])]
    seconds = sum(timed)
    return {"tokens_per_s": len(timed) * args.batch_size * args.seq_len / seconds, "s_per_step": seconds / len(timed)}


def padding_waste(model_dir: Path, docs_path: Path, seq_len: int) -> dict[str, float]:
    from transformers import AutoTokenizer

    from msm_eval.train.data import build_rows, load_documents
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows, _ = build_rows("midtrain", docs_path, tok, seq_len, 0.0, 0)
    lengths = [min(seq_len, len(tok(d["text"], add_special_tokens=False)["input_ids"]) + 1)
               for d in load_documents(docs_path)]
    # the obvious alternative: one document per row, padded to the longest row of its batch of 4
    padded = sum(max(lengths[i:i + 4]) * len(lengths[i:i + 4]) for i in range(0, len(lengths), 4))
    return {"packed_waste": rows.padding_waste, "one_doc_per_row_waste": 1 - sum(lengths) / padded,
            "rows": len(rows), "seq_len": seq_len}


def _runs(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{x['tokens_per_s']:.0f}" for x in runs)


SIDES = ("ours", "hf_trainer", "ours_compile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny | smollm2 | a Hugging Face folder")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA r=16")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "train_speed"))
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--docs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        where = (Path(args.model_dir), Path(args.docs), Path(tempfile.mkdtemp(prefix="msm-bench-run-")), args)
        result = run_hf(*where) if args.child == "hf_trainer" else run_ours(*where, compile=args.child == "ours_compile")
        print(json.dumps(result))
        return
    from alternate import alternate, load_note, fmt, summary
    tmp = Path(tempfile.mkdtemp(prefix="msm-bench-train-"))
    model_dir = build_model_dir(args.model, tmp)
    docs_path = tmp / "docs.jsonl"
    n_docs = math.ceil(args.steps * args.batch_size * args.seq_len / 150) + 10
    docs_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in corpus(n_docs)))
    shared = ["--steps", str(args.steps), "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size),
              "--model-dir", str(model_dir), "--docs", str(docs_path), *(["--full"] if args.full else [])]
    results = alternate(__file__, SIDES, args.rounds, shared)
    stats = summary(results, "tokens_per_s", "ours", "hf_trainer")
    compiled = summary(results, "tokens_per_s", "ours_compile", "ours")
    waste = padding_waste(model_dir, docs_path, args.seq_len)
    report = {"benchmark": "train_speed", "model": args.model, "mode": "full" if args.full else "lora_r16",
              "steps": args.steps, "rounds": args.rounds, "seq_len": args.seq_len, "batch_size": args.batch_size,
              "device": "cuda" if torch.cuda.is_available() else "cpu", "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "runs": results, "summary": stats,
              "ours_tokens_per_s_median": stats["ours"]["median"],
              "hf_trainer_tokens_per_s_median": stats["hf_trainer"]["median"],
              "paired_ratio_median": stats["paired_ratio"]["median"], "compile_summary": compiled,
              "compile_paired_ratio_median": compiled["paired_ratio"]["median"], "padding": waste,
              "note": "shared 2-core CPU; other jobs ran at the same time, so absolute numbers are noisy"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), report)
    md = [f"# Training throughput: compact trainer vs HF Trainer ({args.model}, {report['mode']})", "",
          f"{args.rounds} rounds, sides alternating A B A B in fresh processes, {args.steps} steps each, batch "
          f"{args.batch_size} x {args.seq_len} tokens, {report['device']}, {report['threads']} threads; steps 3+ timed.",
          "", "| trainer | tokens/s median [range] | runs |", "|---|---|---|",
          f"| ours (msm_eval.train) | {fmt(stats['ours'], 0)} | {_runs(results['ours'])} |",
          f"| HF Trainer | {fmt(stats['hf_trainer'], 0)} | {_runs(results['hf_trainer'])} |",
          f"| ours, compile: true | {fmt(compiled['ours_compile'], 0)} | {_runs(results['ours_compile'])} |",
          "", f"Paired ratio ours / HF: **{fmt(stats['paired_ratio'])}** (median [range] over rounds).", "",
          f"Paired ratio ours with torch.compile / ours without: **{fmt(compiled['paired_ratio'])}** "
          "(compilation happens in the two untimed warm-up steps and is not counted).", "",
          f"Padding waste on this corpus at seq_len {args.seq_len}: packed {waste['packed_waste']:.2%} vs "
          f"one document per row (batch-of-4 padding) {waste['one_doc_per_row_waste']:.2%}.", "",
          load_note(), ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
