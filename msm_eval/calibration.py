"""Judge against people: agreement with human labels, and prediction-powered estimates that use them.

Inputs are the tidy results frame of judged logs and a labelling-sheet folder with imported labels
(`msm_eval.labels`). Several raters of one item are averaged into its human score; items labelled
"not exercised" count for null agreement only.

- `agreement_table(labels)`: per dimension (and `all`): n, Krippendorff's alpha (judge vs human,
  interval level by default: logprob judges give fractional scores), Spearman's rho, bias = mean
  (judge - human), and the share of human "not exercised" labels; cluster-bootstrap percentile
  intervals over scenario clusters.
- `ppi_table(frame, sheet, by)`: per group and dimension of the sheet, the judge-only mean (all judge scores),
  the human-only mean (labelled units) and the PPI++ mean (all judge scores corrected by the
  labels; strata and clusters from the sheet), each with its interval.
- `ppi_comparison(frame, sheet, baseline, candidate, by)`: the same three estimates for the mean
  paired difference candidate - baseline (units paired on sample, epoch and dimension).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from msm_eval.errors import MsmEvalError
from msm_eval.judge_metrics import cluster_weights, krippendorff_alpha_weighted, percentile_interval, weighted_mean, weighted_spearman
from msm_eval.labels import load_labels, load_population
from msm_eval.ppi import PPIResult, classical_mean, ppi_delta, ppi_mean

UNIT = ["eval_id", "sample_id", "epoch", "dimension"]


def human_by_item(labels: pd.DataFrame) -> pd.DataFrame:
    """One row per item: the mean human score over raters (NaN when every rater said not exercised),
    the share of raters saying not exercised and the number of raters."""
    grouped = labels.groupby("item_id", sort=False)
    first = grouped.first()[["run", "eval_id", "sample_id", "epoch", "cluster", "dimension", "judge_score", "stratum"]]
    first["human"] = grouped["human_score"].mean()
    first["null_share"] = grouped["not_exercised"].mean()
    first["raters"] = grouped["rater"].nunique()
    return first.reset_index()


def agreement_table(labels: pd.DataFrame, *, level: float = 0.95, n_resamples: int = 2_000, seed: int = 0,
                    alpha_level: str = "interval") -> pd.DataFrame:
    """Judge-human agreement per dimension and pooled (`all`), with cluster-bootstrap intervals."""
    items = human_by_item(labels)
    rows = []
    for dim in sorted(items["dimension"].unique()) + ["all"]:
        part = items if dim == "all" else items[items["dimension"] == dim]
        both = part[np.isfinite(part["human"]) & np.isfinite(part["judge_score"])]
        row: dict[str, Any] = {"dimension": dim, "items": len(part), "n": len(both),
                               "clusters": both["cluster"].nunique(), "human_null_share": float(part["null_share"].mean())}
        stats: dict[str, np.ndarray] = {}
        if len(both) >= 2:
            weights = cluster_weights(both["cluster"].tolist(), n_resamples, seed)
            judge, human = both["judge_score"].to_numpy(float), both["human"].to_numpy(float)
            stats["alpha"] = krippendorff_alpha_weighted(judge, human, weights, level=alpha_level)
            stats["spearman"] = weighted_spearman(judge, human, weights)
            stats["bias"] = weighted_mean(judge - human, weights)
        for name in ("alpha", "spearman", "bias"):
            interval = percentile_interval(stats[name], level) if name in stats else None
            row[name] = interval.estimate if interval else float("nan")
            row[f"{name}_low"] = interval.low if interval else float("nan")
            row[f"{name}_high"] = interval.high if interval else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _units(frame: pd.DataFrame, sheet: str | Path, by: list[str]) -> pd.DataFrame:
    """Judge units of `frame` (rubric judge, usable, finite) with stratum and mean human label."""
    from msm_eval.labels import judged_units

    judged = judged_units(frame)
    for key in by:
        if key not in frame.columns:
            raise MsmEvalError(f"cannot group by '{key}': no such column", field="by")
    extra = [k for k in by if k not in judged.columns]
    if extra:
        judged = judged.merge(frame[[*UNIT, *extra]].drop_duplicates(UNIT), on=UNIT, how="left")
    population = load_population(sheet)
    judged = judged[judged["dimension"].isin(set(population["dimension"]))]   # the sheet's dimensions only
    strata = population.drop_duplicates(["sample_id", "epoch", "dimension"])[
        ["sample_id", "epoch", "dimension", "stratum"]]
    units = judged.merge(strata, on=["sample_id", "epoch", "dimension"], how="left")
    if units["stratum"].isna().any():
        missing = int(units["stratum"].isna().sum())
        raise MsmEvalError(f"{missing} judged unit(s) are not in the labelling sheet's population", path=sheet,
                           hint="use the logs the sheet was exported from (or export a new sheet)")
    items = human_by_item(load_labels(sheet))
    human = items[["eval_id", "sample_id", "epoch", "dimension", "human", "null_share"]]
    units = units.merge(human, on=UNIT, how="left")
    # a unit labelled "not exercised" by everyone has no human score: it is left out of the means
    return units[~(units["null_share"] >= 1.0)].reset_index(drop=True)


def _result_columns(prefix: str, result: PPIResult) -> dict[str, Any]:
    return {f"{prefix}_mean": result.estimate, f"{prefix}_low": result.ci_low, f"{prefix}_high": result.ci_high,
            f"{prefix}_se": result.se}


def ppi_table(frame: pd.DataFrame, sheet: str | Path, by: str | list[str] = "run", *,
              level: float = 0.95) -> pd.DataFrame:
    """Judge-only, human-only and PPI++ means per group and dimension (see the module docstring)."""
    keys = [by] if isinstance(by, str) else list(by)
    units = _units(frame, sheet, keys)
    rows = []
    for group, part in units.groupby(keys + ["dimension"], sort=True):
        judge = part["judge_score"].to_numpy(float)
        human = part["human"].to_numpy(float)
        clusters = part["cluster"].tolist()
        ppi = ppi_mean(judge, human, clusters=clusters, strata=part["stratum"].tolist(), level=level)
        row = dict(zip(keys + ["dimension"], group, strict=True))
        row.update({"n": len(part), "labelled": int(np.isfinite(human).sum()), "clusters": part["cluster"].nunique()})
        row.update(_result_columns("judge", classical_mean(judge, clusters=clusters, level=level)))
        row.update(_result_columns("human", classical_mean(human, clusters=clusters, level=level)))
        row.update(_result_columns("ppi", ppi))
        row.update({"lam": ppi.lam, "ppi_method": ppi.method})
        rows.append(row)
    return pd.DataFrame(rows)


def ppi_comparison(frame: pd.DataFrame, sheet: str | Path, baseline: str, candidate: str, by: str = "run", *,
                   level: float = 0.95) -> pd.DataFrame:
    """Judge-only, human-only and PPI++ paired differences candidate - baseline per dimension."""
    units = _units(frame, sheet, [by])
    sides = {}
    for name, label in (("baseline", baseline), ("candidate", candidate)):
        part = units[units[by].astype(str) == str(label)]
        if part.empty:
            raise MsmEvalError(f"no judged units for {name} {label!r} in column {by!r}", field=name)
        sides[name] = part.groupby(["sample_id", "epoch", "dimension"], as_index=False).agg(
            judge=("judge_score", "mean"), human=("human", "mean"), cluster=("cluster", "first"),
            stratum=("stratum", "first"))
    paired = sides["baseline"].merge(sides["candidate"], on=["sample_id", "epoch", "dimension"],
                                     suffixes=("_b", "_c"))
    rows = []
    for dim, part in paired.groupby("dimension", sort=True):
        clusters = part["cluster_b"].tolist()
        jb, jc = part["judge_b"].to_numpy(float), part["judge_c"].to_numpy(float)
        hb, hc = part["human_b"].to_numpy(float), part["human_c"].to_numpy(float)
        ppi = ppi_delta(jb, jc, hb, hc, clusters=clusters, strata=part["stratum_b"].tolist(), level=level)
        row: dict[str, Any] = {"dimension": dim, "n_pairs": len(part), "labelled_pairs": ppi.n_labelled,
                               "clusters": part["cluster_b"].nunique()}
        row.update(_result_columns("judge_delta", classical_mean(jc - jb, clusters=clusters, level=level)))
        row.update(_result_columns("human_delta", classical_mean(hc - hb, clusters=clusters, level=level)))
        row.update(_result_columns("ppi_delta", ppi))
        row.update({"lam": ppi.lam, "ppi_method": ppi.method})
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- Markdown

def _fmt(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:+.2f}"


def _ci(row: Any, prefix: str) -> str:
    mean = row[f"{prefix}_mean"]
    if not math.isfinite(mean):
        return "–"
    return f"{_fmt(mean)} [{_fmt(row[f'{prefix}_low'])}, {_fmt(row[f'{prefix}_high'])}]"


def ppi_markdown(table: pd.DataFrame, by: list[str], level: float) -> str:
    """Judge-only next to prediction-powered means (and human-only) per group and dimension."""
    lines = [f"Judge-only vs prediction-powered means ({level:.0%} intervals; clustered). PPI++ corrects the "
             "judge's bias with the human-labelled subset (lam = weight on the judge, 0 = human only).", "",
             "| " + " | ".join(by) + " | dimension | n | labelled | judge only | prediction-powered | human only | lam |",
             "|" + "---|" * (len(by) + 8)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(str(row[k]) for k in by) + f" | {row['dimension']} | {row['n']} | "
                     f"{row['labelled']} | {_ci(row, 'judge')} | {_ci(row, 'ppi')} | {_ci(row, 'human')} | "
                     f"{row['lam']:.2f} |")
    return "\n".join(lines) + "\n"


def comparison_markdown(table: pd.DataFrame, baseline: str, candidate: str, level: float) -> str:
    """Judge-only next to prediction-powered paired deltas per dimension."""
    lines = [f"Paired delta {candidate} - {baseline}: judge only vs prediction-powered ({level:.0%} intervals).", "",
             "| dimension | pairs | labelled | judge only | prediction-powered | human only | lam |",
             "|---|---:|---:|---|---|---|---:|"]
    for _, row in table.iterrows():
        lines.append(f"| {row['dimension']} | {row['n_pairs']} | {row['labelled_pairs']} | {_ci(row, 'judge_delta')} | "
                     f"{_ci(row, 'ppi_delta')} | {_ci(row, 'human_delta')} | {row['lam']:.2f} |")
    return "\n".join(lines) + "\n"


def agreement_markdown(table: pd.DataFrame, level: float) -> str:
    """The judge-human agreement table."""
    def ci(row: Any, name: str) -> str:
        value = row[name]
        if not math.isfinite(value):
            return "–"
        low, high = row[f"{name}_low"], row[f"{name}_high"]
        return f"{value:.2f} [{low:.2f}, {high:.2f}]" if math.isfinite(low) else f"{value:.2f}"

    lines = [f"Judge vs human per dimension ({level:.0%} cluster-bootstrap intervals). alpha = Krippendorff's alpha "
             "(judge and mean human as two raters); bias = mean judge - human.", "",
             "| dimension | items | n | alpha | spearman | bias | human null share |", "|---|---:|---:|---|---|---|---:|"]
    for _, row in table.iterrows():
        lines.append(f"| {row['dimension']} | {row['items']} | {row['n']} | {ci(row, 'alpha')} | {ci(row, 'spearman')} | "
                     f"{ci(row, 'bias')} | {row['human_null_share']:.2f} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- report / compare sections

def write_ppi_report(paths: Any, sheet: str | Path, out_dir: str | Path, by: str | list[str] = "run", *,
                     level: float = 0.95) -> dict[str, Path]:
    """The `report --labels` section: ppi.md and ppi.csv (judge-only next to prediction-powered
    means per group and dimension) in `out_dir`."""
    from msm_eval.fileio import atomic_write_text
    from msm_eval.results import load, write_frame

    frame = paths.copy() if isinstance(paths, pd.DataFrame) else load(paths)
    keys = [k.strip() for k in by.split(",") if k.strip()] if isinstance(by, str) else list(by)
    table = ppi_table(frame, sheet, keys, level=level)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {"ppi_markdown": atomic_write_text(out / "ppi.md", "# Prediction-powered means\n\n" +
                                              ppi_markdown(table, keys, level)),
            "ppi_csv": write_frame(table, out / "ppi.csv")}


def _single_run(source: Any, by: str, side: str) -> str:
    from msm_eval.results import load

    labels = sorted(set(load(source)[by].astype(str)))
    if len(labels) != 1:
        raise MsmEvalError(f"the {side} source holds {len(labels)} values of {by!r}", field=side,
                           hint=f"name it with --{side}-run")
    return labels[0]


def write_ppi_comparison(baseline: Any, candidate: Any, sheet: str | Path, out_dir: str | Path, *,
                         baseline_run: str | None = None, candidate_run: str | None = None, by: str = "run",
                         level: float = 0.95) -> dict[str, Path]:
    """The `compare --labels` section: ppi_comparison.md / .csv (judge-only next to
    prediction-powered paired deltas per dimension) in `out_dir`."""
    from msm_eval.fileio import atomic_write_text
    from msm_eval.results import load, write_frame

    sources = [baseline] + ([candidate] if candidate is not None else [])
    frame = load(sources)
    base = baseline_run or _single_run(baseline, by, "baseline")
    cand = candidate_run or (_single_run(candidate, by, "candidate") if candidate is not None else None)
    if cand is None:
        raise MsmEvalError("no candidate: pass a candidate source or --candidate-run", field="candidate")
    table = ppi_comparison(frame, sheet, base, cand, by=by, level=level)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {"ppi_markdown": atomic_write_text(out / "ppi_comparison.md", "# Prediction-powered paired deltas\n\n" +
                                              comparison_markdown(table, base, cand, level)),
            "ppi_csv": write_frame(table, out / "ppi_comparison.csv")}
