"""Benchmark: loading + validating + expanding a seed library of a few hundred files.

Compares msm_eval.scenarios as shipped (libyaml-backed YAML parsing, compiled templates cached
by source) with the obvious alternative: the same code using PyYAML's pure-Python SafeLoader and
compiling every template each time it is rendered. The two sides alternate A B A B ... for
`--rounds` rounds, each measurement a fresh process (one warm-up load, then the median of
`--repeats`); reported as median and range. Writes results/bench/scenarios_load.json and .md.

Run: python benchmarks/scenarios_load.py [--seeds 300] [--repeats 5] [--rounds 4]
"""

from __future__ import annotations

import argparse
import sys
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jinja2
import yaml

from msm_eval import paths, scenarios, templating
from msm_eval.fileio import atomic_write_json, atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared A/B driver

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "data" / "scenarios" / "good"


def make_library(folder: Path, n_seeds: int) -> None:
    """`n_seeds` files: alternately the agentic fixture (6-cell grid) and the chat fixture."""
    sources = [(FIXTURE / "fx_agentic_leak.md").read_text(), (FIXTURE / "fx_chat_tradeoff.md").read_text()]
    for i in range(n_seeds):
        text = sources[i % 2]
        old_id = "fx_agentic_leak" if i % 2 == 0 else "fx_chat_tradeoff"
        (folder / f"seed_{i:04d}.md").write_text(text.replace(f"id: {old_id}", f"id: seed_{i}"))


def load_all(folder: Path) -> int:
    seeds = scenarios.load_library(folder)
    return len(scenarios.expand_all(seeds))


def timed(folder: Path, repeats: int) -> tuple[list[float], int]:
    times, n_samples = [], 0
    for _ in range(repeats):
        templating.compile_untrusted.cache_clear()
        start = time.perf_counter()
        n_samples = load_all(folder)
        times.append(time.perf_counter() - start)
    return times, n_samples


SIDES = ("msm_eval", "naive")


def measure(side: str, folder: Path, repeats: int) -> dict[str, float]:
    """One side in this (fresh) process: warm-up, then the median of `repeats` timed loads."""
    load_all(folder)  # warm imports (jsonschema, jinja2) outside the timings
    if side == "naive":
        def compile_every_time(source: str, lenient: bool = False) -> jinja2.Template:
            # the same sandbox and safety check as msm_eval, without the compile cache
            return templating.compile_untrusted.__wrapped__(source, strict=not lenient)

        scenarios._YamlLoader, scenarios._compile = yaml.SafeLoader, compile_every_time
    times, n_samples = timed(folder, repeats)
    return {"seconds": statistics.median(times), "samples": n_samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=paths.RESULTS_DIR / "bench",
                        help="folder for the .json/.md results")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, Path(args.folder), args.repeats)))
        return
    from alternate import alternate, load_note, fmt, summary
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_library(folder, args.seeds)
        runs = alternate(__file__, SIDES, args.rounds, ["--folder", str(folder), "--repeats", str(args.repeats)])
    stats = summary(runs, "seconds", "naive", "msm_eval")
    n_samples = runs["msm_eval"][0]["samples"]
    result = {
        "benchmark": "scenarios_load",
        "what": "load_library + expand_all (validation, grid expansion, template rendering)",
        "seeds": args.seeds,
        "expanded_samples": n_samples,
        "repeats": args.repeats, "rounds": args.rounds, "runs": runs, "summary": stats,
        "msm_eval_seconds_median": round(stats["msm_eval"]["median"], 4),
        "naive_seconds_median": round(stats["naive"]["median"], 4),
        "speedup_vs_naive": round(stats["paired_ratio"]["median"], 2),
        "naive": "pure-Python yaml.SafeLoader and a template compile per render",
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    out = args.out
    atomic_write_json(out / "scenarios_load.json", result)
    atomic_write_text(out / "scenarios_load.md",
                      f"# scenarios_load\n\nLoading, validating and expanding {args.seeds} seeds "
                      f"({n_samples} samples); {args.rounds} rounds, sides alternating in fresh processes, each "
                      f"the median of {args.repeats} loads; median [range] over rounds:\n\n"
                      f"- msm_eval.scenarios: **{fmt(stats['msm_eval'], 3)} s**\n"
                      f"- naive variant (pure-Python YAML, template compiled per render): {fmt(stats['naive'], 3)} s\n"
                      f"- paired speed-up: **{fmt(stats['paired_ratio'])}x**\n\n"
                      f"{load_note()}\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
