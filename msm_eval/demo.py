"""`make demo`: the main offline job -- both evaluation tasks on the embedded model, two spec variants.

Everything runs locally on `msm/smollm2` (SmolLM2-135M-Instruct) in every role: the target, and
the judge in `logprob` mode (expected score from the next-token distribution, the mode that works
with a small model); no investigator is bound, so the seeds' static scenarios are played. For each
spec variant (default: `rules` and `value_augmented`, put in the target's system prompt) it runs

- `constitution_adherence` on a few short chat trade-off seeds, and
- `agentic_misalignment` on one cell of an agentic seed (harmful-action classifier + judge),

writes the inspect logs to `results/demo/logs/` (git-ignored; open them with `inspect view`) and
a per-dimension summary computed from those logs to `results/demo/summary.md` / `.csv` / `.json`.
A 135M judge is a smoke-test judge: the numbers show the pipeline works end to end, not how
aligned anything is.

    python -m msm_eval.demo [--variants rules,value_augmented] [--max-tokens 48] [--out results/demo]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msm_eval.paths import RESULTS_DIR

DEFAULT_VARIANTS = ("rules", "value_augmented")
CHAT_SEEDS = ("tradeoff_white_lie_for_user", "tradeoff_persona_are_you_human")
AGENTIC_SAMPLES = ("am_lethal_inaction__explicit-safety_vs_speed-replacement",)
DEFAULT_MAX_TOKENS = 40
JUDGE_MAX_CHARS = 800
MODEL = "msm/smollm2"


@dataclass
class DemoRun:
    """What one demo invocation produced."""

    logs: list[Path] = field(default_factory=list)
    eval_seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)


def run_evals(out_dir: Path, variants: Sequence[str] = DEFAULT_VARIANTS, max_tokens: int = DEFAULT_MAX_TOKENS,
              chat_seeds: Sequence[str] = CHAT_SEEDS, agentic_samples: Sequence[str] = AGENTIC_SAMPLES) -> DemoRun:
    """Run both tasks for every variant on msm/smollm2; returns the log paths and the eval time."""
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model

    from msm_eval.tasks import agentic_misalignment, constitution_adherence

    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    model = get_model(MODEL)
    result = DemoRun()
    started = time.perf_counter()
    for variant in variants:
        common = dict(spec="constitution", spec_variant=variant, spec_in_context=True, judge_mode="logprob",
                      judge_max_chars=JUDGE_MAX_CHARS, max_turns=1)
        jobs = [
            (constitution_adherence(scenarios="id:" + ",".join(chat_seeds), **common), None),
            (agentic_misalignment(scenarios="id:" + ",".join(sorted({s.split("__")[0] for s in agentic_samples})),
                                  **common), list(agentic_samples)),
        ]
        for task, sample_ids in jobs:
            logs = inspect_eval(task, model=model, model_roles={"judge": model}, log_dir=str(log_dir),
                                display="none", max_tokens=max_tokens, sample_id=sample_ids, fail_on_error=False)
            for log in logs:
                if log.status != "success":
                    raise RuntimeError(f"demo eval {log.eval.task} ({variant}) ended with status {log.status}: "
                                       f"{log.error.message if log.error else 'no error recorded'}")
                result.logs.append(Path(log.location))
    result.eval_seconds = time.perf_counter() - started
    return result


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if isinstance(v, int | float) and not math.isnan(v)]


def summarize(log_paths: Sequence[Path]) -> list[dict[str, Any]]:
    """One row per (task, spec variant, scorer, key): mean over scored samples, n scored / not scored."""
    from inspect_ai.log import read_eval_log

    rows: list[dict[str, Any]] = []
    for path in log_paths:
        log = read_eval_log(str(path))
        meta = log.eval.metadata or {}
        collected: dict[tuple[str, str], list[float]] = {}
        statuses: dict[str, dict[str, int]] = {}
        for sample in log.samples or []:
            for scorer_name, score in (sample.scores or {}).items():
                status = (score.metadata or {}).get("status", "?")
                statuses.setdefault(scorer_name, {}).setdefault(status, 0)
                statuses[scorer_name][status] += 1
                for key, value in (score.value or {}).items():
                    collected.setdefault((scorer_name, key), []).append(float(value))
        for (scorer_name, key), values in collected.items():
            finite = _finite(values)
            rows.append({"task": log.eval.task, "spec_variant": meta.get("spec_variant"), "scorer": scorer_name,
                         "key": key, "mean": round(sum(finite) / len(finite), 3) if finite else None,
                         "n_scored": len(finite), "n_not_scored": len(values) - len(finite),
                         "statuses": ",".join(f"{k}={v}" for k, v in sorted(statuses[scorer_name].items())),
                         "log": path.name})
    return rows


def write_summary(run: DemoRun, out_dir: Path, variants: Sequence[str], max_tokens: int) -> list[Path]:
    """Write summary.csv / summary.md / summary.json (numbers computed from the logs) into `out_dir`."""
    from msm_eval.fileio import atomic_write_json, atomic_write_text

    columns = ["task", "spec_variant", "scorer", "key", "mean", "n_scored", "n_not_scored", "statuses"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(run.rows)
    csv_path = atomic_write_text(out_dir / "summary.csv", buffer.getvalue())
    lines = [
        "# make demo: summary",
        "",
        f"Target and judge: `{MODEL}` (SmolLM2-135M-Instruct, local CPU). Judge mode: logprob. Static scenarios "
        f"(no investigator). Spec variants in context: {', '.join(variants)}. max_tokens={max_tokens}, one target turn.",
        "A 135M judge is a smoke-test judge: these numbers show that the pipeline runs end to end; they say "
        "nothing reliable about alignment. Means are over scored samples only (NaN is never counted as 0).",
        f"Eval time (model load + all runs, excluding installation): {run.eval_seconds:.0f} s on the machine "
        "that wrote this file.",
        "",
        "| task | spec variant | scorer | key | mean | n scored | n not scored |",
        "|---|---|---|---|---|---|---|",
    ]
    unscored = sorted({row["key"] for row in run.rows if row["n_scored"] == 0})
    for row in run.rows:
        if row["n_scored"] == 0:
            continue
        mean = f"{row['mean']:+.2f}"
        lines.append(f"| {row['task']} | {row['spec_variant']} | {row['scorer']} | {row['key']} | {mean} | "
                     f"{row['n_scored']} | {row['n_not_scored']} |")
    if unscored:
        lines += ["", "Rows with no scored sample (dimensions these seeds do not exercise, or no usable "
                      f"judgement) are left out; summary.csv has them all. Such keys: {', '.join(unscored)}."]
    lines += ["", "Inspect logs: `results/demo/logs/` (not committed); browse them with "
              "`inspect view --log-dir results/demo/logs`.", ""]
    md_path = atomic_write_text(out_dir / "summary.md", "\n".join(lines))
    json_path = atomic_write_json(out_dir / "summary.json", {
        "model": MODEL, "judge_mode": "logprob", "variants": list(variants), "max_tokens": max_tokens,
        "eval_seconds": round(run.eval_seconds, 1), "logs": [p.name for p in run.logs], "rows": run.rows})
    return [csv_path, md_path, json_path]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo and print where its outputs are (and the summary table itself)."""
    parser = argparse.ArgumentParser(prog="python -m msm_eval.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="spec variants, comma-separated")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="target reply length cap")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "demo", help="output folder")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    run = run_evals(args.out, variants, args.max_tokens)
    run.rows = summarize(run.logs)
    outputs = write_summary(run, args.out, variants, args.max_tokens)
    # (report / compare of the two variants is added here by the stats/report module)
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    print("wrote: " + ", ".join(str(p) for p in outputs))
    print(json.dumps({"eval_seconds": round(run.eval_seconds, 1), "logs": len(run.logs)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
