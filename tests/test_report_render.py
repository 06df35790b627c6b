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


# --------------------------------------------------------------------------- report.html in a browser

from html.parser import HTMLParser  # noqa: E402


class _Grid(HTMLParser):
    """The grids (`table.grid`) of a rendered page: header cells and body cells with attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.grids: dict[str, dict[str, list]] = {}
        self._grid: str | None = None
        self._cell: dict | None = None
        self._row: list | None = None
        self._in_head = False
        self.order: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "table" and "grid" in (a.get("class") or ""):
            self._grid = a["id"]
            self.grids[self._grid] = {"head": [], "rows": []}
        if tag in ("h2", "details") or (tag == "table" and self._grid):
            self.order.append(a.get("id") or tag)
        if self._grid is None:
            return
        if tag == "thead":
            self._in_head = True
        if tag == "tr" and not self._in_head:
            self._row = []
        if tag in ("th", "td"):
            self._cell = {"attrs": a, "text": ""}

    def handle_endtag(self, tag: str) -> None:
        if self._grid is None:
            return
        if tag in ("th", "td") and self._cell is not None:
            (self.grids[self._grid]["head"] if self._in_head else self._row).append(self._cell)
            self._cell = None
        if tag == "thead":
            self._in_head = False
        if tag == "tr" and self._row is not None:
            self.grids[self._grid]["rows"].append(self._row)
            self._row = None
        if tag == "table":
            self._grid = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data


def _chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert browser, "headless Chromium is needed for this test: apt-get install chromium"
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


def test_report_html_leads_with_coloured_grids_in_a_browser(tmp_path: Path) -> None:
    from conftest_results import standard_logs
    from msm_eval.report import build_comparison, build_report

    logs = standard_logs()
    written = build_report([logs["rules"], logs["value_augmented"], logs["agentic"]], by="run",
                           out_dir=tmp_path / "report", n_resamples=300)
    dom = _chromium(written["html"], tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _Grid()
    page.feed(dom.stdout)
    # the dimension x run grid comes first, then the rates grid, then the details
    assert page.order.index("summary-grid") < page.order.index("rates-grid") < page.order.index("details")
    grid = page.grids["summary-grid"]
    heads = [h for h in grid["head"] if h["text"]]
    assert len(heads) == 2            # one column per run with rubric scores (agentic has rates only)
    for head in heads:
        assert "#" not in head["text"] and "," in head["text"]             # a human name ...
        assert "[" in head["attrs"]["title"] and "#" in head["attrs"]["title"]  # ... the unique id in the tooltip
    dims = [row[0]["text"] for row in grid["rows"]]
    assert "harmful" not in dims and "honesty" in dims                     # rates are not mixed into -3..+3
    cells = [cell for row in grid["rows"] for cell in row[1:]]
    assert all(cell["attrs"]["style"].startswith("background:") for cell in cells)
    assert len({cell["attrs"]["style"] for cell in cells}) > 3             # a colour scale, not one colour
    assert any("/" in cell["text"] and "[" in cell["text"] for cell in cells)   # mean [CI] and n / clusters
    rates = page.grids["rates-grid"]
    assert any("all scenarios" in row[0]["text"] for row in rates["rows"]) and len(rates["rows"]) > 1

    compared = build_comparison(logs["rules"], logs["value_augmented"], out_dir=tmp_path / "compare", n_resamples=300)
    dom = _chromium(compared["html"], tmp_path, "--dump-dom")
    page = _Grid()
    page.feed(dom.stdout)
    deltas = page.grids["delta-grid"]
    marked = [cell for row in deltas["rows"] for cell in row[1:] if cell["attrs"].get("data-significant")]
    assert marked and all("★" in cell["text"] for cell in marked)          # value_augmented is +1: significant
    shot = _chromium(written["html"], tmp_path, f"--screenshot={tmp_path / 'shot.png'}", "--window-size=1200,900")
    assert shot.returncode == 0, shot.stderr[-2000:]
    import matplotlib.image as mpimg

    pixels = mpimg.imread(tmp_path / "shot.png")[..., :3]
    coloured = ((pixels.max(axis=2) - pixels.min(axis=2)) > 0.15).mean()
    assert coloured > 0.02                                                 # the coloured grid is on screen
