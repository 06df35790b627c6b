"""`msm-eval docs`: decompose a spec, generate MSM documents, and describe a corpus."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by the generating commands (docs generate, demos generate)."""
    parser.add_argument("--max-connections", type=int, default=10, help="concurrent model calls (default 10)")
    parser.add_argument("--cache", nargs="?", const=True, default=False, metavar="EXPIRY",
                        help="cache model replies (inspect cache; optional expiry such as 7D)")
    parser.add_argument("--batch", nargs="?", const=True, default=False, type=_batch_value, metavar="SIZE",
                        help="use the provider's batch API (optionally a batch size)")
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the provider's)")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="cap on tokens per reply (default: per stage, e.g. 5000 for a document)")
    parser.add_argument("--max-retries", type=int, default=None,
                        help="inspect's retries of a model call that failed at the provider (rate limit, 5xx)")
    parser.add_argument("--max-attempts", type=int, default=3,
                        help="attempts at a reply that fails a format/length/duplicate check, the first "
                             "included (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the template / sampling choices (default 0)")
    parser.add_argument("-M", "--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="model argument for the generator (repeatable; values parsed as YAML)")


def _batch_value(text: str) -> bool | int:
    return int(text) if text.isdigit() else True


def settings_from_args(args: argparse.Namespace) -> Any:
    """`GenerationSettings` from the shared options."""
    from msm_eval.train.generation import GenerationSettings

    return GenerationSettings(max_connections=args.max_connections, cache=args.cache, batch=args.batch,
                              temperature=args.temperature, max_tokens=args.max_tokens, max_retries=args.max_retries,
                              max_attempts=args.max_attempts)


def model_args_from(values: list[str]) -> dict[str, Any]:
    """`-M key=value` pairs -> dict (values parsed as YAML scalars)."""
    import yaml

    from msm_eval.errors import MsmEvalError

    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MsmEvalError(f"expected KEY=VALUE, got '{item}'", field="-M")
        out[key.strip()] = yaml.safe_load(value)
    return out


def resolve_generator(value: str, model_args: dict[str, Any], settings: Any) -> Any:
    """`template` stays a string; anything else becomes an inspect Model."""
    if value == "template":
        return "template"
    from msm_eval.train.generation import parse_model_spec, resolve_model

    if value.startswith("generator="):
        name, extra = parse_model_spec(value, "generator")
        return resolve_model(name, settings, {**extra, **model_args})
    return resolve_model(value, settings, model_args)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `docs decompose|generate|stats`."""
    docs = subparsers.add_parser("docs", help="MSM documents: decompose a spec, generate documents, corpus stats")
    sub = docs.add_subparsers(dest="docs_command", metavar="SUBCOMMAND")

    dec = sub.add_parser("decompose", help="spec -> domains -> subdomains -> assertions (one JSON file)")
    dec.add_argument("spec", help="spec name under specs/ or a .yaml/.md path")
    dec.add_argument("--variant", default="full", help="spec variant (default full)")
    dec.add_argument("--decomposer", choices=("structural", "llm"), default="structural",
                     help="structural: from the spec's sections (offline); llm: by the generator model role")
    dec.add_argument("--model-role", action="append", default=[], metavar="generator=MODEL",
                     help="generator model for --decomposer llm")
    dec.add_argument("--out", required=True, help="output JSON file")
    _add_generation_options(dec)
    dec.set_defaults(func=_decompose)

    gen = sub.add_parser("generate", help="generate a documents corpus (JSONL) from a decomposition")
    gen.add_argument("decomposition", help="decomposition JSON from `docs decompose`")
    gen.add_argument("--out", required=True, help="corpus JSONL (appended to; reruns resume)")
    gen.add_argument("--spec", default=None, help="spec to use (default: the one named in the decomposition)")
    gen.add_argument("--generator", default="template",
                     help="'template' (offline) or an inspect model, e.g. anthropic/claude-sonnet-4-6")
    gen.add_argument("--arm", choices=("value", "rules"), default="value",
                     help="value: documents explain why; rules: documents state the rules (default value)")
    gen.add_argument("--types", type=int, default=6, help="document types per subdomain (default 6)")
    gen.add_argument("--ideas", type=int, default=4, help="ideas per document type (default 4)")
    gen.add_argument("--dedup-threshold", type=float, default=0.6,
                     help="near-duplicate threshold: Jaccard of word 5-grams (default 0.6)")
    gen.add_argument("--min-words", type=int, default=None, help="default 50 (template) / 200 (model)")
    gen.add_argument("--max-words", type=int, default=3000, help="longest document kept, in words (default 3000)")
    gen.add_argument("--model-name", default=None, help="name the documents give the model")
    gen.add_argument("--dry-run", action="store_true", help="print calls, tokens (and cost) without generating")
    gen.add_argument("--input-price", type=float, default=None, help="price per million input tokens (dry run)")
    gen.add_argument("--output-price", type=float, default=None, help="price per million output tokens (dry run)")
    gen.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_generation_options(gen)
    gen.set_defaults(func=_generate)

    st = sub.add_parser("stats", help="counts by domain/type, token totals, duplicate rate")
    st.add_argument("corpus", help="documents JSONL written by `msm-eval docs generate`")
    st.add_argument("--tokenizer", default=None, help="Hugging Face tokenizer folder or 'smollm2'")
    st.add_argument("--dedup-threshold", type=float, default=0.6,
                    help="near-duplicate threshold: Jaccard of word 5-grams (default 0.6)")
    st.add_argument("--json", action="store_true", help="print the statistics as JSON")
    st.set_defaults(func=_stats)

    docs.set_defaults(func=lambda args: (docs.print_help(), 2)[1])


def _decompose(args: argparse.Namespace) -> int:
    from msm_eval.errors import MsmEvalError
    from msm_eval.spec import load_spec
    from msm_eval.train.decompose import decompose, validate_decomposition
    from msm_eval.train.generation import parse_model_spec

    spec = load_spec(args.spec)
    settings = settings_from_args(args)
    model = None
    roles = [r for r in args.model_role]
    if args.decomposer == "llm":
        if not roles:
            raise MsmEvalError("--decomposer llm needs a generator model", field="--model-role",
                               hint="add --model-role generator=PROVIDER/MODEL")
        name, extra = parse_model_spec(roles[-1], "generator")
        from msm_eval.train.generation import resolve_model

        model = resolve_model(name, settings, {**extra, **model_args_from(args.model_arg)})
    result = decompose(spec, args.variant, args.decomposer, model, settings)
    validate_decomposition(result.to_dict(), spec_text=spec.render(args.variant))
    result.save(args.out)
    n_sub = len(result.subdomains())
    n_assert = sum(len(s.assertions) for _, s in result.subdomains())
    print(f"{args.out}: {len(result.domains)} domains, {n_sub} subdomains, {n_assert} assertions "
          f"({result.decomposer}{', ' + result.model if result.model else ''}); dropped {len(result.dropped)}")
    for item in result.dropped:
        print(f"  dropped {item['where']}: {item['reason']}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from msm_eval.spec import load_spec
    from msm_eval.train.decompose import load_decomposition
    from msm_eval.train.docs import (
        DEFAULT_MODEL_NAME,
        MIN_WORDS_MODEL,
        MIN_WORDS_TEMPLATE,
        estimate_documents,
        generate_documents,
        template_genres,
    )

    decomposition = load_decomposition(args.decomposition)
    spec = load_spec(args.spec or decomposition.spec_ref)
    model_name = args.model_name or DEFAULT_MODEL_NAME
    is_template = args.generator == "template"
    min_words = args.min_words if args.min_words is not None else (MIN_WORDS_TEMPLATE if is_template else MIN_WORDS_MODEL)
    if args.dry_run:
        n_sub = len(decomposition.subdomains())
        if is_template:
            types = min(args.types, len(template_genres()))
            print(f"template generator: {n_sub} subdomains x {types} genres x {args.ideas} ideas = "
                  f"{n_sub * types * args.ideas} documents, 0 model calls")
            return 0
        estimate = estimate_documents(decomposition, spec.render(decomposition.variant), n_types=args.types,
                                      n_ideas=args.ideas, arm=args.arm, model_name=model_name, min_words=min_words,
                                      max_words=args.max_words, input_price_per_mtok=args.input_price,
                                      output_price_per_mtok=args.output_price)
        if args.json:
            print(json.dumps(estimate.as_dict(), indent=2))
        else:
            print(f"dry run: {n_sub} subdomains x {args.types} types x {args.ideas} ideas with {args.generator}")
            print(estimate.format())
        return 0
    settings = settings_from_args(args)
    generator = resolve_generator(args.generator, model_args_from(args.model_arg), settings)
    summary = generate_documents(decomposition, spec, args.out, generator=generator, arm=args.arm,
                                 n_types=args.types, n_ideas=args.ideas, seed=args.seed, settings=settings,
                                 dedup_threshold=args.dedup_threshold, min_words=min_words, max_words=args.max_words,
                                 model_name=model_name)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(f"{args.out}: {summary.written} written, {summary.resumed} already there, {summary.rejected} rejected, "
              f"{summary.failed} failed; corpus now {summary.total_in_corpus} documents")
        print(f"near-duplicate threshold: Jaccard of word 5-grams >= {summary.dedup_threshold} "
              f"({summary.near_duplicate_hits} near-duplicate replies); {summary.format_failures} replies failed the "
              f"length/format check; each document retried up to --max-attempts")
        if summary.usage.get("calls"):
            print(f"model calls {summary.usage['calls']}, tokens in {summary.usage['input_tokens']:,} "
                  f"/ out {summary.usage['output_tokens']:,}")
        for note in summary.notes:
            print(f"note: {note}")
        for failure in summary.failures[:10]:
            print(f"failed {failure['key']}: {failure['error']}")
        print(f"summary: {Path(args.out).with_name(Path(args.out).stem + '.summary.json')}")
    if summary.failed:
        print(f"{summary.failed} jobs failed; rerun the same command to resume them")
        return 1
    return 0


def _stats(args: argparse.Namespace) -> int:
    from msm_eval.train.docs import corpus_stats

    stats = corpus_stats(args.corpus, tokenizer=args.tokenizer, dedup_threshold=args.dedup_threshold)
    print(json.dumps(stats.as_dict(), indent=2) if args.json else stats.format())
    return 0
