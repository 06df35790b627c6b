"""Benchmark: loading + validating + expanding a seed library of a few hundred files.

Compares msm_eval.scenarios as shipped (libyaml-backed YAML parsing, compiled templates cached
by source) with the obvious alternative in the same process: the same code using PyYAML's
pure-Python SafeLoader and compiling every template each time it is rendered. Writes
results/bench/scenarios_load.json and .md.

Run: python benchmarks/scenarios_load.py [--seeds 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jinja2
import yaml

from msm_eval import paths, scenarios
from msm_eval.fileio import atomic_write_json, atomic_write_text

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
        scenarios._compile.cache_clear()
        start = time.perf_counter()
        n_samples = load_all(folder)
        times.append(time.perf_counter() - start)
    return times, n_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_library(folder, args.seeds)
        load_all(folder)  # warm imports (jsonschema, jinja2) outside the timings
        ours, n_samples = timed(folder, args.repeats)

        original_loader, original_compile = scenarios._YamlLoader, scenarios._compile

        def compile_every_time(source: str, lenient: bool = False) -> jinja2.Template:
            env = scenarios._LENIENT_ENV if lenient else scenarios._ENV
            return env.from_string(source)

        compile_every_time.cache_clear = lambda: None  # type: ignore[attr-defined]
        scenarios._YamlLoader, scenarios._compile = yaml.SafeLoader, compile_every_time
        try:
            naive, _ = timed(folder, args.repeats)
        finally:
            scenarios._YamlLoader, scenarios._compile = original_loader, original_compile

    ours_median, naive_median = statistics.median(ours), statistics.median(naive)
    result = {
        "benchmark": "scenarios_load",
        "what": "load_library + expand_all (validation, grid expansion, template rendering)",
        "seeds": args.seeds,
        "expanded_samples": n_samples,
        "repeats": args.repeats,
        "msm_eval_seconds_median": round(ours_median, 4),
        "naive_seconds_median": round(naive_median, 4),
        "speedup_vs_naive": round(naive_median / ours_median, 2),
        "naive": "pure-Python yaml.SafeLoader and a template compile per render",
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    out = paths.RESULTS_DIR / "bench"
    atomic_write_json(out / "scenarios_load.json", result)
    atomic_write_text(out / "scenarios_load.md",
                      f"# scenarios_load\n\nLoading, validating and expanding {args.seeds} seeds "
                      f"({n_samples} samples), median of {args.repeats}: "
                      f"**{ours_median:.3f} s** with msm_eval.scenarios vs {naive_median:.3f} s for the "
                      f"naive variant (pure-Python YAML, template compiled per render): "
                      f"**{naive_median / ours_median:.1f}x** faster.\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
