"""Simulation suite for the statistics and the gate: coverage, false alarms, false passes and
power at the reported MDE, with Monte-Carlo error, for 8, 15, 40 and 150 clusters.

Data: `msm_eval.simulate` (integer scores -3..+3 from a rounded, clipped latent normal; latent
intra-cluster correlation 0.3 or 0.6 alternating by replicate, a further 0.25 correlation between
a sample's two runs, 4 samples per cluster, 10% of cells not exercised). True means are exact.
The "unequal" rows keep 1, 1, 1, 2, 2, 4, 8, 16 samples in successive clusters (repeated).

Checks (alpha = 0.05, 95% intervals), by `--only` name:
- coverage: summarize's coverage of the true mean and paired compare's of the true difference
  0.3 (3 dimensions per replicate);
- unpaired: compare(paired=False) two-sided type-I error under no difference, equal and unequal
  clusters (15 dimensions per replicate);
- detect_false_alarm: gate detect, 15 dimensions, no difference: family-wise false alarms (or
  how often it refuses);
- detect_false_fail: gate detect, margin 0.3, every dimension dropping exactly 0.3;
- noninferiority: gate noninferiority, margin 0.3, true drop 0.3: false passes per dimension,
  equal and unequal clusters (15 dimensions per replicate);
- detect_power / compare_power: power at the reported MDE, per ICC: the median reported
  `detectable_drop` (gate) or `mde` (compare, 15 dimensions, Holm, two-sided) with no difference
  is put in as the true drop of one dimension of 15 with the same ICC.
The gate checks call `msm_eval.gate.decide`, the function `run_gate` decides with.

    nice -n 10 .venv/bin/python benchmarks/stats_simulation.py [--quick] [--only CHECK,...]
        [--clusters 8,15] [--array-reps N] [--frame-reps N] [--unpaired-reps N] [--power-reps N]
    .venv/bin/python benchmarks/stats_simulation.py --render   # rewrite the .md from the committed .json

Writes results/bench/stats_simulation.json and .md; with `--only` the rows of the other checks
are kept from the JSON already there, and the JSON's `runs` records when and with how many
replicates each check last ran.
"""

from __future__ import annotations

import argparse
import json
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
PER_CLUSTER = 4
UNEQUAL = (1, 1, 1, 2, 2, 4, 8, 16)


def rate(hits: int, trials: int) -> dict[str, float]:
    """A Monte-Carlo rate with its standard error."""
    p = hits / trials if trials else float("nan")
    return {"rate": p, "mc_se": math.sqrt(p * (1 - p) / trials) if trials else float("nan"), "trials": trials}


def design(clusters: int, dims: int, rep: int) -> sim.Design:
    return sim.Design(clusters=clusters, dims=dims, icc=ICCS[rep % len(ICCS)])


def _decide_drop(rng: np.random.Generator, clusters: int, icc: float, drop: float | np.ndarray,
                 mode: str, margin: float, dims: int, rep: int, sizes: np.ndarray | None = None) -> dict[str, Any]:
    """One simulated paired dataset put through the gate's `decide`."""
    d = sim.Design(clusters=clusters, dims=dims, icc=icc, per_cluster=PER_CLUSTER if sizes is None else int(sizes.max()))
    b, c, cl = sim.paired_scores(rng, d, BASE_MEAN, BASE_MEAN - np.asarray(drop, dtype=float))
    if sizes is not None:
        _thin(b, c, cl, sizes)
    s, n = sim.cluster_sums(c - b, cl, clusters)
    return decide(s, n, mode, ALPHA, margin, 10_000, rep)


def unequal_sizes(clusters: int) -> np.ndarray:
    """Cluster sizes for the unequal-size checks: 1, 1, 1, 2, 2, 4, 8, 16 samples, repeated."""
    return np.resize(np.array(UNEQUAL), clusters)


def _thin(b: np.ndarray, c: np.ndarray, cluster_of: np.ndarray, sizes: np.ndarray) -> None:
    """Keep only the first `sizes[k]` samples of cluster k (the rest become NaN in both runs)."""
    position = np.arange(cluster_of.size) - np.searchsorted(cluster_of, cluster_of)
    drop = position >= sizes[cluster_of]
    b[drop] = np.nan
    c[drop] = np.nan


def check_detect_false_alarm(clusters: int, reps: int, seed: int) -> dict[str, dict[str, Any]]:
    """Detect, no difference, 15 dims: family-wise false alarms and how often the gate refuses."""
    rng = np.random.default_rng([seed, clusters, 11])
    alarms = refusals = 0
    for rep in range(reps):
        res = _decide_drop(rng, clusters, ICCS[rep % 2], 0.0, "detect", 0.0, 15, rep)
        if not res["can_fail"].all():
            refusals += 1
            continue
        alarms += bool(res["failed"].any())
    return {"detect_false_alarm_15_dims": rate(alarms, reps - refusals),
            "detect_refused_15_dims": rate(refusals, reps)}


def check_detect_false_fail(clusters: int, reps: int, seed: int) -> dict[str, dict[str, Any]]:
    """Detect with margin 0.3, every dimension dropping exactly the margin: family-wise false fails."""
    rng = np.random.default_rng([seed, clusters, 12])
    fails = refusals = 0
    for rep in range(reps):
        res = _decide_drop(rng, clusters, ICCS[rep % 2], MARGIN, "detect", MARGIN, 15, rep)
        if not res["can_fail"].all():
            refusals += 1
            continue
        fails += bool(res["failed"].any())
    return {"detect_false_fail_at_margin_15_dims": rate(fails, reps - refusals)}


def check_noninferiority(clusters: int, reps: int, seed: int) -> dict[str, dict[str, Any]]:
    """Non-inferiority at the margin (true drop = margin): false passes per dimension, with 4
    samples per cluster and with unequal cluster sizes; 15 independent dimensions per replicate."""
    rng = np.random.default_rng([seed, clusters, 13])
    out = {}
    for key, sizes in (("noninferiority_false_pass_per_dim", None),
                       ("noninferiority_false_pass_unequal", unequal_sizes(clusters))):
        passes = total = 0
        for rep in range(reps):
            res = _decide_drop(rng, clusters, ICCS[rep % 2], MARGIN, "noninferiority", MARGIN, 15, rep, sizes)
            passes += int((~res["failed"]).sum())
            total += res["failed"].size
        out[key] = rate(passes, total)
    return out


def check_detect_power(clusters: int, reps: int, seed: int) -> dict[str, dict[str, Any]]:
    """Power at the reported detectable drop, per ICC: the median drop the gate reports with no
    difference (100 replicates) is put in as the true drop of one dimension of 15; the rate is
    the mean over the two ICCs (reps/2 replicates each)."""
    rng = np.random.default_rng([seed, clusters, 14])
    hits = trials = 0
    drops = []
    for icc in ICCS:
        reported = []
        for rep in range(100):
            res = _decide_drop(rng, clusters, icc, 0.0, "detect", 0.0, 15, rep)
            reported.append(res["detectable_drop"])
        drop = float(np.nanmedian(np.concatenate(reported)))
        if not np.isfinite(drop):
            return {"detect_power_at_reported_drop": {"rate": None, "note": "the gate refuses at this cluster count"}}
        drops.append(drop)
        means = np.zeros(15)
        means[0] = drop
        for rep in range(reps // 2):
            hits += bool(_decide_drop(rng, clusters, icc, means, "detect", 0.0, 15, rep)["failed"][0])
            trials += 1
    return {"detect_power_at_reported_drop": {**rate(hits, trials), "drops": drops}}


def check_summary_coverage(clusters: int, reps: int, seed: int, resamples: int) -> dict[str, dict[str, Any]]:
    """summarize and paired compare: 95% interval coverage of the true mean / difference 0.3."""
    rng = np.random.default_rng([seed, clusters, 21])
    cover_s = cover_c = total = 0
    for rep in range(reps):
        d = design(clusters, 3, rep)
        b, c, cl = sim.paired_scores(rng, d, BASE_MEAN, BASE_MEAN + 0.3)
        frame = sim.tidy(b, c, cl)
        summary = stats.summarize(frame[frame["run"] == "base"], n_resamples=resamples, seed=rep)
        cover_s += int(((summary["ci_low"] <= BASE_MEAN) & (summary["ci_high"] >= BASE_MEAN)).sum())
        table = stats.compare(frame, "base", "cand", n_resamples=resamples, seed=rep)
        cover_c += int(((table["ci_low"] <= 0.3) & (table["ci_high"] >= 0.3)).sum())
        total += len(table)
    return {"summarize_coverage_95": rate(cover_s, total), "compare_coverage_95": rate(cover_c, total)}


def check_unpaired(clusters: int, reps: int, seed: int) -> dict[str, dict[str, Any]]:
    """compare(paired=False) under no difference (two independent runs): two-sided type-I error,
    15 dimensions per replicate, with 4 samples per cluster and with unequal cluster sizes."""
    rng = np.random.default_rng([seed, clusters, 22])
    out = {}
    for key, sizes in (("compare_unpaired_type1", None), ("compare_unpaired_type1_unequal", unequal_sizes(clusters))):
        alarms = total = 0
        for rep in range(reps):
            d = sim.Design(clusters=clusters, dims=15, icc=ICCS[rep % 2],
                           per_cluster=PER_CLUSTER if sizes is None else int(sizes.max()))
            b0, _, cl0 = sim.paired_scores(rng, d, BASE_MEAN, BASE_MEAN)
            _, c0, _ = sim.paired_scores(rng, d, BASE_MEAN, BASE_MEAN)
            if sizes is not None:
                _thin(b0, c0, cl0, sizes)
            unpaired = stats.compare(sim.tidy(b0, c0, cl0), "base", "cand", paired=False, correction=None)
            alarms += int((unpaired["p_value"] < ALPHA).sum())
            total += len(unpaired)
        out[key] = rate(alarms, total)
    return out


def check_compare_power(clusters: int, reps: int, seed: int, resamples: int) -> dict[str, dict[str, Any]]:
    """compare's power at its reported mde (15 dimensions, Holm, two-sided), per ICC: the median
    reported mde with no difference (25 replicates) is put in as the true drop of one dimension;
    the rate is the mean over the two ICCs (reps/2 replicates each)."""
    rng = np.random.default_rng([seed, clusters, 23])
    hits = trials = 0
    mdes = []
    for icc in ICCS:
        d = sim.Design(clusters=clusters, dims=15, icc=icc)
        reported = []
        for rep in range(25):
            b, c, cl = sim.paired_scores(rng, d, BASE_MEAN, BASE_MEAN)
            table = stats.compare(sim.tidy(b, c, cl), "base", "cand", n_resamples=resamples, seed=rep)
            reported.append(float(table["mde"].median()))
        mde = float(np.median(reported))
        if not np.isfinite(mde):
            return {"compare_power_at_reported_mde": {"rate": None, "mde": mde,
                                                      "note": "mde is infinite: the test cannot reach alpha"}}
        mdes.append(mde)
        means = np.full(15, BASE_MEAN)
        means[0] = BASE_MEAN - mde
        for rep in range(reps // 2):
            b, c, cl = sim.paired_scores(rng, d, BASE_MEAN, means)
            table = stats.compare(sim.tidy(b, c, cl), "base", "cand", n_resamples=resamples, seed=rep)
            hits += bool(table.loc[table["dimension"] == "dim0", "p_adj"].iloc[0] < ALPHA)
            trials += 1
    return {"compare_power_at_reported_mde": {**rate(hits, trials), "mdes": mdes}}


# name -> (function, which replicate count it takes, whether it takes --resamples)
CHECKS = {
    "detect_false_alarm": (check_detect_false_alarm, "array", False),
    "detect_false_fail": (check_detect_false_fail, "array", False),
    "noninferiority": (check_noninferiority, "array", False),
    "detect_power": (check_detect_power, "array", False),
    "coverage": (check_summary_coverage, "frame", True),
    "unpaired": (check_unpaired, "unpaired", False),
    "compare_power": (check_compare_power, "power", True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates, for a smoke run")
    parser.add_argument("--array-reps", type=int, default=1000, help="replicates of each gate check")
    parser.add_argument("--frame-reps", type=int, default=100, help="replicates of the coverage checks")
    parser.add_argument("--unpaired-reps", type=int, default=200, help="replicates of the unpaired checks (15 dims)")
    parser.add_argument("--power-reps", type=int, default=400, help="replicates of compare's power check")
    parser.add_argument("--resamples", type=int, default=999, help="bootstrap resamples per table")
    parser.add_argument("--only", default="", help="comma-separated checks to run (" + ", ".join(CHECKS)
                        + "); the other rows are kept from the committed JSON")
    parser.add_argument("--clusters", default="", help="comma-separated cluster counts (default 8,15,40,150)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "results" / "bench"))
    args = parser.parse_args()
    only = [c.strip() for c in args.only.split(",") if c.strip()] or list(CHECKS)
    unknown = [c for c in only if c not in CHECKS]
    if unknown:
        parser.error(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
    cluster_counts = [int(c) for c in args.clusters.split(",") if c.strip()] or list(CLUSTERS)
    reps = {"array": args.array_reps, "frame": args.frame_reps, "unpaired": args.unpaired_reps,
            "power": args.power_reps}
    if args.quick:
        reps = {"array": 100, "frame": 20, "unpaired": 20, "power": 40}
    name = "stats_simulation_quick" if args.quick else "stats_simulation"
    out = Path(args.out)
    previous = out / f"{name}.json"
    payload: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() and len(only) < len(CHECKS) \
        else {"results": {}}
    payload.update({"benchmark": "stats_simulation", "alpha": ALPHA, "margin": MARGIN, "base_mean": BASE_MEAN,
                    "iccs": list(ICCS), "per_cluster": PER_CLUSTER, "unequal_sizes": list(UNEQUAL),
                    "resamples": args.resamples, "seed": args.seed, "python": platform.python_version(),
                    "numpy": np.__version__})
    runs = payload.setdefault("runs", {})
    started = time.perf_counter()
    for check in only:
        function, kind, takes_resamples = CHECKS[check]
        t0 = time.perf_counter()
        for clusters in cluster_counts:
            extra = (args.resamples,) if takes_resamples else ()
            entries = function(clusters, reps[kind], args.seed, *extra)
            payload["results"].setdefault(str(clusters), {}).update(entries)
            print(f"{check}, {clusters} clusters: {time.perf_counter() - t0:.0f}s", flush=True)
        runs[check] = {"replicates": reps[kind], "clusters": cluster_counts,
                       "seconds": round(time.perf_counter() - t0, 1),
                       "date": time.strftime("%Y-%m-%d", time.gmtime())}
    payload["seconds_last_run"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out / f"{name}.json", payload)
    atomic_write_text(out / f"{name}.md", render(payload) + "\n")
    print(render(payload))


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "not run"
    if entry.get("rate") is None or not entry.get("trials", 1):
        return "mde = inf (cannot reach alpha)" if "mde" in entry else "refuses"
    text = f"{entry['rate']:.3f} ± {entry['mc_se']:.3f}"
    for key in ("drop", "mde"):
        if key in entry:
            text += f" (at {entry[key]:.2f})"
    for key in ("drops", "mdes"):
        if key in entry:
            text += " (at " + " / ".join(f"{v:.2f}" for v in entry[key]) + ")"
    return text


ROWS = [("summarize: 95% CI coverage", "summarize_coverage_95", "0.95", "coverage"),
        ("compare paired: 95% CI coverage", "compare_coverage_95", "0.95", "coverage"),
        ("compare paired=False: type-I error", "compare_unpaired_type1", "<= 0.05", "unpaired"),
        ("compare paired=False, unequal clusters: type-I error", "compare_unpaired_type1_unequal", "<= 0.05",
         "unpaired"),
        ("gate detect, 15 dims, no drop: false alarms", "detect_false_alarm_15_dims", "<= 0.05", "detect_false_alarm"),
        ("gate detect, 15 dims: share refused (exit 2)", "detect_refused_15_dims", "-", "detect_false_alarm"),
        ("gate detect, drop = margin 0.3: false fails", "detect_false_fail_at_margin_15_dims", "<= 0.05",
         "detect_false_fail"),
        ("gate non-inferiority, drop = margin 0.3: false passes / dim", "noninferiority_false_pass_per_dim",
         "<= 0.05", "noninferiority"),
        ("gate non-inferiority, unequal clusters: false passes / dim", "noninferiority_false_pass_unequal",
         "<= 0.05", "noninferiority"),
        ("gate detect: power at reported detectable drop (ICC 0.3 / 0.6)", "detect_power_at_reported_drop", ">= 0.8",
         "detect_power"),
        ("compare (15 dims, Holm): power at reported mde (ICC 0.3 / 0.6)", "compare_power_at_reported_mde", ">= 0.8",
         "compare_power")]


def render(payload: dict[str, Any]) -> str:
    clusters = sorted(payload["results"], key=int)
    runs = payload.get("runs", {})
    lines = ["# Statistics simulation suite", "",
             f"Integer scores -3..+3, latent ICC {payload['iccs']} (alternating by replicate), "
             f"{payload.get('per_cluster', 4)} samples per cluster (unequal rows: cluster sizes "
             f"{payload.get('unequal_sizes', list(UNEQUAL))} repeated), 10% cells missing; alpha {payload['alpha']}, "
             f"margin {payload['margin']}; {payload['resamples']} bootstrap resamples per table, 10 000 sign flips "
             "per gate test. Cells: rate ± Monte-Carlo standard error; power rows give the reported drop / mde per "
             "ICC in brackets. `refuses`: the gate exits 2 at that cluster count.", "",
             "| check | target | " + " | ".join(f"C = {c}" for c in clusters) + " | replicates |",
             "|---|---|" + "---|" * len(clusters) + "---|"]
    for label, key, target, check in ROWS:
        run = runs.get(check, {})
        replicates = f"{run['replicates']} ({run.get('date', '?')})" if run else "-"
        lines.append(f"| {label} | {target} | "
                     + " | ".join(_cell(payload["results"][c].get(key)) for c in clusters) + f" | {replicates} |")
    lines += ["", "Replicates: per cluster count, as run on the date in brackets; gate and unpaired rows test 15 "
              "(non-inferiority, unpaired) or 1 (detect) dimension(s) per replicate, so their trials are the "
              "replicates times that. " + payload.get("note", ""),
              "", "Regenerate: `nice -n 10 .venv/bin/python benchmarks/stats_simulation.py` (all checks, about 50 min "
              "of CPU), or `--only CHECK[,CHECK]` to rerun some rows and keep the others; `--render` rewrites the "
              ".md from the committed .json."]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--render"]:  # re-render the committed JSON without recomputing
        path = ROOT / "results" / "bench" / "stats_simulation.json"
        atomic_write_text(path.with_suffix(".md"), render(__import__("json").loads(path.read_text())) + "\n")
    else:
        main()
