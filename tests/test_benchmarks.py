"""Every benchmark still runs: each script is run end to end at a tiny size into a scratch folder.

The numbers of such tiny runs mean nothing; the checks are that the script exits 0, that it
alternates its sides in fresh processes as documented, and that it writes its .json and .md with
the fields the committed results (results/bench/) carry. Timing claims live in results/bench/,
never in tests.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def run_benchmark(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def read_result(path: Path) -> dict:
    assert path.is_file(), f"{path.name} was not written"
    return json.loads(path.read_text(encoding="utf-8"))


def positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_harness_overhead_runs_every_side(tmp_path: Path) -> None:
    run_benchmark("harness_overhead.py", "--n", "3", "--rounds", "1", "--out", str(tmp_path))
    result = read_result(tmp_path / "harness_overhead.json")
    sides = ("pipeline", "bare_equivalent", "bare_with_metadata", "bare_json_judge", "bare_single")
    assert set(result["ms_per_sample_runs"]) == set(sides)
    assert all(positive(result["ms_per_sample_median"][side]) for side in sides)
    for base in sides[1:]:
        assert positive(result[f"ratio_pipeline_vs_{base}"]["paired_median"])
    assert "goal <= 1.1x" in (tmp_path / "harness_overhead.md").read_text(encoding="utf-8")


def test_audit_overhead_runs(tmp_path: Path) -> None:
    run_benchmark("audit_overhead.py", "--n", "2", "--turns", "2", "--rounds", "1", "--out", str(tmp_path))
    result = read_result(tmp_path / "audit_overhead.json")
    assert set(result["ms_per_turn_runs"]) == {"agent", "direct"}
    assert positive(result["ratio_agent_vs_direct"]["paired_median"]) and (tmp_path / "audit_overhead.md").is_file()


def test_small_speed_benchmarks_run(tmp_path: Path) -> None:
    run_benchmark("markdown_spec_load.py", "--kb", "5", "--repeats", "1", "--rounds", "1", "--out", str(tmp_path))
    spec = read_result(tmp_path / "markdown_spec_load.json")
    assert spec["sections"] > 0 and positive(spec["ratio_markdown_it_over_ours"])
    run_benchmark("scenarios_load.py", "--seeds", "4", "--repeats", "1", "--rounds", "1", "--out", str(tmp_path))
    load = read_result(tmp_path / "scenarios_load.json")
    assert load["expanded_samples"] >= 4 and positive(load["speedup_vs_naive"])
    run_benchmark("dedup_speed.py", "--n", "200", "--big", "400", "--rounds", "1",
                  "--out", str(tmp_path / "dedup_speed"))
    dedup = read_result(tmp_path / "dedup_speed.json")
    assert dedup["same_texts_flagged"] is True          # the LSH filter flags what the exhaustive one flags


def test_statistics_benchmarks_run(tmp_path: Path) -> None:
    run_benchmark("stats_speed.py", "--quick", "--rounds", "1", "--out", str(tmp_path))
    speed = read_result(tmp_path / "stats_speed_quick.json")
    assert speed["agreement"]["within_monte_carlo_error"] is True and positive(speed["speedup"])
    run_benchmark("ppi_coverage.py", "--reps", "3", "--out", str(tmp_path))
    coverage = read_result(tmp_path / "ppi_coverage.json")
    assert coverage["replicates"] == 3 and coverage["cells"]
    run_benchmark("stats_simulation.py", "--quick", "--clusters", "8", "--out", str(tmp_path))
    simulation = read_result(tmp_path / "stats_simulation_quick.json")
    assert list(simulation["results"]) == ["8"] and simulation["results"]["8"]   # the cluster count asked for


@pytest.mark.parametrize("script", ["probe_speed.py", "train_speed.py"])
def test_model_benchmarks_run_on_a_tiny_model(tmp_path: Path, script: str) -> None:
    name = script.removesuffix(".py")
    extra = ["--rounds", "1"] + (["--steps", "4", "--seq-len", "32", "--batch-size", "2"] if name == "train_speed"
                                 else ["--threads", "1"])
    run_benchmark(script, "--model", "tiny", *extra, "--out", str(tmp_path / name))
    result = read_result(tmp_path / f"{name}.json")
    sides = {"probe_speed": {"naive_loop", "tree_batch1", "tree_batch8", "tree_batch8_bf16_autocast"},
             "train_speed": {"ours", "hf_trainer", "ours_compile"}}[name]
    assert set(result["runs"]) == sides
    if name == "probe_speed":   # the default scorer is exact against the naive loop
        assert result["max_abs_logprob_diff_vs_naive"]["tree_batch8"] < 1e-3
    assert (tmp_path / f"{name}.md").is_file()
