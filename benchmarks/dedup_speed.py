"""Benchmark: near-duplicate filtering, MinHash LSH (`NearDuplicateIndex`) vs the exhaustive index.

Corpus: random texts of 60-300 words over a 5,000-word vocabulary, one in ten followed later by an
edited copy (similarity to its source 0.6-0.95). Both filters run `near_duplicate_indices` on the
same corpus; the sides alternate A B A B ... in fresh processes (`benchmarks/alternate.py`) at
`--n` texts, and the LSH filter alone runs on `--big` texts (the exhaustive one is quadratic
there). Recall is measured against the planted copies whose true similarity is >= 0.6; the two
filters must flag the same texts.

    python benchmarks/dedup_speed.py [--n 4000] [--big 100000] [--rounds 2]

Writes results/bench/dedup_speed.json and .md. Shared CPU: wall and CPU seconds are both recorded.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # the shared A/B driver

from msm_eval.dedup import jaccard, near_duplicate_indices, shingles  # noqa: E402
from msm_eval.fileio import atomic_write_json, atomic_write_text  # noqa: E402

SIDES = ("lsh", "exact")


def corpus(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """`n` texts and the indices of the planted near-duplicate copies."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(5000)]
    texts: list[str] = []
    planted: list[int] = []
    pending: list[str] = []
    while len(texts) < n:
        if pending and rng.random() < 0.1:
            source = pending.pop(rng.randrange(len(pending)))
            words = source.split()
            for k in rng.sample(range(len(words)), max(1, len(words) // rng.choice([20, 30, 50, 100]))):
                words[k] = rng.choice(vocab)
            copy = " ".join(words)
            if jaccard(shingles(copy), shingles(source)) >= 0.6:     # ground truth: a true near-duplicate
                planted.append(len(texts))
            texts.append(copy)
            continue
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(60, 300)))
        texts.append(text)
        if rng.random() < 0.1:
            pending.append(text)
    return texts, planted


def measure(side: str, n: int) -> dict[str, float]:
    texts, planted = corpus(n)
    t0, c0 = time.perf_counter(), time.process_time()
    flagged = near_duplicate_indices(texts, exact=side == "exact")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    found = set(flagged) & set(planted)
    return {"n": n, "seconds": seconds, "cpu_seconds": cpu, "flagged": len(flagged), "planted": len(planted),
            "recall_planted": len(found) / len(planted) if planted else 1.0, "flagged_hash": hash(tuple(flagged))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "dedup_speed"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.size)))
        return
    from alternate import alternate, load_note, fmt, run_child, spread, summary
    runs = alternate(__file__, SIDES, args.rounds, ["--size", str(args.n)])
    stats = summary(runs, "cpu_seconds", "exact", "lsh")
    wall = summary(runs, "seconds", "exact", "lsh")
    same = all(a["flagged_hash"] == b["flagged_hash"] for a, b in zip(runs["lsh"], runs["exact"]))
    big = [run_child(__file__, "lsh", ["--size", str(args.big)]) for _ in range(args.rounds)]
    report = {"benchmark": "dedup_speed", "n": args.n, "big": args.big, "rounds": args.rounds, "runs": runs,
              "cpu": stats, "wall": wall, "same_texts_flagged": same, "big_runs": big,
              "big_wall": spread([r["seconds"] for r in big]), "big_cpu": spread([r["cpu_seconds"] for r in big]),
              "machine": platform.processor() or platform.machine(),
              "note": "shared 2-core CPU; other jobs ran at the same time, so wall times are inflated"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), report)
    md = ["# Near-duplicate filtering: MinHash LSH vs exhaustive", "",
          f"Random texts of 60-300 words with planted edited copies (recall counts those at similarity >= 0.6), threshold 0.6, 5-word "
          f"shingles. {args.rounds} rounds, sides alternating A B A B in fresh processes; median [range].", "",
          f"| filter | texts | CPU s | wall s | recall of planted copies |", "|---|---|---|---|---|",
          f"| exhaustive (`exact=True`) | {args.n:,} | {fmt(stats['exact'])} | {fmt(wall['exact'])} | "
          f"{runs['exact'][0]['recall_planted']:.4f} |",
          f"| MinHash LSH (default) | {args.n:,} | {fmt(stats['lsh'])} | {fmt(wall['lsh'])} | "
          f"{runs['lsh'][0]['recall_planted']:.4f} |",
          f"| MinHash LSH (default) | {args.big:,} | {fmt(report['big_cpu'])} | {fmt(report['big_wall'])} | "
          f"{big[0]['recall_planted']:.4f} |", "",
          f"Paired CPU-time ratio exhaustive / LSH at {args.n:,} texts: **{fmt(stats['paired_ratio'])}x**. "
          f"Both filters flag {'the same' if same else 'DIFFERENT'} texts.", "",
          load_note(), ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
