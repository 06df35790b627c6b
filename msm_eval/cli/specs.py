"""`msm-eval specs`: render spec variants, list variants with sizes and hashes, show and validate specs."""

from __future__ import annotations

import argparse
import sys

from msm_eval.errors import MsmEvalError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `specs` command group."""
    parser = subparsers.add_parser("specs", help="render, list, show and validate model specs", description=__doc__)
    commands = parser.add_subparsers(dest="specs_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    render = commands.add_parser("render", help="print (or write) one variant of a spec")
    render.add_argument("spec", metavar="SPEC", help="a spec name under specs/ or a path (.yaml/.md)")
    render.add_argument("--variant", default="full",
                        help="rules | value_augmented | rule_augmented | generic | full (default: full)")
    render.add_argument("--out", default=None, metavar="FILE", help="write here (atomically) instead of stdout")
    render.set_defaults(func=run_render)

    listing = commands.add_parser("list", help="table of specs and variants with word counts and sha256")
    listing.add_argument("specs", nargs="*", metavar="SPEC", help="spec names or paths (default: all in specs/)")
    listing.add_argument("--full", action="store_true", help="print the full 64-digit sha256")
    listing.set_defaults(func=run_list)

    show = commands.add_parser("show", help="print a spec's section tree with ids, titles and sizes")
    show.add_argument("spec", metavar="SPEC", help="a spec name under specs/ or a path")
    show.set_defaults(func=run_show)

    validate = commands.add_parser("validate", help="load specs and render every variant, reporting each problem")
    validate.add_argument("specs", nargs="+", metavar="SPEC", help="spec names or paths")
    validate.add_argument("--rubric", default="constitution",
                          help="rubric whose dimension ids principles may name (default: constitution)")
    validate.set_defaults(func=run_validate)


def run_render(args: argparse.Namespace) -> int:
    """Render one variant to stdout or, atomically, to --out."""
    from msm_eval.fileio import atomic_write_text
    from msm_eval.spec import load_spec

    spec = load_spec(args.spec)
    text = spec.render(args.variant)
    if args.out:
        target = atomic_write_text(args.out, text)
        print(f"wrote {target} ({len(text.split())} words, sha256 {spec.variant_sha256(args.variant)})",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print a table: spec, variant, words, characters, sha256."""
    from msm_eval.spec import available_specs, load_spec

    refs = args.specs or available_specs()
    if not refs:
        raise MsmEvalError("no specs found in specs/", hint="give spec paths as arguments")
    rows: list[tuple[str, str, str, str, str]] = []
    for ref in refs:
        spec = load_spec(ref)
        for variant in spec.variants:
            text = spec.render(variant)
            digest = spec.variant_sha256(variant)
            rows.append((spec.name, variant, str(len(text.split())), str(len(text)),
                         digest if args.full else digest[:12]))
    header = ("spec", "variant", "words", "chars", "sha256")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {2, 3}
    for row in [header, *rows]:
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print the section tree of a spec, indented by depth."""
    from msm_eval.spec import Section, load_spec

    spec = load_spec(args.spec)
    print(f"{spec.name} ({spec.format}): {spec.title}")
    print(f"source sha256 {spec.sha256}; variants: {', '.join(spec.variants)}")

    def visit(section: Section, depth: int) -> None:
        body = section.total_text()
        extra = f" {section.attrs}" if section.attrs and spec.format == "markdown" else ""
        line = f", line {section.line}" if section.line else ""
        print(f"{'  ' * depth}{section.id}  {section.title}  [{len(body)} chars, {len(body.split())} words{line}]"
              f"{extra}")
        for child in section.children:
            visit(child, depth + 1)

    for section in spec.sections:
        visit(section, 0)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """Load each spec (and render its variants); print 'ok' or the problem; exit 2 if any failed."""
    from msm_eval.spec import load_spec

    rubric = None if args.rubric in ("", "none") else args.rubric
    failures = 0
    for ref in args.specs:
        try:
            if rubric is not None:
                from msm_eval.rubric import load_rubric
                rubric_obj = load_rubric(rubric)
            else:
                rubric_obj = None
            spec = load_spec(ref, rubric=rubric_obj)
            for variant in spec.variants:
                spec.render(variant)
        except MsmEvalError as exc:
            failures += 1
            print(f"FAIL {ref}: {exc}", file=sys.stderr)
            continue
        count = f"{len(spec.principles)} principles" if spec.format == "yaml" else \
            f"{len(spec.all_sections())} sections"
        print(f"ok   {ref}: {spec.name} ({spec.format}, {count}, variants {', '.join(spec.variants)})")
    return 2 if failures else 0
