"""`msm-eval train midtrain|aft --config FILE` and `msm-eval train export RUN OUT`: the compact trainer."""

from __future__ import annotations

import argparse
from typing import Any

from msm_eval.errors import MsmEvalError


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    import yaml
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise MsmEvalError(f"--set expects key=value, got '{pair}'", field="--set", hint="e.g. --set lr=2e-4")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _train(args: argparse.Namespace) -> int:
    from msm_eval.train.config import load_config
    from msm_eval.train.trainer import train
    overrides = {**_parse_sets(args.set or []), "stage": args.stage}
    cfg = load_config(args.config, overrides)
    result = train(cfg, stop_after=args.stop_after)
    state = "finished" if result.finished else "stopped (resume by running the same command)"
    print(f"{cfg.stage}: {state} at step {result.steps}/{result.total_steps}; train loss {result.train_loss}; "
          f"held-out loss {result.eval_loss}; run folder {result.out_dir}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from msm_eval.train.export import export_run
    out = export_run(args.run, args.out, dtype=args.dtype)
    print(f"exported {args.run} -> {out} (evaluate with --model hf/{out})")
    return 0


def register(subparsers: Any) -> None:
    """Add the `train` command group."""
    parser = subparsers.add_parser("train", help="midtrain / alignment-fine-tune a causal LM, export it",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="train_command", metavar="STAGE", required=True)
    for stage, text in (("midtrain", "next-token loss on packed spec documents (MSM)"),
                        ("aft", "assistant-only loss on chat demonstrations (AFT)")):
        p = sub.add_parser(stage, help=text)
        p.add_argument("--config", required=True, help="training YAML (see docs/training.md)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting (repeatable)")
        p.add_argument("--stop-after", type=int, default=None, metavar="N",
                       help="stop after step N (checkpointed); rerun the command to resume")
        p.set_defaults(func=_train, stage=stage)
    p = sub.add_parser("export", help="merge a finished run into a plain Hugging Face folder + manifest")
    p.add_argument("run", help="run folder (the out_dir of a finished training run)")
    p.add_argument("out", help="folder to write")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="weight type of the exported model (default float32)")
    p.set_defaults(func=_export)
