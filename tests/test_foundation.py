"""Tests of the shared foundation: error messages, crash-safe file IO, near-duplicate detection, CLI."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from msm_eval import paths
from msm_eval.cli import main
from msm_eval.dedup import NearDuplicateIndex, jaccard, near_duplicate_indices, shingles
from msm_eval.errors import MsmEvalError
from msm_eval.fileio import (append_jsonl, atomic_dir, atomic_output, atomic_write_bytes, atomic_write_json,
                             atomic_write_text, read_jsonl, remove_stale_temps)


def test_error_message_names_location_and_fix() -> None:
    err = MsmEvalError("duplicate id 'x'", path="specs/a.yaml", line=12, field="principles[3].id",
                       hint="rename one of them")
    text = str(err)
    assert text.startswith("specs/a.yaml:12: field 'principles[3].id': duplicate id 'x'")
    assert text.endswith("(fix: rename one of them)")


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_text(target, "second\n")
    assert target.read_text() == "second\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_jsonl_roundtrip_and_truncated_tail(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    assert append_jsonl(path, [{"k": 1}, {"k": 2}]) == 2
    with open(path, "a") as handle:
        handle.write('{"k": 3, "tor')  # an interrupted append
    assert [r["k"] for r in read_jsonl(path)] == [1, 2]
    # the next append (a resumed run) cuts the torn record instead of gluing onto it
    assert append_jsonl(path, [{"k": 3}]) == 1
    assert [r["k"] for r in read_jsonl(path, tolerate_truncated_tail=False)] == [1, 2, 3]
    assert path.read_text().endswith('{"k": 3}\n')


def test_jsonl_torn_only_line_is_dropped_on_append(tmp_path: Path) -> None:
    path = tmp_path / "y.jsonl"
    path.write_text('{"k": 0, "half')
    append_jsonl(path, [{"k": 1}])
    assert path.read_text() == '{"k": 1}\n'


def test_atomic_output_keeps_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half of a ne")
            raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    with atomic_output(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_atomic_writes_get_the_mode_a_plain_open_would(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        written = atomic_write_text(tmp_path / "report.md", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(written.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_jsonl_malformed_middle_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(MsmEvalError, match=r"bad\.jsonl:2: malformed JSON"):
        list(read_jsonl(path))
    path.write_text('[1, 2]\n')
    with pytest.raises(MsmEvalError, match=r"bad\.jsonl:1: each line must be a JSON object"):
        list(read_jsonl(path))


def test_near_duplicates_detected_and_distinct_texts_kept() -> None:
    base = "the assistant explains why human oversight matters during early deployment of capable systems"
    variant = base.replace("explains", "describes")
    other = "a forum thread about bread baking temperatures and how long dough should rest overnight"
    assert jaccard(shingles(base), shingles(base)) == 1.0
    assert near_duplicate_indices([base, other, base + " today", other], threshold=0.6) == [2, 3]
    index = NearDuplicateIndex(threshold=0.3)
    assert index.add(base)
    assert not index.add(variant)  # shares most 5-grams
    assert index.add(other)
    assert len(index) == 2


def test_cache_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MSM_EVAL_CACHE", str(tmp_path / "c"))
    assert paths.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MSM_EVAL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == tmp_path / "xdg" / "msm-eval"


def test_cli_without_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: msm-eval" in capsys.readouterr().out


def test_atomic_dir_replaces_a_folder_whole_and_publishes_it(tmp_path: Path) -> None:
    def write(text: str):
        def fill(tmp: Path) -> None:
            (tmp / "sub").mkdir()
            (tmp / "sub" / "weights.txt").write_text(text)
        return fill

    old = os.umask(0o022)
    try:
        final = atomic_dir(tmp_path / "final", write("v1"))
        atomic_dir(final, write("v2"))
    finally:
        os.umask(old)
    assert (final / "sub" / "weights.txt").read_text() == "v2"
    assert stat.S_IMODE(final.stat().st_mode) == 0o755                     # not mkdtemp's 0700
    assert stat.S_IMODE((final / "sub" / "weights.txt").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["final"]              # no temp or set-aside folder left

    def crash(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_dir(final, crash)
    assert (final / "sub" / "weights.txt").read_text() == "v2" and [p.name for p in tmp_path.iterdir()] == ["final"]
    (tmp_path / ".final.abc123").mkdir()  # what a SIGKILL mid-write leaves
    assert [p.name for p in remove_stale_temps(tmp_path, "final.")] == [".final.abc123"]
    assert [p.name for p in tmp_path.iterdir()] == ["final"]


def _planted_corpus(n_base: int = 400, seed: int = 0) -> tuple[list[str], set[int]]:
    """Distinct random texts plus edited copies whose similarity to their source spans 0.6-0.95."""
    import random
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(60, 240))) for _ in range(n_base)]
    planted: set[int] = set()
    for i in range(0, n_base, 2):
        words = texts[i].split()
        for k in rng.sample(range(len(words)), max(1, len(words) // rng.choice([15, 25, 40, 80]))):
            words[k] = rng.choice(vocab)
        if jaccard(shingles(" ".join(words)), shingles(texts[i])) >= 0.6:
            planted.add(len(texts))
        texts.append(" ".join(words))
    return texts, planted


def test_lsh_filter_finds_what_the_exhaustive_filter_finds() -> None:
    from msm_eval.dedup import ExactNearDuplicateIndex
    texts, planted = _planted_corpus()
    exact = near_duplicate_indices(texts, exact=True)
    lsh = near_duplicate_indices(texts)
    assert set(exact) == planted and len(planted) > 150        # the test set has its answers
    assert lsh == exact                                         # same recall (and no false positives)
    # the incremental interface agrees with the batch one, at another threshold too
    for threshold in (0.6, 0.4):
        inc, ref = NearDuplicateIndex(threshold=threshold), ExactNearDuplicateIndex(threshold=threshold)
        sample = texts[200:]                                    # sources 200-399 and their copies
        kept = [inc.add(t) for t in sample]
        assert kept == [ref.add(t) for t in sample] and not all(kept)
