"""The report's outputs as a reader gets them: LaTeX tables compiled by a real LaTeX engine, and
report.html rendered by a headless browser (CI installs both: see .ci/run)."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from msm_eval.report import TEX_PREAMBLE, comparison_latex, summary_latex
from msm_eval.rubric import load_rubric

DIMS = list(load_rubric("constitution").ids)


def _summary(groups: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for g in range(groups):
        for i, dim in enumerate(DIMS):
            missing_value = (g + i) % 7 == 0
            mean = math.nan if missing_value else float(rng.uniform(-3, 3))
            rows.append({"spec_variant": f"value_augmented_{g}", "task": "constitution_adherence", "dimension": dim,
                         "n": 0 if missing_value else 12, "clusters": 0 if missing_value else 6, "mean": mean,
                         "ci_low": math.nan if i % 5 == 0 else mean - 0.4, "ci_high": math.nan if i % 5 == 0 else mean + 0.4,
                         "scored": 12, "missing": 3, "unscored": 1, "refused": 0, "error": 0})
    return pd.DataFrame(rows)


def _comparison() -> pd.DataFrame:
    rows = []
    for task, dims in (("constitution_adherence", DIMS), ("agentic_misalignment", DIMS[:3] + ["harmful", "verdict", "hard_check"])):
        for i, dim in enumerate(dims):
            rate = dim in ("harmful", "verdict", "hard_check")
            delta = math.nan if i == 1 else (0.1 if rate else -0.75)
            rows.append({"task": task, "dimension": dim, "baseline_mean": 0.2 if rate else -1.5,
                         "candidate_mean": math.nan if i == 1 else (0.3 if rate else -2.25), "delta": delta,
                         "ci_low": math.nan if i in (1, 2) else delta - 0.5, "ci_high": math.nan if i in (1, 2) else delta + 0.5,
                         "p_value": 0.0004 if i == 3 else 0.5, "p_adj": math.nan if i == 1 else 0.0009,
                         "n_pairs": 0 if i == 1 else 10, "clusters": 0 if i == 1 else 5, "corr": 0.4, "mde": 0.3,
                         **{f"{side}_{c}": 1 for side in ("baseline", "candidate")
                            for c in ("scored", "missing", "unscored", "refused", "error")}})
    return pd.DataFrame(rows)


def _pdflatex() -> str:
    engine = shutil.which("pdflatex")
    assert engine, "pdflatex is needed for this test: apt-get install texlive-latex-base texlive-latex-recommended"
    return engine


def test_latex_tables_compile_cleanly_and_fit_the_page(tmp_path: Path) -> None:
    tables = [summary_latex(_summary(8), ["spec_variant", "task"], 0.95),          # 8 groups: wider than a page
              summary_latex(_summary(2), ["spec_variant", "task"], 0.95),
              comparison_latex(_comparison(), "rules − generic", "value_augmented", 0.95, "holm")]
    body = "\n\\clearpage\n".join(tables)
    assert "–" not in body and "−" not in body                      # no raw Unicode dashes for pdflatex
    assert "$--" not in body and "$–" not in body                   # missing values are never in math mode
    doc = tmp_path / "tables.tex"
    doc.write_text("\\documentclass{article}\n" + TEX_PREAMBLE + "\n\\begin{document}\n" + body + "\n\\end{document}\n")
    result = subprocess.run([_pdflatex(), "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    log = (tmp_path / "tables.log").read_text(errors="replace")
    assert result.returncode == 0, log[-3000:]
    assert "Overfull \\hbox" not in log, log                        # every table fits the text width
    assert "Missing $" not in log and "in math mode" not in log and "Warning" not in log, log
    assert (tmp_path / "tables.pdf").stat().st_size > 1000
