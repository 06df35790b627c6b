"""Where the project's data lives (specs, rubrics, scenarios, results) and where caches go."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("MSM_EVAL_ROOT", Path(__file__).resolve().parent.parent))
SPECS_DIR = PROJECT_ROOT / "specs"
RUBRICS_DIR = PROJECT_ROOT / "rubrics"
SCENARIOS_DIR = PROJECT_ROOT / "scenarios"
RESULTS_DIR = PROJECT_ROOT / "results"
CONFIGS_DIR = PROJECT_ROOT / "configs"
VALIDATION_DIR = PROJECT_ROOT / "validation"


def cache_dir() -> Path:
    """The cache root: `$MSM_EVAL_CACHE`, else `$XDG_CACHE_HOME/msm-eval`, else `~/.cache/msm-eval`."""
    explicit = os.environ.get("MSM_EVAL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "msm-eval"
