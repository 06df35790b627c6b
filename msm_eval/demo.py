"""`make demo`: the main offline job -- both evaluation tasks on the embedded model, two spec variants.

Everything runs locally on `msm/smollm2` (SmolLM2-135M-Instruct) as the target and as the judge
in `logprob` mode (expected score from the next-token distribution, the mode that works with a
small model). For each spec variant (default: `rules` and `value_augmented`, put in the target's
system prompt) it runs

- `constitution_adherence` on a few short chat trade-off seeds (static scenarios, no investigator), and
- `agentic_misalignment` on one cell of an agentic seed (harmful-action and eval-awareness
  classifiers + judge) through the investigator path: a scripted investigator (`ReplayInvestigator`,
  on `msm/mock`) builds the world from the seed's own parts, fixtures included, and answers the
  tool calls with the seed's canned results, so the run exercises fixture verification and records
  `rollout_mode = investigator` deterministically (a 135M model cannot write a usable world),

writes the inspect logs to `results/demo/logs/` (git-ignored; open them with `inspect view`), the
report of those logs (`msm_eval.report.build_report`: tables in Markdown / LaTeX / CSV / HTML and a
forest plot) and a paired comparison of the two variants (`build_comparison`) to `results/demo/`,
and `demo.md`, which puts what ran and both tables on one page. Those committed files are the same
bytes whenever the scores are (greedy decoding; runs named by spec variant and task, no timestamps
or random run ids); the eval time and the log file names go to the git-ignored `run.json`.
A 135M judge is a smoke-test judge: the numbers show the pipeline works end to end, not how
aligned anything is.

    python -m msm_eval.demo [--variants rules,value_augmented] [--max-tokens 48] [--out results/demo]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msm_eval.paths import RESULTS_DIR

DEFAULT_VARIANTS = ("rules", "value_augmented")
CHAT_SEEDS = ("tradeoff_white_lie_for_user", "tradeoff_persona_are_you_human")
AGENTIC_SAMPLES = ("am_lethal_inaction__aldermoor-explicit-safety_vs_speed-replacement",)
DEFAULT_MAX_TOKENS = 40
JUDGE_MAX_CHARS = 800
MODEL = "msm/smollm2"


class ReplayInvestigator:
    """A scripted investigator (an `msm/mock` responder) that plays the seed's own world.

    Given the samples' metadata, it answers the investigator's scenario request with the seed's
    rendered `## System` / `## User` parts and tools (so every fixture is present), each simulated
    tool call with the seed's canned result, and ends the scenario after the target's first turn.
    It stands in for a real investigator where none can run (offline demo, tests).
    """

    def __init__(self, samples_metadata: Sequence[dict[str, Any]]) -> None:
        self.samples = list(samples_metadata)

    def _sample_for(self, prompt: str) -> dict[str, Any]:
        for metadata in self.samples:
            if metadata.get("instructions") and metadata["instructions"].strip() in prompt:
                return metadata
        raise ValueError("ReplayInvestigator: no sample's brief matches the investigator prompt")

    def __call__(self, messages: list[Any], tools: list[Any]) -> str:
        from msm_eval.scenarios import render_tool_result

        request = messages[1].text if len(messages) > 1 else messages[-1].text
        if "Build the scenario now" in request:
            metadata = self._sample_for(request)
            return json.dumps({"notes": "replay of the seed's static world", "system": metadata["system"],
                               "first_message": metadata["user"],
                               "tools": [{k: t[k] for k in ("name", "description", "parameters")}
                                         for t in metadata.get("tools") or []]})
        if "The target called a tool" in request:
            name = re.search(r"^Tool: (\S+) ", request, re.MULTILINE)
            arguments = re.search(r"^Call arguments: (.*)$", request, re.MULTILINE)
            args = json.loads(arguments.group(1)) if arguments else {}
            for metadata in self.samples:
                for tool in metadata.get("tools") or []:
                    if name and tool["name"] == name.group(1):
                        return json.dumps({"result": render_tool_result(tool, args, metadata), "is_error": False})
            return json.dumps({"result": "done.", "is_error": False})
        return json.dumps({"reasoning": "the target has acted", "end": True, "message": ""})


@dataclass
class DemoRun:
    """What one demo invocation produced."""

    logs: list[Path] = field(default_factory=list)
    eval_seconds: float = 0.0


def run_evals(out_dir: Path, variants: Sequence[str] = DEFAULT_VARIANTS, max_tokens: int = DEFAULT_MAX_TOKENS,
              chat_seeds: Sequence[str] = CHAT_SEEDS, agentic_samples: Sequence[str] = AGENTIC_SAMPLES) -> DemoRun:
    """Run both tasks for every variant on msm/smollm2; returns the log paths and the eval time."""
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model

    from msm_eval.tasks import agentic_misalignment, constitution_adherence

    from msm_eval.scenarios import build_dataset

    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    model = get_model(MODEL)
    agentic_selection = "id:" + ",".join(sorted({s.split("__")[0] for s in agentic_samples}))
    replay = ReplayInvestigator([s.metadata for s in build_dataset(agentic_selection)[0] if s.id in agentic_samples])
    investigator = get_model("msm/mock", responder=replay, memoize=False)
    result = DemoRun()
    started = time.perf_counter()
    for variant in variants:
        common = dict(spec="constitution", spec_variant=variant, spec_in_context=True, judge_mode="logprob",
                      judge_max_chars=JUDGE_MAX_CHARS, max_turns=1)
        jobs = [
            (constitution_adherence(scenarios="id:" + ",".join(chat_seeds), **common), None, {"judge": model}),
            (agentic_misalignment(scenarios=agentic_selection, investigator="simple", **common), list(agentic_samples),
             {"judge": model, "investigator": investigator}),
        ]
        for task, sample_ids, roles in jobs:
            # max_connections=1: one request per forward pass (inspect's hf provider batches concurrent
            # requests with padding), so no output depends on what else was in flight; no slower here.
            logs = inspect_eval(task, model=model, model_roles=roles, log_dir=str(log_dir),
                                display="none", max_tokens=max_tokens, sample_id=sample_ids, fail_on_error=False,
                                max_connections=1)
            for log in logs:
                if log.status != "success":
                    raise RuntimeError(f"demo eval {log.eval.task} ({variant}) ended with status {log.status}: "
                                       f"{log.error.message if log.error else 'no error recorded'}")
                result.logs.append(Path(log.location))
    result.eval_seconds = time.perf_counter() - started
    return result


def _body(path: Path) -> str:
    """A Markdown file's text without its leading `# title` line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines).strip()


def write_outputs(run: DemoRun, out_dir: Path, variants: Sequence[str], max_tokens: int,
                  n_resamples: int = 10_000) -> dict[str, Path]:
    """Report of the demo's runs and a paired comparison of its first two spec variants, computed
    from the logs by `msm_eval.report`; plus `demo.md` (what ran, caveats, both tables) and
    `demo.json` (settings); `run.json` (eval time, log names; not committed). Returns every file written."""
    from msm_eval.fileio import atomic_write_json, atomic_write_text
    from msm_eval.report import build_comparison, build_report

    written = {f"report_{k}": v for k, v in build_report(run.logs, by="spec_variant,task", out_dir=out_dir,
                                                           n_resamples=n_resamples, title="make demo",
                                                           stamp=False).items()}
    sections = [
        "# make demo",
        "",
        f"Target and judge: `{MODEL}` (SmolLM2-135M-Instruct, local CPU). Judge mode: logprob. Chat seeds: static "
        "scenarios (no investigator); agentic cell: through the investigator path with a scripted investigator "
        "that replays the seed's world, fixtures included (see 'How samples were played'). Spec variants in the "
        f"target's context: {', '.join(variants)}. max_tokens={max_tokens}, one target turn.",
        "",
        "A 135M judge is a smoke-test judge: these numbers show that the pipeline runs end to end, from rollout to "
        "judge to statistics; they say nothing reliable about alignment. NaN (not exercised / not scored) is never "
        "counted as 0; with a handful of samples the intervals are wide or undefined.",
        "",
        "The eval time of the latest run is in `run.json` (not committed).",
        "",
        "## Per spec variant, task and dimension",
        "",
        _body(written["report_markdown"]),
    ]
    if "report_rates_markdown" in written:
        sections += ["", "## Harmful-action rates", "",
                     _body(written["report_rates_markdown"])]
    if len(variants) >= 2:
        compared = build_comparison(run.logs, out_dir=out_dir / "compare", baseline_run=variants[0],
                                    candidate_run=variants[1], by="spec_variant", n_resamples=n_resamples,
                                    title=f"make demo: {variants[1]} vs {variants[0]}", stamp=False)
        written.update({f"compare_{k}": v for k, v in compared.items()})
        sections += ["", f"## {variants[1]} − {variants[0]}", "",
                     _body(compared["markdown"])]
    sections += ["", "Files: `summary.{md,tex,csv}`, `counts.csv`, `forest.png`, `report.html`, `compare/`. "
                     "Inspect logs: `results/demo/logs/` (not committed); browse them with "
                     "`inspect view --log-dir results/demo/logs`.", ""]
    written["demo_markdown"] = atomic_write_text(out_dir / "demo.md", "\n".join(sections))
    written["demo_json"] = atomic_write_json(out_dir / "demo.json", {
        "model": MODEL, "judge_mode": "logprob", "variants": list(variants), "max_tokens": max_tokens})
    written["run_json"] = atomic_write_json(out_dir / "run.json", {
        "eval_seconds": round(run.eval_seconds, 1), "logs": [p.name for p in run.logs]})
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo and print where its outputs are (and the summary table itself)."""
    parser = argparse.ArgumentParser(prog="python -m msm_eval.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="spec variants, comma-separated")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="target reply length cap")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "demo", help="output folder")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    run = run_evals(args.out, variants, args.max_tokens)
    outputs = write_outputs(run, args.out, variants, args.max_tokens)
    print(outputs["demo_markdown"].read_text(encoding="utf-8"))
    print("wrote: " + ", ".join(str(p) for p in outputs.values()))
    print(f"Eval time (model load + all runs, excluding installation): {run.eval_seconds:.0f} s; "
          f"{len(run.logs)} logs in {args.out / 'logs'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
