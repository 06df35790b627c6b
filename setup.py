"""Build hook: ships the project's top-level data folders inside the wheel.

specs/, rubrics/, scenarios/, probes/ (and validation/ where present) live at the top of the
checkout, where authors edit them. A wheel built from the checkout copies them into
`msm_eval/_data/<folder>/`, which `msm_eval.paths` reads when the package is installed (an editable
install reads the checkout itself). All other metadata is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent

# Keep in step with msm_eval.paths.DATA_FOLDERS (a test checks they agree). A folder that does
# not exist is skipped, so a new data folder is added here with one line.
DATA_FOLDERS = (
    "specs",
    "rubrics",
    "scenarios",
    "probes",
    "validation",
)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class build_py_with_data(build_py):
    """`build_py` that also copies the data folders into `<build_lib>/msm_eval/_data/`."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return      # an editable install reads the folders from the checkout
        target = Path(self.build_lib) / "msm_eval" / "_data"
        if target.exists():
            shutil.rmtree(target)           # no stale files from an earlier build
        for name in DATA_FOLDERS:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, target / name, ignore=_IGNORE)


setup(cmdclass={"build_py": build_py_with_data})
