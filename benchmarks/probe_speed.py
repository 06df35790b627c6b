"""Benchmark: probe scoring throughput (pairs/s) -- batched shared-prefix scorer vs the naive loop.

The naive loop runs one full forward per (prompt, option); the project's `LogprobScorer` encodes
each prompt once, shares its KV cache across both options, batches prompts and computes the LM
head only where it is needed. Both score the same probe items (probes/, free presentation) with
the same weights; the script also checks that their log-probabilities agree. Sides alternate
across rounds in one process.

    python benchmarks/probe_speed.py --model smollm2 --rounds 2

Writes results/bench/probe_speed.json and .md. Shared CPU: quote medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from msm_eval.probes import (LogprobScorer, encode_completion, encode_prompt, item_prompts, load_probe_items,
                                 score_naive)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2 | tiny | a Hugging Face folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "probe_speed"))
    args = parser.parse_args()
    if args.model == "smollm2":
        from msm_eval.models.smollm2 import prepare
        model_dir = Path(prepare())
    elif args.model == "tiny":
        from conftest_train import build_tiny_model
        model_dir = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny", vocab_size=2048, layers=4, hidden=256)
    else:
        model_dir = Path(args.model)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype)).eval()
    items = load_probe_items()
    prompts = [encode_prompt(tok, item_prompts(i)[0][0]) for i in items]
    comps = [[encode_completion(tok, i.aligned), encode_completion(tok, i.misaligned)] for i in items]
    n = len(items)
    sides = {"naive_loop": lambda: score_naive(model, prompts, comps),
             "cached_batch1": lambda: LogprobScorer(model, tok, batch_size=1).score(prompts, comps),
             f"cached_batch{args.batch_size}": lambda: LogprobScorer(model, tok, args.batch_size).score(prompts, comps)}
    sides["cached_batch1"]()  # warm-up (allocator, kernels)
    times: dict[str, list[float]] = {k: [] for k in sides}
    outputs: dict[str, Any] = {}
    for r in range(args.rounds):
        names = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in names:
            t0 = time.perf_counter()
            outputs[name] = sides[name]()
            times[name].append(time.perf_counter() - t0)
            print(name, r, f"{n / times[name][-1]:.2f} pairs/s", flush=True)
    ref = outputs["naive_loop"]
    max_diff = max(abs(a[0] - b[0]) for k in sides for ro, rr in zip(outputs[k], ref) for a, b in zip(ro, rr))
    pairs_s = {k: statistics.median(n / t for t in v) for k, v in times.items()}
    best = f"cached_batch{args.batch_size}"
    ratios = [t_naive / t_best for t_naive, t_best in zip(times["naive_loop"], times[best])]
    prompt_tokens = sum(map(len, prompts)) / n
    option_tokens = sum(len(c) for cs in comps for c in cs) / (2 * n)
    report = {"benchmark": "probe_speed", "model": args.model, "dtype": args.dtype, "items": n,
              "mean_prompt_tokens": prompt_tokens, "mean_option_tokens": option_tokens, "rounds": args.rounds,
              "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
              "seconds": times, "pairs_per_s_median": pairs_s, "speedup_paired_median": statistics.median(ratios),
              "max_abs_logprob_diff_vs_naive": max_diff,
              "note": "shared 2-core CPU; other jobs ran at the same time, so absolute numbers are noisy"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"# Probe scoring throughput ({args.model}, {args.dtype})", "",
          f"{n} probe items (two options each; prompts {prompt_tokens:.0f} tokens, options {option_tokens:.0f} "
          f"tokens on average), {args.rounds} alternating rounds, {report['threads']} CPU threads.", "",
          "| scorer | median pairs/s |", "|---|---|"]
    md += [f"| {k} | {v:.2f} |" for k, v in pairs_s.items()]
    md += ["", f"Speed-up of `{best}` over the naive loop (paired median): **{report['speedup_paired_median']:.1f}x**. "
           f"Largest log-probability difference from the naive loop: {max_diff:.2e}.", "",
           "Caveat: the 2 CPU cores were shared with other jobs while this ran; treat absolute numbers as rough.", ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
