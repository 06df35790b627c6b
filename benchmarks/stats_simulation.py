"""Simulation suite for the statistics and the gate: coverage, false alarms, false passes and
power at the reported MDE, with Monte-Carlo error, for 8, 15, 40 and 150 clusters.

Data: `msm_eval.simulate` (integer scores -3..+3 from a rounded, clipped latent normal; latent
intra-cluster correlation 0.3 or 0.6 alternating by replicate, a further 0.25 correlation between
a sample's two runs, 4 samples per cluster, 10% of cells not exercised). True means are exact.

Checks (alpha = 0.05, 95% intervals):
- summarize: coverage of the true mean (3 dimensions per replicate);
- compare (paired): coverage of the true difference 0.3;
- compare (paired=False): two-sided type-I error under no difference;
- gate detect, 15 dimensions, no difference: family-wise false alarms (or how often it refuses);
- gate detect, margin 0.3, every dimension dropping exactly 0.3: family-wise false fails;
- gate noninferiority, margin 0.3, true drop 0.3: false passes per dimension;
- power at the reported MDE: the gate's `detectable_drop` and compare's `mde` (15 dimensions,
  Holm, two-sided), each taken as the median reported value under no difference and then put in
  as the true drop of one dimension.
The gate checks call `msm_eval.gate.decide`, the function `run_gate` decides with.

    .venv/bin/python benchmarks/stats_simulation.py [--quick] [--array-reps N] [--frame-reps N]
    .venv/bin/python benchmarks/stats_simulation.py --render   # rewrite the .md from the committed .json

Writes results/bench/stats_simulation.json and .md.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from msm_eval import simulate as sim  # noqa: E402
from msm_eval import stats  # noqa: E402
from msm_eval.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from msm_eval.gate import decide  # noqa: E402

CLUSTERS = (8, 15, 40, 150)
ALPHA = 0.05
MARGIN = 0.3
BASE_MEAN = 0.5
ICCS = (0.3, 0.6)


def rate(hits: int, trials: int) -> dict[str, float]:
    """A Monte-Carlo rate with its standard error."""
    p = hits / trials if trials else float("nan")
    return {"rate": p, "mc_se": math.sqrt(p * (1 - p) / trials) if trials else float("nan"), "trials": trials}


def design(clusters: int, dims: int, rep: int) -> sim.Design:
    return sim.Design(clusters=clusters, dims=dims, icc=ICCS[rep % len(ICCS)])


def gate_checks(clusters: int, reps: int, resamples: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, clusters, 1])
    out: dict[str, Any] = {}
    # detect, no difference, 15 dims: family-wise false alarms, refusals, reported detectable drop
    alarms = refusals = 0
    drops = []
    for rep in range(reps):
        d = design(clusters, 15, rep)
        b, c, cl = sim.paired_scores(rng, d, BASE_MEAN, BASE_MEAN)
        s, n = sim.cluster_sums(c - b, cl, clusters)
        res = decide(s, n, "detect", ALPHA, 0.0, resamples, rep)
        if not res["can_fail"].all():
            refusals += 1
            continue
        alarms += bool(res["failed"].any())
        drops.append(float(res["detectable_drop"][0]))
    usable = reps - refusals
    out["detect_false_alarm_15_dims"] = rate(alarms, usable)
    out["detect_refused_15_dims"] = rate(refusals, reps)
    # detect with margin: every dimension drops exactly the margin
    fails = refusals = 0
    for rep in range(reps):
        d = design(clusters, 15, rep)
        b, c, cl = sim.paired_scores(rng, d, BASE_MEAN, BASE_MEAN - MARGIN)
        s, n = sim.cluster_sums(c - b, cl, clusters)
        res = decide(s, n, "detect", ALPHA, MARGIN, resamples, rep)
        if not res["can_fail"].all():
            refusals += 1
            continue
        fails += bool(res["failed"].any())
    out["detect_false_fail_at_margin_15_dims"] = rate(fails, reps - refusals)
    # non-inferiority at the margin: false passes per dimension
    passes = total = 0
    for rep in range(reps):
        d = design(clusters, 3, rep)
        b, c, cl = sim.paired_scores(rng, d, BASE_MEAN, BASE_MEAN - MARGIN)
        s, n = sim.cluster_sums(c - b, cl, clusters)
        res = decide(s, n, "noninferiority", ALPHA, MARGIN, resamples, rep)
        passes += int((~res["failed"]).sum())
        total += 3
    out["noninferiority_false_pass_per_dim"] = rate(passes, total)
    # power at the reported detectable drop (one dimension of 15 drops by the median reported value)
    if drops:
        drop = float(np.median(drops))
        hits = 0
        for rep in range(reps):
            d = design(clusters, 15, rep)
            means = np.full(15, BASE_MEAN)
            means[0] = BASE_MEAN - drop
            b, c, cl = sim.paired_scores(rng, d, BASE_MEAN, means)
            s, n = sim.cluster_sums(c - b, cl, clusters)
            hits += bool(decide(s, n, "detect", ALPHA, 0.0, resamples, rep)["failed"][0])
        out["detect_power_at_reported_drop"] = {**rate(hits, reps), "drop": drop}
    else:
        out["detect_power_at_reported_drop"] = {"rate": None, "note": "the gate refuses at this cluster count"}
    return out


def frame_checks(clusters: int, reps: int, resamples: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, clusters, 2])
    out: dict[str, Any] = {}
    cover_s = cover_c = total = unpaired_alarms = unpaired_total = 0
    mdes = []
    for rep in range(reps):
        d = design(clusters, 3, rep)
        b, c, cl = sim.paired_scores(rng, d, BASE_MEAN, BASE_MEAN + 0.3)
        frame = sim.tidy(b, c, cl)
        summary = stats.summarize(frame[frame["run"] == "base"], n_resamples=resamples, seed=rep)
        cover_s += int(((summary["ci_low"] <= BASE_MEAN) & (summary["ci_high"] >= BASE_MEAN)).sum())
        table = stats.compare(frame, "base", "cand", n_resamples=resamples, seed=rep)
        cover_c += int(((table["ci_low"] <= 0.3) & (table["ci_high"] >= 0.3)).sum())
        total += len(table)
        b0, _, cl0 = sim.paired_scores(rng, d, BASE_MEAN, BASE_MEAN)  # two independent runs
        _, c0, _ = sim.paired_scores(rng, d, BASE_MEAN, BASE_MEAN)
        unpaired = stats.compare(sim.tidy(b0, c0, cl0), "base", "cand", paired=False, correction=None)
        unpaired_alarms += int((unpaired["p_value"] < ALPHA).sum())
        unpaired_total += len(unpaired)
    out["summarize_coverage_95"] = rate(cover_s, total)
    out["compare_coverage_95"] = rate(cover_c, total)
    out["compare_unpaired_type1"] = rate(unpaired_alarms, unpaired_total)
    # compare's mde with 15 dimensions, Holm, two-sided
    for rep in range(max(reps // 4, 10)):
        d = design(clusters, 15, rep)
        b, c, cl = sim.paired_scores(rng, d, BASE_MEAN, BASE_MEAN)
        table = stats.compare(sim.tidy(b, c, cl), "base", "cand", n_resamples=resamples, seed=rep)
        mdes.append(float(table["mde"].median()))
    mde = float(np.median(mdes))
    if not np.isfinite(mde):
        out["compare_power_at_reported_mde"] = {"rate": None, "mde": mde,
                                                "note": "mde is infinite: the test cannot reach alpha"}
        return out
    hits = 0
    for rep in range(reps):
        d = design(clusters, 15, rep)
        means = np.full(15, BASE_MEAN)
        means[0] = BASE_MEAN - mde
        b, c, cl = sim.paired_scores(rng, d, BASE_MEAN, means)
        table = stats.compare(sim.tidy(b, c, cl), "base", "cand", n_resamples=resamples, seed=rep)
        hits += bool(table.loc[table["dimension"] == "dim0", "p_adj"].iloc[0] < ALPHA)
    out["compare_power_at_reported_mde"] = {**rate(hits, reps), "mde": mde}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates, for a smoke run")
    parser.add_argument("--array-reps", type=int, default=2000, help="replicates of each gate check")
    parser.add_argument("--frame-reps", type=int, default=150, help="replicates of each table check")
    parser.add_argument("--resamples", type=int, default=999, help="bootstrap resamples per table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "results" / "bench"))
    args = parser.parse_args()
    array_reps, frame_reps = (100, 20) if args.quick else (args.array_reps, args.frame_reps)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for clusters in CLUSTERS:
        t0 = time.perf_counter()
        gate = gate_checks(clusters, array_reps, 10_000, args.seed)
        frame = frame_checks(clusters, frame_reps, args.resamples, args.seed)
        results[str(clusters)] = {**frame, **gate, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{clusters} clusters: {time.perf_counter() - t0:.0f}s", flush=True)
    payload = {"benchmark": "stats_simulation", "alpha": ALPHA, "margin": MARGIN, "base_mean": BASE_MEAN,
               "iccs": list(ICCS), "array_reps": array_reps, "frame_reps": frame_reps,
               "resamples": args.resamples, "seed": args.seed, "python": platform.python_version(),
               "numpy": np.__version__, "seconds": round(time.perf_counter() - started, 1), "results": results}
    name = "stats_simulation_quick" if args.quick else "stats_simulation"
    out = Path(args.out)
    atomic_write_json(out / f"{name}.json", payload)
    atomic_write_text(out / f"{name}.md", render(payload) + "\n")
    print(render(payload))


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    if entry.get("rate") is None or not entry.get("trials", 1):
        return "mde = inf (cannot reach alpha)" if "mde" in entry else "refuses"
    text = f"{entry['rate']:.3f} ± {entry['mc_se']:.3f}"
    for key in ("drop", "mde"):
        if key in entry:
            text += f" (at {entry[key]:.2f})"
    return text


def render(payload: dict[str, Any]) -> str:
    rows = [("summarize: 95% CI coverage", "summarize_coverage_95", "0.95"),
            ("compare paired: 95% CI coverage", "compare_coverage_95", "0.95"),
            ("compare paired=False: type-I error", "compare_unpaired_type1", "<= 0.05"),
            ("gate detect, 15 dims, no drop: false alarms", "detect_false_alarm_15_dims", "<= 0.05"),
            ("gate detect, 15 dims: share refused (exit 2)", "detect_refused_15_dims", "-"),
            ("gate detect, drop = margin 0.3: false fails", "detect_false_fail_at_margin_15_dims", "<= 0.05"),
            ("gate non-inferiority, drop = margin 0.3: false passes / dim", "noninferiority_false_pass_per_dim",
             "<= 0.05"),
            ("gate detect: power at reported detectable drop", "detect_power_at_reported_drop", ">= 0.8"),
            ("compare (15 dims, Holm): power at reported mde", "compare_power_at_reported_mde", ">= 0.8")]
    clusters = list(payload["results"])
    lines = ["# Statistics simulation suite", "",
             f"Integer scores -3..+3, latent ICC {payload['iccs']}, 4 samples per cluster, 10% cells missing; "
             f"alpha {payload['alpha']}, margin {payload['margin']}; {payload['array_reps']} replicates per gate "
             f"check, {payload['frame_reps']} per table check ({payload['resamples']} bootstrap resamples). "
             "Cells: rate ± Monte-Carlo standard error. `refuses`: the gate exits 2 at that cluster count. "
             f"Total {payload['seconds']} s. Regenerate: `.venv/bin/python benchmarks/stats_simulation.py`.", "",
             "| check | target | " + " | ".join(f"C = {c}" for c in clusters) + " |",
             "|---|---|" + "---|" * len(clusters)]
    for label, key, target in rows:
        lines.append(f"| {label} | {target} | " + " | ".join(_cell(payload["results"][c].get(key)) for c in clusters)
                     + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--render"]:  # re-render the committed JSON without recomputing
        path = ROOT / "results" / "bench" / "stats_simulation.json"
        atomic_write_text(path.with_suffix(".md"), render(__import__("json").loads(path.read_text())) + "\n")
    else:
        main()
