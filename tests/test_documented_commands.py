"""Every shell command in README.md and docs/*.md runs as documented (keyless, on msm/mock).

Commands come from fenced `bash` / `sh` / `shell` / `console` blocks. Hosted model names are
replaced by `msm/mock`, `inspect eval` runs get `INSPECT_EVAL_LIMIT=1` and one epoch so the check
stays quick,
and each document's blocks run in order as bash scripts, in a scratch copy of the repository (a
later command may read what an earlier one wrote). A command that must not run here is listed in `EXCLUDED` with the
reason; a new documented command is run unless it is added there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE_LANGS = {"bash", "sh", "shell", "console"}
HOSTED_MODEL = re.compile(r"\b(?:anthropic|openai|google|mistral|grok|together|vertex|bedrock|azureai|groq)/[\w.:\-]+")
EXCLUDED: dict[str, str] = {
    r"^make (demo|test|install)\b": "builds the venv and runs the whole demo / test suite (minutes); CI runs them",
    r"^export \w+_API_KEY=": "sets provider keys; the commands after it run on msm/mock instead",
    r"^msm-eval pipeline\b": "trains small models end to end (minutes); covered by tests/test_pipeline_*.py",
    r"^msm-eval train (midtrain|aft)\b": "trains a model (minutes); covered by tests/test_train_trainer.py",
    r"^msm-eval train export\s+results/msm_cpu_demo/stages/manual/aft\b":
        "needs a trained run folder from the excluded training commands",
    r"^inspect eval msm_eval/tasks.py@spec_probe --model hf/": "needs the exported model of the excluded training run",
    r"^msm-eval scenarios generate\b.*--axes": "generates seeds with an investigator model (covered by test_scenario_gen.py)",
    r"^msm-eval docs generate\b": "generates a corpus with a generator model (covered by test_decompose / msm data tests)",
    r"^msm-eval docs decompose constitution --decomposer llm\b": "LLM decomposition (covered by tests/test_decompose.py)",
    r"^msm-eval docs stats\b": "reads the corpus of the excluded generation command",
    r"^msm-eval demos generate\b.*--generator": "LLM demonstrations with a filter model (covered by tests/test_demos.py)",
    r"^msm-eval (scenarios|specs) (validate|lint) .*\b(my|new)_(seed|spec)\b": "placeholder file names for the reader's own files",
    r"^msm-eval export logs/accepted-run/": "placeholder for the reader's accepted run",
    r"^msm-eval gate results/baselines/baseline\.csv": "placeholder for the reader's own accepted baseline "
                                                        "(docs/ci-gate.md runs the gate on the shipped one)",
    r"hf/<folder>|RUN_DIR OUT_DIR": "placeholder paths for the reader's own exported model",
    r"^accelerate launch\b|qwen14b": "multi-GPU training of a 14B model",
    r"^make (positive-control|gpu-check)\b": "make rebuilds the venv; the commands they wrap are covered here "
                                            "(gpu_check) or by tests/test_positive_control.py",
    r"models/Qwen2\.5-1\.5B-Instruct": "placeholder folder for a model the reader downloads (GPU path)",
}
ALLOWED_EXIT = {r"^msm-eval gate\b": {0, 1, 2},
                r"^python scripts/gpu_check\.py": {0, 2}}
"""`msm-eval gate`'s exit code is its verdict (0 pass, 1 fail, 2 not comparable); gpu_check exits 2,
having checked nothing, where no GPU is visible (0 where one is and every check passed)."""


def fenced_blocks(path: Path) -> list[list[str]]:
    """The shell code blocks of a Markdown file, each as its logical lines (continuations joined)."""
    blocks: list[list[str]] = []
    lang: str | None = None
    buffer: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            if lang is None:
                lang = stripped[3:].strip().lower() or "text"
                buffer = []
            else:
                if lang in FENCE_LANGS:
                    joined = re.sub(r"\\\n\s*", " ", "\n".join(buffer))
                    lines = [c.strip().removeprefix("$ ").strip() for c in joined.splitlines()]
                    blocks.append([c for c in lines if c and not c.startswith("#")])
                lang = None
            continue
        if lang is not None:
            buffer.append(line)
    return blocks


def fenced_commands(path: Path) -> list[str]:
    """Every logical shell command line of a Markdown file."""
    return [command for block in fenced_blocks(path) for command in block]


def normalise(command: str) -> str:
    """The command as a keyless run here types it (hosted models -> msm/mock, no `.venv/bin/` prefix)."""
    command = re.sub(r"--epochs \d+", "--epochs 1", command.replace(".venv/bin/", ""))
    return HOSTED_MODEL.sub("msm/mock", command)


def excluded_reason(command: str) -> str | None:
    return next((reason for pattern, reason in EXCLUDED.items() if re.search(pattern, command)), None)


def block_script(block: list[str]) -> str:
    """One bash script for a code block: each command checked for its allowed exit codes, `$?` kept
    for the next line (the docs print it), excluded commands skipped."""
    lines = []
    for index, original in enumerate(block):
        command = normalise(original)
        if excluded_reason(command):
            continue
        allowed = next((codes for p, codes in ALLOWED_EXIT.items() if re.search(p, command)), {0})
        codes = " ".join(str(c) for c in sorted(allowed))
        lines.append(f"{command}\n__rc=$?; case \" {codes} \" in *\" $__rc \"*) ;; "
                     f"*) echo \"__FAILED__ line {index}: exit $__rc\" >&2; exit 97;; esac; (exit $__rc)")
    # reaching the end means every command exited with an allowed code (the last may be non-zero)
    return "\n".join(lines) + "\nexit 0\n"


def test_commands_are_found_and_every_exclusion_is_used():
    found = [normalise(c) for doc in DOCS for c in fenced_commands(doc)]
    assert any(c.startswith("inspect eval msm_eval/tasks.py@agentic_misalignment") for c in found)
    unused = [p for p in EXCLUDED if not any(re.search(p, c) for c in found)]
    assert not unused, f"exclusions that match no documented command (remove them): {unused}"


@pytest.mark.parametrize("doc", [d for d in DOCS if fenced_commands(d)], ids=lambda d: d.name)
def test_documented_commands_run(doc, tmp_path):
    work = tmp_path / "repo"
    # `*.egg-info` stays behind: a copy of the editable install's metadata would shadow the installed
    # one, and inspect would then register the tasks without their `msm_eval/` namespace.
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "logs",
                                                               "demo", "msm_cpu_demo", "msm_positive_control",
                                                               "scenario_gen_smollm2", "bench"))
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PYTHONPATH=str(work), PWD=str(work), PATH=bin_dir + os.pathsep + os.environ["PATH"],
               INSPECT_EVAL_LIMIT="1", INSPECT_DISPLAY="none", INSPECT_LOG_DIR=str(work / "logs" / "default"))
    for key in [k for k in env if k.endswith("_API_KEY")]:
        env.pop(key)
    for number, block in enumerate(fenced_blocks(doc)):
        script = block_script(block)
        if not script.strip():
            continue
        result = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        output = result.stdout + result.stderr
        failed = re.search(r"__FAILED__ line (\d+)", output)
        where = f"{doc.name} block {number}" + (f": `{block[int(failed.group(1))]}`" if failed else "")
        assert result.returncode == 0 and "Traceback" not in output, f"{where} failed:\n{output[-3000:]}"
        assert "no such file or folder" not in output, f"{where} names a missing file:\n{output[-2000:]}"
