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
import warnings
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
                "reason", "log_status", "eval_id", "source"]
STATUSES = ("scored", "partial", "unscored", "refused", "error")
USABLE_STATUSES = ("scored", "partial")
NO_DIMENSION = "*"  # dimension label for an errored sample of a log in which nothing was scored
LOG_SUFFIXES = (".eval", ".json")
TABLE_SUFFIXES = (".csv", ".parquet")
_HEAVY_SAMPLE_FIELDS = {"messages", "events", "store", "attachments"}  # not needed for scores
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
        part = read_table(path) if path.suffix.lower() in TABLE_SUFFIXES else _log_frame(path)
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
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    try:
        frame["epoch"] = pd.to_numeric(frame["epoch"]).astype(int)
    except (ValueError, TypeError):
        raise MsmEvalError("column 'epoch' must hold integers", path=path, field="epoch") from None
    bad = sorted(set(frame["status"].astype(str)) - set(STATUSES))
    if bad:
        raise MsmEvalError(f"unknown status value(s) {bad}", path=path, field="status",
                           hint="allowed: " + ", ".join(STATUSES))
    if "source" not in frame.columns or (frame["source"].astype(str) == "").all():
        frame["source"] = str(path)
    return frame


def _log_frame(path: Path) -> pd.DataFrame:
    from inspect_ai.log import read_eval_log

    try:
        log = read_eval_log(str(path), exclude_fields=_HEAVY_SAMPLE_FIELDS)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file
        raise MsmEvalError(f"cannot read inspect log: {type(exc).__name__}: {exc}".splitlines()[0], path=path,
                           hint="check that the file is an inspect .eval/.json log and not truncated") from None
    spec = log.eval
    meta = dict(spec.metadata or {})
    roles = spec.model_roles or {}
    judge_role = roles.get("judge")
    judge = getattr(judge_role, "model", None) or meta.get("judge") or ""
    if log.status != "success":
        warnings.warn(f"{path}: log status is '{log.status}' (loaded; the gate refuses such logs)",
                      stacklevel=3)
    base = {
        "model": str(spec.model or ""),
        "spec": str(meta.get("spec") or ""),
        "judge": str(judge),
        "task": str(spec.task or "").split("/")[-1],
        "spec_variant": str(meta.get("spec_variant") or ""),
        "scenario_set_hash": str(meta.get("scenario_set_hash") or ""),
        "rubric_sha256": str(meta.get("rubric_sha256") or ""),
        "judge_mode": str(meta.get("judge_mode") or ""),
        "log_status": str(log.status),
        "eval_id": str(spec.eval_id),
        "source": str(path),
    }
    base["run"] = run_label(base["task"], base["model"], base["spec_variant"], base["eval_id"])
    samples = log.samples or []
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


def _rejudged(samples: Sequence[Any], judge_role: Any, header_mode: str) -> tuple[str, str] | None:
    """(judge, judge_mode) recorded in scores re-judged with `msm_eval/rejudge.py` when they differ
    from the log header's, which `inspect score --model-role judge=...` leaves unchanged; else None."""
    roles = judge_role if isinstance(judge_role, list) else [judge_role] if judge_role is not None else []
    header = [str(getattr(role, "model", role)) for role in roles]
    for sample in samples:
        score = (sample.scores or {}).get("constitution_judge")
        entries = (score.metadata or {}).get("per_judge") if score is not None else None
        if not entries or not (score.metadata or {}).get("rejudged"):   # set by msm_eval/rejudge.py
            continue
        names = list(dict.fromkeys(str(e.get("judge", "")) for e in entries))
        mode = str((score.metadata or {}).get("judge_mode") or header_mode)
        if (header and names != header) or mode != header_mode:
            return ",".join(names), mode
        return None
    return None


def run_label(task: str, model: str, spec_variant: str, eval_id: str) -> str:
    """A readable, unique run label: task/model[/spec_variant]#<first 6 chars of the eval id>."""
    parts = [p for p in (task, model, spec_variant) if p]
    return "/".join(parts) + f"#{eval_id[:6]}"


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
    from inspect_ai.log import read_eval_log

    records: list[dict[str, Any]] = []
    for path in expand_paths(paths):
        if path.suffix.lower() in TABLE_SUFFIXES:
            raise MsmEvalError("per-judge ratings live only in inspect logs", path=path,
                               hint="pass the .eval logs, not an exported table")
        try:
            log = read_eval_log(str(path), exclude_fields=_HEAVY_SAMPLE_FIELDS)
        except Exception as exc:  # noqa: BLE001
            raise MsmEvalError(f"cannot read inspect log: {exc}".splitlines()[0], path=path) from None
        label = run_label(str(log.eval.task).split("/")[-1], str(log.eval.model),
                          str((log.eval.metadata or {}).get("spec_variant") or ""), str(log.eval.eval_id))
        for sample in log.samples or []:
            score = (sample.scores or {}).get(scorer)
            if score is None:
                continue
            for entry in (score.metadata or {}).get("per_judge") or []:
                judge = str(entry.get("judge", ""))
                judge_sample = entry.get("sample", 0)
                for dim, value in (entry.get("scores") or {}).items():
                    records.append({"run": label, "sample_id": str(sample.id), "epoch": int(sample.epoch),
                                    "dimension": str(dim), "judge": judge, "judge_sample": judge_sample,
                                    "rater": f"{judge}#{judge_sample}", "score": _to_float(value)})
    columns = ["run", "sample_id", "epoch", "dimension", "judge", "judge_sample", "rater", "score"]
    return pd.DataFrame.from_records(records, columns=columns)


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
