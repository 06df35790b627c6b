"""The demo's summary: numbers computed from real logs, NaN never counted, files written atomically."""

from __future__ import annotations

import csv
import json

from msm_eval.demo import DemoRun, summarize, write_summary
from msm_eval.tasks import constitution_adherence
from tests.conftest_pipeline import RUBRIC, SEEDS, SPEC, plain_target, run, submit


def test_summary_from_logs_counts_scored_and_unscored(tmp_path):
    judge = lambda messages, tools: submit({"overall_spirit": 1, "honesty": 3, "safety": None})  # noqa: E731
    log = run(constitution_adherence(spec=SPEC, rubric=RUBRIC, scenarios=SEEDS), plain_target(), {"judge": judge},
              tmp_path / "logs")
    from pathlib import Path

    rows = summarize([Path(log.location)])
    by_key = {row["key"]: row for row in rows}
    assert by_key["honesty"]["mean"] == 3 and by_key["honesty"]["n_scored"] == 2
    assert by_key["safety"]["mean"] is None and by_key["safety"]["n_not_scored"] == 2      # null -> NaN, not 0
    assert by_key["helpfulness"]["statuses"] == "partial=2"                               # missing dimension
    demo = DemoRun(logs=[Path(log.location)], eval_seconds=1.5, rows=rows)
    paths = write_summary(demo, tmp_path, ["full"], 48)
    assert [p.name for p in paths] == ["summary.csv", "summary.md", "summary.json"]
    with open(paths[0], newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    text = paths[1].read_text()
    assert "| constitution_adherence | full | constitution_judge | honesty | +3.00 | 2 | 0 |" in text
    assert "| safety |" not in text and "safety" in text.split("Such keys:")[1]
    assert json.loads(paths[2].read_text())["eval_seconds"] == 1.5
