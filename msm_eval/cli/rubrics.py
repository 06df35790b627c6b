"""`msm-eval rubrics`: validate rubric files and show a rubric's dimension tree."""

from __future__ import annotations

import argparse
import sys

from msm_eval.errors import MsmEvalError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `rubrics` command group."""
    parser = subparsers.add_parser("rubrics", help="validate and show judge rubrics", description=__doc__)
    commands = parser.add_subparsers(dest="rubrics_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    validate = commands.add_parser("validate", help="check rubric files and report each problem")
    validate.add_argument("rubrics", nargs="+", metavar="RUBRIC", help="rubric names under rubrics/ or paths")
    validate.set_defaults(func=run_validate)

    show = commands.add_parser("show", help="print the dimension tree with levels")
    show.add_argument("rubric", nargs="?", default="constitution", metavar="RUBRIC",
                      help="a rubric name or path (default: constitution)")
    show.add_argument("--judge", action="store_true", help="print the judge-facing text instead of the tree")
    show.add_argument("--dimensions", default=None, metavar="IDS",
                      help="with --judge: only these comma-separated dimension ids")
    show.set_defaults(func=run_show)


def run_validate(args: argparse.Namespace) -> int:
    """Load each rubric; print 'ok' or the problem; exit 2 if any failed."""
    from msm_eval.rubric import load_rubric

    failures = 0
    for ref in args.rubrics:
        try:
            rubric = load_rubric(ref)
        except MsmEvalError as exc:
            failures += 1
            print(f"FAIL {ref}: {exc}", file=sys.stderr)
            continue
        levels = ", ".join(f"level {lv}: {len(rubric.by_level(lv))}" for lv in rubric.levels)
        print(f"ok   {ref}: {rubric.name} v{rubric.version}, {len(rubric.dimensions)} dimensions ({levels}), "
              f"scale {rubric.scale_min}..{rubric.scale_max}")
    return 2 if failures else 0


def run_show(args: argparse.Namespace) -> int:
    """Print the dimension tree (or the judge-facing text)."""
    from msm_eval.rubric import load_rubric

    rubric = load_rubric(args.rubric)
    if args.judge:
        ids = [i.strip() for i in args.dimensions.split(",") if i.strip()] if args.dimensions else None
        sys.stdout.write(rubric.render_for_judge(ids))
        return 0
    if args.dimensions:
        raise MsmEvalError("--dimensions only applies with --judge", field="--dimensions", hint="add --judge")
    print(f"{rubric.name} v{rubric.version}: {len(rubric.dimensions)} dimensions, "
          f"scale {rubric.scale_min}..{rubric.scale_max}, sha256 {rubric.sha256[:12]}")
    for dimension in rubric.tree_order():
        depth = dimension.level
        print(f"{'  ' * depth}[{dimension.level}] {dimension.id}  {dimension.title}")
    return 0
