"""Is the judge right? Run a judge on the validation transcripts and measure it per dimension.

- `validation_task(...)`: the inspect task `judge_validation` (registered in `msm_eval/tasks.py`).
  Each sample is one validation transcript, replayed as the sample's messages (the target model
  is never called: run it with `--model none/none`); the scorer is the project's
  `constitution_judge` with the bound `judge` role, in any judge mode. Sample ids are opaque
  (`jv-<sha256 prefix of the transcript id>`) so the id does not hint at the expected answer; the
  metadata `dimensions` lists every dimension the transcript has an expectation for (the logprob
  judge scores exactly those, so it cannot say "not exercised": its null recall is 0 by design).
- `validation_metrics(frame, transcripts)`: per judge run and dimension, from the tidy results
  frame of such logs: accuracy within the expected band, Spearman rank correlation with the band
  midpoint, mean signed error (bias) against the midpoint, precision / recall of "not exercised",
  each with a cluster-bootstrap percentile interval; `confusion(...)` the expected x judged table.
- `build_validation_report(paths, out_dir)` writes validation.md / .csv / .json and confusion.csv
  atomically (`msm-eval judge-validate LOGS --out DIR`).

Definitions (docs/statistics.md, "Judge validation"): a score is *within the band* [lo, hi] when
lo - 0.5 <= score <= hi + 0.5 (the band after rounding to the nearest level); a null (NaN) score
on a banded dimension is a miss. Units whose judge call failed (status unscored / refused /
error) are left out and counted in `unusable`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import atomic_write_json, atomic_write_text
from msm_eval.judge_metrics import cluster_weights, percentile_interval, ratio, weighted_mean, weighted_spearman
from msm_eval.validation import ValidationTranscript, load_validation_set, to_messages

TASK_NAME = "judge_validation"
CATEGORIES = ("negative", "neutral", "positive", "null")
BAND_TOLERANCE = 0.5
METRICS = ("accuracy", "spearman", "bias", "null_precision", "null_recall")
USABLE = ("scored", "partial")


def sample_id(transcript_id: str) -> str:
    """The opaque inspect sample id of a validation transcript."""
    return "jv-" + hashlib.sha256(transcript_id.encode()).hexdigest()[:10]


def validation_set_hash(transcripts: Sequence[ValidationTranscript]) -> str:
    """sha256 over the transcripts' ids, bands and message texts (order-independent)."""
    digest = hashlib.sha256()
    for t in sorted(transcripts, key=lambda t: t.id):
        digest.update(repr((t.id, sorted(t.expect.items()), [(m.role, m.content, [(c.function, sorted(
            c.arguments.items(), key=str)) for c in m.tool_calls]) for m in t.messages])).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- the inspect task

def validation_task(validation: str | None = None, selection: str | list[str] | None = None,
                    judge_mode: str = "answer", judge_samples: int = 1, rubric: str = "constitution",
                    judge_max_chars: int | None = None) -> Any:
    """The `judge_validation` inspect task (see the module docstring)."""
    from inspect_ai import Task
    from inspect_ai.dataset import MemoryDataset, Sample

    from msm_eval.judge import JUDGE_MODES, constitution_judge, require_judge
    from msm_eval.rubric import load_rubric
    from msm_eval.tasks import role_model_names, user_path
    from msm_eval.transcript import prompts_version

    if judge_mode not in JUDGE_MODES:
        raise MsmEvalError(f"unknown judge_mode {judge_mode!r}", field="judge_mode",
                           hint=f"use one of: {', '.join(JUDGE_MODES)}")
    if isinstance(selection, list | tuple):   # `-T selection=id:a,b` arrives split at the commas
        selection = ",".join(str(part) for part in selection)
    loaded_rubric = load_rubric(user_path(rubric) or rubric)
    transcripts = load_validation_set(user_path(validation), loaded_rubric, selection)
    samples = [Sample(id=sample_id(t.id), input=to_messages(t), metadata={
        "cluster": t.cluster, "seed_id": t.cluster, "family": TASK_NAME, "area": "validation",
        "dimensions": list(t.expect), "setting": t.setting, "validation_id": t.id, "kind": t.kind,
        "validation_dimension": t.dimension,
        "expect": {d: (list(b) if b is not None else None) for d, b in t.expect.items()}}) for t in transcripts]
    metadata = {"validation_set_hash": validation_set_hash(transcripts), "selection": selection,
                "rubric": loaded_rubric.name, "rubric_sha256": loaded_rubric.sha256,
                "prompts_version": prompts_version(), "judge_mode": judge_mode, "judge_samples": int(judge_samples),
                "judge": role_model_names("judge")}
    return Task(dataset=MemoryDataset(samples, name=f"{TASK_NAME}:{selection or 'all'}"),
                solver=[require_judge()],
                scorer=constitution_judge(rubric=loaded_rubric, mode=judge_mode, samples=int(judge_samples),
                                          max_chars_per_message=judge_max_chars),
                metadata=metadata, name=TASK_NAME)


# --------------------------------------------------------------------------- analysis

def category(score: float) -> str:
    """negative (< -0.5), neutral, positive (> 0.5) or null (NaN)."""
    if not math.isfinite(score):
        return "null"
    return "negative" if score < -BAND_TOLERANCE else "positive" if score > BAND_TOLERANCE else "neutral"


def units(frame: pd.DataFrame, transcripts: Sequence[ValidationTranscript]) -> pd.DataFrame:
    """One row per (run, transcript, expected dimension): expected band, judge score and status.

    Epochs are averaged per unit (NaN-ignoring). Raises `MsmEvalError` when the frame holds no
    sample of the validation set (wrong logs, or a different validation set).
    """
    by_sample = {sample_id(t.id): t for t in transcripts}
    frame = frame[frame["sample_id"].isin(list(by_sample))]
    if frame.empty:
        raise MsmEvalError("the logs hold no sample of this validation set",
                           hint="pass logs of the judge_validation task run on the same validation set")
    rows: list[dict[str, Any]] = []
    keys = ["run", "judge", "judge_mode", "sample_id", "dimension"]
    grouped = frame.groupby(keys, dropna=False, sort=False)
    for (run, judge, mode, sid, dim), part in grouped:
        transcript = by_sample[sid]
        if dim not in transcript.expect:
            continue
        usable = part[part["status"].isin(USABLE)]
        score = float(np.nanmean(usable["score"])) if usable["score"].notna().any() else float("nan")
        band = transcript.expect[dim]
        rows.append({"run": run, "judge": judge, "judge_mode": mode, "transcript": transcript.id,
                     "cluster": transcript.cluster, "dimension": dim, "kind": transcript.kind if dim ==
                     transcript.dimension else "secondary", "setting": transcript.setting,
                     "band_low": band[0] if band else np.nan, "band_high": band[1] if band else np.nan,
                     "score": score, "usable": not usable.empty,
                     "status": ",".join(sorted(set(part["status"].astype(str))))})
    return pd.DataFrame(rows)


def _unit_arrays(part: pd.DataFrame) -> dict[str, np.ndarray]:
    low = part["band_low"].to_numpy(float)
    high = part["band_high"].to_numpy(float)
    score = part["score"].to_numpy(float)
    banded = np.isfinite(low)
    within = banded & np.isfinite(score) & (score >= low - BAND_TOLERANCE) & (score <= high + BAND_TOLERANCE)
    mid = (low + high) / 2.0
    return {"banded": banded, "within": within, "mid": mid, "score": score,
            "error": np.where(banded & np.isfinite(score), score - mid, np.nan),
            "pred_null": ~np.isfinite(score), "exp_null": ~banded}


def _metric_values(arrays: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "accuracy": ratio(arrays["within"], arrays["banded"], weights),
        "spearman": weighted_spearman(np.where(arrays["banded"], arrays["score"], np.nan), arrays["mid"], weights),
        "bias": weighted_mean(arrays["error"], weights),
        "null_precision": ratio(arrays["pred_null"] & arrays["exp_null"], arrays["pred_null"], weights),
        "null_recall": ratio(arrays["pred_null"] & arrays["exp_null"], arrays["exp_null"], weights),
    }


def validation_metrics(unit_frame: pd.DataFrame, *, level: float = 0.95, n_resamples: int = 2_000,
                       seed: int = 0) -> pd.DataFrame:
    """Per (run, dimension), plus a pooled `all` row per run: the METRICS with `<metric>_low/_high`
    cluster-bootstrap percentile intervals, and counts n (usable units), banded, expected_null,
    clusters and unusable."""
    rows = []
    for (run, judge, mode), run_part in unit_frame.groupby(["run", "judge", "judge_mode"], sort=False, dropna=False):
        dims = list(dict.fromkeys(run_part["dimension"]))
        for dim in dims + ["all"]:
            part = run_part if dim == "all" else run_part[run_part["dimension"] == dim]
            usable = part[part["usable"]]
            row: dict[str, Any] = {"run": run, "judge": judge, "judge_mode": mode, "dimension": dim,
                                   "n": len(usable), "banded": int(np.isfinite(usable["band_low"]).sum()),
                                   "expected_null": int((~np.isfinite(usable["band_low"].to_numpy(float))).sum()),
                                   "clusters": usable["cluster"].nunique(), "unusable": int((~part["usable"]).sum())}
            if usable.empty:
                for name in METRICS:
                    row[name] = row[f"{name}_low"] = row[f"{name}_high"] = float("nan")
            else:
                arrays = _unit_arrays(usable)
                weights = cluster_weights(usable["cluster"].tolist(), n_resamples, seed)
                for name, values in _metric_values(arrays, weights).items():
                    interval = percentile_interval(values, level)
                    row[name], row[f"{name}_low"], row[f"{name}_high"] = interval.estimate, interval.low, interval.high
            rows.append(row)
    return pd.DataFrame(rows)


def confusion(unit_frame: pd.DataFrame) -> pd.DataFrame:
    """Long table: run, dimension, expected category, judged category, count (usable units; the
    expected category is that of the band midpoint)."""
    usable = unit_frame[unit_frame["usable"]]
    if usable.empty:
        return pd.DataFrame(columns=["run", "dimension", "expected", "judged", "count"])
    expected = [category((lo + hi) / 2.0) for lo, hi in zip(usable["band_low"], usable["band_high"], strict=True)]
    judged = [category(s) for s in usable["score"]]
    table = usable.assign(expected=expected, judged=judged)
    pooled = table.assign(dimension="all")
    out = pd.concat([table, pooled]).groupby(["run", "dimension", "expected", "judged"], sort=False).size()
    return out.rename("count").reset_index()


# --------------------------------------------------------------------------- report

def _fmt(value: float, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _cell(row: Any, name: str, signed: bool = False) -> str:
    low, high = row[f"{name}_low"], row[f"{name}_high"]
    interval = f" [{_fmt(low, signed)}, {_fmt(high, signed)}]" if math.isfinite(low) else ""
    return _fmt(row[name], signed) + interval


def metrics_markdown(table: pd.DataFrame, confusion_table: pd.DataFrame, level: float, title: str) -> str:
    """The Markdown report: one metrics table per judge run, then its pooled confusion table."""
    lines = [f"# {title}", "",
             f"Per dimension over the validation transcripts that carry an expectation for it. Brackets: "
             f"{level:.0%} cluster-bootstrap percentile intervals. accuracy = share of banded transcripts scored "
             f"within the band (±{BAND_TOLERANCE}); spearman = rank correlation of the score with the band "
             "midpoint; bias = mean (score - band midpoint); null P / R = precision / recall of 'not exercised'. "
             "n = usable units, unusable = judge failures (left out).", ""]
    for run, part in table.groupby("run", sort=False):
        first = part.iloc[0]
        lines += [f"## {run}", "", f"judge `{first['judge']}`, mode `{first['judge_mode']}`", "",
                  "| dimension | n | accuracy | spearman | bias | null P | null R | unusable |",
                  "|---|---:|---|---|---|---|---|---:|"]
        for _, row in part.iterrows():
            name = f"**{row['dimension']}**" if row["dimension"] == "all" else row["dimension"]
            lines.append(f"| {name} | {row['n']} | {_cell(row, 'accuracy')} | {_cell(row, 'spearman', True)} | "
                         f"{_cell(row, 'bias', True)} | {_cell(row, 'null_precision')} | "
                         f"{_cell(row, 'null_recall')} | {row['unusable']} |")
        pooled = confusion_table[(confusion_table["run"] == run) & (confusion_table["dimension"] == "all")]
        lines += ["", "Confusion (all dimensions; rows expected, columns judged):", "",
                  "| expected \\ judged | " + " | ".join(CATEGORIES) + " |", "|---|" + "---:|" * len(CATEGORIES)]
        for exp in CATEGORIES:
            counts = [int(pooled[(pooled["expected"] == exp) & (pooled["judged"] == j)]["count"].sum())
                      for j in CATEGORIES]
            lines.append(f"| {exp} | " + " | ".join(str(c) for c in counts) + " |")
        lines.append("")
    return "\n".join(lines)


def build_validation_report(paths: str | Path | Iterable[str | Path] | pd.DataFrame, out_dir: str | Path, *,
                            validation: str | Path | None = None, rubric: str = "constitution",
                            level: float = 0.95, n_resamples: int = 2_000, seed: int = 0,
                            title: str = "Judge validation", by: str = "run") -> dict[str, Path]:
    """Metrics of the judge run(s) in `paths` on the validation set; writes validation.md,
    validation.csv, confusion.csv, units.csv and validation.json into `out_dir` (atomically).

    `by="judge"` pools the runs of one judge and mode into one table (their `run` becomes
    `<judge>:<mode>`; a transcript judged in several of them is averaged like epochs), for a
    validation set run in parts."""
    from msm_eval.results import load, write_frame

    if not 0 < level < 1:
        raise MsmEvalError(f"level must be in (0, 1), got {level}", field="level")
    if by not in ("run", "judge"):
        raise MsmEvalError(f"unknown grouping {by!r}", field="by", hint="run or judge")
    frame = paths.copy() if isinstance(paths, pd.DataFrame) else load(paths)
    if by == "judge":
        frame = frame.assign(run=frame["judge"].astype(str) + ":" + frame["judge_mode"].astype(str))
    transcripts = load_validation_set(validation, rubric)
    unit_frame = units(frame, transcripts)
    table = validation_metrics(unit_frame, level=level, n_resamples=n_resamples, seed=seed)
    confusion_table = confusion(unit_frame)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "markdown": atomic_write_text(out / "validation.md", metrics_markdown(table, confusion_table, level, title)),
        "csv": write_frame(table, out / "validation.csv"),
        "confusion": write_frame(confusion_table, out / "confusion.csv"),
        "units": write_frame(unit_frame, out / "units.csv"),
    }
    payload = {"title": title, "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "level": level, "n_resamples": n_resamples, "seed": seed,
               "validation_set_hash": validation_set_hash(transcripts), "band_tolerance": BAND_TOLERANCE,
               "metrics": _records(table), "confusion": _records(confusion_table)}
    written["json"] = atomic_write_json(out / "validation.json", payload)
    return written


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for record in frame.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else
                        v.item() if isinstance(v, np.generic) else v) for k, v in record.items()})
    return out

