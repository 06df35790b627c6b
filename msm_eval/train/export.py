"""Export a finished training run as a plain Hugging Face folder that `--model hf/<dir>` evaluates.

LoRA adapters are merged into the base weights (peft `merge_and_unload`), so the folder loads with
`AutoModelForCausalLM.from_pretrained` and needs no peft. Next to the weights, `msm_manifest.json`
records where the model came from: base model, spec sha256, corpus hashes, configs, git revision
and the stage history (midtrain, then aft). `read_manifest(dir)` gives it back to eval tasks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import atomic_dir
from msm_eval.train.trainer import git_revision, load_trained

MANIFEST_FILE = "msm_manifest.json"


def export_run(run_dir: str | Path, out_dir: str | Path, *, dtype: str = "float32",
               extra: dict[str, Any] | None = None) -> Path:
    """Merge the run's trained weights into its base model and save model + tokenizer + manifest atomically."""
    model, tokenizer, run = load_trained(run_dir, dtype)
    if run.get("lora"):
        model = model.merge_and_unload()
    model.config.use_cache = True
    history = run.get("stage_history", [])
    spec_shas = [h.get("spec_sha256") for h in history if h.get("spec_sha256")]
    manifest = {
        "format": "msm-eval-export/1",
        "base_model": run["base_model"],
        "base_model_path": run["base_model_path"],
        "lora": run.get("lora"),
        "spec_sha256": spec_shas[0] if spec_shas else None,
        "corpus_sha256": {h["stage"]: h.get("data_sha256") for h in history},
        "stage_history": history,
        "git_revision": git_revision(),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")

    target = Path(out_dir)
    atomic_dir(target, write)
    return target


def read_manifest(model_dir: str | Path) -> dict[str, Any] | None:
    """The export manifest of a model folder, or None when the folder was not written by `export_run`."""
    path = Path(model_dir) / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MsmEvalError(f"unreadable manifest ({exc.msg})", path=path, line=exc.lineno,
                           hint="re-export the model") from None


def manifest_summary(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The few manifest fields worth copying into eval metadata (no configs, no long paths)."""
    if not manifest:
        return {}
    return {"base_model": manifest.get("base_model"), "spec_sha256": manifest.get("spec_sha256"),
            "corpus_sha256": manifest.get("corpus_sha256"), "git_revision": manifest.get("git_revision"),
            "stages": [h.get("stage") for h in manifest.get("stage_history", [])]}
