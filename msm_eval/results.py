"""Inspect logs (or exported CSV / Parquet) -> the tidy results frame; export; honest counts.

The tidy frame has one row per (run, sample_id, epoch, dimension) with the columns in
`TIDY_COLUMNS` plus run metadata (`META_COLUMNS`) and one `cond_<name>` column per scenario
condition. A sample that errored, was refused by the judge or could not be scored keeps its rows:
`score` is NaN and `status` says why. Nothing is dropped and nothing becomes 0.

Statuses: `scored` and `partial` come from the judge (a NaN score under them means "dimension not
exercised"); `unscored`, `refused` and `error` mean the judge produced no usable score; a sample
whose rollout failed (`EvalSample.error`) is `error`.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import atomic_output

TIDY_COLUMNS = ["run", "model", "spec", "judge", "task", "sample_id", "cluster", "epoch",
                "dimension", "score", "status"]
META_COLUMNS = ["spec_variant", "scenario_set_hash", "rubric_sha256", "judge_mode", "scorer",
                "reason", "log_status", "eval_id", "source", "rollout_mode"]
ROLLOUT_MODE_UNKNOWN = "unknown"
"""`rollout_mode` of a sample whose log does not say how it was played (older logs, other tasks)."""
STATUSES = ("scored", "partial", "unscored", "refused", "error")
USABLE_STATUSES = ("scored", "partial")
SCORE_RANGE = (-3.0, 3.0)  # the rubric scale; 0/1 rates (harmful, verdict, hard_check) lie inside it
NO_DIMENSION = "*"  # dimension label for an errored sample of a log in which nothing was scored
LOG_SUFFIXES = (".eval", ".json")
TABLE_SUFFIXES = (".csv", ".parquet")
# Not needed for scores. `timelines` (written by the auditing agent's branches) refer to events by id, so
# they cannot be parsed once `events` is left out: they go too.
_HEAVY_SAMPLE_FIELDS = {"messages", "events", "store", "attachments", "timelines"}
_STRING_COLUMNS = ["run", "model", "spec", "judge", "task", "sample_id", "cluster", "dimension",
                   "status"] + [c for c in META_COLUMNS]


# --------------------------------------------------------------------------- path handling

def expand_paths(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into the log / table files they hold (sorted, de-duplicated)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MsmEvalError("no such file or folder", path=path,
                               hint="pass inspect log files (.eval/.json), log folders or exported CSV/Parquet")
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and _is_log_file(p))
            if not inside:
                raise MsmEvalError("folder holds no inspect logs (.eval or .json)", path=path,
                                   hint="point at the --log-dir of an inspect eval run")
            found.extend(inside)
        elif path.suffix.lower() in LOG_SUFFIXES + TABLE_SUFFIXES:
            found.append(path)
        else:
            raise MsmEvalError(f"unsupported file type '{path.suffix}'", path=path,
                               hint="use an inspect log (.eval, .json) or a CSV/Parquet from `msm-eval export`")
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(str(path.resolve()), path)
    return list(unique.values())


def _is_log_file(path: Path) -> bool:
    """Inside a folder: every .eval file, and .json files that look like inspect logs (so a
    gate verdict or comparison JSON saved next to the logs is not mistaken for one)."""
    if path.suffix == ".eval":
        return True
    if path.suffix != ".json" or path.name in ("logs.json", "eval-set.json"):
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return b'"version"' in head and b'"eval"' in head


# --------------------------------------------------------------------------- loading

def load(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Load inspect logs, log folders and exported CSV/Parquet (mixed) into one tidy frame.

    Raises `MsmEvalError` naming the file for anything unreadable. Logs whose status is not
    `success` are loaded (their samples keep their statuses) and flagged in `log_status`, with a
    warning; the gate refuses them.
    """
    frames = []
    seen: dict[str, Path] = {}  # eval id -> first source holding it
    for path in expand_paths(paths):
        part = read_table(path) if path.suffix.lower() in TABLE_SUFFIXES else usable_scores(_log_frame(path), str(path))
        ids = set(part["eval_id"].astype(str)) - {""} if "eval_id" in part.columns else set()
        repeated = ids & set(seen)
        if repeated:
            # the same eval twice (a log and its export, or .eval and .json copies) would double count
            warnings.warn(f"{path}: eval(s) {', '.join(sorted(repeated))} already loaded from "
                          f"{', '.join(sorted({str(seen[i]) for i in repeated}))}; skipping the repeat", stacklevel=2)
            part = part[~part["eval_id"].astype(str).isin(repeated)]
        for eval_id in ids - repeated:
            seen[eval_id] = path
        if not part.empty:
            frames.append(part)
    frame = pd.concat(frames, ignore_index=True, sort=False) if frames else _empty_frame()
    return _finish(frame)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read an exported tidy CSV / Parquet file, checking that every required column is there."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype="string", keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a user-facing read error
        raise MsmEvalError(f"cannot read table: {exc}", path=path,
                           hint="pass a CSV/Parquet written by `msm-eval export`") from None
    missing = [c for c in TIDY_COLUMNS if c not in frame.columns]
    if missing:
        raise MsmEvalError(f"missing required column(s): {', '.join(missing)}", path=path,
                           hint="export the table with `msm-eval export` (needs: " + ", ".join(TIDY_COLUMNS) + ")")
    text = frame["score"].astype("string").str.strip()
    frame["score"] = pd.to_numeric(text.where(~text.isin(["", "NaN", "nan", "NA", "<NA>", "None"])), errors="coerce")
    unparsed = frame["score"].isna() & text.notna() & ~text.isin(["", "NaN", "nan", "NA", "<NA>", "None"])
    if unparsed.any():
        row = int(np.flatnonzero(unparsed.to_numpy())[0])
        raise MsmEvalError(f"row {row + 2}: column 'score': {text.iloc[row]!r} is not a number", path=path,
                           line=row + 2, field="score", hint="scores are numbers in -3..+3, or empty / NaN for none")
    try:
        frame["epoch"] = pd.to_numeric(frame["epoch"]).astype(int)
    except (ValueError, TypeError):
        raise MsmEvalError("column 'epoch' must hold integers", path=path, field="epoch") from None
    frame = usable_scores(frame, origin=str(path), first_row=2)
    if "source" not in frame.columns or (frame["source"].astype(str) == "").all():
        frame["source"] = str(path)
    return frame


def usable_scores(frame: pd.DataFrame, origin: str | None = None, first_row: int | None = None) -> pd.DataFrame:
    """The data contract every statistic relies on, applied to a tidy frame (a copy is returned).

    - `status` must be one of `STATUSES`;
    - a score must be NaN or a finite number in `SCORE_RANGE` (-3..+3);
    - only usable statuses (`scored`, `partial`) contribute scores: a score carried by an
      `unscored`, `refused` or `error` row is set to NaN, whatever it is.

    Violations raise `MsmEvalError` naming the origin (file, or "results frame"), the row and the
    column. `first_row` numbers rows as lines of a file (2 for a CSV with a header line); without
    it a row is named by its index label. Statuses of unusable rows never carry a score, so the
    range check applies to usable rows only."""
    for column in ("status", "score"):
        if column not in frame.columns:
            raise MsmEvalError(f"results frame lacks column '{column}'", path=origin, field=column,
                               hint="build it with msm_eval.results.load or `msm-eval export`")
    where = origin or "results frame"
    status = frame["status"].astype("string").fillna("")
    unknown = ~status.isin(STATUSES)
    if unknown.any():
        position = int(np.flatnonzero(unknown.to_numpy())[0])
        raise MsmEvalError(f"{_row_name(frame, position, first_row)}: column 'status': unknown status "
                           f"{str(status.iloc[position])!r} ({int(unknown.sum())} row(s) in all)", path=where,
                           hint="allowed: " + ", ".join(STATUSES))
    score = pd.to_numeric(frame["score"], errors="coerce").astype(float).to_numpy()
    usable = status.isin(USABLE_STATUSES).to_numpy()
    low, high = SCORE_RANGE
    with np.errstate(invalid="ignore"):
        # floating-point noise of an expected score (e.g. -3.0000000000000004) is the bound itself
        near = np.isfinite(score) & (score >= low - SCORE_TOLERANCE) & (score <= high + SCORE_TOLERANCE)
        score = np.where(near, np.clip(score, low, high), score)
        bad = usable & ~np.isnan(score) & (~np.isfinite(score) | (score < low) | (score > high))
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        value = score[position]
        what = "is not finite" if not np.isfinite(value) else f"is outside {low:+g}..{high:+g}"
        raise MsmEvalError(f"{_row_name(frame, position, first_row)}: column 'score': {float(value):g} {what} "
                           f"({int(bad.sum())} row(s) in all)", path=where,
                           hint="scores are on the rubric scale -3..+3 (rates 0/1); NaN marks no score")
    out = frame.copy()
    out["score"] = np.where(usable, score, np.nan)
    return out


def _row_name(frame: pd.DataFrame, position: int, first_row: int | None) -> str:
    """A row named for a reader: the file line, or the index label plus sample/epoch/dimension."""
    if first_row is not None:
        name = f"row {position + first_row}"
    else:
        name = f"row {frame.index[position]!r}"
    keys = [f"{k}={frame[k].iloc[position]}" for k in ("sample_id", "epoch", "dimension") if k in frame.columns]
    return name + (f" ({', '.join(keys)})" if keys else "")


# Parsed logs, keyed by (path, mtime, size): `report` needs both the tidy frame and the per-judge
# ratings of each log, and reading a large .eval twice was most of its time. Only the small
# extracted tables are kept, for the most recent files.
_LOG_CACHE: OrderedDict[tuple[str, int, int], tuple[pd.DataFrame, list[dict[str, Any]], str]] = OrderedDict()
_LOG_CACHE_SIZE = 256
DEFAULT_RATINGS_SCORER = "constitution_judge"
SCORE_TOLERANCE = 1e-9
"""How far past the scale's ends a score may lie from floating-point rounding alone; such a score is
clipped to the end, anything further is rejected."""
AUDIT_SCORERS = ("audit_judge",)
"""Scorers of audit quality (scenario realism, eval awareness, prefill dependence): reported in a table
of their own beside the spec's dimensions and left out of the gate unless named, never mixed into them."""


def audit_mask(frame: pd.DataFrame) -> pd.Series:
    """Which rows of a tidy frame hold audit-quality scores (`AUDIT_SCORERS`); all False for a frame
    without a `scorer` column (e.g. an export from before the column existed)."""
    if "scorer" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["scorer"].isin(AUDIT_SCORERS)


def _read_log(path: Path) -> Any:
    """The inspect log at `path` without the heavy sample fields; unreadable -> `MsmEvalError`."""
    from inspect_ai.log import read_eval_log

    try:
        return read_eval_log(str(path), exclude_fields=_HEAVY_SAMPLE_FIELDS)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file
        raise MsmEvalError(f"cannot read inspect log: {type(exc).__name__}: {exc}".splitlines()[0], path=path,
                           hint="check that the file is an inspect .eval/.json log and not truncated") from None


def _log_tables(path: Path) -> tuple[pd.DataFrame, list[dict[str, Any]], str]:
    """(tidy frame, per-judge rating records, log status) of one log, reading the file once per version."""
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = None
    if key is not None and key in _LOG_CACHE:
        _LOG_CACHE.move_to_end(key)
        frame, ratings, status = _LOG_CACHE[key]
        return frame.copy(), [dict(r) for r in ratings], status
    log = _read_log(path)
    tables = (_frame_from_log(path, log), _rating_records(log, DEFAULT_RATINGS_SCORER), str(log.status))
    if key is not None:
        _LOG_CACHE[key] = tables
        while len(_LOG_CACHE) > _LOG_CACHE_SIZE:
            _LOG_CACHE.popitem(last=False)
    frame, ratings, status = tables
    return frame.copy(), [dict(r) for r in ratings], status


def _log_frame(path: Path) -> pd.DataFrame:
    frame, _, status = _log_tables(path)
    if status != "success":
        warnings.warn(f"{path}: log status is '{status}' (loaded; the gate refuses such logs)", stacklevel=3)
    return frame


def _frame_from_log(path: Path, log: Any) -> pd.DataFrame:
    spec = log.eval
    meta = dict(spec.metadata or {})
    roles = spec.model_roles or {}
    judge_role = roles.get("judge")
    judge = getattr(judge_role, "model", None) or meta.get("judge") or ""
    base = {
        "model": portable_model_name(str(spec.model or "")),
        "spec": str(meta.get("spec") or ""),
        "judge": portable_model_name(str(judge)),
        "task": str(spec.task or "").split("/")[-1],
        "spec_variant": str(meta.get("spec_variant") or ""),
        "scenario_set_hash": str(meta.get("scenario_set_hash") or ""),
        "rubric_sha256": str(meta.get("rubric_sha256") or ""),
        "judge_mode": str(meta.get("judge_mode") or ""),
        "spec_in_context": "" if meta.get("spec_in_context") is None else str(bool(meta["spec_in_context"])).lower(),
        "log_status": str(log.status),
        "eval_id": str(spec.eval_id),
        "source": str(path),
    }
    base["run"] = run_label(base["task"], base["model"], base["spec_variant"], base["eval_id"])
    samples = log.samples or []
    if base["judge_mode"] == "auto":  # task built before its judge was bound: each score records the mode used
        used = {str(score.metadata["judge_mode"]) for sample in samples for score in (sample.scores or {}).values()
                if (score.metadata or {}).get("judge_mode")}
        if len(used) == 1:
            base["judge_mode"] = used.pop()
    rejudged = _rejudged(samples, judge_role, base["judge_mode"])
    if rejudged is not None:   # re-scored with `inspect score`: the header still names the first judge
        base["judge"], base["judge_mode"] = rejudged
        base["eval_id"] = f"{spec.eval_id}@{base['judge']}:{base['judge_mode']}"
        base["run"] += f"@{base['judge']}:{base['judge_mode']}"
    # every dimension each scorer produced anywhere in this log, so failed samples get all of them
    dims_by_scorer: dict[str, list[str]] = {}
    for sample in samples:
        for name, score in (sample.scores or {}).items():
            known = dims_by_scorer.setdefault(name, [])
            for dim in _score_dimensions(name, score.value):
                if dim not in known:
                    known.append(dim)
    records: list[dict[str, Any]] = []
    for sample in samples:
        smeta = sample.metadata or {}
        common = dict(base)
        common["sample_id"] = str(sample.id)
        common["cluster"] = str(smeta.get("cluster") or smeta.get("seed_id") or sample.id)
        common["epoch"] = int(sample.epoch)
        for cname, cvalue in (smeta.get("conditions") or {}).items():
            common[f"cond_{cname}"] = str(cvalue)
        scores = sample.scores or {}
        common["rollout_mode"] = _rollout_mode(smeta, scores)
        if sample.error is not None or not scores:
            reason = _first_line(sample.error.message) if sample.error is not None else "no score recorded"
            targets = [(s, d) for s, dims in dims_by_scorer.items() for d in dims] or [("", NO_DIMENSION)]
            for scorer_name, dim in targets:
                records.append({**common, "scorer": scorer_name, "dimension": dim, "score": math.nan,
                                "status": "error", "reason": reason})
            continue
        for scorer_name, dims in dims_by_scorer.items():
            score = scores.get(scorer_name)
            if score is None:
                for dim in dims:
                    records.append({**common, "scorer": scorer_name, "dimension": dim, "score": math.nan,
                                    "status": "unscored", "reason": "scorer produced no score for this sample"})
                continue
            values = _score_values(scorer_name, score.value)
            status, reason = _score_status(score, values)
            for dim in dims:
                value = values.get(dim, math.nan)
                if status not in USABLE_STATUSES:
                    value = math.nan
                records.append({**common, "scorer": scorer_name, "dimension": dim, "score": value,
                                "status": status, "reason": reason})
    if not records:
        records.append({**base, "sample_id": "", "cluster": "", "epoch": 0, "scorer": "",
                        "dimension": NO_DIMENSION, "score": math.nan, "status": "error",
                        "reason": f"log has no samples (status {log.status})"})
    return pd.DataFrame.from_records(records)


def _rollout_mode(sample_metadata: dict[str, Any], scores: dict[str, Any]) -> str:
    """How the sample was played: the rollout's own record in the sample metadata, else a scorer's copy."""
    mode = sample_metadata.get("rollout_mode")
    if not mode:
        mode = next((s.metadata.get("rollout_mode") for s in scores.values()
                     if isinstance(getattr(s, "metadata", None), dict) and s.metadata.get("rollout_mode")), None)
    return str(mode) if mode else ROLLOUT_MODE_UNKNOWN


def _rejudged(samples: Sequence[Any], judge_role: Any, header_mode: str) -> tuple[str, str] | None:
    """(judge, judge_mode) recorded in scores re-judged with `msm_eval/rejudge.py` when they differ
    from the log header's, which `inspect score --model-role judge=...` leaves unchanged; else None."""
    roles = judge_role if isinstance(judge_role, list) else [judge_role] if judge_role is not None else []
    header = [str(getattr(role, "model", role)) for role in roles]
    for sample in samples:
        score = (sample.scores or {}).get("constitution_judge")
        from msm_eval.judge import judge_runs   # inspect-heavy module: imported only when logs are read
        entries = judge_runs(score.metadata, score.value) if score is not None else None
        if not entries or not (score.metadata or {}).get("rejudged"):   # set by msm_eval/rejudge.py
            continue
        names = list(dict.fromkeys(str(e.get("judge", "")) for e in entries))
        mode = str((score.metadata or {}).get("judge_mode") or header_mode)
        # the marker is explicit: a re-judged log is always its own run, even with the same judge
        # and mode as the original (whose header mode may be `auto`, resolved from its scores)
        return ",".join(names) or ",".join(header), mode
    return None


def portable_model_name(name: str) -> str:
    """A model name without this machine's paths: `hf//home/me/models/qwen` -> `hf/qwen`.

    Results are meant to be shared and committed; a model given as a local folder is named by
    the folder's last component (provider prefix kept). Other names are returned unchanged."""
    provider, sep, rest = name.partition("/")
    if sep and (rest.startswith(("/", "~", "./", "../")) or re.match(r"^[A-Za-z]:[\\/]", rest)):
        last = re.split(r"[\\/]+", rest.rstrip("/\\"))[-1]
        return f"{provider}/{last or 'local'}"
    if name.startswith(("/", "~")):
        return re.split(r"[\\/]+", name.rstrip("/\\"))[-1] or "local"
    return name


def run_label(task: str, model: str, spec_variant: str, eval_id: str) -> str:
    """A readable, unique run label: task/model[/spec_variant]#<first 6 chars of the eval id>."""
    parts = [p for p in (task, model, spec_variant) if p]
    return "/".join(parts) + f"#{eval_id[:6]}"


def human_labels(frame: pd.DataFrame) -> dict[str, str]:
    """Run id -> a label in words for tables and verdicts: "spec <spec>[/<variant>] · <task> ·
    <model>". The unique run id stays in its own column (`run`); only when two runs would read
    the same is the start of their eval id appended ("… #kCb4ku"), so labels stay unique."""
    columns = [c for c in ("run", "spec", "spec_variant", "task", "model", "eval_id") if c in frame.columns]
    runs = frame[columns].drop_duplicates("run").astype(str)
    words: dict[str, str] = {}
    for row in runs.to_dict("records"):
        spec = row.get("spec", "") or "(no spec)"
        variant = row.get("spec_variant", "")
        parts = [f"spec {spec}" + (f"/{variant}" if variant else ""), row.get("task", ""), row.get("model", "")]
        words[row["run"]] = " · ".join(p for p in parts if p)
    taken: dict[str, int] = {}
    for label in words.values():
        taken[label] = taken.get(label, 0) + 1
    eval_ids = dict(zip(runs["run"], runs["eval_id"])) if "eval_id" in runs.columns else {}
    for run, label in words.items():
        if taken[label] > 1:
            words[run] = f"{label} #{(eval_ids.get(run) or run)[:6]}"
    return words


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0][:300] if lines else ""


def _score_dimensions(scorer_name: str, value: Any) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value]
    return [scorer_name]


def _score_values(scorer_name: str, value: Any) -> dict[str, float]:
    if isinstance(value, dict):
        return {str(k): _to_float(v) for k, v in value.items()}
    return {scorer_name: _to_float(value)}


def _to_float(value: Any) -> float:
    if value is None or isinstance(value, str) and value.strip() == "":
        return math.nan
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _score_status(score: Any, values: dict[str, float]) -> tuple[str, str]:
    meta = score.metadata or {}
    reason = _first_line(meta.get("reason") or score.explanation or "")
    status = meta.get("status")
    if status is None:
        status = "scored" if any(not math.isnan(v) for v in values.values()) else "unscored"
    status = str(status)
    if status not in STATUSES:
        return "unscored", f"unknown status '{status}' in score metadata" + (f": {reason}" if reason else "")
    return status, reason


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in TIDY_COLUMNS + META_COLUMNS})


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    for column in META_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    cond_columns = sorted(c for c in frame.columns if c.startswith("cond_"))
    other = [c for c in frame.columns if c not in TIDY_COLUMNS + META_COLUMNS + cond_columns]
    frame = frame[TIDY_COLUMNS + META_COLUMNS + cond_columns + other].copy()
    for column in _STRING_COLUMNS + cond_columns:
        frame[column] = frame[column].astype("string").fillna("")
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce").astype(float)
    frame["epoch"] = pd.to_numeric(frame["epoch"]).astype(int)
    return frame.reset_index(drop=True)


# --------------------------------------------------------------------------- export, counts

def export(paths: str | Path | Iterable[str | Path], out: str | Path) -> Path:
    """Write the tidy frame of `paths` to `out` (.csv or .parquet by extension), atomically."""
    frame = load(paths)
    return write_frame(frame, out)


def write_frame(frame: pd.DataFrame, out: str | Path) -> Path:
    """Atomically write a tidy frame as CSV or Parquet (chosen by the file extension); the
    `source` column keeps only file names, so exported tables carry no machine paths."""
    target = Path(out)
    suffix = target.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise MsmEvalError(f"unsupported output type '{target.suffix}'", path=target,
                           hint="name the output file *.csv or *.parquet")
    frame = with_source_names(frame)
    with atomic_output(target) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False, na_rep="NaN")
        else:
            frame.to_parquet(tmp, index=False)
    return target


def counts(frame: pd.DataFrame, by: str | Sequence[str] = "run") -> pd.DataFrame:
    """Honest denominators: per group and dimension, how many sample-epochs were scored, missing
    (NaN under a scored/partial status: dimension not exercised), unscored, refused or errored.
    A run in which nothing was scored shows up under dimension "*"."""
    keys = [by] if isinstance(by, str) else list(by)
    data = frame  # rows of dimension "*" (a log in which nothing was scored) are counted too
    usable = data["status"].isin(USABLE_STATUSES)
    has_score = data["score"].notna()
    parts = pd.DataFrame({
        **{k: data[k] for k in keys},
        "dimension": data["dimension"],
        "scored": (usable & has_score).astype(int),
        "missing": (usable & ~has_score).astype(int),
        "unscored": (data["status"] == "unscored").astype(int),
        "refused": (data["status"] == "refused").astype(int),
        "error": (data["status"] == "error").astype(int),
    })
    table = parts.groupby(keys + ["dimension"], sort=True, observed=True).sum().reset_index()
    table["total"] = table[["scored", "missing", "unscored", "refused", "error"]].sum(axis=1)
    return table


def run_metadata(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run with its model, spec, judge, task and provenance hashes."""
    columns = ["run", "model", "spec", "spec_variant", "judge", "judge_mode", "task",
               "scenario_set_hash", "rubric_sha256", "log_status", "eval_id", "source"]
    return with_source_names(frame[columns].drop_duplicates("run").reset_index(drop=True))


def with_source_names(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its `source` column reduced to file names: tables and reports are shared, and
    the folder layout of the machine that ran the eval has no place in them."""
    if "source" not in frame.columns:
        return frame
    return frame.assign(source=frame["source"].astype(str).map(lambda s: Path(s).name if s else s))


# --------------------------------------------------------------------------- per-judge ratings

def load_judge_ratings(paths: str | Path | Iterable[str | Path], scorer: str = "constitution_judge") -> pd.DataFrame:
    """Per-judge scores from `Score.metadata["per_judge"]`: one row per (run, sample_id, epoch,
    dimension, rater) with `judge`, `judge_sample` and `score`; `rater` = "<judge>#<sample>"."""
    records: list[dict[str, Any]] = []
    for path in expand_paths(paths):
        if path.suffix.lower() in TABLE_SUFFIXES:
            raise MsmEvalError("per-judge ratings live only in inspect logs", path=path,
                               hint="pass the .eval logs, not an exported table")
        if scorer == DEFAULT_RATINGS_SCORER:
            records.extend(_log_tables(path)[1])        # shared with load(): the file is read once
        else:
            records.extend(_rating_records(_read_log(path), scorer))
    columns = ["run", "sample_id", "epoch", "dimension", "judge", "judge_sample", "rater", "score"]
    return pd.DataFrame.from_records(records, columns=columns)


def _rating_records(log: Any, scorer: str) -> list[dict[str, Any]]:
    """One record per (sample, epoch, judge, judge sample, dimension) of `scorer`'s per-judge metadata."""
    records: list[dict[str, Any]] = []
    label = run_label(str(log.eval.task).split("/")[-1], str(log.eval.model),
                      str((log.eval.metadata or {}).get("spec_variant") or ""), str(log.eval.eval_id))
    for sample in log.samples or []:
        score = (sample.scores or {}).get(scorer)
        if score is None:
            continue
        for entry in _per_judge_entries(score):
            judge = str(entry.get("judge", ""))
            judge_sample = entry.get("sample", 0)
            for dim, value in (entry.get("scores") or {}).items():
                records.append({"run": label, "sample_id": str(sample.id), "epoch": int(sample.epoch),
                                "dimension": str(dim), "judge": judge, "judge_sample": judge_sample,
                                "rater": f"{judge}#{judge_sample}", "score": _to_float(value)})
    return records


def _per_judge_entries(score: Any) -> list[dict[str, Any]]:
    """The per-judge ratings of a judge score: `per_judge` when there are several runs; a single
    run (one judge, one sample) is written without it and rebuilt from the score itself."""
    from msm_eval.judge import judge_runs
    return judge_runs(score.metadata, score.value)


def ratings_matrix(ratings: pd.DataFrame, dimension: str) -> np.ndarray:
    """Raters x units matrix (NaN = missing) of one dimension, units = (run, sample_id, epoch)."""
    part = ratings[ratings["dimension"] == dimension]
    table = part.pivot_table(index="rater", columns=["run", "sample_id", "epoch"], values="score",
                             aggfunc="mean", dropna=False)
    return table.to_numpy(dtype=float)


def to_json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Frame rows as JSON-safe dicts (NaN -> None)."""
    return json.loads(frame.to_json(orient="records"))


def stack_sides(sides: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Stack frames under a `side` column (e.g. baseline / candidate) for a paired comparison;
    sample ids and clusters are prefixed with the task so samples pair only within a task."""
    parts = []
    for side, frame in sides.items():
        part = frame.copy()
        part["side"] = side
        part["sample_id"] = part["task"].astype(str) + "::" + part["sample_id"].astype(str)
        part["cluster"] = part["task"].astype(str) + "::" + part["cluster"].astype(str)
        parts.append(part)
    return pd.concat(parts, ignore_index=True, sort=False)
