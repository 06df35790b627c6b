"""Human labels: a stratified labelling sheet drawn from judged logs, and checked import of the labels.

`export_sheet(logs, out_dir)` writes a sheet folder:

- `sheet.csv`: one row per item to label (`item_id, dimension, human_score, rater, notes`; the
  labeller fills `human_score` with an integer -3..3 or `not_exercised`);
- `sheet.html`: a self-contained page showing each transcript, the rubric text of the item's
  dimension and a form; its button downloads the filled labels as a CSV in the same format (all
  transcript text is HTML-escaped by the template engine; the page loads nothing from anywhere);
- `items.json`: what each item points at (run, eval id, sample id, epoch, cluster, dimension, judge
  score, stratum) and the sampling design;
- `population.csv`: every judged unit (labelled or not) with its stratum, which the
  prediction-powered estimates need (`msm_eval.calibration`).

Sampling: units are (sample_id, epoch, dimension) with a finite judge score; per dimension they
are stratified by the rounded judge score (mean over the runs in the logs), and `per_dimension`
units are drawn uniformly within strata, spread as evenly as the strata allow. With several runs
(e.g. two spec variants) a drawn unit becomes one item per run, so paired differences can be
labelled. The judge's score is never shown to the labeller.

`import_labels(sheet_dir, filled_csv)` validates a filled sheet (unknown items, a dimension that
does not match the item, scores outside -3..3 or not integers, duplicates of an item by the same
rater) and merges it into `labels.csv` in the sheet folder; errors name the file, line and fix.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import atomic_write_json, atomic_write_text

SCORER = "constitution_judge"
SHEET_CSV, SHEET_HTML, ITEMS_JSON, POPULATION_CSV, LABELS_CSV = (
    "sheet.csv", "sheet.html", "items.json", "population.csv", "labels.csv")
SHEET_COLUMNS = ["item_id", "dimension", "human_score", "rater", "notes"]
NOT_EXERCISED = "not_exercised"
NULL_WORDS = {NOT_EXERCISED, "null", "n/a", "na", "none", "not exercised"}
LABEL_COLUMNS = ["item_id", "run", "eval_id", "sample_id", "epoch", "cluster", "dimension", "judge_score",
                 "stratum", "human_score", "not_exercised", "rater", "notes"]
UNIT_KEY = ["sample_id", "epoch", "dimension"]


def stratum_of(score: float) -> str:
    """The stratum label of a judge score: its nearest scale level (`s+2`), `null` for NaN."""
    if not math.isfinite(score):
        return "null"
    return f"s{int(np.clip(np.round(score), -3, 3)):+d}"


# --------------------------------------------------------------------------- export

def judged_units(frame: pd.DataFrame, dimensions: Sequence[str] | None = None) -> pd.DataFrame:
    """Rubric-judge rows with a usable finite score, epochs kept: run, eval_id, sample_id, epoch,
    cluster, dimension, judge_score, source."""
    part = frame[(frame["scorer"].astype(str) == SCORER) & frame["status"].isin(["scored", "partial"])
                 & frame["score"].notna()]
    if dimensions:
        unknown = sorted(set(dimensions) - set(frame["dimension"]))
        if unknown:
            raise MsmEvalError(f"dimension(s) {', '.join(unknown)} not in the logs", field="dimensions")
        part = part[part["dimension"].isin(list(dimensions))]
    if part.empty:
        raise MsmEvalError("the logs hold no usable rubric-judge scores to sample from",
                           hint="pass logs of constitution_adherence / agentic_misalignment runs")
    return part[["run", "eval_id", "sample_id", "epoch", "cluster", "dimension", "score", "source"]].rename(
        columns={"score": "judge_score"}).reset_index(drop=True)


def draw(units: pd.DataFrame, per_dimension: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(population with strata and a `selected` flag per unit key, the drawn unit keys)."""
    if per_dimension < 1:
        raise MsmEvalError("per_dimension must be at least 1", field="per_dimension")
    keys = units.groupby(UNIT_KEY, sort=True).agg(cluster=("cluster", "first"),
                                                   mean_judge=("judge_score", "mean")).reset_index()
    keys["stratum"] = [stratum_of(s) for s in keys["mean_judge"]]
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for _, part in keys.groupby("dimension", sort=True):
        pools = {s: list(rng.permutation(idx.to_numpy())) for s, idx in part.groupby("stratum").groups.items()}
        budget = min(per_dimension, len(part))
        while budget > 0:   # one unit from each non-empty stratum in turn: as even as the strata allow
            for stratum in sorted(pools):
                if pools[stratum] and budget > 0:
                    chosen.append(int(pools[stratum].pop()))
                    budget -= 1
    keys["selected"] = False
    keys.loc[chosen, "selected"] = True
    return keys, keys.loc[sorted(chosen)]


def export_sheet(paths: str | Path | Iterable[str | Path], out_dir: str | Path, *, per_dimension: int = 10,
                 dimensions: Sequence[str] | None = None, seed: int = 0, rubric: str = "constitution",
                 max_chars: int | None = 6000) -> dict[str, Path]:
    """Draw the labelling sheet from the judged logs in `paths` (see the module docstring)."""
    from msm_eval.results import load
    from msm_eval.rubric import load_rubric

    loaded = load_rubric(rubric)
    units = judged_units(load(paths), dimensions)
    units = units[units["dimension"].isin(loaded.ids)]
    population, drawn = draw(units, per_dimension, seed)
    items = units.merge(drawn[UNIT_KEY + ["stratum"]], on=UNIT_KEY).sort_values(
        ["dimension", "sample_id", "epoch", "run"]).reset_index(drop=True)
    items.insert(0, "item_id", [f"L{i + 1:04d}" for i in range(len(items))])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    population_rows = units.merge(population[UNIT_KEY + ["stratum", "selected"]], on=UNIT_KEY)
    written = {"population": _write_csv(out / POPULATION_CSV, population_rows.drop(columns=["source"]))}
    sheet = pd.DataFrame({"item_id": items["item_id"], "dimension": items["dimension"], "human_score": "",
                          "rater": "", "notes": ""})
    written["csv"] = _write_csv(out / SHEET_CSV, sheet)
    transcripts = _transcripts(items, max_chars)
    manifest = {"kind": "msm-eval labelling sheet", "version": 1, "seed": seed, "per_dimension": per_dimension,
                "rubric": loaded.name, "rubric_sha256": loaded.sha256,
                "design": "uniform within strata of the rounded judge score, per dimension",
                "strata": population.groupby(["dimension", "stratum"]).agg(
                    units=("selected", "size"), drawn=("selected", "sum")).reset_index().to_dict(orient="records"),
                "items": [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
                          for row in items.drop(columns=["source"]).to_dict(orient="records")]}
    written["items"] = atomic_write_json(out / ITEMS_JSON, manifest)
    written["html"] = atomic_write_text(out / SHEET_HTML, render_sheet_html(items, transcripts, loaded))
    return written


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return atomic_write_text(path, buffer.getvalue())


def _transcripts(items: pd.DataFrame, max_chars: int | None) -> dict[tuple[str, str, int], list[dict[str, str]]]:
    """(eval_id, sample_id, epoch) -> the messages as role / text / calls, read from the logs."""
    from inspect_ai.log import read_eval_log

    out: dict[tuple[str, str, int], list[dict[str, str]]] = {}
    for source, part in items.groupby("source"):
        try:
            log = read_eval_log(str(source))
        except Exception as exc:  # noqa: BLE001
            raise MsmEvalError(f"cannot read inspect log: {exc}".splitlines()[0], path=source) from None
        wanted = {(str(s), int(e)) for s, e in zip(part["sample_id"], part["epoch"], strict=True)}
        for sample in log.samples or []:
            if (str(sample.id), int(sample.epoch)) not in wanted:
                continue
            messages = []
            for message in sample.messages:
                text = message.text or ""
                if max_chars is not None and len(text) > max_chars:
                    text = text[: max_chars // 2] + f"\n[... {len(text) - max_chars} characters cut ...]\n" + \
                        text[-max_chars // 2:]
                calls = [f"{c.function}({json.dumps(c.arguments, ensure_ascii=False, sort_keys=True)})"
                         for c in (getattr(message, "tool_calls", None) or [])]
                messages.append({"role": message.role, "text": text, "calls": calls,
                                 "function": str(getattr(message, "function", "") or "")})
            out[(str(log.eval.eval_id), str(sample.id), int(sample.epoch))] = messages
    return out


def render_sheet_html(items: pd.DataFrame, transcripts: dict[tuple[str, str, int], list[dict[str, str]]],
                      rubric: Any) -> str:
    """The self-contained labelling page (Jinja2 with autoescaping: transcript text cannot inject markup)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    dims = {d.id: {"title": d.title, "description": d.description,
                   "anchors": sorted((int(k), v) for k, v in d.anchors.items()),
                   "not_exercised": d.not_exercised or ""} for d in rubric.dimensions}
    entries = [{"item_id": row.item_id, "dimension": row.dimension, "rubric": dims[row.dimension],
                "messages": transcripts.get((str(row.eval_id), str(row.sample_id), int(row.epoch)), [])}
               for row in items.itertuples(index=False)]
    return env.get_template("labels.html.j2").render(items=entries, columns=SHEET_COLUMNS,
                                                     not_exercised=NOT_EXERCISED)


# --------------------------------------------------------------------------- import

def read_manifest(sheet_dir: str | Path) -> dict[str, Any]:
    """The sheet's items.json (MsmEvalError when the folder is not a labelling sheet)."""
    path = Path(sheet_dir) / ITEMS_JSON
    if not path.is_file():
        raise MsmEvalError("not a labelling sheet folder (no items.json)", path=sheet_dir,
                           hint="pass the folder written by `msm-eval labels export`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MsmEvalError(f"items.json is not valid JSON: {exc.msg}", path=path, line=exc.lineno) from None


def parse_human_score(raw: str, path: Path, line: int) -> tuple[float, bool] | None:
    """A filled `human_score` cell -> (score, not_exercised); None for an empty (unlabelled) cell."""
    text = (raw or "").strip()
    if not text:
        return None
    if text.lower() in NULL_WORDS:
        return float("nan"), True
    try:
        value = float(text.replace("+", "", 1) if text.startswith("+") else text)
    except ValueError:
        raise MsmEvalError(f"human_score {text!r} is not a number", path=path, line=line, field="human_score",
                           hint=f"write an integer from -3 to 3, or {NOT_EXERCISED}") from None
    if not value.is_integer() or not -3 <= value <= 3:
        raise MsmEvalError(f"human_score {text!r} is outside the scale", path=path, line=line, field="human_score",
                           hint=f"write an integer from -3 to 3, or {NOT_EXERCISED}")
    return value, False


def import_labels(sheet_dir: str | Path, filled: str | Path, *, rater: str | None = None) -> Path:
    """Validate a filled sheet CSV and merge it into `<sheet_dir>/labels.csv` (atomic); returns its path.

    Empty `human_score` cells are skipped (not labelled). The rater comes from the `rater` column,
    else `rater`, else "human"; one rater may label an item once (also across imports).
    """
    manifest = read_manifest(sheet_dir)
    items = {item["item_id"]: item for item in manifest["items"]}
    path = Path(filled)
    if not path.is_file():
        raise MsmEvalError("labels file not found", path=path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MsmEvalError(f"not UTF-8 text ({exc.reason})", path=path, hint="save the CSV as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("item_id", "human_score") if c not in (reader.fieldnames or [])]
    if missing:
        raise MsmEvalError(f"missing column(s) {', '.join(missing)}", path=path, line=1,
                           hint=f"use the header of {SHEET_CSV}: {','.join(SHEET_COLUMNS)}")
    existing = load_labels(sheet_dir) if (Path(sheet_dir) / LABELS_CSV).is_file() else pd.DataFrame(columns=LABEL_COLUMNS)
    seen = {(str(i), str(r)): "labels.csv" for i, r in zip(existing["item_id"], existing["rater"], strict=True)}
    rows = []
    for line, record in enumerate(reader, start=2):
        item_id = (record.get("item_id") or "").strip()
        if item_id not in items:
            raise MsmEvalError(f"unknown item {item_id!r}", path=path, line=line, field="item_id",
                               hint=f"item ids come from {SHEET_CSV} of this sheet folder")
        item = items[item_id]
        dimension = (record.get("dimension") or "").strip()
        if dimension and dimension != item["dimension"]:
            raise MsmEvalError(f"item {item_id} is about {item['dimension']!r}, not {dimension!r}", path=path,
                               line=line, field="dimension", hint="do not edit the dimension column")
        parsed = parse_human_score(record.get("human_score") or "", path, line)
        if parsed is None:
            continue
        who = (record.get("rater") or "").strip() or rater or "human"
        if (item_id, who) in seen:
            where = seen[(item_id, who)]
            raise MsmEvalError(f"duplicate label: item {item_id} by rater {who!r} (already in {where})", path=path,
                               line=line, field="item_id", hint="keep one label per item and rater")
        seen[(item_id, who)] = f"line {line}"
        score, null = parsed
        rows.append({**{k: item.get(k) for k in ("item_id", "run", "eval_id", "sample_id", "epoch", "cluster",
                                                 "dimension", "judge_score", "stratum")},
                     "human_score": score, "not_exercised": null, "rater": who,
                     "notes": (record.get("notes") or "").strip()})
    if not rows:
        raise MsmEvalError("no labels in the file (every human_score cell is empty)", path=path,
                           hint=f"fill human_score with -3..3 or {NOT_EXERCISED}")
    merged = pd.concat([existing, pd.DataFrame(rows, columns=LABEL_COLUMNS)], ignore_index=True)
    return _write_csv(Path(sheet_dir) / LABELS_CSV, merged[LABEL_COLUMNS])


def load_labels(sheet_dir: str | Path) -> pd.DataFrame:
    """The imported labels of a sheet folder (LABEL_COLUMNS)."""
    path = Path(sheet_dir) / LABELS_CSV
    if not path.is_file():
        raise MsmEvalError("no imported labels in the sheet folder", path=sheet_dir,
                           hint="run `msm-eval labels import SHEET FILLED.csv` first")
    frame = pd.read_csv(path, dtype={"item_id": str, "run": str, "eval_id": str, "sample_id": str, "cluster": str,
                                     "dimension": str, "stratum": str, "rater": str, "notes": str},
                        keep_default_na=False, na_values={"human_score": [""], "judge_score": [""]})
    frame["human_score"] = pd.to_numeric(frame["human_score"], errors="coerce")
    frame["judge_score"] = pd.to_numeric(frame["judge_score"], errors="coerce")
    frame["not_exercised"] = frame["not_exercised"].astype(str).str.lower().isin(["true", "1"])
    frame["epoch"] = pd.to_numeric(frame["epoch"]).astype(int)
    return frame


def load_population(sheet_dir: str | Path) -> pd.DataFrame:
    """Every judged unit of the sheet's logs with its stratum (population.csv)."""
    path = Path(sheet_dir) / POPULATION_CSV
    if not path.is_file():
        raise MsmEvalError("not a labelling sheet folder (no population.csv)", path=sheet_dir)
    frame = pd.read_csv(path, dtype={"run": str, "eval_id": str, "sample_id": str, "cluster": str,
                                     "dimension": str, "stratum": str})
    frame["epoch"] = frame["epoch"].astype(int)
    return frame
