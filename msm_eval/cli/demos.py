"""`msm-eval demos`: generate AFT demonstrations (both arms: with and without reasoning)."""

from __future__ import annotations

import argparse
import json

from msm_eval.cli.docs import _add_generation_options, model_args_from, resolve_generator, settings_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `demos generate`."""
    demos = subparsers.add_parser("demos", help="AFT demonstrations as chat JSONL")
    sub = demos.add_subparsers(dest="demos_command", metavar="SUBCOMMAND")
    gen = sub.add_parser("generate", help="domains -> questions -> responses -> filter -> chat JSONL")
    gen.add_argument("spec", help="spec name under specs/ or a .yaml/.md path")
    gen.add_argument("--out", required=True, help="output folder (reruns resume)")
    gen.add_argument("--variant", default="full", help="spec variant the demonstrations follow (default full)")
    gen.add_argument("--generator", default="template", help="'template' (offline) or an inspect model")
    gen.add_argument("--style", choices=("value", "rules"), default="value",
                     help="value: replies explain the reasons behind the spec; rules: they cite its rules")
    gen.add_argument("--reasoning", action=argparse.BooleanOptionalAction, default=True,
                     help="write a reasoning block (exported as <think>) and export both arms")
    gen.add_argument("--model-role", default=None, metavar="judge=MODEL", dest="judge_role",
                     help="the judge role: the spec-alignment filter model (MODEL may be a YAML mapping "
                          "{model: ..., model_args: ...}); without one, demos are exported as unfiltered")
    gen.add_argument("--backfill-rounds", type=int, default=2,
                     help="rounds of new questions that replace filtered-out demos (default 2)")
    gen.add_argument("--domains", type=int, default=8, help="conversation domains (model generator)")
    gen.add_argument("--questions-per-type", type=int, default=2, help="questions per domain and type (default 2)")
    gen.add_argument("--question-types", default=None, help="comma list (default all)")
    gen.add_argument("--target", type=int, default=None, help="demonstrations wanted (default: all first-round)")
    gen.add_argument("--dedup-threshold", type=float, default=0.6,
                     help="near-duplicate threshold: Jaccard of word 5-grams (default 0.6)")
    gen.add_argument("--system-prompt", default=None, help="system message added to every demo")
    gen.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_generation_options(gen)
    gen.set_defaults(func=_generate)
    demos.set_defaults(func=lambda args: (demos.print_help(), 2)[1])


def _generate(args: argparse.Namespace) -> int:
    from msm_eval.spec import load_spec
    from msm_eval.train.demos import QUESTION_TYPES, generate_demos
    from msm_eval.train.generation import parse_model_spec, resolve_model

    spec = load_spec(args.spec)
    settings = settings_from_args(args)
    generator = resolve_generator(args.generator, model_args_from(args.model_arg), settings)
    judge = None
    if args.judge_role:
        name, extra = parse_model_spec(args.judge_role, "judge")
        judge = resolve_model(name, settings, extra)
    types = tuple(t.strip() for t in args.question_types.split(",")) if args.question_types else tuple(QUESTION_TYPES)
    result = generate_demos(spec, args.out, generator=generator, style=args.style, reasoning=args.reasoning,
                            variant=args.variant, n_domains=args.domains, questions_per_type=args.questions_per_type,
                            question_types=types, filter_model=judge, backfill_rounds=args.backfill_rounds,
                            target=args.target, seed=args.seed, settings=settings,
                            dedup_threshold=args.dedup_threshold, system_prompt=args.system_prompt)
    summary = result.summary
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['exported']} of {summary['target']} demonstrations exported "
              f"({summary['questions']} questions, {summary['duplicate_questions_removed']} duplicates removed, "
              f"verdicts {summary['verdicts']}, backfill rounds {summary['backfill_rounds_used']})")
        for arm, path in result.paths.items():
            print(f"  {arm}: {path}")
        for note in summary["notes"]:
            print(f"note: {note}")
    if summary["failed"]:
        print(f"{summary['failed']} jobs failed; rerun the same command to resume them")
        return 1
    return 0
