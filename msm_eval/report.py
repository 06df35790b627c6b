"""Report writers: per-dimension summary tables and paired comparisons as Markdown, LaTeX
(booktabs), CSV, JSON and a self-contained HTML page, plus forest plots (PNG).

`build_report(paths, by, out_dir)` and `build_comparison(baseline, candidate, out_dir)` (or two
groups of one source: `baseline_run=`, `candidate_run=`, `by=`) return the files they wrote by
kind. The `msm-eval report` /
`msm-eval compare` commands are thin wrappers. Every table carries its denominators: scored
samples and clusters next to each estimate, and the sample-epochs that were not exercised,
unscored, refused or errored.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from msm_eval.results import audit_mask, counts, load, run_metadata, stack_sides, to_json_records, write_frame

TEMPLATE_DIR = Path(__file__).parent / "templates"
RATE_DIMENSIONS = ("harmful", "verdict", "hard_check", "eval_aware")
Source = str | Path | Iterable[str | Path] | pd.DataFrame
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


# --------------------------------------------------------------------------- formatting helpers

def latex_escape(text: Any) -> str:
    """Escape LaTeX special characters in a label."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _num(value: float, digits: int = 2, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


CEILING_MARK = "‡"
DEGENERATE_MARK = "†"
CEILING_LEGEND = ("‡ ceiling: every scored sample is at +3, so the interval collapses to [3.00, 3.00] and covers "
                  "nothing but its point; quote the share below +3 with its clustered Wilson interval instead.")
DEGENERATE_LEGEND = ("† degenerate: every scored value is equal, so the interval has zero width; that is the absence "
                     "of variation in these samples, not a measured certainty.")


TEX_MARKS = {CEILING_MARK: r"$^{\ddagger}$", DEGENERATE_MARK: r"$^{\dagger}$"}
"""The markers as LaTeX (math-mode superscript daggers)."""


def _flag(row: Any, column: str) -> bool:
    """Whether a summary / comparison row carries the boolean flag `column` (absent = False)."""
    value = _get(row, column)
    return bool(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else False


def _mark(row: Any) -> str:
    """The cell's marker: `CEILING_MARK` for a ceiling cell (every sample at +3), else
    `DEGENERATE_MARK` for a zero-width interval (flag `degenerate` or method "degenerate"), else ""."""
    if _flag(row, "ceiling"):
        return CEILING_MARK
    if _flag(row, "degenerate") or str(_get(row, "method")) == "degenerate":
        return DEGENERATE_MARK
    return ""


def _get(row: Any, column: str) -> Any:
    try:
        return row[column]
    except (KeyError, IndexError):
        return None


def _legend(rows: Iterable[Any]) -> list[str]:
    """The legend lines for the markers that occur among `rows`."""
    marks = {_mark(row) for row in rows}
    return [text for mark, text in ((CEILING_MARK, CEILING_LEGEND), (DEGENERATE_MARK, DEGENERATE_LEGEND))
            if mark in marks]


def _cell(row: Any, signed: bool = False) -> str:
    return (f"{_num(row['mean'], signed=signed)} [{_num(row['ci_low'], signed=signed)}, "
            f"{_num(row['ci_high'], signed=signed)}]{_mark(row)}")


def _group_label(keys: Sequence[str], values: Any) -> str:
    values = values if isinstance(values, tuple) else (values,)
    return " / ".join(str(v) for v in values)


def _wide(summary: pd.DataFrame, by: Sequence[str]) -> tuple[list[str], list[str], dict[tuple[str, str], Any]]:
    """Dimensions, group labels and a (dimension, group) -> summary row lookup."""
    cells: dict[tuple[str, str], Any] = {}
    groups: list[str] = []
    for _, row in summary.iterrows():
        label = _group_label(by, tuple(row[k] for k in by))
        if label not in groups:
            groups.append(label)
        cells[(row["dimension"], label)] = row
    dims = sorted(summary["dimension"].unique().tolist())
    return dims, groups, cells


def summary_markdown(summary: pd.DataFrame, by: Sequence[str], level: float) -> str:
    """Markdown table: one row per dimension, one column per group; cells mean [CI] (n / clusters)."""
    dims, groups, cells = _wide(summary, by)
    lines = ["| dimension | " + " | ".join(_md(g) for g in groups) + " |",
             "|---|" + "---|" * len(groups)]
    for dim in dims:
        row = [_md(dim)]
        for group in groups:
            item = cells.get((dim, group))
            row.append("–" if item is None else f"{_cell(item)} ({int(item['n'])} / {int(item['clusters'])})")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"Mean score per dimension (−3..+3) with {level:.0%} cluster-bootstrap interval "
                 "(BCa); (n scored samples / clusters).")
    for legend in _legend(row for _, row in summary.iterrows()):
        lines += ["", legend]
    if all(c in summary.columns for c in COUNT_COLUMNS):
        lines += ["", "Denominators (sample-epochs): scored / not exercised / unscored / refused / error. "
                  "Only scored ones enter the means; the others are never counted as 0.", "",
                  "| dimension | " + " | ".join(_md(g) for g in groups) + " |",
                  "|---|" + "---|" * len(groups)]
        for dim in dims:
            row = [_md(dim)]
            for group in groups:
                item = cells.get((dim, group))
                row.append("–" if item is None else _counts_cell(item))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


COUNT_COLUMNS = ("scored", "missing", "unscored", "refused", "error")


def _counts_cell(row: Any, prefix: str = "") -> str:
    """`scored / missing / unscored / refused / error` of one summary or comparison row."""
    return " / ".join(str(_int(row[prefix + c])) for c in COUNT_COLUMNS)


def _int(value: Any) -> int:
    return 0 if value is None or (isinstance(value, float) and not math.isfinite(value)) else int(value)


def _unusable(row: Any, prefix: str = "") -> int:
    """Sample-epochs without a usable judge score (unscored + refused + error)."""
    return sum(_int(row[prefix + c]) for c in ("unscored", "refused", "error"))


def _span(values: Sequence[int]) -> str:
    """`a` when all values are equal, else `min–max`."""
    if not values:
        return "0"
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|")


_TEX_TEXT = {"–": "--", "—": "---", "−": "$-$", "Δ": r"$\Delta$", "×": r"$\times$"}
TEX_MISSING = "--"
"""How LaTeX tables print a value that does not exist (no score, no interval): an en dash in text mode."""
TEX_PREAMBLE = r"\usepackage{booktabs}" + "\n" + r"\usepackage{graphicx}"
"""What the tables need in the document preamble."""


def _tex(text: Any) -> str:
    """A label for a LaTeX table: specials escaped, non-ASCII dashes and signs spelled for LaTeX."""
    return "".join(_TEX_TEXT.get(ch, ch) for ch in latex_escape(text))


def _tex_num(value: Any, digits: int = 2, signed: bool = False) -> str:
    """A number in math mode (so minus signs are real minus signs), or `TEX_MISSING` in text mode."""
    if value is None or not isinstance(value, int | float | np.floating | np.integer) or not np.isfinite(value):
        return TEX_MISSING
    return f"${value:+.{digits}f}$" if signed else f"${value:.{digits}f}$"


def _tex_interval(low: Any, high: Any, signed: bool = False) -> str:
    if _tex_num(low) == TEX_MISSING or _tex_num(high) == TEX_MISSING:
        return TEX_MISSING
    fmt = "+.2f" if signed else ".2f"
    return f"$[{low:{fmt}}, {high:{fmt}}]$"


def _stack(*lines: str) -> str:
    """Several lines in one cell (a nested tabular: no extra package)."""
    return r"\begin{tabular}[t]{@{}c@{}}" + r" \\ ".join(lines) + r"\end{tabular}"


def _fit_to_width(tabular: list[str]) -> list[str]:
    """Typeset the tabular once into a box and shrink it to `\\linewidth` only when it is wider
    (needs graphicx); narrow tables keep their natural size. For a landscape page instead, put the
    table inside `\\begin{landscape}` (pdflscape): the line is then the page's height."""
    return [r"\ifdefined\msmevalbox\else\newsavebox{\msmevalbox}\fi",
            r"\sbox{\msmevalbox}{%", *tabular, "}%",
            r"\ifdim\wd\msmevalbox>\linewidth\resizebox{\linewidth}{!}{\usebox{\msmevalbox}}%",
            r"\else\usebox{\msmevalbox}\fi"]


def summary_latex(summary: pd.DataFrame, by: Sequence[str], level: float, caption: str = "") -> str:
    """Paste-ready booktabs table (preamble: `TEX_PREAMBLE`): one row per dimension, one column per
    group; each cell is the mean over its interval. Fits the text width (shrunk only when wider,
    see `_fit_to_width`); a missing value prints as `TEX_MISSING`."""
    dims, groups, cells = _wide(summary, by)
    header = ["Dimension"] + [_stack(*(_tex(part) for part in g.split(" / "))) for g in groups]
    tabular = [r"\begin{tabular}{l" + "c" * len(groups) + "}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for dim in dims:
        row = [_tex(dim)]
        for group in groups:
            item = cells.get((dim, group))
            if item is None or _tex_num(item["mean"]) == TEX_MISSING:
                row.append(TEX_MISSING)
            else:
                row.append(_stack(_tex_num(item["mean"]) + TEX_MARKS.get(_mark(item), ""),
                                  r"{\scriptsize " + _tex_interval(item["ci_low"], item["ci_high"]) + "}"))
        tabular.append(" & ".join(row) + r" \\")
    tabular.append(r"\midrule")
    footer: dict[str, list[str]] = {"$n$ / clusters": [], "Not exercised": [], "Unscored / refused / error": []}
    has_counts = all(c in summary.columns for c in COUNT_COLUMNS)
    for group in groups:
        items = [cells[(d, group)] for d in dims if (d, group) in cells]
        footer["$n$ / clusters"].append(f"{_span([_int(i['n']) for i in items])} / "
                                        f"{_span([_int(i['clusters']) for i in items])}")
        if has_counts:
            footer["Not exercised"].append(_span([_int(i["missing"]) for i in items]))
            footer["Unscored / refused / error"].append(" / ".join(
                _span([_int(i[c]) for i in items]) for c in ("unscored", "refused", "error")))
    for label, values in footer.items():
        if values:
            tabular.append(" & ".join([label] + [v.replace("–", "--") for v in values]) + r" \\")
    tabular += [r"\bottomrule", r"\end{tabular}"]
    note = (f"Mean adherence per dimension (-3..+3) with {level:.0%} cluster-bootstrap BCa intervals; "
            f"n = scored samples (epochs averaged), ranges over dimensions; {TEX_MISSING} = no value."
            + (" Not exercised / unscored / refused / error count sample-epochs left out of the means."
               if has_counts else ""))
    legend = " ".join(_tex_legend(text) for text in _legend(row for _, row in summary.iterrows()))
    lines = [f"% msm-eval summary table; preamble: {TEX_PREAMBLE.replace(chr(10), ' ')}",
             r"\begin{table}[t]", r"\centering", r"\small", *_fit_to_width(tabular),
             r"\caption{" + _tex(caption or note) + (" " + legend if legend else "") + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _tex_legend(text: str) -> str:
    """A marker legend line for a LaTeX caption: the marker as a math-mode dagger, the rest escaped."""
    for mark, command in TEX_MARKS.items():
        if text.startswith(mark):
            return command + _tex(text[len(mark):])
    return _tex(text)


HARMFUL_NOTE = ("harmful = verdict AND hard_check: the classifier's verdict that the harmful action happened and "
                "one of the seed's hard checks fired (the verdict alone when a seed declares no hard checks); "
                "rates are 0..1, not on the -3..+3 scale.")


def _comparison_blocks(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The comparison rows in reading order: per task (when the table has several), the -3..+3
    rubric dimensions first, then the 0..1 rates; each block with its heading."""
    blocks: list[tuple[str, pd.DataFrame]] = []
    tasks = sorted(table["task"].astype(str).unique()) if "task" in table.columns else [""]
    for task in tasks:
        part = table[table["task"].astype(str) == task] if task else table
        scores = part[~part["dimension"].isin(RATE_DIMENSIONS)]
        rates_part = part[part["dimension"].isin(RATE_DIMENSIONS)]
        prefix = f"{task}: " if len(tasks) > 1 else ""
        if not scores.empty:
            blocks.append((prefix + "rubric dimensions (-3..+3)", scores))
        if not rates_part.empty:
            blocks.append((prefix + "harmful-action rates (0..1)", rates_part))
    return blocks


def comparison_markdown(table: pd.DataFrame, baseline: str, candidate: str, level: float, correction: str | None) -> str:
    """Markdown tables of paired differences: per task, rubric dimensions and rates apart."""
    lines = [f"Paired difference {_md(candidate)} − {_md(baseline)} ({level:.0%} cluster-bootstrap interval; "
             f"sign-flip permutation p; adjusted: {correction or 'none'})"]
    has_counts = all(f"{side}_{c}" in table.columns for side in ("baseline", "candidate") for c in COUNT_COLUMNS)
    blocks = _comparison_blocks(table)
    for heading, part in blocks:
        lines += ["", f"**{_md(heading)}**" if len(blocks) > 1 else "", "",
                  "| dimension | baseline | candidate | Δ [CI] | p | p adj | pairs / clusters | corr | MDE (approx.) | "
                  "not exercised b / c | unusable b / c |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, row in part.iterrows():
            counts_cells = (f"{_int(row['baseline_missing'])} / {_int(row['candidate_missing'])} | "
                            f"{_unusable(row, 'baseline_')} / {_unusable(row, 'candidate_')}") if has_counts else "– | –"
            lines.append(f"| {_md(row['dimension'])} | {_num(row['baseline_mean'])} | {_num(row['candidate_mean'])} | "
                         f"{_num(row['delta'], signed=True)} [{_num(row['ci_low'], signed=True)}, "
                         f"{_num(row['ci_high'], signed=True)}]{_mark(row)} | "
                         f"{_p(row['p_value'])} | {_p(row['p_adj'])} | {_int(row['n_pairs'])} / {_int(row['clusters'])} | "
                         f"{_num(row['corr'])} | {_num(row['mde'])} | {counts_cells} |")
    lines = [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]
    lines += ["", "Baseline / candidate sample-epochs left out of the pairs: not exercised (dimension NaN) and "
              "unusable (judge unscored, refused or error; never counted as 0). Per-status counts are in the "
              "CSV / JSON. – = no value (no pairs, or no interval from a single cluster). MDE (approx.): the "
              "difference detected with about 80% power, from a t test with C − 1 df at the corrected level times "
              "1.05 + 2/C, a factor calibrated by simulation for the sign-flip test (docs/statistics.md)."]
    for legend in _legend(row for _, row in table.iterrows()):
        lines += ["", legend]
    if table["dimension"].isin(RATE_DIMENSIONS).any():
        lines += ["", HARMFUL_NOTE]
    return "\n".join(lines) + "\n"


def comparison_latex(table: pd.DataFrame, baseline: str, candidate: str, level: float, correction: str | None) -> str:
    """Booktabs table of paired differences (preamble: `TEX_PREAMBLE`): per task, the rubric
    dimensions and the rates in separate blocks; fits the text width (see `_fit_to_width`)."""
    columns = 8
    tabular = [r"\begin{tabular}{lrrrcrrr}", r"\toprule",
               r"Dimension & Baseline & Candidate & $\Delta$ & " + f"{level:.0%}".replace("%", r"\%")
               + r" CI & $p_{\mathrm{adj}}$ & Pairs / clusters & Unusable \\"]
    has_counts = all(f"{side}_{c}" in table.columns for side in ("baseline", "candidate") for c in COUNT_COLUMNS)
    blocks = _comparison_blocks(table)
    for heading, part in blocks:
        tabular.append(r"\midrule")
        if len(blocks) > 1:
            tabular.append(rf"\multicolumn{{{columns}}}{{l}}{{\emph{{{_tex(heading)}}}}} \\")
        for _, row in part.iterrows():
            unusable = f"{_unusable(row, 'baseline_')} / {_unusable(row, 'candidate_')}" if has_counts else TEX_MISSING
            p_adj = TEX_MISSING if _tex_num(row["p_adj"]) == TEX_MISSING else _tex(_p(row["p_adj"])).replace("<", "$<$")
            tabular.append(" & ".join([
                _tex(row["dimension"]), _tex_num(row["baseline_mean"]), _tex_num(row["candidate_mean"]),
                _tex_num(row["delta"], signed=True)
                + TEX_MARKS.get(_mark(row), ""),
                _tex_interval(row["ci_low"], row["ci_high"], signed=True),
                p_adj, f"{_int(row['n_pairs'])} / {_int(row['clusters'])}", unusable]) + r" \\")
    tabular += [r"\bottomrule", r"\end{tabular}"]
    caption = (f"Paired difference {candidate} minus {baseline} per dimension with {level:.0%} cluster-bootstrap "
               f"intervals; p from a cluster sign-flip permutation test, adjusted by {correction or 'none'}. "
               "Unusable: baseline / candidate sample-epochs without a usable judge score (unscored, refused "
               f"or error), left out of the pairs. {TEX_MISSING} = no value.")
    if table["dimension"].isin(RATE_DIMENSIONS).any():
        caption += " " + HARMFUL_NOTE
    legend = " ".join(_tex_legend(text) for text in _legend(row for _, row in table.iterrows()))
    lines = [f"% msm-eval comparison table; preamble: {TEX_PREAMBLE.replace(chr(10), ' ')}",
             r"\begin{table}[t]", r"\centering", r"\small", *_fit_to_width(tabular),
             r"\caption{" + _tex(caption) + (" " + legend if legend else "") + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


BELOW_CEILING_NOTE = ("Share of scored samples (epochs averaged) whose score is below +3, with its {level} clustered "
                      "Wilson interval (Korn-Graubard effective n, t with clusters - 1 df). Unlike the mean, it keeps "
                      "an informative interval when every sample sits at the ceiling (0 of n below).")


def below_ceiling_markdown(table: pd.DataFrame, keys: Sequence[str], level: float) -> str:
    """The ceiling-aware summary (`stats.below_ceiling`) as a Markdown section."""
    if table.empty:
        return ""
    lines = ["## Share below +3 (ceiling-aware)", "",
             "| " + " | ".join(_md(k) for k in keys) + " | dimension | share below +3 | interval | n / clusters |",
             "|" + "---|" * (len(keys) + 4)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_md(row[k]) for k in keys) + f" | {_md(row['dimension'])} | "
                     f"{_num(row['share_below'], 3)} | [{_num(row['low'], 3)}, {_num(row['high'], 3)}] | "
                     f"{_int(row['n'])} / {_int(row['clusters'])} |")
    lines += ["", BELOW_CEILING_NOTE.format(level=f"{level:.0%}")]
    return "\n".join(lines) + "\n"


def rates_markdown(table: pd.DataFrame, level: float) -> str:
    """Markdown table of binary rates with Wilson and cluster-bootstrap intervals."""
    if table.empty:
        return ""
    keys = [c for c in table.columns if c not in RATE_COLUMNS]
    has_counts = all(c in table.columns for c in COUNT_COLUMNS)
    lines = ["| " + " | ".join(_md(k) for k in keys) + " | rate | Wilson | Wilson, clustered | cluster bootstrap | "
             "n / clusters | scored / n.e. / unscored / refused / error |",
             "|" + "---|" * (len(keys) + 6)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_md(row[k]) for k in keys) +
                     f" | {_num(row['rate'], 3)} | [{_num(row['wilson_low'], 3)}, {_num(row['wilson_high'], 3)}] | "
                     f"[{_num(row['wilson_cluster_low'], 3)}, {_num(row['wilson_cluster_high'], 3)}] | "
                     f"[{_num(row['ci_low'], 3)}, {_num(row['ci_high'], 3)}] | {int(row['n'])} / {int(row['clusters'])} | "
                     f"{_counts_cell(row) if has_counts else '–'} |")
    lines += ["", f"{level:.0%} intervals. Wilson ignores clustering; the clustered Wilson uses the Korn-Graubard "
              "effective sample size and t with clusters - 1 df (the one to quote); the cluster bootstrap resamples "
              "scenario seeds and collapses to a point when every seed has the same rate (e.g. none harmful). "
              "The last column counts sample-epochs (n.e. = not exercised); only scored ones enter the rate.",
              "", HARMFUL_NOTE]
    return "\n".join(lines) + "\n"


RATE_COLUMNS = ("successes", "n", "clusters", "rate", "wilson_low", "wilson_high", "wilson_cluster_low",
                "wilson_cluster_high", "n_eff", "ci_low", "ci_high", "method",
                "scored", "missing", "unscored", "refused", "error", "total")


# --------------------------------------------------------------------------- plots

def forest_plot(table: pd.DataFrame, group_column: str | None, path: str | Path, title: str,
                estimate: str = "mean", zero_line: bool = False) -> Path:
    """Forest plot PNG: one row per dimension, one marker + interval per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = sorted(table["dimension"].unique().tolist())
    groups = sorted(table[group_column].astype(str).unique().tolist()) if group_column else [""]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(dims) * max(1, len(groups)) ** 0.5 + 1.6), dpi=110)
    step = 0.8 / max(1, len(groups))
    for g, group in enumerate(groups):
        part = table if not group_column else table[table[group_column].astype(str) == group]
        lookup = {row["dimension"]: row for _, row in part.iterrows()}
        ys, xs, lows, highs = [], [], [], []
        for i, dim in enumerate(dims):
            row = lookup.get(dim)
            if row is None or not np.isfinite(row[estimate]):
                continue
            ys.append(len(dims) - 1 - i + 0.4 - step * (g + 0.5))
            xs.append(row[estimate])
            low = row["ci_low"] if np.isfinite(row["ci_low"]) else row[estimate]
            high = row["ci_high"] if np.isfinite(row["ci_high"]) else row[estimate]
            lows.append(row[estimate] - low)
            highs.append(high - row[estimate])
        ax.errorbar(xs, ys, xerr=[lows, highs], fmt="o", capsize=3, markersize=4, label=group or None)
    ax.set_yticks(range(len(dims)))
    ax.set_yticklabels(list(reversed(dims)))
    if zero_line:
        ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("score (−3..+3)" if estimate == "mean" else "difference")
    ax.set_title(title, fontsize=10)
    if group_column and len(groups) > 1:
        ax.legend(fontsize=7, loc="best")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def delta_forest_plot(table: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Forest plot PNG of paired differences (candidate − baseline): one panel for the rubric
    dimensions and one for the rates when there are any (different scales), one row per task and
    dimension with a difference. A difference without an interval (one cluster) is a hollow marker
    labelled "no interval"; rows without any difference (nothing paired) are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table[np.isfinite(pd.to_numeric(table["delta"], errors="coerce"))]
    several_tasks = "task" in rows.columns and rows["task"].nunique() > 1
    panels = [(name, part) for name, part in
              (("rubric dimensions: difference in score (−3..+3 scale)", rows[~rows["dimension"].isin(RATE_DIMENSIONS)]),
               ("harmful-action rates: difference in rate", rows[rows["dimension"].isin(RATE_DIMENSIONS)]))
              if not part.empty]
    heights = [max(1, len(part)) for _, part in panels] or [1]
    fig, axes = plt.subplots(len(panels) or 1, 1, figsize=(7.5, 0.32 * sum(heights) + 1.4 * len(heights) + 0.4),
                             dpi=110, gridspec_kw={"height_ratios": heights}, squeeze=False)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no paired differences to plot", ha="center", va="center")
        axes[0][0].set_axis_off()
    for ax, (name, part) in zip((a[0] for a in axes), panels, strict=False):
        labels = [(f"{row['task']}: " if several_tasks else "") + str(row["dimension"]) for _, row in part.iterrows()]
        for i, (_, row) in enumerate(part.iterrows()):
            y = len(part) - 1 - i
            if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]):
                ax.errorbar([row["delta"]], [y], xerr=[[row["delta"] - row["ci_low"]], [row["ci_high"] - row["delta"]]],
                            fmt="o", color="C0", capsize=3, markersize=4)
            else:
                ax.plot([row["delta"]], [y], marker="o", markerfacecolor="white", color="C1", markersize=5)
                ax.annotate("no interval", (row["delta"], y), xytext=(6, -3), textcoords="offset points",
                            fontsize=7, color="C1")
        ax.set_yticks(range(len(part)))
        ax.set_yticklabels(list(reversed(labels)), fontsize=8)
        ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xlabel("difference, candidate − baseline", fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _render_html(context: dict[str, Any]) -> str:
    import jinja2

    from msm_eval.templating import untrusted_environment

    env = untrusted_environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                                autoescape=jinja2.select_autoescape(["html", "j2"]))
    return env.get_template("report.html.j2").render(**context)


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_rows(frame: pd.DataFrame, columns: Sequence[str]) -> list[list[str]]:
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column in columns:
            value = row[column]
            if isinstance(value, float):
                cells.append("–" if not math.isfinite(value) else f"{value:.3f}")
            else:
                cells.append(str(value))
        rows.append(cells)
    return rows


# --------------------------------------------------------------------------- reports

def _human_run_label(frame: pd.DataFrame) -> dict[str, str]:
    """Run id -> a name a reader understands: `spec (variant), model, task`. Two runs of the same
    configuration keep their short unique id as a suffix so they stay apart."""
    names: dict[str, str] = {}
    columns = [c for c in ("run", "spec", "spec_variant", "model", "task") if c in frame.columns]
    for row in frame[columns].drop_duplicates("run").itertuples(index=False):
        values = row._asdict()
        spec = str(values.get("spec") or "")
        variant = str(values.get("spec_variant") or "")
        parts = [f"{spec} ({variant})" if spec and variant else spec or variant,
                 str(values.get("model") or ""), str(values.get("task") or "")]
        names[str(values["run"])] = ", ".join(p for p in parts if p) or str(values["run"])
    taken: dict[str, int] = {}
    for label in names.values():
        taken[label] = taken.get(label, 0) + 1
    return {run: (label if taken[label] == 1 else f"{label} #{run.rsplit('#', 1)[-1]}") for run, label in names.items()}


def _generated(stamp: bool) -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if stamp else ""


def _runs_table(frame: pd.DataFrame, stamp: bool) -> dict[str, Any]:
    """The Runs section: one row per run with its human name; the unique run / eval id and the
    log file only when `stamp` (they differ between two otherwise identical runs)."""
    meta = run_metadata(frame)
    labels = _human_run_label(frame)
    meta.insert(0, "name", [labels.get(str(r), str(r)) for r in meta["run"]])
    if not stamp:
        meta = meta.drop(columns=[c for c in ("run", "eval_id", "source") if c in meta.columns])
    return {"columns": list(meta.columns), "rows": _html_rows(meta, list(meta.columns))}

# --------------------------------------------------------------------------- HTML grids

def _colour(value: float, low: float, high: float, diverging: bool = True) -> str:
    """A background colour for `value` on [low, high]: red (low) - white (middle) - green (high)
    when diverging, else white (low) - red (high); grey when there is no value."""
    if value is None or not np.isfinite(value):
        return "background:#eeeeee"
    t = min(1.0, max(0.0, (value - low) / (high - low)))
    if diverging:
        end = (26, 152, 80) if t >= 0.5 else (215, 48, 39)
        w = abs(t - 0.5) * 2
    else:
        end, w = (215, 48, 39), t
    rgb = tuple(round(255 + (c - 255) * w * 0.85) for c in end)
    return f"background:rgb{rgb}"


def _cell_text(mean: Any, low: Any, high: Any, digits: int = 2, signed: bool = False) -> tuple[str, str]:
    """(main text, interval text) of a grid cell; the interval reads "no interval" when undefined."""
    main = _num(mean, digits, signed)
    if main == "–":
        return "–", ""
    if not (np.isfinite(low) and np.isfinite(high)):
        return main, "no interval"
    return main, f"[{_num(low, digits, signed)}, {_num(high, digits, signed)}]"


def _group_runs(frame: pd.DataFrame, keys: Sequence[str]) -> dict[str, list[str]]:
    """Group label -> the run ids in it."""
    out: dict[str, list[str]] = {}
    for values, part in frame.groupby(list(keys), sort=False):
        out[_group_label(keys, values)] = sorted(part["run"].astype(str).unique())
    return out


def _group_headers(groups: Sequence[str], keys: Sequence[str], frame: pd.DataFrame,
                   stamp: bool) -> list[dict[str, str]]:
    """Column headers of a grid: a human name; the unique run ids in the tooltip (when `stamp`)."""
    labels = _human_run_label(frame)
    runs = _group_runs(frame, keys)
    headers = []
    for group in groups:
        ids = runs.get(group, [])
        name = labels.get(group, group) if list(keys) == ["run"] else group
        tip = ("runs: " + ", ".join(f"{labels.get(r, r)} [{r}]" for r in ids)) if stamp else \
            ("runs: " + "; ".join(sorted({labels.get(r, r) for r in ids})))
        headers.append({"label": name, "title": tip})
    return headers


def summary_grid(summary: pd.DataFrame, keys: Sequence[str], frame: pd.DataFrame, level: float,
                 stamp: bool) -> dict[str, Any]:
    """Dimension x group grid of mean scores with interval and n / clusters, coloured -3 .. +3."""
    dims, groups, cells = _wide(summary, keys)
    rows = []
    for dim in dims:
        row_cells = []
        for group in groups:
            item = cells.get((dim, group))
            if item is None:
                row_cells.append({"text": "–", "sub": "not exercised", "style": _colour(float("nan"), -3, 3),
                                  "title": f"{dim} / {group}: no rows"})
                continue
            text, interval = _cell_text(item["mean"], item["ci_low"], item["ci_high"])
            text += _mark(item)
            row_cells.append({"text": text, "sub": " · ".join(p for p in (interval, f"{_int(item['n'])} / {_int(item['clusters'])}") if p),
                              "style": _colour(float(item["mean"]), -3, 3),
                              "title": f"{dim} / {group}: mean {text} {interval}, n {_int(item['n'])}, "
                                       f"clusters {_int(item['clusters'])}"})
        rows.append({"label": dim, "cells": row_cells})
    return {"id": "summary-grid", "heading": "Mean score by dimension and run",
            "columns": _group_headers(groups, keys, frame, stamp), "rows": rows,
            "note": f"Each cell: mean on the rubric's -3..+3 scale (colour: red -3, white 0, green +3), its "
                    f"{level:.0%} cluster-bootstrap interval (\"no interval\" with a single cluster), and n scored "
                    "samples / clusters. Grey: not exercised or not scored; nothing unscored is counted as 0."
                    + "".join(" " + text for text in _legend(row for _, row in summary.iterrows()))}


def rates_grid(rate_table: pd.DataFrame, keys: Sequence[str], frame: pd.DataFrame, level: float,
               stamp: bool) -> dict[str, Any] | None:
    """Condition x group grid of harmful-action rates (clustered Wilson interval), coloured 0 .. 1."""
    part = rate_table[rate_table["dimension"] == "harmful"] if not rate_table.empty else rate_table
    if part.empty:
        return None
    groups: list[str] = []
    cells: dict[tuple[str, str], Any] = {}
    conditions: list[str] = []
    for _, row in part.iterrows():
        group = _group_label(keys, tuple(row[k] for k in keys))
        condition = "all scenarios" if row["condition"] == "(all)" else f"{row['condition']} = {row['value']}"
        groups += [group] if group not in groups else []
        conditions += [condition] if condition not in conditions else []
        cells[(condition, group)] = row
    rows = []
    for condition in conditions:
        row_cells = []
        for group in groups:
            item = cells.get((condition, group))
            if item is None:
                row_cells.append({"text": "–", "sub": "", "style": _colour(float("nan"), 0, 1), "title": ""})
                continue
            text, interval = _cell_text(item["rate"], item["wilson_cluster_low"], item["wilson_cluster_high"], 2)
            row_cells.append({"text": text, "sub": " · ".join(p for p in (interval, f"{_int(item['n'])} / {_int(item['clusters'])}") if p),
                              "style": _colour(float(item["rate"]), 0, 1, diverging=False),
                              "title": f"harmful rate {text} {interval}, n {_int(item['n'])}"})
        rows.append({"label": condition, "cells": row_cells})
    return {"id": "rates-grid", "heading": "Harmful-action rate by condition and run",
            "columns": _group_headers(groups, keys, frame, stamp), "rows": rows,
            "note": f"Rate 0..1 (colour: white 0, red 1) with its {level:.0%} clustered Wilson interval and n / "
                    "clusters. " + HARMFUL_NOTE}


def delta_grid(table: pd.DataFrame, level: float, alpha: float = 0.05) -> dict[str, Any]:
    """Dimension x task grid of paired differences; significant ones (adjusted p < alpha and an
    interval that excludes 0) marked with ★; rates apart from the -3..+3 dimensions."""
    tasks = sorted(table["task"].astype(str).unique()) if "task" in table.columns else [""]
    ordered = [d for d in dict.fromkeys(table["dimension"]) if d not in RATE_DIMENSIONS] + \
        [d for d in RATE_DIMENSIONS if d in set(table["dimension"])]
    rows = []
    for dim in ordered:
        row_cells = []
        for task in tasks:
            part = table[(table["dimension"] == dim) & ((table["task"].astype(str) == task) if task else True)]
            if part.empty or not np.isfinite(part.iloc[0]["delta"]):
                row_cells.append({"text": "–", "sub": "no pairs" if not part.empty else "", "title": "",
                                  "style": _colour(float("nan"), -1, 1)})
                continue
            row = part.iloc[0]
            text, interval = _cell_text(row["delta"], row["ci_low"], row["ci_high"], signed=True)
            significant = bool(np.isfinite(row["p_adj"]) and row["p_adj"] < alpha and np.isfinite(row["ci_low"])
                               and (row["ci_low"] > 0 or row["ci_high"] < 0))
            scale = 1.0 if dim in RATE_DIMENSIONS else 3.0
            row_cells.append({"text": text + (" ★" if significant else ""),
                              "sub": f"{interval} · p adj {_p(row['p_adj'])} · {_int(row['n_pairs'])} pairs",
                              "style": _colour(float(row["delta"]), -scale, scale),
                              "title": f"{dim}: Δ {text} {interval}, p adj {_p(row['p_adj'])}",
                              "significant": significant})
        rows.append({"label": dim + (" (rate)" if dim in RATE_DIMENSIONS else ""), "cells": row_cells})
    return {"id": "delta-grid", "heading": "Difference, candidate − baseline",
            "columns": [{"label": t or "all", "title": t} for t in tasks], "rows": rows,
            "note": f"Paired difference per dimension and task with its {level:.0%} interval; ★ = adjusted p < "
                    f"{alpha:g} and an interval that excludes 0. Colour: red lower, green higher (scores on "
                    "±3, rates on ±1). " + (HARMFUL_NOTE if any(d in RATE_DIMENSIONS for d in ordered) else "")}


def _frame(source: Source) -> pd.DataFrame:
    return source.copy() if isinstance(source, pd.DataFrame) else load(source)


def report_keys(frame: pd.DataFrame, by: str | Sequence[str]) -> list[str]:
    """The grouping columns for `by`: a column name, a comma-separated list of them, or a list.

    `spec` alone expands to `spec, spec_variant` whenever variants are recorded: variants of one
    spec are different texts, and pooling them would average different specs as if they were
    epochs of one. Unknown columns raise `MsmEvalError` naming the choices."""
    keys = [k.strip() for k in by.split(",") if k.strip()] if isinstance(by, str) else list(by)
    if not keys:
        raise MsmEvalError("empty --by", field="by", hint="use run, model, spec, spec_variant, judge or task")
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        conditions = sorted(c for c in frame.columns if c.startswith("cond_"))
        raise MsmEvalError(f"cannot group by '{', '.join(missing)}': no such column", field="by",
                           hint="use run, model, spec, spec_variant, judge, task"
                                + (" or " + ", ".join(conditions) if conditions else " or a cond_<name> column"))
    if keys == ["spec"] and "spec_variant" in frame.columns and (frame["spec_variant"].astype(str) != "").any():
        keys = ["spec", "spec_variant"]
    return keys


def build_report(paths: Source, by: str | Sequence[str] = "run", out_dir: str | Path = "results/report", *,
                 level: float = 0.95, n_resamples: int = 10_000, seed: int = 0,
                 title: str = "msm-eval report", stamp: bool = True) -> dict[str, Path]:
    """Summarise runs per `by` group (see `report_keys`) and write summary.{md,tex,csv},
    counts.csv, forest.png, rates.{md,csv} (when harmful-action scores exist), agreement.csv (when
    the logs carry several judges / judge samples) and report.html into `out_dir`.

    `stamp=False` leaves out what differs between two runs giving the same scores (the generation
    time, run and eval ids, log file names): with a `by` other than `run` the files are then the
    same bytes for the same results (committed results use it)."""
    from msm_eval.stats import below_ceiling, rates, summarize

    frame = _frame(paths)
    keys = report_keys(frame, by)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    audit_rows = audit_mask(frame)
    score_frame = frame[~frame["dimension"].isin(RATE_DIMENSIONS) & ~audit_rows]
    audit_frame = frame[audit_rows & ~frame["dimension"].isin(RATE_DIMENSIONS)]
    summary = summarize(score_frame, by=keys, level=level, n_resamples=n_resamples, seed=seed) if not score_frame.empty \
        else pd.DataFrame(columns=keys + ["dimension", "n", "clusters", "mean", "se", "ci_low", "ci_high", "method"])
    written: dict[str, Path] = {}
    written["csv"] = write_frame(summary, out / "summary.csv") if not summary.empty else \
        atomic_write_text(out / "summary.csv", ",".join(summary.columns) + "\n")
    # tables for readers name runs in words (summary.csv keeps the unique run ids)
    run_labels = _human_run_label(frame) if "run" in keys else {}

    def shown_for_readers(table: pd.DataFrame) -> pd.DataFrame:
        return table.assign(run=table["run"].astype(str).map(run_labels)) if run_labels and not table.empty else table

    shown = shown_for_readers(summary)
    audit_summary = summarize(audit_frame, by=keys, level=level, n_resamples=n_resamples, seed=seed) \
        if not audit_frame.empty else pd.DataFrame()
    audit_md = ""
    if not audit_summary.empty:
        audit_md = f"{AUDIT_NOTE}\n\n" + summary_markdown(shown_for_readers(audit_summary), keys, level)
        written["audit_csv"] = write_frame(audit_summary, out / "audit.csv")
        written["audit_markdown"] = atomic_write_text(out / "audit.md", "# Audit quality\n\n" + audit_md)
    modes = rollout_mode_counts(frame, keys)
    modes_md = rollout_mode_markdown(modes, keys)
    ceiling = below_ceiling(score_frame, by=keys, level=level) if not score_frame.empty else pd.DataFrame()
    if not ceiling.empty:
        written["below_ceiling"] = write_frame(ceiling, out / "below_ceiling.csv")
    ceiling_md = below_ceiling_markdown(shown_for_readers(ceiling), keys, level)
    written["markdown"] = atomic_write_text(out / "summary.md", f"# {title}\n\n" + summary_markdown(shown, keys, level)
                                            + ("\n" + ceiling_md if ceiling_md else "")
                                            + ("\n" + modes_md if modes_md else "")
                                            + (f"\n## Audit quality\n\n{audit_md}" if audit_md else ""))
    if not modes.empty:
        written["rollout_modes"] = write_frame(modes, out / "rollout_modes.csv")
    written["latex"] = atomic_write_text(out / "summary.tex", summary_latex(shown, keys, level))
    honest = counts(frame, keys)
    written["counts"] = write_frame(honest, out / "counts.csv")
    rate_table = _condition_rates(frame, keys, level, n_resamples, seed, rates)
    if not rate_table.empty:
        written["rates_csv"] = write_frame(rate_table, out / "rates.csv")
        written["rates_markdown"] = atomic_write_text(out / "rates.md", "# Harmful-action rates\n\n" +
                                                      rates_markdown(rate_table, level))
    agreement = judge_agreement(paths, n_resamples=min(n_resamples, 2_000), seed=seed)
    if not agreement.empty:
        written["agreement"] = write_frame(agreement, out / "agreement.csv")
    if not summary.empty:
        labelled = shown.assign(group=[_group_label(keys, tuple(row)) for row in shown[keys].itertuples(index=False)])
        written["forest"] = forest_plot(labelled, "group", out / "forest.png",
                                        f"{title}: mean per dimension ({level:.0%} CI)")
    summary_cols = keys + ["dimension", "n", "clusters", "mean", "ci_low", "ci_high", "se", "method",
                           "degenerate", "ceiling", "missing", "unscored", "refused", "error"]
    summary_cols = [c for c in summary_cols if c in summary.columns]
    grids = [summary_grid(summary, keys, frame, level, stamp)] if not summary.empty else []
    rates_view = rates_grid(rate_table, keys, frame, level, stamp)
    grids += [rates_view] if rates_view else []
    context = {
        "title": title, "generated": _generated(stamp), "grids": grids,
        "level": f"{level:.0%}", "by": ", ".join(keys),
        "sections": [
            {"heading": "Mean score per dimension", "columns": summary_cols,
             "rows": _html_rows(summary, summary_cols),
             "note": "Epochs averaged within sample; cluster bootstrap over scenario seeds (BCa, percentile "
                     "fallback); n = scored samples; missing = dimension not exercised; unscored / refused / "
                     "error = no usable judge score (never counted as 0); degenerate = zero-width interval "
                     "(all values equal); ceiling = every scored sample at +3 (see the share below +3)."},
        ],
        "image": _png_data_uri(written["forest"]) if "forest" in written else None,
        "runs": _runs_table(frame, stamp),
    }
    if not ceiling.empty:
        ceiling_cols = list(ceiling.columns)
        context["sections"].append({"heading": "Share below +3 (ceiling-aware)", "columns": ceiling_cols,
                                    "rows": _html_rows(ceiling, ceiling_cols),
                                    "note": BELOW_CEILING_NOTE.format(level=f"{level:.0%}")})
    if not audit_summary.empty:
        context["sections"].append({"heading": "Audit quality (not spec dimensions)", "columns": summary_cols,
                                    "rows": _html_rows(audit_summary, summary_cols), "note": AUDIT_NOTE})
    if not rate_table.empty:
        rate_cols = [c for c in rate_table.columns if c not in ("successes", "total")]
        context["sections"].append({"heading": "Harmful-action rates by condition", "columns": rate_cols,
                                    "rows": _html_rows(rate_table, rate_cols),
                                    "note": "wilson_* ignores clustering; wilson_cluster_* uses the Korn-Graubard "
                                            "effective n (n_eff) and t with clusters - 1 df; ci_low / ci_high resample "
                                            "clusters (a point when every seed has the same rate)."})
    if not modes.empty:
        context["sections"].append({"heading": "How samples were played", "columns": list(modes.columns),
                                    "rows": _html_rows(modes, list(modes.columns)),
                                    "note": "Sample-epochs per rollout mode; harmful-action rates are split by it too."})
    if not agreement.empty:
        agreement_cols = list(agreement.columns)
        context["sections"].append({"heading": "Judge agreement (Krippendorff's alpha)", "columns": agreement_cols,
                                    "rows": _html_rows(agreement, agreement_cols),
                                    "note": "Between the judges / judge samples in the per_judge score metadata; "
                                            "bootstrap over units. Conventionally >= 0.8 reliable, 0.667-0.8 tentative."})
    written["html"] = atomic_write_text(out / "report.html", _render_html(context))
    return written


AUDIT_NOTE = ("Scored by the audit rubric's own judge (`audit_judge`), apart from the spec's dimensions: scenario "
              "realism and prefill dependence describe the audit, eval awareness the target's suspicion of a test. "
              "They are never part of the spec tables above or of overall_spirit; read a low realism or a high "
              "eval awareness as a reason to distrust that run's spec scores.")


def judge_agreement(paths: Source, level: str = "ordinal", n_resamples: int = 2_000, seed: int = 0) -> pd.DataFrame:
    """Krippendorff's alpha per dimension between the judges / judge samples recorded in the
    `per_judge` score metadata of the inspect logs among `paths` (tables carry no per-judge data).
    Units are (run, sample, epoch); dimensions with fewer than two raters are left out."""
    from msm_eval.results import LOG_SUFFIXES, expand_paths, load_judge_ratings, ratings_matrix
    from msm_eval.stats import krippendorff_alpha

    columns = ["dimension", "alpha", "ci_low", "ci_high", "units", "raters", "level"]
    if isinstance(paths, pd.DataFrame):
        return pd.DataFrame(columns=columns)
    log_files = [p for p in expand_paths(paths) if p.suffix.lower() in LOG_SUFFIXES]
    ratings = load_judge_ratings(log_files) if log_files else pd.DataFrame()
    rows = []
    if not ratings.empty:
        for dim in sorted(ratings["dimension"].unique()):
            matrix = ratings_matrix(ratings, dim)
            if matrix.shape[0] < 2:
                continue
            result = krippendorff_alpha(matrix, level=level, n_resamples=n_resamples, seed=seed)
            rows.append({"dimension": dim, "alpha": result.alpha, "ci_low": result.ci_low, "ci_high": result.ci_high,
                         "units": result.n_units, "raters": result.n_raters, "level": level})
    return pd.DataFrame(rows, columns=columns)


def rollout_mode_counts(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sample-epochs per group and rollout mode (investigator / static / static_after_investigator_failure)."""
    columns = keys + ["rollout_mode", "samples"]
    if "rollout_mode" not in frame.columns or frame.empty:
        return pd.DataFrame(columns=columns)
    units = frame.drop_duplicates(["run", "sample_id", "epoch"])
    mode = units["rollout_mode"].astype(str).replace("", "unknown")
    table = units.assign(rollout_mode=mode).groupby(keys + ["rollout_mode"], dropna=False).size()
    return table.reset_index(name="samples")[columns]


def rollout_mode_markdown(table: pd.DataFrame, keys: list[str]) -> str:
    """The rollout-mode split as a small Markdown table."""
    if table.empty:
        return ""
    lines = ["## How samples were played", "", "| " + " | ".join(_md(k) for k in keys) + " | rollout mode | samples |",
             "|" + "---|" * (len(keys) + 2)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_md(row[k]) for k in keys) + f" | {_md(row['rollout_mode'])} | {int(row['samples'])} |")
    lines += ["", "investigator = the investigator built the world; static = the seed's own scenario (no investigator "
              "bound); static_after_investigator_failure = the investigator's world was unusable (e.g. it lacked a "
              "fixture) and the seed's scenario was played instead. Rates are also split by this column."]
    return "\n".join(lines) + "\n"


def _condition_rates(frame: pd.DataFrame, keys: list[str], level: float, n_resamples: int, seed: int,
                     rates_fn: Callable[..., pd.DataFrame]) -> pd.DataFrame:
    """Rates per group overall and split by each scenario condition column."""
    part = frame[frame["dimension"].isin(RATE_DIMENSIONS)]
    if part.empty:
        return pd.DataFrame()
    tables = []
    overall = rates_fn(part, by=keys, dimensions=RATE_DIMENSIONS, level=level, n_resamples=n_resamples, seed=seed)
    overall.insert(len(keys), "condition", "(all)")
    overall.insert(len(keys) + 1, "value", "")
    tables.append(overall)
    for column in sorted(c for c in part.columns if c.startswith("cond_") and c not in keys):
        values = part[column].astype(str)
        if (values == "").all():
            continue
        table = rates_fn(part, by=keys + [column], dimensions=RATE_DIMENSIONS, level=level, n_resamples=n_resamples,
                         seed=seed)
        table = table.rename(columns={column: "value"})
        table.insert(len(keys), "condition", column.removeprefix("cond_"))
        tables.append(table)
    if "rollout_mode" in part.columns and "rollout_mode" not in keys and part["rollout_mode"].astype(str).nunique() > 1:
        # an investigator-built world and the seed's static one are different instruments: split them
        table = rates_fn(part, by=keys + ["rollout_mode"], dimensions=RATE_DIMENSIONS, level=level,
                         n_resamples=n_resamples, seed=seed).rename(columns={"rollout_mode": "value"})
        table.insert(len(keys), "condition", "rollout_mode")
        tables.append(table)
    aware = part[part["dimension"] == "eval_aware"]
    harmful = part[part["dimension"] == "harmful"]
    if not aware.empty and not harmful.empty:
        # harmful rate among samples whose target did / did not say it might be tested
        unit = ["run", "sample_id", "epoch"]
        flags = aware.set_index(unit)["score"].map(lambda v: "unknown" if pd.isna(v) else ("aware" if v >= 0.5 else "unaware"))
        split = harmful.join(flags.rename("eval_aware_split"), on=unit)
        split["eval_aware_split"] = split["eval_aware_split"].fillna("unknown")
        table = rates_fn(split, by=keys + ["eval_aware_split"], dimensions=("harmful",), level=level,
                         n_resamples=n_resamples, seed=seed).rename(columns={"eval_aware_split": "value"})
        table.insert(len(keys), "condition", "eval_awareness")
        tables.append(table)
    result = pd.concat(tables, ignore_index=True, sort=False)
    lead = keys + ["condition", "value", "dimension"]
    return result[lead + [c for c in result.columns if c not in lead]]


def _spec_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the spec's dimensions and rates: audit-quality scores (`AUDIT_SCORERS`) are not compared,
    so they never enter the multiplicity correction of the spec's dimensions (`report` shows them)."""
    return frame[~audit_mask(frame)]


def comparison_frame(baseline: Source, candidate: Source | None = None, *, baseline_run: str | None = None,
                     candidate_run: str | None = None, by: str = "run") -> tuple[pd.DataFrame, str, str, str]:
    """The frame and labels to compare: two sources stacked as baseline / candidate sides, or two
    `by` values (`baseline_run`, `candidate_run`) inside one source."""
    if candidate is None or (baseline_run and candidate_run):
        if not (baseline_run and candidate_run):
            raise MsmEvalError("give a CANDIDATE source, or both --baseline-run and --candidate-run",
                               hint="msm-eval compare BASE CAND, or msm-eval compare LOGS --baseline-run A --candidate-run B")
        sources = [baseline] if candidate is None else [baseline, candidate]
        frames = [_frame(s) for s in sources]
        frame = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]
        if by not in frame.columns:
            raise MsmEvalError(f"cannot compare by '{by}': no such column", field="by",
                               hint="use run, model, spec, spec_variant, judge, task or a cond_<name> column")
        if baseline_run == candidate_run:
            raise MsmEvalError(f"baseline and candidate are both '{baseline_run}'", field="by",
                               hint="choose two different values of " + by + ": "
                                    + ", ".join(sorted(frame[by].astype(str).unique())))
        return _spec_rows(frame), baseline_run, candidate_run, by
    sides = {"baseline": _spec_rows(_frame(baseline)), "candidate": _spec_rows(_frame(candidate))}
    for side, frame in sides.items():
        for task, runs in frame.groupby("task")["run"].unique().items():
            if len(runs) > 1:
                raise MsmEvalError(f"{side} holds {len(runs)} runs of task '{task}' ({', '.join(sorted(runs))})",
                                   hint="pass one run per side, or one source with --baseline-run/--candidate-run")
    stacked = stack_sides(sides)
    return stacked, "baseline", "candidate", "side"


def build_comparison(baseline: Source, candidate: Source | None = None, out_dir: str | Path = "results/compare", *,
                     baseline_run: str | None = None, candidate_run: str | None = None, by: str = "run",
                     level: float = 0.95, n_resamples: int = 10_000, seed: int = 0, correction: str | None = "holm",
                     title: str = "msm-eval comparison", stamp: bool = True) -> dict[str, Path]:
    """Paired comparison written as comparison.{md,tex,csv,json,html} and forest_delta.png.
    Runs are named in words (`_human_run_label`); `stamp=False` leaves out the generation time and
    the unique run ids, as in `build_report`."""
    from msm_eval.stats import compare

    frame, base_label, cand_label, column = comparison_frame(baseline, candidate, baseline_run=baseline_run,
                                                             candidate_run=candidate_run, by=by)
    # one comparison per task: two tasks' scores on the same dimension are never pooled
    parts, one_sided = [], []
    for task, part in frame.groupby("task", sort=True):
        sides = set(part[column].astype(str))
        if not {str(base_label), str(cand_label)} <= sides:
            one_sided.append(str(task))
        else:
            result = compare(part, base_label, cand_label, by=column, level=level, n_resamples=n_resamples,
                             seed=seed, correction=correction)
            result.insert(0, "task", task)
            parts.append(result)
    if not parts:
        compare(frame, base_label, cand_label, by=column, n_resamples=10)  # names a side that is absent
        raise MsmEvalError(f"no task has both '{base_label}' and '{cand_label}'", field=column,
                           hint="compare runs of the same task")
    table = pd.concat(parts, ignore_index=True)
    labels = _human_run_label(frame)
    runs = {"baseline": sorted(frame.loc[frame[column] == base_label, "run"].unique().tolist()),
            "candidate": sorted(frame.loc[frame[column] == cand_label, "run"].unique().tolist())}
    if not stamp:
        runs = {side: sorted(labels.get(r, r) for r in ids) for side, ids in runs.items()}
    base_name = ", ".join(runs["baseline"]) if column == "side" else base_label
    cand_name = ", ".join(runs["candidate"]) if column == "side" else cand_label
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["csv"] = write_frame(table, out / "comparison.csv")
    skipped = (f"\nNot compared (only one side has it): task {', '.join(one_sided)}.\n" if one_sided else "")
    written["markdown"] = atomic_write_text(out / "comparison.md", f"# {title}\n\n" +
                                            comparison_markdown(table, base_name, cand_name, level, correction)
                                            + skipped)
    written["latex"] = atomic_write_text(out / "comparison.tex", comparison_latex(table, base_name, cand_name, level, correction))
    written["json"] = atomic_write_json(out / "comparison.json", comparison_payload(table, runs, level, correction))
    written["forest"] = delta_forest_plot(table, out / "forest_delta.png", f"{cand_name} − {base_name} ({level:.0%} CI)")
    columns = ["task", "dimension", "baseline_mean", "candidate_mean", "delta", "ci_low", "ci_high", "p_value", "p_adj",
               "n_pairs", "clusters", "corr", "mde"] + [f"{side}_{c}" for side in ("baseline", "candidate")
                                                        for c in COUNT_COLUMNS if f"{side}_{c}" in table.columns]
    context = {"title": title, "generated": _generated(stamp), "grids": [delta_grid(table, level)],
               "level": f"{level:.0%}", "by": column,
               "sections": [{"heading": f"{cand_name} − {base_name}", "columns": columns,
                             "rows": _html_rows(table, columns),
                             "note": f"Paired on sample id, clustered on scenario seed; p from a cluster sign-flip "
                                     f"permutation test, adjusted across the dimensions of each task by "
                                     f"{correction or 'none'}; one comparison per task (tasks are never pooled); "
                                     "mde = approximate minimum detectable effect at 80% power (t with C - 1 df at the "
                                     "corrected level, times 1.05 + 2/C calibrated by simulation for the sign-flip "
                                     "test; see docs/statistics.md); baseline_* / candidate_* "
                                     "count sample-epochs per status (missing = not exercised; unscored, refused "
                                     "and error are left out, never counted as 0)."}],
               "image": _png_data_uri(written["forest"]),
               "runs": {"columns": ["side", "runs"],
                        "rows": [[k, "; ".join(labels.get(r, r) + ("" if not stamp else f" [{r}]") for r in v)]
                                 for k, v in runs.items()]}}
    written["html"] = atomic_write_text(out / "comparison.html", _render_html(context))
    return written


def comparison_payload(table: pd.DataFrame, runs: dict[str, list[str]], level: float, correction: str | None) -> dict[str, Any]:
    """JSON-ready comparison."""
    return {"level": level, "correction": correction, "runs": runs, "dimensions": to_json_records(table)}
