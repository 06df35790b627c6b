"""MSM documents: template corpus, value vs rules arm, resume, dedup, regeneration, dry-run, stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest_msm_data import VALUE_SENTENCES, ScriptedGenerator, mock_model, toy_spec, toy_markdown_spec

from msm_eval.cli import main
from msm_eval.errors import MsmEvalError
from msm_eval.train.decompose import decompose_structural
from msm_eval.train.docs import (
    REQUIRED_FIELDS,
    corpus_stats,
    estimate_documents,
    generate_documents,
    sidecar,
    template_genres,
)
from msm_eval.train.generation import GenerationSettings, estimate_tokens, render_prompt


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_template_corpus_is_varied_and_complete(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    decomposition = decompose_structural(spec, "full")
    out = tmp_path / "corpus.jsonl"
    summary = generate_documents(decomposition, spec, out, n_types=8, n_ideas=5, seed=3)
    records = _records(out)
    assert summary.written == len(records) == 3 * 8 * 5
    assert summary.rejected == 0 and summary.failed == 0
    assert len(template_genres()) >= 6
    for sub in {r["subdomain"] for r in records}:
        assert len({r["doc_type"] for r in records if r["subdomain"] == sub}) == 8
    assert len({r["key"] for r in records}) == len(records)
    for record in records:
        assert all(isinstance(record[f], str) and record[f] for f in REQUIRED_FIELDS)
        assert record["spec_sha256"] == spec.sha256 and record["generator"] == "template"
    stats = corpus_stats(out)
    assert stats.duplicate_rate < 0.02
    assert stats.mean_tokens > 80
    # documents of one genre differ in structure/wording, not only in names
    memos = [r["text"] for r in records if r["doc_type"] == records[0]["doc_type"]]
    assert len({m.splitlines()[0] for m in memos}) > 1
    summary_file = json.loads(sidecar(out, "summary").read_text())
    assert summary_file["dedup_threshold"] == 0.6 and summary_file["written"] == len(records)


def test_template_corpus_is_deterministic_given_the_seed(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    decomposition = decompose_structural(spec, "full")
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    generate_documents(decomposition, spec, a, n_types=3, n_ideas=2, seed=1)
    generate_documents(decomposition, spec, b, n_types=3, n_ideas=2, seed=1)
    generate_documents(decomposition, spec, c, n_types=3, n_ideas=2, seed=2)
    assert a.read_text() == b.read_text()
    assert a.read_text() != c.read_text()


def test_rules_arm_cites_rule_ids_and_carries_no_values(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    decomposition = decompose_structural(spec, "full")
    value_out, rules_out = tmp_path / "value.jsonl", tmp_path / "rules.jsonl"
    generate_documents(decomposition, spec, value_out, arm="value", n_types=10, n_ideas=3)
    generate_documents(decomposition, spec, rules_out, arm="rules", n_types=10, n_ideas=3)
    value_text = " ".join(r["text"] for r in _records(value_out))
    rules_records = _records(rules_out)
    rules_text = " ".join(r["text"] for r in rules_records)
    assert all(r["arm"] == "rules" for r in rules_records)
    for sentence in VALUE_SENTENCES:
        assert sentence in value_text
        assert sentence not in rules_text
    values_all = [a.text for _, s in decomposition.subdomains() for a in s.assertions if a.label == "value"]
    assert not any(v in rules_text for v in values_all)
    for record in rules_records:
        rule_id = {"Support human oversight": "SP1", "Act within sanctioned limits": "SP2",
                   "Be honest and transparent": "GP1"}[record["subdomain"]]
        assert rule_id in record["text"]


def test_llm_documents_resume_after_interruption_without_loss_or_duplicates(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    decomposition = decompose_structural(spec, "full")
    out = tmp_path / "corpus.jsonl"
    settings = GenerationSettings(max_connections=2)
    broken = ScriptedGenerator(fail_documents_after=5)
    first = generate_documents(decomposition, spec, out, generator=mock_model(broken), n_types=2, n_ideas=3,
                               settings=settings, min_words=100)
    planned = 3 * 2 * 3
    assert first.written == 5 and first.failed == planned - 5
    kept = {r["key"]: r["text"] for r in _records(out)}
    assert len(kept) == 5
    # a torn last line left by a crash mid-append is repaired, not duplicated or fatal
    with open(out, "a", encoding="utf-8") as handle:
        handle.write('{"key": "half-writ')
    healthy = ScriptedGenerator()
    second = generate_documents(decomposition, spec, out, generator=mock_model(healthy), n_types=2, n_ideas=3,
                                settings=settings, min_words=100)
    records = _records(out)
    assert second.resumed == 5 and second.written == planned - 5 and second.failed == 0
    assert len(records) == planned == len({r["key"] for r in records})
    assert {r["key"]: r["text"] for r in records if r["key"] in kept} == kept
    assert any("torn" in note for note in second.notes)
    # types and ideas come from the plan file: the rerun made document calls only
    assert set(healthy.calls) == {"documents"} and healthy.calls["documents"] == planned - 5
    assert {r["prompt_version"] for r in records} == {first.prompt_version}
    assert all(r["generator"] == "msm/mock" for r in records)
    # a third run has nothing left to do
    third = generate_documents(decomposition, spec, out, generator=mock_model(ScriptedGenerator()), n_types=2,
                               n_ideas=3, settings=settings, min_words=100)
    assert third.written == 0 and len(_records(out)) == planned


def test_near_duplicates_are_regenerated_then_rejected(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    decomposition = decompose_structural(spec, "rules")
    out = tmp_path / "corpus.jsonl"
    same = " ".join(f"word{i % 40} filler{i % 7}" for i in range(200))
    generator = ScriptedGenerator(document_text=lambda prompt, n: same + (" tail" if n % 2 else ""))
    summary = generate_documents(decomposition, spec, out, generator=mock_model(generator), n_types=1, n_ideas=2,
                                 settings=GenerationSettings(max_attempts=2), min_words=100)
    assert summary.written == 1
    assert summary.rejected == 3 * 2 - 1
    assert summary.dedup_threshold == 0.6
    rejects = _records(sidecar(out, "rejects"))
    assert len(rejects) == summary.rejected
    assert all(r["reason"].startswith("near-duplicate (Jaccard") for r in rejects)
    # bounded: 1 accepted call + 2 attempts per rejected document
    assert generator.calls["documents"] == 1 + 2 * summary.rejected


def test_documents_failing_the_length_check_are_regenerated_a_bounded_number_of_times(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    decomposition = decompose_structural(spec, "full")
    out = tmp_path / "corpus.jsonl"

    def text(prompt: str, n: int) -> str:
        if "idea number 0" in prompt:
            return "Far too short."
        import re

        from conftest_msm_data import _unique_document
        return _unique_document(re.search(r"Subdomain: (.*)", prompt).group(1) + re.search(r"Idea: (.*)", prompt).group(1))

    generator = ScriptedGenerator(document_text=text)
    summary = generate_documents(decomposition, spec, out, generator=mock_model(generator), n_types=1, n_ideas=2,
                                 settings=GenerationSettings(max_attempts=3), min_words=100)
    assert summary.written == 3 and summary.rejected == 3 and summary.format_failures == 9
    rejects = _records(sidecar(out, "rejects"))
    assert all(r["reason"].startswith("too short") and r["attempts"] == 3 for r in rejects)
    # rejected keys are final for this corpus: a rerun does not retry them
    again = generate_documents(decomposition, spec, out, generator=mock_model(ScriptedGenerator()), n_types=1,
                               n_ideas=2, settings=GenerationSettings(max_attempts=3), min_words=100)
    assert again.written == 0 and again.rejected == 0


def test_dry_run_estimate_counts_calls_tokens_and_cost(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    decomposition = decompose_structural(spec, "full")
    estimate = estimate_documents(decomposition, spec.render("full"), n_types=20, n_ideas=25,
                                  input_price_per_mtok=3.0, output_price_per_mtok=15.0)
    stages = {s.stage: s for s in estimate.stages}
    assert stages["doc_types"].calls == 3
    assert stages["doc_ideas"].calls == 3 * 20
    assert stages["documents"].calls == 3 * 20 * 25
    assert estimate.calls == 3 + 60 + 1500
    # every document call carries the full spec in its prompt
    assert stages["documents"].input_tokens > 1500 * estimate_tokens(spec.render("full"))
    assert estimate.cost == pytest.approx((estimate.input_tokens * 3.0 + estimate.output_tokens * 15.0) / 1e6)
    assert "estimated cost" in estimate.format()
    sub = decomposition.domains[0].subdomains[0]
    one_types_prompt = render_prompt("msm_doc_types.j2", domain="Safety", subdomain=sub.name, context=sub.context,
                                     assertions=sub.assertions, n=20, model_name="Meridian", avoid=[])
    assert stages["doc_types"].input_tokens >= estimate_tokens(one_types_prompt)


def test_cli_dry_run_spends_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    decomp = tmp_path / "d.json"
    assert main(["docs", "decompose", str(toy_markdown_spec(tmp_path)), "--out", str(decomp)]) == 0
    capsys.readouterr()
    out = tmp_path / "corpus.jsonl"
    code = main(["docs", "generate", str(decomp), "--out", str(out), "--generator", "anthropic/claude-x",
                 "--types", "20", "--ideas", "25", "--dry-run", "--input-price", "3", "--output-price", "15",
                 "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calls"] == 3 + 60 + 1500 and report["estimated_cost"] > 0
    assert not out.exists()


def test_cli_generate_and_stats_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    decomp, out = tmp_path / "d.json", tmp_path / "corpus.jsonl"
    assert main(["docs", "decompose", str(toy_markdown_spec(tmp_path)), "--out", str(decomp)]) == 0
    assert main(["docs", "generate", str(decomp), "--out", str(out), "--types", "6", "--ideas", "2"]) == 0
    capsys.readouterr()
    assert main(["docs", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["documents"] == 3 * 6 * 2
    assert stats["token_method"].startswith("whitespace")
    assert sum(stats["by_doc_type"].values()) == 36 and len(stats["by_domain"]) == 2


def test_stats_names_a_malformed_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    good = json.dumps({"text": "a b c", "domain": "d", "doc_type": "memo"})
    corpus.write_text(f"{good}\n\n{good}\n{{not json\n{good}\n", encoding="utf-8")
    with pytest.raises(MsmEvalError, match=r"corpus\.jsonl:4: malformed JSON"):
        corpus_stats(corpus)
    assert main(["docs", "stats", str(corpus)]) == 2
    assert "corpus.jsonl:4" in capsys.readouterr().err
    corpus.write_text(f"{good}\n\n{json.dumps({'text': 'x', 'domain': 'd'})}\n", encoding="utf-8")
    with pytest.raises(MsmEvalError, match=r"corpus\.jsonl:3: field 'doc_type'"):
        corpus_stats(corpus)
    corpus.write_text(f"{good}\n", encoding="utf-8")
    with pytest.raises(MsmEvalError, match="tokenizer folder not found"):
        corpus_stats(corpus, tokenizer=str(tmp_path / "nope"))


def test_stats_counts_tokens_with_a_tokenizer_folder(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "oversight": 1, "matters": 2, "a": 3}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"text": "oversight matters a great deal!", "domain": "d", "doc_type": "memo"})
                      + "\n", encoding="utf-8")
    stats = corpus_stats(corpus, tokenizer=str(tmp_path / "tok"))
    assert stats.token_method == "tokenizer tok" and stats.tokens == 6  # "deal", "great" unknown; "!" separate


def test_corpus_with_foreign_lines_is_refused(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    out = tmp_path / "corpus.jsonl"
    out.write_text(json.dumps({"text": "not ours"}) + "\n", encoding="utf-8")
    with pytest.raises(MsmEvalError, match=r"corpus\.jsonl:1: field 'key'"):
        generate_documents(decompose_structural(spec, "full"), spec, out)


def test_spec_changed_since_decomposition_is_refused(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    decomposition = decompose_structural(spec, "full")
    decomposition.spec_sha256 = "0" * 64
    with pytest.raises(MsmEvalError, match="spec changed since this decomposition"):
        generate_documents(decomposition, spec, tmp_path / "c.jsonl")


def test_cache_serves_repeated_calls_without_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_CACHE_DIR", str(tmp_path / "inspect-cache"))
    spec = toy_spec(tmp_path)
    decomposition = decompose_structural(spec, "rules")
    settings = GenerationSettings(cache=True, max_connections=2)
    first = ScriptedGenerator()
    generate_documents(decomposition, spec, tmp_path / "a.jsonl", generator=mock_model(first), n_types=1,
                       n_ideas=2, settings=settings, min_words=100)
    assert first.calls["documents"] == 6
    second = ScriptedGenerator()
    summary = generate_documents(decomposition, spec, tmp_path / "b.jsonl", generator=mock_model(second),
                                 n_types=1, n_ideas=2, settings=settings, min_words=100)
    assert summary.written == 6 and second.calls == {}
    texts_a = {r["key"]: r["text"] for r in _records(tmp_path / "a.jsonl")}
    assert texts_a == {r["key"]: r["text"] for r in _records(tmp_path / "b.jsonl")}


def test_batch_setting_reaches_the_generate_config() -> None:
    settings = GenerationSettings(batch=100, max_connections=7, temperature=1.0)
    config = settings.generate_config(max_tokens=5000)
    assert config.batch == 100 and config.max_connections == 7 and config.max_tokens == 5000
    assert GenerationSettings().generate_config().batch is None


def test_cli_llm_path_with_a_scripted_mock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest_msm_data import _unique_document

    spec_path = toy_markdown_spec(tmp_path)
    script = tmp_path / "script.jsonl"
    entries = [
        {"when": "broad domains", "text": json.dumps([{"name": "Honesty", "description": "truth"}])},
        {"when": "into subdomains", "text": json.dumps([{"name": "No deception", "context": "c", "passage":
                                                          "The assistant should not deceive or manipulate the "
                                                          "people it works with."}])},
        {"when": "assertions this passage", "text": json.dumps([{"text": "It does not deceive.",
                                                                  "label": "behavior"}])},
        {"when": "kinds of document", "text": json.dumps([{"type": "memo", "description": "d"}])},
        {"when": "ideas for documents", "text": json.dumps(["first idea", "second idea"])},
        {"when": "Write the complete document", "text": f"<content>{_unique_document('x')}</content>"},
    ]
    script.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    decomp, out = tmp_path / "d.json", tmp_path / "corpus.jsonl"
    assert main(["docs", "decompose", str(spec_path), "--decomposer", "llm", "--model-role", "generator=msm/mock",
                 "-M", f"script={script}", "--out", str(decomp)]) == 0
    data = json.loads(decomp.read_text())
    assert data["decomposer"] == "llm" and data["model"] == "msm/mock"
    assert data["domains"][0]["subdomains"][0]["rule_ids"] == ["HO1"]
    assert main(["docs", "generate", str(decomp), "--out", str(out), "--generator", "msm/mock", "-M",
                 f"script={script}", "--types", "1", "--ideas", "2", "--max-attempts", "2"]) == 0
    text = capsys.readouterr().out
    assert "1 written" in text and "1 rejected" in text and "Jaccard of word 5-grams >= 0.6" in text
    assert _records(sidecar(out, "rejects"))[0]["reason"].startswith("near-duplicate")


@pytest.mark.parametrize(("rule", "third", "first"), [
    ("Do not hide from monitoring.", "Meridian does not hide from monitoring.", "I do not hide from monitoring."),
    ("Check in when you are unsure what your principals want.",
     "Meridian checks in when it is unsure what its principals want.",
     "I check in when I am unsure what my principals want."),
    ("Sincerely assert only what you believe.", "Meridian sincerely asserts only what it believes.",
     "I sincerely assert only what I believe."),
    ("Identify and serve the real need.", "Meridian identifies and serves the real need.",
     "I identify and serve the real need."),
    ("Oversight is how mistakes get caught.", "Oversight is how mistakes get caught.",
     "Oversight is how mistakes get caught."),
    ("Be transparent about yourself.", "Meridian is transparent about itself.", "I am transparent about myself."),
])
def test_rules_are_restated_as_statements_about_the_model(rule: str, third: str, first: str) -> None:
    from msm_eval.train.generation import describe_rule

    assert describe_rule(rule, "Meridian") == third
    assert describe_rule(rule, "Meridian", first_person=True) == first


def test_resuming_into_a_corpus_of_another_arm_is_refused(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    decomposition = decompose_structural(spec, "full")
    out = tmp_path / "corpus.jsonl"
    generate_documents(decomposition, spec, out, arm="value", n_types=1, n_ideas=1)
    with pytest.raises(MsmEvalError, match=r"corpus\.jsonl: field 'arm': this corpus holds documents with arm='value'"):
        generate_documents(decomposition, spec, out, arm="rules", n_types=1, n_ideas=1)


_KILLED_GENERATION = r'''
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from conftest_msm_data import ScriptedGenerator, mock_model, toy_spec
from msm_eval.train.decompose import decompose_structural
from msm_eval.train.docs import generate_documents
from msm_eval.train.generation import GenerationSettings

tmp, kill_at = Path(sys.argv[1]), int(sys.argv[2])
spec = toy_spec(tmp)
inner = ScriptedGenerator()
def responder(prompt):
    reply = inner(prompt)
    if inner.calls.get("documents", 0) == kill_at:   # SIGKILL while other document calls are in flight
        os.kill(os.getpid(), signal.SIGKILL)
    return reply
generate_documents(decompose_structural(spec, "full"), spec, tmp / "corpus.jsonl", generator=mock_model(responder),
                   n_types=2, n_ideas=3, settings=GenerationSettings(max_connections=3), min_words=100)
raise SystemExit("the run was supposed to be killed")
'''


def test_generation_killed_mid_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    """A real SIGKILL of the generating process (no cleanup) with concurrent calls in flight."""
    import signal
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _KILLED_GENERATION, str(tmp_path), "7",
                           str(Path(__file__).resolve().parent)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    out = tmp_path / "corpus.jsonl"
    survivors = {r["key"]: r for r in _records(out)} if out.exists() else {}
    planned = 3 * 2 * 3
    assert 0 < len(survivors) < planned  # killed part-way
    assert len(_records(sidecar(out, "plan"))) > 0  # types and ideas were kept too

    spec = toy_spec(tmp_path)
    healthy = ScriptedGenerator()
    resumed = generate_documents(decompose_structural(spec, "full"), spec, out, generator=mock_model(healthy),
                                 n_types=2, n_ideas=3, settings=GenerationSettings(max_connections=3), min_words=100)
    records = _records(out)
    assert resumed.resumed == len(survivors) and resumed.failed == 0
    assert len(records) == planned == len({r["key"] for r in records})
    assert {r["key"]: r for r in records if r["key"] in survivors} == survivors
    assert healthy.calls.get("documents") == planned - len(survivors)  # only the missing ones were written
    assert set(healthy.calls) == {"documents"}  # the plan (types, ideas) was resumed, not regenerated
