"""The CI regression gate: is a candidate run worse than a pinned baseline on any gated dimension?

Exit codes: 0 pass, 1 regression, 2 unusable input. Input is unusable when a side cannot be read,
a log did not finish (`status` error / cancelled), the two sides were not run on the same scenario
set, rubric, judge or judge mode (unless `allow_mismatch`), a gated dimension is missing, too many
samples went unscored, a side holds no scores, a dimension has too few paired samples to
test, or a setting (alpha, margin, min_pairs, max_unscored, mode) is invalid.

Modes (per gated dimension, differences oriented so that "worse" is negative; dimensions where
lower is better, such as the harmful-action rate, are flipped):
- `detect`: fails when the one-sided cluster sign-flip permutation test of a drop is significant
  at `alpha` after Holm correction across the gated dimensions AND the estimated drop is larger
  than `margin`.
- `noninferiority`: passes only when the one-sided (1 - alpha) lower confidence bound of the paired
  difference (cluster bootstrap, BCa) is above `-margin`. Every dimension must pass; this
  intersection-union test needs no multiplicity correction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import atomic_write_json
from msm_eval.results import NO_DIMENSION, STATUSES, USABLE_STATUSES, load, stack_sides, to_json_records

Mode = Literal["detect", "noninferiority"]
EXIT_PASS, EXIT_REGRESSION, EXIT_UNUSABLE = 0, 1, 2
LOWER_IS_BETTER = frozenset({"harmful", "verdict", "hard_check"})
DEFAULT_MARGIN = {"detect": 0.0, "noninferiority": 0.25}
PROVENANCE = ("scenario_set_hash", "rubric_sha256", "judge", "judge_mode")
Source = str | Path | Iterable[str | Path] | pd.DataFrame


@dataclass
class GateResult:
    """The gate's verdict with the per-dimension table and every problem found."""

    verdict: str  # pass | regression | unusable
    exit_code: int
    mode: str
    margin: float
    alpha: float
    dims: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    runs: dict[str, list[str]] = field(default_factory=dict)
    ci_level: float = 0.95
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # side -> sample-epochs per status

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready verdict."""
        return {"verdict": self.verdict, "exit_code": self.exit_code, "mode": self.mode,
                "margin": self.margin, "alpha": self.alpha, "ci_level": self.ci_level, "dims": self.dims,
                "problems": self.problems, "warnings": self.warnings, "runs": self.runs,
                "counts": self.counts,
                "dimensions": to_json_records(self.table) if self.table is not None else []}

    def render(self) -> str:
        """A readable plain-text report for the CI log."""
        lines = [f"msm-eval gate: {self.verdict.upper()} (mode={self.mode}, margin={self.margin:g}, "
                 f"alpha={self.alpha:g}; CI = two-sided {self.ci_level:.0%} paired cluster bootstrap; "
                 "p_adj = one-sided sign-flip test of a drop, Holm)"]
        for side, runs in self.runs.items():
            tally = self.counts.get(side)
            detail = ""
            if tally:
                detail = f" [{tally['total']} sample-epochs: " + ", ".join(
                    f"{tally[k]} {k}" for k in ("scored", "partial", "unscored", "refused", "error")) + "]"
            lines.append(f"  {side}: {', '.join(runs) if runs else '-'}{detail}")
        if self.table is not None and not self.table.empty:
            header = f"  {'dimension':<24} {'pairs':>5} {'clus':>4} {'base':>7} {'cand':>7} {'delta':>7} " \
                     f"{'CI':>17} {'p_adj':>7}  result"
            lines.append(header)
            for row in self.table.itertuples():
                ci = f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}]"
                lines.append(f"  {row.dimension:<24} {row.n_pairs:>5} {row.clusters:>4} {row.baseline_mean:>7.3f} "
                             f"{row.candidate_mean:>7.3f} {row.delta:>+7.3f} {ci:>17} {_fmt_p(row.p_adj):>7}  {row.result}")
        for problem in self.problems:
            lines.append(f"  unusable: {problem}")
        for warning in self.warnings:
            lines.append(f"  warning: {warning}")
        return "\n".join(lines)

    def write_json(self, path: str | Path) -> Path:
        """Atomically write the verdict as JSON."""
        return atomic_write_json(path, self.to_dict())


def _fmt_p(p: float) -> str:
    return "-" if p is None or not np.isfinite(p) else (f"{p:.4f}" if p >= 1e-4 else "<1e-4")


def _load_side(source: Source) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source.copy()
    return load(source)


def run_gate(baseline: Source, candidate: Source, *, margin: float | None = None,
             dims: Sequence[str] | None = None, alpha: float = 0.05, mode: Mode = "detect",
             allow_mismatch: bool = False, n_resamples: int = 10_000, seed: int = 0,
             min_pairs: int = 10, max_unscored: float = 0.2) -> GateResult:
    """Gate `candidate` against `baseline` (log files, folders, exported CSV, or tidy frames).

    Never raises for bad input: every reason to refuse (including invalid `mode`, `alpha`,
    `margin`, `min_pairs` or `max_unscored`) becomes a `problems` entry of an "unusable" result
    with exit code 2, so a `--json` verdict is written in every case.
    """
    settings = _setting_problems(mode, alpha, margin, min_pairs, max_unscored)
    resolved = DEFAULT_MARGIN.get(mode, 0.0) if margin is None else float(margin)
    result = GateResult("unusable", EXIT_UNUSABLE, str(mode), resolved, float(alpha),
                        ci_level=1 - alpha if mode == "detect" else 1 - 2 * alpha)
    if settings:
        result.problems.extend(settings)
        return result
    margin = resolved
    frames: dict[str, pd.DataFrame] = {}
    for side, source in (("baseline", baseline), ("candidate", candidate)):
        try:
            frames[side] = _load_side(source)
        except MsmEvalError as exc:
            result.problems.append(f"{side}: {exc}")
    if result.problems:
        return result
    base, cand = frames["baseline"], frames["candidate"]
    result.runs = {"baseline": sorted(base["run"].unique().tolist()),
                   "candidate": sorted(cand["run"].unique().tolist())}
    result.counts = {side: status_counts(frame) for side, frame in frames.items()}
    problems = result.problems
    for side, frame in frames.items():
        problems.extend(_side_problems(side, frame, max_unscored))
    mismatches = _provenance_mismatches(base, cand)
    if allow_mismatch:
        result.warnings.extend(f"{m} (allowed by --allow-mismatch)" for m in mismatches)
    else:
        problems.extend(f"{m} (pass --allow-mismatch to compare anyway)" for m in mismatches)
    base_dims = _dimensions(base)
    cand_dims = _dimensions(cand)
    gated = list(dims) if dims else sorted(base_dims)
    result.dims = gated
    for side, present in (("baseline", base_dims), ("candidate", cand_dims)):
        missing = [d for d in gated if d not in present]
        if missing:
            problems.append(f"{side} lacks gated dimension(s): {', '.join(missing)} "
                            f"(it has: {', '.join(sorted(present)) or 'none'})")
    if problems:
        return result
    table = _gate_table(base, cand, gated, mode, alpha, n_resamples, seed)
    for row in table.itertuples():
        if row.n_pairs < min_pairs:
            problems.append(f"dimension {row.dimension}: only {row.n_pairs} paired scored samples "
                            f"(need >= {min_pairs}; are both runs on the same scenarios?)")
        elif row.clusters < 2:
            problems.append(f"dimension {row.dimension}: paired samples come from {row.clusters} cluster(s); "
                            "need >= 2 to estimate uncertainty")
    if problems:
        result.table = table
        return result
    oriented_delta = table["delta"] * table["orientation"]
    oriented_low = np.where(table["orientation"] > 0, table["ci_low"], -table["ci_high"])
    if mode == "detect":
        failed = (table["p_adj"] < alpha) & (oriented_delta < -margin)
    else:
        failed = ~(oriented_low > -margin)
    table["result"] = np.where(failed, "FAIL", "pass")
    result.table = table
    if failed.any():
        result.verdict, result.exit_code = "regression", EXIT_REGRESSION
    else:
        result.verdict, result.exit_code = "pass", EXIT_PASS
    return result


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Sample-epochs of a side by judge status (`scored, partial, unscored, refused, error`) and
    `total`: the denominator every gate verdict is computed from."""
    rows = frame.drop_duplicates(["run", "sample_id", "epoch"])
    tally = {status: int((rows["status"] == status).sum()) for status in STATUSES}
    tally["total"] = int(len(rows))
    return tally


def _setting_problems(mode: str, alpha: float, margin: float | None, min_pairs: int,
                      max_unscored: float) -> list[str]:
    """Invalid gate settings, each named with its option and the allowed range."""
    problems = []
    if mode not in DEFAULT_MARGIN:
        problems.append(f"unknown --mode '{mode}' (use detect or noninferiority)")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 0.5):
        problems.append(f"--alpha must be in (0, 0.5), got {alpha}")
    if margin is not None and not (np.isfinite(margin) and margin >= 0):
        problems.append(f"--margin must be a number >= 0 (a tolerated drop), got {margin}")
    if min_pairs < 2:
        problems.append(f"--min-pairs must be at least 2, got {min_pairs}")
    if not 0 <= max_unscored <= 1:
        problems.append(f"--max-unscored must be a share in [0, 1], got {max_unscored}")
    return problems


def _dimensions(frame: pd.DataFrame) -> set[str]:
    return set(frame.loc[frame["dimension"] != NO_DIMENSION, "dimension"].unique().tolist())


def _side_problems(side: str, frame: pd.DataFrame, max_unscored: float) -> list[str]:
    problems = []
    if "log_status" in frame.columns:
        for source, status in frame[["source", "log_status"]].drop_duplicates().itertuples(index=False):
            if status and status != "success":
                problems.append(f"{side} log {source} has status '{status}' (re-run or retry it)")
    per_task = frame.groupby("task")["run"].unique()
    for task, runs in per_task.items():
        if len(runs) > 1:
            problems.append(f"{side} holds {len(runs)} runs of task '{task}' ({', '.join(sorted(runs))}); "
                            "gate one run against one run")
    data = frame[frame["dimension"] != NO_DIMENSION]
    rows = frame.drop_duplicates(["run", "sample_id", "epoch"])
    bad = ~rows["status"].isin(USABLE_STATUSES)
    if len(rows) and bad.mean() > max_unscored:
        kinds = rows.loc[bad, "status"].value_counts().to_dict()
        problems.append(f"{side}: {int(bad.sum())}/{len(rows)} sample-epochs have no usable score "
                        f"({', '.join(f'{k} {v}' for k, v in kinds.items())}), above the "
                        f"{max_unscored:.0%} limit")
    if data.empty:
        problems.append(f"{side} holds no scored dimensions (every sample failed before scoring)")
    elif data["score"].notna().sum() == 0:
        problems.append(f"{side} holds no scores: all {len(data)} rows are NaN (check the judge role "
                        "and the log's score metadata)")
    return problems


def _provenance_mismatches(base: pd.DataFrame, cand: pd.DataFrame) -> list[str]:
    out = []
    for task in sorted(set(base["task"]) & set(cand["task"])):
        b, c = base[base["task"] == task], cand[cand["task"] == task]
        for column in PROVENANCE:
            if column not in b.columns or column not in c.columns:
                continue
            bv, cv = sorted(set(b[column].astype(str))), sorted(set(c[column].astype(str)))
            if bv != cv:
                out.append(f"task '{task}': {column} differs: baseline {_values(bv)} vs candidate {_values(cv)}")
    only_b, only_c = set(base["task"]) - set(cand["task"]), set(cand["task"]) - set(base["task"])
    if only_b or only_c:
        out.append(f"tasks differ: baseline only {sorted(only_b)}, candidate only {sorted(only_c)}")
    return out


def _values(values: list[str]) -> str:
    """Provenance values for a message; an empty value reads as "(not recorded)" (e.g. a CSV
    exported without that column)."""
    return ", ".join(repr(v) if v else "(not recorded)" for v in values)


def _gate_table(base: pd.DataFrame, cand: pd.DataFrame, gated: list[str], mode: str, alpha: float,
                n_resamples: int, seed: int) -> pd.DataFrame:
    from msm_eval.stats import adjust_p, compare

    both = stack_sides({"baseline": base[base["dimension"].isin(gated)],
                        "candidate": cand[cand["dimension"].isin(gated)]})
    flip = both["dimension"].isin(LOWER_IS_BETTER)
    both.loc[flip, "score"] = -both.loc[flip, "score"]
    level = 1 - alpha if mode == "detect" else 1 - 2 * alpha
    table = compare(both, "baseline", "candidate", by="side", level=level, n_resamples=n_resamples,
                    seed=seed, correction=None, alternative="less")
    table = table[table["dimension"].isin(gated)].reset_index(drop=True)
    table["p_adj"] = adjust_p(table["p_value"].to_numpy(), "holm")
    orientation = np.where(table["dimension"].isin(LOWER_IS_BETTER), -1, 1)
    for column in ("delta", "baseline_mean", "candidate_mean"):
        table[column] = table[column] * orientation
    low, high = table["ci_low"].copy(), table["ci_high"].copy()
    table["ci_low"] = np.where(orientation > 0, low, -high)
    table["ci_high"] = np.where(orientation > 0, high, -low)
    table["orientation"] = orientation
    table["result"] = ""
    count_columns = [c for c in table.columns if c.startswith(("baseline_", "candidate_")) and not c.endswith("_mean")]
    return table[["dimension", "n_pairs", "clusters", "baseline_mean", "candidate_mean", "delta", "se",
                  "ci_low", "ci_high", "p_value", "p_adj", "corr", "method", "orientation", "result"] + count_columns]
