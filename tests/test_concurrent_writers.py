"""Concurrent writers and leftovers: an output being appended to has one writer; loaders refuse repeats."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest_msm_data import toy_spec

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import exclusive_output
from msm_eval.train.data import load_chats, load_documents
from msm_eval.train.decompose import decompose_structural
from msm_eval.train.docs import generate_documents

ROOT = Path(__file__).resolve().parent.parent


def _hold(path: Path, *, is_folder: bool = False) -> subprocess.Popen:
    """Another process holding the output's lock until its stdin closes."""
    code = ("import sys; from msm_eval.fileio import exclusive_output\n"
            f"with exclusive_output({str(path)!r}, is_folder={is_folder}):\n"
            "    print('held', flush=True); sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_docs_writer_exits_with_a_clear_message(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    decomposition = decompose_structural(spec, "full")
    out = tmp_path / "corpus.jsonl"
    holder = _hold(out)
    try:
        with pytest.raises(MsmEvalError, match="another process is writing this documents corpus right now"):
            generate_documents(decomposition, spec, out, n_types=2, n_ideas=2)
        assert not out.exists()
    finally:
        holder.communicate("")
    # once the other writer is gone (even killed: the kernel drops the lock), the run goes ahead
    summary = generate_documents(decomposition, spec, out, n_types=2, n_ideas=2)
    assert summary.written == len(out.read_text(encoding="utf-8").splitlines())


def test_a_second_scenario_writer_exits_with_a_clear_message(tmp_path: Path) -> None:
    from conftest_scenarios import Responder

    from msm_eval import scenario_gen

    out = tmp_path / "generated"
    holder = _hold(out, is_folder=True)
    responder = Responder()
    try:
        with pytest.raises(MsmEvalError, match="another process is writing this scenario folder"):
            asyncio.run(scenario_gen.generate_async(
                "id:fx_chat_tradeoff", out, model=responder.model(), axes=["stakes"],
                root=Path(__file__).parent / "data" / "scenarios" / "good"))
    finally:
        holder.communicate("")
    assert responder.calls == []   # no paid call was made twice


def test_a_second_demos_writer_exits_with_a_clear_message(tmp_path: Path) -> None:
    from msm_eval.train.demos import generate_demos

    spec = toy_spec(tmp_path)
    out = tmp_path / "demos"
    holder = _hold(out, is_folder=True)
    try:
        with pytest.raises(MsmEvalError, match="another process is writing this demonstrations folder"):
            generate_demos(spec, out, question_types=("direct",))
        assert not list(out.glob("*.jsonl"))   # nothing appended while the other writer held it
    finally:
        holder.communicate("")
    result = generate_demos(spec, out, question_types=("direct",))
    assert result.paths["no_reasoning"].exists()


def test_stale_temp_files_from_a_killed_run_are_removed_on_the_next_run(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    decomposition = decompose_structural(spec, "full")
    out = tmp_path / "corpus.jsonl"
    stale = [tmp_path / ".corpus.jsonl.k1ll3d.tmp", tmp_path / ".corpus.summary.json.x9.tmp"]
    unrelated = tmp_path / ".other.jsonl.q1.tmp"
    for path in [*stale, unrelated]:
        path.write_text("half a record", encoding="utf-8")
    generate_documents(decomposition, spec, out, n_types=1, n_ideas=1)
    assert not any(path.exists() for path in stale)
    assert unrelated.exists()   # another output's temp file is not ours to remove
    with exclusive_output(tmp_path / "scen", is_folder=True):
        pass
    (tmp_path / "scen" / ".s1.md.abc.tmp").write_text("x", encoding="utf-8")
    with exclusive_output(tmp_path / "scen", is_folder=True):
        assert not (tmp_path / "scen" / ".s1.md.abc.tmp").exists()


def test_loaders_drop_repeated_keys_and_refuse_conflicting_ones(tmp_path: Path) -> None:
    doc = {"key": "d1", "text": "A document."}
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [doc, {"key": "d2", "text": "Another."}, doc]) + "\n",
                    encoding="utf-8")
    assert [d["key"] for d in load_documents(path)] == ["d1", "d2"]
    path.write_text("\n".join(json.dumps(r) for r in [doc, {"key": "d1", "text": "Different."}]) + "\n",
                    encoding="utf-8")
    with pytest.raises(MsmEvalError, match=r"docs.jsonl:2: field 'key': key 'd1' appears twice .*lines 1 and 2"):
        load_documents(path)
    chat = {"key": "c1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps(chat) + "\n" + json.dumps(chat) + "\n", encoding="utf-8")
    assert len(load_chats(chats)) == 1
