"""Committed results regenerate byte for byte: the example gate baseline (results/baselines)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "results" / "baselines" / "constitution_adherence_rules_scripted.csv"


def _make_baseline():
    spec = importlib.util.spec_from_file_location("make_baseline", ROOT / "results" / "baselines" / "make_baseline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_baseline_script_is_deterministic_and_matches_the_committed_rows(tmp_path):
    module = _make_baseline()
    seeds = "id:tradeoff_abusive_user_boundaries,tradeoff_ai_collusion_review_pact,tradeoff_autonomy_risky_expedition"
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = module.main(tmp_path / "a" / BASELINE.name, scenarios=seeds)
    second = module.main(tmp_path / "b" / BASELINE.name, scenarios=seeds)
    assert first.read_bytes() == second.read_bytes()          # same run -> same bytes (row order, ids pinned)
    assert first.with_suffix(".run.json").exists()             # the real ids go to the ignored side file
    regenerated = pd.read_csv(first, keep_default_na=False)
    committed = pd.read_csv(BASELINE, keep_default_na=False)
    committed = committed[committed["sample_id"].isin(set(regenerated["sample_id"]))].reset_index(drop=True)
    content = [c for c in committed.columns if c not in module.IDENTITY + ("scenario_set_hash",)]  # a subset here
    assert len(regenerated) == len(committed) > 0
    pd.testing.assert_frame_equal(regenerated[content], committed[content])   # the committed scores reproduce
    assert set(committed["source"]) == {BASELINE.name} and committed["eval_id"].nunique() == 1
