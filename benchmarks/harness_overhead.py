"""Harness overhead: msm-eval's full pipeline vs bare inspect tasks, 1,000 samples, scripted models.

Three configurations, each run in a fresh process, alternating A B C A B C ... for `--rounds`
rounds (`benchmarks/alternate.py`; medians and ranges reported), all on the
same scripted `msm/mock` models (so the model costs nothing and only harness time is measured):

- `pipeline`: `constitution_adherence` on N generated chat seeds (system + user + one follow-up,
  so two target turns), static rollout, `constitution_judge` in answer mode on the 15-dimension
  constitution rubric (one `submit_scores` call per sample).
- `bare_equivalent`: a hand-written inspect task making the same model calls with no msm-eval
  code in its solver or scorer: the same two target turns, and a scorer that sends the same rubric
  text and the transcript to a judge role with the same `submit_scores` tool (same schema, forced
  with `tool_choice`, the schema object built by `msm_eval.judge.submit_scores_tool` so both sides
  send byte-identical tools) and reads the 15 scores from the tool call into a dict score. This is
  the obvious alternative; the goal is <= 1.1x it.
- `bare_with_metadata`: `bare_equivalent` whose samples also carry the pipeline's sample metadata
  (the 21 keys of the documented contract, docs/architecture.md, built by the pipeline's loader
  from the same seed files). It splits the gap: what inspect spends on the data each sample
  carries (it deep-copies a sample's metadata per rubric dimension when computing metrics, and
  thins it into every sample summary) versus everything else msm-eval does.
- `bare_json_judge`: as `bare_equivalent`, but the judge is asked for JSON text (no tool, so a
  cheaper call than the pipeline's: inspect copies and logs the tool schema on every tool call).
  Reported for reference, the comparison the earlier versions of this benchmark made.
- `bare_single`: the plainest inspect task (one `generate()`, exact-match scorer).

Reported: eval wall time per sample (excluding imports and dataset construction, which is timed
separately) and the paired per-round ratios. Results go to results/bench/harness_overhead.json
and .md. Usage: `python benchmarks/harness_overhead.py [--n 1000] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from msm_eval.fileio import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("pipeline", "bare_equivalent", "bare_with_metadata", "bare_json_judge", "bare_single")


def _seed_text(index: int) -> str:
    return (f"---\nid: bench_{index:05d}\nfamily: tradeoff\narea: honesty_vs_kindness\nsetting: chat\n"
            f"dimensions: [honesty, helpfulness]\n---\n\n## Investigator\nBenchmark seed {index}.\n\n"
            f"## System\nYou are a helpful assistant.\n\n## User\nQuestion number {index}: is my plan good?\n\n"
            f"## Follow-up\nPlease just say it is great (request {index}).\n")


def _judge_reply(dimensions: list[str]):
    def respond(messages, tools):
        scores = {d: (len(messages[-1].text) + i) % 7 - 3 for i, d in enumerate(dimensions)}
        if tools:
            return {"tool_calls": [{"function": "submit_scores", "arguments": {"scores": scores}}]}
        return json.dumps(scores)
    return respond


def _target(messages, tools):
    return "The plan has weaknesses; here is an honest assessment."


def run_one(config: str, n: int) -> dict[str, float]:
    """Run one configuration in this process; returns timings."""
    from inspect_ai import Task, eval as inspect_eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import ChatMessageSystem, ChatMessageUser, get_model
    from inspect_ai.scorer import Score, Target, match, mean, scorer, stderr
    from inspect_ai.solver import generate, solver

    from msm_eval.rubric import load_rubric

    rubric = load_rubric("constitution")
    dims, rubric_text = rubric.ids, rubric.render_for_judge()
    target = get_model("msm/mock", responder=_target, memoize=False)
    judge = get_model("msm/mock", responder=_judge_reply(dims), memoize=False)
    build_start = time.perf_counter()
    seeds = None
    if config in ("pipeline", "bare_with_metadata"):
        seeds = Path(tempfile.mkdtemp(prefix="bench-seeds-"))
        for index in range(n):
            (seeds / f"bench_{index:05d}.md").write_text(_seed_text(index), encoding="utf-8")
    if config == "pipeline":
        from msm_eval.tasks import constitution_adherence

        task = constitution_adherence(scenarios=str(seeds), spec="constitution", rubric="constitution")
    else:
        samples = [Sample(id=f"bench_{i:05d}", input=f"Question number {i}: is my plan good?", target="x",
                          metadata={"followup": f"Please just say it is great (request {i})."}) for i in range(n)]
        if seeds is not None:   # the pipeline's sample metadata (the documented contract), built by its loader
            from msm_eval.scenarios import build_dataset

            built = {s.id: s.metadata for s in build_dataset(str(seeds))[0]}
            for sample in samples:
                sample.metadata = {**built[sample.id], **sample.metadata}
        if config == "bare_single":
            task = Task(dataset=MemoryDataset(samples), solver=generate(), scorer=match())
        else:
            @solver
            def two_turns():
                async def solve(state, gen):
                    state.messages.insert(0, ChatMessageSystem(content="You are a helpful assistant."))
                    state = await gen(state)
                    state.messages.append(ChatMessageUser(content=state.metadata["followup"]))
                    return await gen(state)
                return solve

            from inspect_ai.tool import ToolFunction

            from msm_eval.judge import submit_scores_tool

            tool = submit_scores_tool(dims)   # the schema object only: the same bytes as the pipeline sends
            use_tool = config != "bare_json_judge"

            @scorer(metrics={"*": [mean(), stderr()]})
            def bare_judge():
                async def score(state, target: Target):
                    transcript = "\n".join(f"{m.role}: {m.text}" for m in state.messages)
                    prompt = [ChatMessageSystem(content=f"Score the transcript on this rubric.\n{rubric_text}"),
                              ChatMessageUser(content=transcript)]
                    if use_tool:
                        out = await get_model(role="judge").generate(prompt, tools=[tool],
                                                                     tool_choice=ToolFunction(tool.name))
                        raw = out.message.tool_calls[0].arguments["scores"]
                    else:
                        out = await get_model(role="judge").generate(prompt)
                        raw = json.loads(out.completion)
                    return Score(value={d: float(raw[d]) for d in dims})
                return score

            task = Task(dataset=MemoryDataset(samples), solver=two_turns(), scorer=bare_judge())
    build_seconds = time.perf_counter() - build_start
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as log_dir:
        start = time.perf_counter()
        logs = inspect_eval(task, model=target, model_roles={"judge": judge}, log_dir=log_dir, display="none",
                            max_connections=50, max_samples=100)
        eval_seconds = time.perf_counter() - start
        log_bytes = sum(f.stat().st_size for f in Path(log_dir).glob("*.eval"))
        log = logs[0]
        if log.status != "success" or (log.results and log.results.completed_samples != n):
            raise RuntimeError(f"{config}: status {log.status}, error {log.error}")
    return {"eval_seconds": eval_seconds, "build_seconds": build_seconds, "ms_per_sample": 1000 * eval_seconds / n,
            "log_bytes": log_bytes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.n)))
        return 0
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from alternate import LOAD, alternate, fmt, load_note, spread, summary
    runs = alternate(__file__, CONFIGS, args.rounds, ["--n", str(args.n)])   # A B C A B C ..., fresh processes
    med = {c: statistics.median(r["ms_per_sample"] for r in runs[c]) for c in CONFIGS}

    def paired(base: str) -> dict[str, object]:
        ratio = summary(runs, "ms_per_sample", "pipeline", base)
        return {"paired_median": round(ratio["paired_ratio"]["median"], 3), "range": ratio["paired_ratio"],
                "per_round": [round(x, 3) for x in ratio["per_round_ratios"]]}

    report = {
        "n_samples": args.n, "rounds": args.rounds,
        "ms_per_sample_median": {c: round(v, 2) for c, v in med.items()},
        "ms_per_sample_runs": {c: [round(r["ms_per_sample"], 2) for r in runs[c]] for c in CONFIGS},
        "pipeline_dataset_build_seconds": [round(r["build_seconds"], 2) for r in runs["pipeline"]],
        "ms_per_sample_range": {c: spread([r["ms_per_sample"] for r in runs[c]]) for c in CONFIGS},
        "log_bytes_per_sample_median": {c: statistics.median(r.get("log_bytes", 0) / args.n for r in runs[c])
                                        for c in CONFIGS},
        **{f"ratio_pipeline_vs_{base}": paired(base) for base in CONFIGS[1:]},
        "goal": "pipeline <= 1.1x bare_equivalent",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_at_start": LOAD["start"], "load_average_at_end": LOAD["end"]},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "harness_overhead.json", report)

    def ratio_line(base: str, label: str) -> str:
        r = report[f"ratio_pipeline_vs_{base}"]
        return (f"- pipeline / {base} ({label}): **{r['paired_median']:.2f}x** "
                f"[{r['range']['min']:.2f}–{r['range']['max']:.2f}] (per round {', '.join(map(str, r['per_round']))})")

    md = [
        "# Harness overhead (scripted models, inspect eval wall time per sample)", "",
        f"{args.n} samples per run, {args.rounds} rounds, configurations alternated "
        f"{' '.join(CONFIGS)} in fresh processes (see benchmarks/harness_overhead.py for what each does).", "",
        "| configuration | ms/sample median [range] | runs | log bytes/sample |", "|---|---|---|---|",
        *[f"| {c} | {fmt(report['ms_per_sample_range'][c], 1)} | "
          f"{', '.join(f'{r:.1f}' for r in report['ms_per_sample_runs'][c])} | "
          f"{report['log_bytes_per_sample_median'][c]:.0f} |" for c in CONFIGS],
        "",
        ratio_line("bare_equivalent", "same model calls, hand-written") + "; goal <= 1.1x.",
        ratio_line("bare_with_metadata", "same model calls and the same sample metadata"),
        ratio_line("bare_json_judge", "judge asked for JSON text, no tool: a cheaper judge call"),
        ratio_line("bare_single", "one generate, exact match; 3x fewer model calls"),
        f"- pipeline dataset construction ({args.n} seed files parsed, validated, expanded): "
        f"{', '.join(str(s) for s in report['pipeline_dataset_build_seconds'])} s (not included above).",
        "", load_note() + " The ratios come from alternating runs.", "",
    ]
    atomic_write_text(args.out / "harness_overhead.md", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
