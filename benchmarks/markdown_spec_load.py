"""Benchmark: loading a 300 KB Markdown spec into its section tree.

Compares `msm_eval.spec.load_spec` (read, hash, heading tree with `{#anchor key=value}`
attributes, fenced code skipped, unique ids) with the obvious alternative: tokenising the same
file with markdown-it-py (the Markdown parser inspect-ai already installs) and building the
heading tree from its tokens. The two sides alternate A B A B ... for `--rounds` rounds, each
measurement a fresh process (one warm-up call, then the median of `--repeats` calls); reported as
median and range over rounds. Writes results/bench/markdown_spec_load.json/.md.

Run: python benchmarks/markdown_spec_load.py [--kb 300] [--repeats 7] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from markdown_it import MarkdownIt

from msm_eval.fileio import atomic_write_json, atomic_write_text
from msm_eval.paths import RESULTS_DIR
from msm_eval.spec import load_spec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared A/B driver
from conftest_specs import large_markdown  # noqa: E402  (the test suite's deterministic generator)


def markdown_it_tree(path: Path) -> int:
    """Heading tree via markdown-it-py: returns the number of headings found."""
    text = path.read_text(encoding="utf-8")
    tokens = MarkdownIt("commonmark").parse(text)
    stack: list[tuple[int, dict]] = [(0, {"children": []})]
    count = 0
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        level = int(token.tag[1:])
        node = {"title": tokens[index + 1].content, "children": []}
        while stack[-1][0] >= level:
            stack.pop()
        stack[-1][1]["children"].append(node)
        stack.append((level, node))
        count += 1
    return count


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


SIDES = ("load_spec", "markdown_it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bench", help="folder for the .json/.md results")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path = Path(args.file)
        fn = (lambda: load_spec(path)) if args.child == "load_spec" else (lambda: markdown_it_tree(path))
        fn()                                                    # warm-up
        print(json.dumps({"seconds": statistics.median(timed(fn, args.repeats))}))
        return
    from alternate import alternate, load_note, fmt, summary
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.md"
        path.write_text(large_markdown(args.kb * 1000), encoding="utf-8")
        sections = len(load_spec(path).all_sections())
        headings = markdown_it_tree(path)
        runs = alternate(__file__, SIDES, args.rounds, ["--file", str(path), "--repeats", str(args.repeats)])
    stats = summary(runs, "seconds", "markdown_it", "load_spec")
    result = {
        "document_bytes": args.kb * 1000, "sections": sections, "markdown_it_headings": headings,
        "repeats": args.repeats, "rounds": args.rounds, "runs": runs, "summary": stats,
        "load_spec_median_s": round(stats["load_spec"]["median"], 4),
        "markdown_it_median_s": round(stats["markdown_it"]["median"], 4),
        "ratio_markdown_it_over_ours": round(stats["paired_ratio"]["median"], 2),
        "python": platform.python_version(),
    }
    out = args.out
    atomic_write_json(out / "markdown_spec_load.json", result)
    ms = {k: {q: v * 1000 for q, v in stats[k].items()} for k in SIDES}
    atomic_write_text(out / "markdown_spec_load.md", "\n".join([
        "# markdown_spec_load", "",
        f"Loading a {args.kb} KB Markdown spec ({sections} sections); {args.rounds} rounds, sides alternating in "
        f"fresh processes, each the median of {args.repeats} calls; median [range] over rounds:", "",
        f"- `msm_eval.spec.load_spec` (hash + section tree + attributes): **{fmt(ms['load_spec'], 0)} ms**",
        f"- markdown-it-py heading tree of the same file ({headings} headings): {fmt(ms['markdown_it'], 0)} ms",
        f"- paired ratio markdown-it / ours: **{fmt(stats['paired_ratio'])}x**", "",
        load_note(), ""]))
    print(result)


if __name__ == "__main__":
    main()
