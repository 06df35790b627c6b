"""Benchmark: probe scoring throughput (pairs/s) -- the prefix-tree scorer vs the naive loop.

The naive loop runs one full forward per (prompt, option). The project's `LogprobScorer` packs a
batch of prompts and their options into one row as a token prefix tree (shared system prompts,
each prompt and the common start of both options computed once; a 4D mask keeps sequences
apart), with no padding, and computes the LM head only where an option token is predicted. Both
score the same probe items (probes/, free presentation) with the same fp32 weights; the script
checks that their log-probabilities agree. A bf16-autocast row shows what lower precision adds
(it is not exact: its largest log-probability difference is reported next to it). The scorers
alternate A B C D A B C D ..., each measurement in a fresh process after one warm-up call
(`benchmarks/alternate.py`); wall and process CPU seconds are both recorded (CPU seconds are
steadier when other jobs share the cores), as medians with ranges.

    python benchmarks/probe_speed.py --model smollm2 --rounds 3
    python benchmarks/probe_speed.py --model smollm2 --work     # counted work (GFLOP) only, no timing

Writes results/bench/probe_speed.json and .md. Shared CPU: quote medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from msm_eval.fileio import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))  # the shared A/B driver


def _model_dir(name: str) -> Path:
    if name == "smollm2":
        from msm_eval.models.smollm2 import prepare
        return Path(prepare())
    if name == "tiny":
        from conftest_train import build_tiny_model
        return build_tiny_model(Path(tempfile.mkdtemp()) / "tiny", vocab_size=2048, layers=4, hidden=256)
    return Path(name)


def _inputs(model_dir: Path) -> tuple[Any, Any, list[list[int]], list[list[list[int]]]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from msm_eval.probes import encode_completion, encode_prompt, item_prompts, load_probe_items
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    items = load_probe_items()
    prompts = [encode_prompt(tok, item_prompts(i)[0][0]) for i in items]
    comps = [[encode_completion(tok, i.aligned), encode_completion(tok, i.misaligned)] for i in items]
    return model, tok, prompts, comps


def work(model_dir: Path, batch_size: int) -> dict[str, Any]:
    """Multiply-add work (GFLOP, 2 per multiply-add) of each way of scoring, counted, not timed.

    Linear layers cost 2 x (their weights) per token position, the LM head 2 x hidden x vocab per
    position where it runs, attention 4 x hidden per (query, key) pair (scores and weighted sum).
    The naive loop runs every (prompt + option) sequence with the LM head everywhere; the tree
    scorer runs each batch's trie once in a dense packed row (attention over all node pairs) with
    the LM head only where an option token is predicted; the floor is one trie of all items
    without the option-final leaves (whose outputs predict nothing) and attention only along each
    node's ancestry -- the least any exact scorer must compute with these weights.
    """
    from transformers import AutoConfig

    from msm_eval.probes import LogprobScorer
    cfg = AutoConfig.from_pretrained(model_dir)
    _, _, prompts, comps = _inputs(model_dir)
    h, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = cfg.num_key_value_heads * getattr(cfg, "head_dim", h // cfg.num_attention_heads)
    body = 2 * layers * (2 * h * h + 2 * h * kv + 3 * h * inter)       # q, o, k, v, gate/up/down per position
    head = 2 * h * cfg.vocab_size
    attn_pair = 4 * layers * h
    seqs = [p + c for p, cs in zip(prompts, comps) for c in cs]
    option_positions = sum(len(c) for cs in comps for c in cs)
    naive = sum(len(s) * (body + head) + attn_pair * len(s) * (len(s) + 1) / 2 for s in seqs)

    def trie(group: list[int]) -> set[tuple[int, ...]]:
        return {tuple(seq[:k]) for i in group for c in comps[i] for seq in [prompts[i] + c]
                for k in range(1, len(seq) + 1)}

    class Batcher(LogprobScorer):
        def __init__(self) -> None:                       # only the batching rule, no model
            self.batch_size, self.max_tokens = batch_size, 1024
    order = sorted(range(len(prompts)), key=lambda i: (prompts[i], i))
    tries = [trie(group) for group in Batcher()._batches(order, prompts, comps)]
    tree = sum(len(t) * body + attn_pair * len(t) ** 2 for t in tries) + option_positions * head
    full = trie(list(range(len(prompts))))
    leaves = {tuple(s) for s in seqs} - {node[:-1] for node in full}
    floor = (len(full) - len(leaves)) * body + option_positions * head + sum(attn_pair * len(n) for n in full)
    g = 1e-9
    return {"naive_gflop": naive * g, f"tree_batch{batch_size}_gflop": tree * g, "floor_gflop": floor * g,
            "tree_positions": sum(map(len, tries)), "floor_positions": len(full) - len(leaves),
            "naive_over_floor": naive / floor, f"naive_over_tree_batch{batch_size}": naive / tree}


def measure(side: str, model_dir: Path, batch_size: int) -> dict[str, Any]:
    """One side, in this (fresh) process: a warm-up call, then one timed call."""
    from msm_eval.probes import LogprobScorer, score_naive
    model, tok, prompts, comps = _inputs(model_dir)

    def run() -> Any:
        if side == "naive_loop":
            return score_naive(model, prompts, comps)
        if side == "tree_batch1":
            return LogprobScorer(model, tok, batch_size=1).score(prompts, comps)
        if side.endswith("_bf16_autocast"):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return LogprobScorer(model, tok, batch_size).score(prompts, comps)
        return LogprobScorer(model, tok, batch_size).score(prompts, comps)

    run()
    t0, c0 = time.perf_counter(), time.process_time()
    scores = run()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu_seconds": cpu, "pairs_per_s": len(prompts) / seconds,
            "scores": [[float(x[0]) for x in row] for row in scores]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2 | tiny | a Hugging Face folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "probe_speed"))
    parser.add_argument("--work", action="store_true", help="only count each scorer's work (GFLOP), no timing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child, Path(args.model_dir), args.batch_size)))
        return
    from alternate import alternate, load_note, fmt, spread
    model_dir = _model_dir(args.model)
    if args.work:
        print(json.dumps(work(model_dir, args.batch_size), indent=1))
        return
    best = f"tree_batch{args.batch_size}"
    sides = ["naive_loop", "tree_batch1", best, f"{best}_bf16_autocast"]
    extra = ["--model-dir", str(model_dir), "--batch-size", str(args.batch_size),
             *(["--threads", str(args.threads)] if args.threads else [])]
    runs = alternate(__file__, sides, args.rounds, extra)
    _, tok, prompts, comps = _inputs(model_dir)
    n = len(prompts)
    ref = runs["naive_loop"][0]["scores"]
    max_diff = {k: max(abs(a - b) for ro, rr in zip(runs[k][0]["scores"], ref) for a, b in zip(ro, rr)) for k in sides}
    pairs_s = {k: spread([r["pairs_per_s"] for r in runs[k]]) for k in sides}
    cpu_s = {k: spread([r["cpu_seconds"] for r in runs[k]]) for k in sides}

    def paired(key: str, side: str) -> dict[str, float]:
        return spread([a[key] / b[key] for a, b in zip(runs["naive_loop"], runs[side])])

    speedup = {k: paired("seconds", k) for k in sides if k != "naive_loop"}
    speedup_cpu = {k: paired("cpu_seconds", k) for k in sides if k != "naive_loop"}
    prompt_tokens = sum(map(len, prompts)) / n
    option_tokens = sum(len(c) for cs in comps for c in cs) / (2 * n)
    trie = {tuple(seq[:k]) for p, cs in zip(prompts, comps) for c in cs for seq in [p + c] for k in range(1, len(seq) + 1)}
    naive_tokens = sum(len(p) + len(c) for p, cs in zip(prompts, comps) for c in cs)
    for side_runs in runs.values():
        for r in side_runs:
            r.pop("scores", None)
    report = {"benchmark": "probe_speed", "model": args.model, "dtype": "float32", "items": n,
              "mean_prompt_tokens": prompt_tokens, "mean_option_tokens": option_tokens, "rounds": args.rounds,
              "order": "A B C D A B C D ..., each measurement in a fresh process after one warm-up call",
              "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
              "batch_size": args.batch_size, "naive_forward_tokens": naive_tokens,
              "prefix_tree_tokens_all_items": len(trie), "runs": runs,
              "pairs_per_s": pairs_s, "cpu_seconds": cpu_s,
              "speedup_vs_naive_paired": speedup, "speedup_vs_naive_cpu_paired": speedup_cpu,
              "max_abs_logprob_diff_vs_naive": max_diff,
              "note": "shared 2-core CPU; other jobs ran at the same time, so absolute numbers are noisy"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), report)
    md = [f"# Probe scoring throughput ({args.model}, float32 weights)", "",
          f"{n} probe items (two options each; prompts {prompt_tokens:.0f} tokens, options {option_tokens:.0f} "
          f"tokens on average), {args.rounds} rounds of the scorers alternating in fresh processes, "
          f"{report['threads']} CPU threads. The naive loop "
          f"runs {naive_tokens} token positions through the model (LM head at every one); the prefix tree of all "
          f"items has {len(trie)} distinct positions (the LM head runs only at the {sum(len(c) for cs in comps for c in cs)} "
          "that predict an option token). Cells are median [min–max].", "",
          "| scorer | pairs/s | CPU s | speed-up vs naive (wall, paired) | (CPU, paired) | max abs. log-prob diff vs naive |",
          "|---|---|---|---|---|---|"]
    for k in sides:
        up = fmt(speedup[k]) + "x" if k in speedup else "1"
        up_cpu = fmt(speedup_cpu[k]) + "x" if k in speedup_cpu else "1"
        md.append(f"| {k} | {fmt(pairs_s[k])} | {fmt(cpu_s[k])} | {up} | {up_cpu} | {max_diff[k]:.1e} |")
    md += ["", f"`{best}` (the default scorer, exact in fp32) is **{speedup[best]['median']:.1f}x** the naive loop "
           f"(CPU time: {speedup_cpu[best]['median']:.1f}x). bf16 autocast moves summed "
           f"log-probabilities by up to {max_diff[best + '_bf16_autocast']:.2f} nats, so it is not the default.", "",
           load_note(), ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
