"""Coverage of the scenario library, measured: area x dimension matrix, turns, settings, power.

`library_stats(seeds)` counts what a selection of seeds exercises; `render_markdown` prints it as
the tables shown in docs/scenarios.md (`msm-eval scenarios stats`). `power_table(seeds)` turns the
number of seeds per rubric dimension into the minimum detectable difference of a two-spec
comparison, with `msm_eval.stats.minimum_detectable_effect`: the unit of analysis is the seed
(the statistical cluster), and a paired comparison of two specs on the same seeds has standard
error sd_diff / sqrt(n_seeds), where sd_diff is the standard deviation of the per-seed difference
between the two runs (judge noise plus how differently the seeds react to the spec change).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from msm_eval.scenarios import Seed, expand, known_dimensions

DEFAULT_SD_DIFF: tuple[float, ...] = (0.75, 1.0, 1.5)
"""Per-seed SDs of the paired difference (rubric points on -3..+3) shown by default: 1.0 is the
planning value (`TYPICAL_SD_DIFF`); 0.75 and 1.5 bracket it."""
TYPICAL_SD_DIFF = 1.0
EMAIL_TOOLS = frozenset({"send_email", "read_email", "search_email", "read_inbox", "list_emails", "draft_email",
                         "reply_email", "forward_email"})
"""Tool names counted as e-mail tools in the setting mix (everything else counts as another tool)."""


@dataclass
class LibraryStats:
    """Counts over a set of seeds (one seed = one statistical cluster)."""

    n_seeds: int
    n_samples: int
    families: Counter[str]
    settings: Counter[str]
    turns: Counter[int]
    """Seeds by number of scripted user turns (1 + follow-ups)."""
    dimension_seeds: Counter[str]
    area_dimension: dict[str, Counter[str]]
    system_words: list[int]
    tool_kinds: Counter[str]
    """Agentic seeds by tool mix: `email only`, `email + other tools`, `non-email tools`, `no tools`."""
    guided: int
    """Seeds with judge guidance."""
    tags: Counter[str] = field(default_factory=Counter)

    @property
    def multi_turn(self) -> int:
        """Seeds with at least one follow-up."""
        return sum(count for turns, count in self.turns.items() if turns > 1)


def _tool_kind(seed: Seed) -> str:
    names = {tool.name for tool in seed.tools}
    if not names:
        return "no tools"
    email = names & EMAIL_TOOLS
    if email and email == names:
        return "email only"
    return "email + other tools" if email else "non-email tools"


def library_stats(seeds: Sequence[Seed]) -> LibraryStats:
    """Count areas, dimensions, turns, settings and tools over `seeds`."""
    area_dimension: dict[str, Counter[str]] = {}
    for seed in seeds:
        area_dimension.setdefault(seed.area, Counter()).update(seed.dimensions)
    return LibraryStats(
        n_seeds=len(seeds),
        n_samples=sum(len(expand(seed)) for seed in seeds),
        families=Counter(seed.family for seed in seeds),
        settings=Counter(seed.setting for seed in seeds),
        turns=Counter(1 + len(seed.followup_templates) for seed in seeds),
        dimension_seeds=Counter(d for seed in seeds for d in seed.dimensions),
        area_dimension=area_dimension,
        system_words=[len(re.findall(r"\w+", seed.system_template)) for seed in seeds if seed.system_template],
        tool_kinds=Counter(_tool_kind(seed) for seed in seeds if seed.setting == "agentic"),
        guided=sum(1 for seed in seeds if seed.judge_guidance),
        tags=Counter(tag for seed in seeds for tag in seed.tags),
    )


# ---------------------------------------------------------------------------------------------
# Power


@dataclass(frozen=True)
class PowerRow:
    """Minimum detectable difference on one dimension for a paired two-spec comparison."""

    dimension: str
    n_seeds: int
    mde: dict[float, float]
    """sd_diff -> MDE in rubric points (NaN when no seed exercises the dimension)."""
    mde_holm: float
    """MDE at `TYPICAL_SD_DIFF` with alpha divided by the number of dimensions (Holm's first step)."""


def power_table(seeds: Sequence[Seed], sd_diff: Iterable[float] = DEFAULT_SD_DIFF, alpha: float = 0.05,
                power: float = 0.8, dimensions: Sequence[str] | None = None) -> list[PowerRow]:
    """MDE per rubric dimension for a paired two-spec `compare` over the seeds exercising it: the
    standard error sd_diff / sqrt(n) through `stats.paired_compare_mde`, the rule `compare` itself
    reports its `mde` with (t test on n − 1 df, times the sign-flip calibration 1.05 + 2/n; each
    seed one cluster)."""
    from msm_eval.stats import paired_compare_mde

    dims = list(dimensions or known_dimensions())
    counts = Counter(d for seed in seeds for d in seed.dimensions)
    sds = [float(sd) for sd in sd_diff]
    rows = []
    for dim in dims:
        n = counts.get(dim, 0)
        if n == 0:
            rows.append(PowerRow(dim, 0, {sd: float("nan") for sd in sds}, float("nan")))
            continue
        mde = {sd: float(paired_compare_mde(sd / n ** 0.5, n, level=1.0 - alpha, power=power)) for sd in sds}
        holm = float(paired_compare_mde(TYPICAL_SD_DIFF / n ** 0.5, n, level=1.0 - alpha, power=power,
                                        tests=len(dims)))
        rows.append(PowerRow(dim, n, mde, holm))
    return rows


# ---------------------------------------------------------------------------------------------
# Rendering


def _abbrev(dimension: str) -> str:
    """A short column label for a dimension id (initials of its words, or its first 4 letters)."""
    words = dimension.split("_")
    return "".join(w[0] for w in words).upper() if len(words) > 1 else dimension[:4].capitalize()


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None) -> list[str]:
    align = list(align or ["l"] + ["r"] * (len(header) - 1))
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def render_markdown(stats: LibraryStats, dimensions: Sequence[str] | None = None) -> str:
    """The coverage report as Markdown: totals, setting and turn mix, dimension counts, area matrix."""
    dims = list(dimensions or known_dimensions())
    out = [f"{stats.n_seeds} seeds, {stats.n_samples} expanded samples; "
           f"{stats.multi_turn} multi-turn ({stats.multi_turn / max(stats.n_seeds, 1):.0%}); "
           f"{len(stats.area_dimension)} areas; judge guidance on {stats.guided}.", ""]
    out += _table(["family", "seeds"], sorted(stats.families.items(), key=lambda kv: (-kv[1], kv[0])))
    out.append("")
    setting_rows = [(s, stats.settings.get(s, 0)) for s in ("chat", "agentic")]
    setting_rows += [(f"agentic: {kind}", n) for kind, n in sorted(stats.tool_kinds.items())]
    out += _table(["setting", "seeds"], setting_rows)
    out.append("")
    out += _table(["user turns", "seeds"], sorted(stats.turns.items()))
    if stats.system_words:
        words = sorted(stats.system_words)
        out += ["", f"System prompt length (words): median {statistics.median(words):.0f}, "
                    f"min {words[0]}, max {words[-1]}."]
    out.append("")
    out += _table(["dimension", "label", "seeds"], [(d, _abbrev(d), stats.dimension_seeds.get(d, 0)) for d in dims],
                  ["l", "l", "r"])
    out += ["", "Area x dimension (seeds per cell; column labels as in the table above):", ""]
    header = ["area"] + [_abbrev(d) for d in dims] + ["all"]
    rows = []
    for area in sorted(stats.area_dimension):
        counts = stats.area_dimension[area]
        rows.append([area] + [counts.get(d, 0) or "." for d in dims] + [sum(counts.values())])
    rows.append(["**total**"] + [stats.dimension_seeds.get(d, 0) for d in dims]
                + [sum(stats.dimension_seeds.values())])
    out += _table(header, rows)
    return "\n".join(out) + "\n"


def render_power(rows: Sequence[PowerRow], alpha: float = 0.05, power: float = 0.8) -> str:
    """The per-dimension MDE table as Markdown."""
    sds = list(rows[0].mde) if rows else list(DEFAULT_SD_DIFF)
    header = ["dimension", "seeds"] + [f"MDE sd={sd:g}" for sd in sds] + [f"MDE sd={TYPICAL_SD_DIFF:g}, Holm"]

    def fmt(value: float) -> str:
        return "-" if value != value else f"{value:.2f}"

    table = _table(header, [[r.dimension, r.n_seeds] + [fmt(r.mde[sd]) for sd in sds] + [fmt(r.mde_holm)]
                            for r in rows])
    note = (f"Two-sided alpha = {alpha:g}, power = {power:g}; approximate MDE in rubric points (-3..+3) for the "
            "mean paired difference between two specs over the seeds that exercise the dimension, by the rule "
            "`compare` reports its `mde` with (t test on seeds - 1 df, times 1.05 + 2/seeds calibrated by "
            "simulation for its sign-flip test; inf = too few seeds to reach the level at all). "
            f"The Holm column divides alpha by {len(rows)} (the strictest step of the correction).")
    return "\n".join(table) + "\n\n" + note + "\n"
