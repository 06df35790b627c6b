"""Where the project's data lives (specs, rubrics, scenarios, probes, results) and where caches go.

Each data folder (`DATA_FOLDERS`) is looked up in this order, first hit wins:

1. `$MSM_EVAL_DATA/<folder>`: a user folder that overrides the shipped data, folder by folder
   (a `$MSM_EVAL_DATA` holding only `rubrics/` changes the rubrics and nothing else);
2. `<checkout>/<folder>`: the source checkout, when the package runs from one (an editable install,
   or `PYTHONPATH` pointing at a clone); `$MSM_EVAL_ROOT` names the checkout explicitly;
3. `msm_eval/_data/<folder>`: the copy a wheel ships (setup.py puts it there at build time).

Outputs (`RESULTS_DIR`) go to the checkout's `results/` when there is a checkout, else to
`./results` under the current folder, never into the installed package.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGED_DATA_DIR = PACKAGE_DIR / "_data"

# Keep in step with setup.py's DATA_FOLDERS (tests/test_packaging.py checks they agree).
DATA_FOLDERS = ("specs", "rubrics", "scenarios", "probes", "validation")


def _checkout_root() -> Path | None:
    """The source checkout this package runs from, or None for an installed package."""
    explicit = os.environ.get("MSM_EVAL_ROOT")
    if explicit:
        return Path(explicit).expanduser().resolve()
    parent = PACKAGE_DIR.parent
    if (parent / "pyproject.toml").is_file() and (parent / "specs").is_dir():
        return parent
    return None


def data_dir(name: str) -> Path:
    """The folder holding data folder `name` (see the module docstring for the lookup order).

    When no candidate exists the checkout's (or else the packaged) path is returned, so errors
    name the place the data was expected."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}; known: {', '.join(DATA_FOLDERS)}")
    candidates: list[Path] = []
    user = os.environ.get("MSM_EVAL_DATA")
    if user:
        candidates.append(Path(user).expanduser() / name)
    root = _checkout_root()
    if root is not None:
        candidates.append(root / name)
    candidates.append(PACKAGED_DATA_DIR / name)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[-2] if root is not None else candidates[-1]


CHECKOUT_ROOT = _checkout_root()
PROJECT_ROOT = CHECKOUT_ROOT if CHECKOUT_ROOT is not None else Path.cwd()
SPECS_DIR = data_dir("specs")
RUBRICS_DIR = data_dir("rubrics")
SCENARIOS_DIR = data_dir("scenarios")
PROBES_DIR = data_dir("probes")
VALIDATION_DIR = data_dir("validation")
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
