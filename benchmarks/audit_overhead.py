"""Auditing-agent overhead per audit turn vs a direct generate loop making the same model calls.

Two configurations, each run in a fresh process, alternating A B A B for `--rounds` rounds, on the
same scripted `msm/mock` models (the models cost nothing, so only harness time is measured):

- `agent`: `msm_eval.auditor.investigation` (mode agent) on N samples. Each audit has T
  investigator turns: turn 1 sets the system message and sends a message, turns 2..T-1 each send
  a message, turn T ends the audit. So one audit turn = one investigator call + one target call,
  plus the agent's work: inspect tool execution, the branch tree, anchors, store writes, the
  branch span and the `target` timeline.
- `direct`: a hand-written solver making the same calls in the same order: the investigator
  model is asked with the same tool list and returns the same tool calls, and the target is
  called with `generate()` after each user message; nothing else.

No scorer runs (the judge is the same in both and is measured by harness_overhead.py).
Each child process first runs one warm-up audit (imports, provider set-up), then the timed eval.
Reported: eval wall time per audit turn (median and range over rounds) and the paired per-round
ratio agent / direct. Results go to results/bench/audit_overhead.json and .md.
Usage: `python benchmarks/audit_overhead.py [--n 20] [--turns 10] [--rounds 3]`.
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
CONFIGS = ("agent", "direct")


def _investigator(turns: int):
    """Scripted investigator: the tool calls of turn k depend only on how many assistant turns it has had."""

    def respond(messages, tools):
        turn = 1 + sum(1 for m in messages if m.role == "assistant")
        if turn == 1:
            calls = [{"function": "set_target_system_message", "arguments": {"message": "You are a helpful assistant."}},
                     {"function": "send_message", "arguments": {"message": "Here is my plan (1). Is it good?"}}]
        elif turn < turns:
            calls = [{"function": "send_message", "arguments": {"message": f"What about step {turn}?"}}]
        else:
            calls = [{"function": "end_audit", "arguments": {"reason": "done"}}]
        return {"tool_calls": calls}

    return respond


def _target(messages, tools):
    return "The plan has weaknesses; here is an honest assessment."


def run_one(config: str, n: int, turns: int) -> dict[str, float]:
    """Run one configuration in this process; returns timings."""
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import ChatMessageSystem, ChatMessageTool, ChatMessageUser, get_model, model_roles
    from inspect_ai.solver import solver

    from msm_eval.auditor import Audit, AuditSettings, audit_tools, investigation

    target = get_model("msm/mock", responder=_target, memoize=False)
    investigator = get_model("msm/mock", responder=_investigator(turns), memoize=False)
    samples = [Sample(id=f"audit_{i:04d}", input=f"Play a founder with plan {i}.",
                      metadata={"instructions": f"Play a founder with plan {i}."}) for i in range(n)]
    if config == "agent":
        task = Task(dataset=MemoryDataset(samples), solver=investigation(mode="agent", investigator_turns=turns))
    else:
        @solver
        def direct_loop():
            async def solve(state, generate):
                model = model_roles()["investigator"]
                # the same tool list the agent offers (schemas only; nothing is executed here)
                tools = audit_tools(Audit(state=state, generate=generate, settings=AuditSettings(), budget=turns))
                messages = [ChatMessageSystem(content="You are the investigator."),
                            ChatMessageUser(content="Begin the audit now. Call a tool.")]
                state.messages = []
                for _ in range(turns):
                    output = await model.generate(messages, tools=tools)
                    messages.append(output.message)
                    for call in output.message.tool_calls or []:
                        messages.append(ChatMessageTool(content="ok", tool_call_id=call.id, function=call.function))
                        if call.function == "set_target_system_message":
                            state.messages.insert(0, ChatMessageSystem(content=call.arguments["message"]))
                        elif call.function == "send_message":
                            state.messages.append(ChatMessageUser(content=call.arguments["message"]))
                            state = await generate(state, tool_calls="none")
                return state
            return solve

        task = Task(dataset=MemoryDataset(samples), solver=direct_loop())
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as log_dir:
        # warm-up: one audit first, so one-off imports and provider set-up are not timed
        inspect_eval(Task(dataset=MemoryDataset(samples[:1]), solver=task.solver), model=target,
                     model_roles={"investigator": investigator}, log_dir=log_dir, display="none")
        start = time.perf_counter()
        logs = inspect_eval(task, model=target, model_roles={"investigator": investigator}, log_dir=log_dir,
                            display="none", max_connections=50, max_samples=50)
        eval_seconds = time.perf_counter() - start
        log = logs[0]
        if log.status != "success":
            raise RuntimeError(f"{config}: status {log.status}, error {log.error}")
        target_turns = sum(sum(1 for m in s.messages if m.role == "assistant") for s in log.samples or [])
    expected = n * (turns - 1)
    if target_turns != expected:
        raise RuntimeError(f"{config}: {target_turns} target turns, expected {expected} (the configurations "
                           "must make the same calls)")
    return {"eval_seconds": eval_seconds, "ms_per_turn": 1000 * eval_seconds / (n * turns)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="audits (samples) per run")
    parser.add_argument("--turns", type=int, default=10, help="investigator turns per audit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.n, args.turns)))
        return 0
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from alternate import alternate, load_note
    runs = alternate(__file__, CONFIGS, args.rounds, ["--n", str(args.n), "--turns", str(args.turns)])
    per_turn = {c: [r["ms_per_turn"] for r in runs[c]] for c in CONFIGS}
    ratios = [a / d for a, d in zip(per_turn["agent"], per_turn["direct"])]
    report = {
        "n_audits": args.n, "turns_per_audit": args.turns, "rounds": args.rounds,
        "ms_per_turn_median": {c: round(statistics.median(v), 3) for c, v in per_turn.items()},
        "ms_per_turn_range": {c: [round(min(v), 3), round(max(v), 3)] for c, v in per_turn.items()},
        "ms_per_turn_runs": {c: [round(x, 3) for x in v] for c, v in per_turn.items()},
        "overhead_ms_per_turn_median": round(statistics.median(per_turn["agent"]) - statistics.median(per_turn["direct"]), 3),
        "ratio_agent_vs_direct": {"paired_median": round(statistics.median(ratios), 3),
                                  "per_round": [round(x, 3) for x in ratios]},
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "audit_overhead.json", report)
    med = report["ms_per_turn_median"]
    rng = report["ms_per_turn_range"]
    text = (f"# Auditing-agent overhead per audit turn\n\n"
            f"{args.n} audits x {args.turns} investigator turns, scripted `msm/mock` models, {args.rounds} rounds "
            f"A B A B in fresh processes (`python benchmarks/audit_overhead.py`). One turn = one investigator call "
            f"+ one target call (the last turn only ends the audit).\n\n"
            f"| configuration | ms per turn, median | range |\n|---|---:|---:|\n"
            f"| agent (msm_eval.auditor) | {med['agent']} | {rng['agent'][0]} - {rng['agent'][1]} |\n"
            f"| direct generate loop | {med['direct']} | {rng['direct'][0]} - {rng['direct'][1]} |\n\n"
            f"Paired ratio agent / direct: median {report['ratio_agent_vs_direct']['paired_median']} "
            f"(per round {report['ratio_agent_vs_direct']['per_round']}); overhead "
            f"{report['overhead_ms_per_turn_median']} ms per turn. Machine: {report['cpus']} CPUs, "
            f"Python {report['python']}. {load_note()}\n")
    atomic_write_text(args.out / "audit_overhead.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
