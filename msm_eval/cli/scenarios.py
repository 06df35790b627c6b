"""`msm-eval scenarios`: validate the seed library, show its coverage, grow it with generated seeds."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from msm_eval.errors import MsmEvalError

LIST_KEYS = ("family", "area", "dimension", "setting", "tag", "id")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `scenarios` command group."""
    parser = subparsers.add_parser("scenarios", help="validate, list and generate scenario seeds",
                                   description=__doc__)
    commands = parser.add_subparsers(dest="scenarios_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    validate = commands.add_parser("validate", help="check seed files and report every problem")
    validate.add_argument("paths", nargs="*", metavar="PATH",
                          help="seed files or folders (default: the whole scenarios/ library)")
    validate.set_defaults(func=run_validate)

    listing = commands.add_parser("list", help="coverage tables: seeds and expanded samples per key")
    listing.add_argument("--by", default="family,area,setting",
                         help=f"comma-separated keys among {', '.join(LIST_KEYS)} (default: family,area,setting)")
    listing.add_argument("--select", default=None, metavar="SEL",
                         help="selection (tags:a,b | id:a,b | family:x | area:x | setting:x | path)")
    listing.add_argument("--root", default=None, help="library folder (default: scenarios/)")
    listing.set_defaults(func=run_list)

    show = commands.add_parser("show", help="print the rendered samples of selected seeds (to check templates)")
    show.add_argument("selection", metavar="SEL", help="selection (id:x, a seed file, ...)")
    show.add_argument("--cell", default=None, metavar="SAMPLE_ID",
                      help="only this expanded sample id (default: every cell)")
    show.add_argument("--root", default=None, help="library folder (default: scenarios/)")
    show.set_defaults(func=run_show)

    generate = commands.add_parser("generate", help="write new seeds with the investigator model (resumable)")
    generate.add_argument("--from", dest="selection", required=True, metavar="SEL",
                          help="parent seeds: a selection (tags:a,b | id:a,b | family:x | area:x | path)")
    generate.add_argument("--out", required=True, metavar="DIR", help="folder for the new seed files and the log")
    generate.add_argument("--axes", default="setting,stakes,pressure,realism,phrasing",
                          help="variation axes, comma-separated (default: all five)")
    generate.add_argument("--per-seed", type=int, default=1, metavar="N",
                          help="variations per parent seed and axis (default 1)")
    generate.add_argument("--new-ideas-per-area", type=int, default=0, metavar="N",
                          help="brand-new seeds per area of the selected seeds (default 0)")
    generate.add_argument("--model-role", action="append", default=[], metavar="ROLE=MODEL",
                          help="model for a role, e.g. investigator=anthropic/claude-sonnet-4-5 or "
                               "investigator='{model: msm/mock, model_args: {script: replies.jsonl}}' "
                               "(default: $INSPECT_EVAL_MODEL; msm/mock for an offline dry run)")
    generate.add_argument("--realism-check", action=argparse.BooleanOptionalAction, default=True,
                          help="ask the investigator to rate each new seed's realism (default on)")
    generate.add_argument("--realism-threshold", type=float, default=6.0, metavar="SCORE",
                          help="minimum realism rating on 1-10 to keep a seed (default 6)")
    generate.add_argument("--dedup-threshold", type=float, default=0.6,
                          help="near-duplicate threshold: Jaccard of word 5-grams (default 0.6)")
    generate.add_argument("--max-attempts", type=int, default=3,
                          help="attempts at a seed whose output is invalid, the first included (default 3)")
    generate.add_argument("--max-connections", type=int, default=4,
                          help="concurrent model calls (default 4)")
    generate.add_argument("--max-tokens", type=int, default=None, metavar="N",
                          help="output token cap per model call (a seed file needs about 1,000; "
                               "default: the provider's)")
    generate.add_argument("--root", default=None, help="library folder (default: scenarios/)")
    generate.set_defaults(func=run_generate)
    register_import(commands)

    register_lint(commands)
    register_stats(commands)


def _root(value: str | None) -> Path:
    from msm_eval import paths

    return Path(value) if value else paths.SCENARIOS_DIR


def run_validate(args: argparse.Namespace) -> int:
    """Validate seed files; print every problem; exit 2 when there is any."""
    from msm_eval import scenarios

    sources = [Path(p) for p in args.paths] or [_root(None)]
    seeds, errors = scenarios.collect_library(sources)
    n_samples = 0
    for seed in seeds:
        for warning in seed.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    try:
        n_samples = len(scenarios.expand_all(seeds))
    except MsmEvalError as exc:
        errors.append(exc)
    if not seeds and not errors:   # an empty selection validates nothing: that is not a pass
        errors.append(MsmEvalError("no seed files found", path=", ".join(map(str, sources)),
                                   hint="point it at seed .md files or a folder that holds them"))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    files = {seed.path for seed in seeds}
    print(f"{len(seeds)} valid seed(s), {n_samples} expanded sample(s) from {', '.join(map(str, sources))}")
    if errors:
        bad_files = {e.path for e in errors if e.path} - {str(f) for f in files}
        print(f"{len(errors)} problem(s) in {len(bad_files) or 1} file(s)", file=sys.stderr)
        return 2
    return 0


def coverage(seeds: list, key: str) -> list[tuple[str, int, int]]:
    """(value, seeds, expanded samples) per value of `key`, most seeds first."""
    from msm_eval import scenarios

    seed_counts: Counter[str] = Counter()
    sample_counts: Counter[str] = Counter()
    for seed in seeds:
        values = {"family": [seed.family], "area": [seed.area], "setting": [seed.setting],
                  "dimension": seed.dimensions, "tag": seed.tags or ["(none)"], "id": [seed.id]}[key]
        n = len(scenarios.expand(seed))
        for value in values:
            seed_counts[value] += 1
            sample_counts[value] += n
    return sorted(((v, seed_counts[v], sample_counts[v]) for v in seed_counts), key=lambda r: (-r[1], r[0]))


def run_list(args: argparse.Namespace) -> int:
    """Print coverage tables of the library (or a selection of it)."""
    from msm_eval import scenarios

    keys = [k.strip().lower() for k in args.by.split(",") if k.strip()]
    aliases = {"tags": "tag", "dimensions": "dimension", "families": "family", "areas": "area"}
    keys = [aliases.get(k, k) for k in keys]
    unknown = [k for k in keys if k not in LIST_KEYS]
    if unknown or not keys:
        raise MsmEvalError(f"unknown --by key(s): {', '.join(unknown) or '(none)'}", field="--by",
                           hint=f"choose among {', '.join(LIST_KEYS)}")
    seeds = scenarios.load_selection(args.select, _root(args.root))
    total_samples = sum(len(scenarios.expand(seed)) for seed in seeds)
    print(f"{len(seeds)} seeds, {total_samples} expanded samples")
    for key in keys:
        rows = coverage(seeds, key)
        width = max([len(key)] + [len(value) for value, _, _ in rows])
        print()
        print(f"| {key:<{width}} | seeds | samples |")
        print(f"|{'-' * (width + 2)}|------:|--------:|")
        for value, n_seeds, n_samples in rows:
            print(f"| {value:<{width}} | {n_seeds:>5} | {n_samples:>7} |")
        print(f"({len(rows)} distinct {key} value(s))")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print every rendered part of the selected seeds' samples."""
    from msm_eval import scenarios

    samples = scenarios.expand_all(scenarios.load_selection(args.selection, _root(args.root)))
    if args.cell is not None:
        chosen = [sample for sample in samples if sample.id == args.cell]
        if not chosen:
            import difflib

            close = difflib.get_close_matches(args.cell, [s.id for s in samples], n=3)
            raise MsmEvalError(f"no sample '{args.cell}' in the selection", field="--cell",
                               hint=f"did you mean {', '.join(close)}?" if close else "run without --cell to list them")
        samples = chosen
    for sample in samples:
        conditions = ", ".join(f"{k}={v}" for k, v in sample.conditions.items()) or "none"
        print(f"=== {sample.id} (conditions: {conditions}; control: {str(sample.control).lower()}) ===")
        parts = [("Investigator", sample.instructions), ("System", sample.system), ("User", sample.user)]
        parts += [(f"Follow-up {n}", text) for n, text in enumerate(sample.followups, start=1)]
        for name, text in parts:
            if text is not None:
                print(f"--- {name} ---\n{text}")
        if sample.tools:
            print("--- Tools ---\n" + ", ".join(tool.name for tool in sample.tools))
        if sample.judge_guidance:
            print("--- Judge guidance (judge only) ---\n"
                  + "\n".join(f"{key}: {text}" for key, text in sample.judge_guidance.items()))
        print()
    return 0


def parse_model_spec(value: str) -> tuple[str, dict]:
    """`provider/model`, or inspect's mapping form `{model: provider/model, model_args: {...}}`."""
    if not value.startswith("{"):
        return value, {}
    import yaml

    try:
        spec = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise MsmEvalError(f"model spec {value!r} is not valid YAML: {exc}", field="--model-role",
                           hint="e.g. investigator='{model: msm/mock, model_args: {script: replies.jsonl}}'") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), str) or \
            not isinstance(spec.get("model_args", {}), dict) or set(spec) - {"model", "model_args"}:
        raise MsmEvalError(f"model spec {value!r} needs 'model' and optionally 'model_args' (a mapping)",
                           field="--model-role",
                           hint="e.g. investigator='{model: msm/mock, model_args: {script: replies.jsonl}}'")
    return spec["model"], dict(spec.get("model_args", {}))


def run_generate(args: argparse.Namespace) -> int:
    """Generate seeds; exit 1 when some jobs failed on model errors (rerun to resume)."""
    from msm_eval import scenario_gen

    roles: dict[str, tuple[str, dict]] = {}
    for item in args.model_role:
        role, sep, model = item.partition("=")
        if not sep or not role.strip() or not model.strip():
            raise MsmEvalError(f"--model-role '{item}' must look like ROLE=MODEL", field="--model-role",
                               hint="e.g. --model-role investigator=msm/mock")
        roles[role.strip()] = parse_model_spec(model.strip())
    unknown_roles = set(roles) - {"investigator"}
    if unknown_roles:
        raise MsmEvalError(f"unknown role(s) {', '.join(sorted(unknown_roles))}", field="--model-role",
                           hint="scenario generation uses only the 'investigator' role")
    for name, value in (("--per-seed", args.per_seed), ("--new-ideas-per-area", args.new_ideas_per_area)):
        if value < 0:
            raise MsmEvalError(f"{name} must be >= 0", field=name)
    if args.max_connections < 1:
        raise MsmEvalError("--max-connections must be >= 1", field="--max-connections")
    if args.max_attempts < 1:
        raise MsmEvalError("--max-attempts must be >= 1", field="--max-attempts")
    if not 0.0 < args.dedup_threshold <= 1.0:
        raise MsmEvalError("--dedup-threshold must be in (0, 1]", field="--dedup-threshold",
                           hint="0.6 is the project default")
    model, model_args = roles.get("investigator") or (os.environ.get("INSPECT_EVAL_MODEL", ""), {})
    if not model:
        raise MsmEvalError("no investigator model given", field="--model-role",
                           hint="pass --model-role investigator=PROVIDER/MODEL (or investigator=msm/mock "
                                "for an offline dry run), or set INSPECT_EVAL_MODEL")
    axes = [a.strip() for a in args.axes.split(",") if a.strip()]
    summary = scenario_gen.generate(
        selection=args.selection, out_dir=Path(args.out), axes=axes, per_seed=args.per_seed,
        new_ideas_per_area=args.new_ideas_per_area, model=model, model_args=model_args,
        realism_check=args.realism_check, realism_threshold=args.realism_threshold,
        dedup_threshold=args.dedup_threshold, max_retries=args.max_attempts - 1,
        max_connections=args.max_connections, max_tokens=args.max_tokens, root=_root(args.root))
    print(summary.describe())
    return 1 if summary.errors else 0


def register_lint(commands: argparse._SubParsersAction) -> None:
    """Add `scenarios lint` (test tells and weak seeds; rules in scenarios/_lint/rules.yaml)."""
    lint = commands.add_parser("lint", help="flag test tells and weak seeds (placeholders, boilerplate, "
                                            "short inboxes, near-duplicates, ...)")
    lint.add_argument("paths", nargs="*", metavar="PATH",
                      help="seed files or folders (default: the whole scenarios/ library)")
    lint.add_argument("--strict", action="store_true", help="warnings fail the lint too")
    lint.add_argument("--no-baseline", action="store_true",
                      help="ignore scenarios/_lint/baseline.yaml (show the known findings as well)")
    lint.add_argument("--quiet", action="store_true", help="print errors only, not warnings")
    lint.set_defaults(func=run_lint)


def run_lint(args: argparse.Namespace) -> int:
    """Lint seeds; exit 1 on any error (or warning with --strict), 2 when seeds do not even validate."""
    from msm_eval import scenario_lint, scenarios

    library = _root(None)
    sources = [Path(p) for p in args.paths] or [library]
    seeds, errors = scenarios.collect_library(sources)
    for error in errors:
        print(f"error: {error} [invalid-seed]", file=sys.stderr)
    reference: list = []
    if args.paths:
        reference, _ = scenarios.collect_library([library])
    baseline = [] if args.no_baseline else scenario_lint.load_baseline()
    findings = scenario_lint.lint_seeds(seeds, reference=reference, baseline=baseline)
    for finding in findings:
        if finding.baselined or (args.quiet and finding.severity != "error"):
            continue
        print(finding, file=sys.stderr)
    counts = scenario_lint.count_by_severity(findings)
    known = sum(f.baselined for f in findings)
    print(f"{len(seeds)} seed(s) linted: {counts['error']} error(s), {counts['warning']} warning(s)"
          + (f", {known} known finding(s) in the baseline" if known else ""))
    if errors:
        return 2
    if counts["error"] or (args.strict and counts["warning"]):
        return 1
    return 0


def register_stats(commands: argparse._SubParsersAction) -> None:
    """Add `scenarios stats` (area x dimension matrix, turns, setting mix, power per dimension)."""
    stats = commands.add_parser("stats", help="coverage report: area x dimension matrix, turn counts, setting "
                                              "mix, and the minimum detectable difference per dimension")
    stats.add_argument("--select", default=None, metavar="SEL",
                       help="selection (tags:a,b | family:x | setting:x | path; default: the whole library)")
    stats.add_argument("--root", default=None, help="library folder (default: scenarios/)")
    stats.add_argument("--power", action="store_true",
                       help="also print the minimum detectable difference per dimension for a two-spec comparison")
    stats.add_argument("--sd", default=None, metavar="SD[,SD...]",
                       help="SDs of the per-seed paired difference for --power (default 0.75,1,1.5)")
    stats.add_argument("--alpha", type=float, default=0.05, help="two-sided test level for --power (default 0.05)")
    stats.add_argument("--target-power", type=float, default=0.8, help="power for --power (default 0.8)")
    stats.set_defaults(func=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    """Print the coverage report (and with --power the MDE table) as Markdown."""
    from msm_eval import scenario_stats, scenarios

    seeds = scenarios.load_selection(args.select, _root(args.root))
    print(scenario_stats.render_markdown(scenario_stats.library_stats(seeds)), end="")
    if args.power:
        if not 0.0 < args.alpha < 1.0 or not 0.0 < args.target_power < 1.0:
            raise MsmEvalError("--alpha and --target-power must lie strictly between 0 and 1", field="--alpha",
                               hint="e.g. --alpha 0.05 --target-power 0.8")
        sds = scenario_stats.DEFAULT_SD_DIFF
        if args.sd:
            try:
                sds = tuple(float(item) for item in args.sd.split(",") if item.strip())
            except ValueError:
                raise MsmEvalError(f"--sd {args.sd!r} must be numbers separated by commas", field="--sd",
                                   hint="e.g. --sd 0.75,1,1.5") from None
            if not sds or any(sd <= 0 for sd in sds):
                raise MsmEvalError("--sd values must be positive", field="--sd", hint="e.g. --sd 0.75,1,1.5")
        rows = scenario_stats.power_table(seeds, sd_diff=sds, alpha=args.alpha, power=args.target_power)
        print()
        print(scenario_stats.render_power(rows, alpha=args.alpha, power=args.target_power), end="")


# ----------------------------------------------------------------------------- import (issue 14)


def register_import(commands: argparse._SubParsersAction) -> None:
    """Add `scenarios import`: plain instructions (one per line or JSONL record) -> investigator-mode seeds."""
    importer = commands.add_parser("import", help="turn plain seed instructions (one per line or JSONL) "
                                                  "into investigator-mode seeds")
    importer.add_argument("source", metavar="FILE", help="a text file (one instruction per line) or a .jsonl file")
    importer.add_argument("--out", required=True, metavar="DIR", help="folder for the new seed files")
    importer.add_argument("--family", default="imported", help="family for records that set none (default imported)")
    importer.add_argument("--area", default="imported", help="area for records that set none (default imported)")
    importer.add_argument("--setting", default="chat", choices=("chat", "agentic"), help="default setting")
    importer.add_argument("--dimensions", default="overall_spirit",
                          help="comma-separated rubric dimensions for records that set none (default overall_spirit)")
    importer.add_argument("--tags", default="imported", help="comma-separated tags (default imported)")
    importer.add_argument("--id-prefix", default="imp", help="prefix of generated seed ids (default imp)")
    importer.add_argument("--investigator-turns", type=int, default=None, metavar="N",
                          help="turn budget written into each seed (default: none, the task's)")
    importer.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    """Convert the instructions, validate every seed, write them all (or nothing) and say how many."""
    from msm_eval import scenarios
    from msm_eval.seed_import import ImportDefaults, import_seeds

    defaults = ImportDefaults(family=args.family, area=args.area, setting=args.setting,
                              dimensions=[d.strip() for d in args.dimensions.split(",") if d.strip()],
                              tags=[t.strip() for t in args.tags.split(",") if t.strip()], id_prefix=args.id_prefix,
                              investigator_turns=args.investigator_turns)
    library, _ = scenarios.collect_library([_root(None)])
    written = import_seeds(args.source, args.out, defaults, existing_ids=[seed.id for seed in library])
    print(f"{len(written)} seed(s) written to {args.out} (investigator mode: run them with "
          "--model-role investigator=<model>)")
    return 0
