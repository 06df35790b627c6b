"""Shared driver for the benchmarks: run the sides A B A B ... in fresh processes, summarise.

Each benchmark script has a `--child SIDE` mode that measures one side once and prints one JSON
object as its last stdout line. `alternate` starts a fresh interpreter per measurement, strictly
alternating the sides round by round (A B, A B, ...), so slow drift of a shared machine and state
left in a process (caches, allocator, accelerate's process-wide settings) cannot favour one side.
`summary` gives the median and range of a metric per side and of the per-round paired ratio.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_child(script: str | Path, side: str, extra: Sequence[str] = (), timeout: float = 3600) -> dict[str, Any]:
    """Run `script --child side *extra` in a fresh interpreter; its last stdout line is the result."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "INSPECT_CACHE_DIR": tempfile.mkdtemp(prefix="bench-cache-")}
    done = subprocess.run([sys.executable, str(script), "--child", side, *extra], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(script).name} --child {side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def alternate(script: str | Path, sides: Sequence[str], rounds: int, extra: Sequence[str] = (),
              timeout: float = 3600) -> dict[str, list[dict[str, Any]]]:
    """`rounds` rounds of every side in order (A B A B ...), each measurement a fresh process."""
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    LOAD["start"] = load_average()
    for r in range(rounds):
        for side in sides:
            result = run_child(script, side, extra, timeout)
            runs[side].append(result)
            print(f"round {r + 1}/{rounds} {side}: {json.dumps(result)[:200]}", flush=True)
    LOAD["end"] = load_average()
    return runs


LOAD: dict[str, float | None] = {"start": None, "end": None}
"""The 1-minute load average when the last `alternate` call started and ended."""


def load_average() -> float | None:
    """The 1-minute load average now (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def load_note() -> str:
    """One sentence on how busy the machine was during the last `alternate` call (measured, not assumed)."""
    return (f"Load average (1 min) on this {os.cpu_count()}-CPU machine: {LOAD['start']} when the runs started, "
            f"{LOAD['end']} when they ended (above the CPU count means other work competed for the cores).")


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of a list of measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summary(runs: dict[str, list[dict[str, Any]]], metric: str, a: str, b: str) -> dict[str, Any]:
    """Median and range of `metric` per side, and of the per-round ratio a / b."""
    ratios = [x[metric] / y[metric] for x, y in zip(runs[a], runs[b])]
    return {"metric": metric, a: spread([x[metric] for x in runs[a]]), b: spread([x[metric] for x in runs[b]]),
            "ratio": f"{a} / {b}", "paired_ratio": spread(ratios), "per_round_ratios": ratios,
            "rounds": len(ratios), "order": "A B A B ... (each measurement in a fresh process)"}


def fmt(s: dict[str, float], digits: int = 2) -> str:
    """`median [min–max]` for a markdown table."""
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}–{s['max']:.{digits}f}]"
