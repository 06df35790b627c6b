"""Packing and chat masking for the trainer: boundaries, no cross-document attention, assistant-only labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest_train import build_tiny_model, write_chats, write_documents
from msm_eval.errors import MsmEvalError
from msm_eval.train.data import (IGNORE, build_rows, load_chats, pack_documents, pack_examples, tokenize_chat,
                                  tokenize_chats)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_pack_documents_keeps_boundaries_and_restarts_positions() -> None:
    rows = pack_documents([[5, 6, 7], [8, 9], [10, 11, 12, 13, 14]], seq_len=6, eos_id=2, pad_id=0)
    assert rows.input_ids.tolist() == [[5, 6, 7, 2, 8, 9], [2, 10, 11, 12, 13, 14], [2, 0, 0, 0, 0, 0]]
    # positions restart at each document and at each row (a document continued in a new row restarts)
    assert rows.position_ids.tolist() == [[0, 1, 2, 3, 0, 1], [0, 0, 1, 2, 3, 4], [0, 0, 1, 2, 3, 4]]
    # a document's last token (EOS) never predicts the next document; targets are the next token
    assert rows.targets.tolist() == [[6, 7, 2, IGNORE, 9, 2], [IGNORE, 11, 12, 13, 14, 2],
                                     [IGNORE, IGNORE, IGNORE, IGNORE, IGNORE, IGNORE]]
    assert rows.n_pad == 5 and rows.n_tokens == 13


def test_stream_packing_wastes_less_than_one_row(tiny: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    docs = write_documents(tmp_path / "docs.jsonl", n=60)
    train, held = build_rows("midtrain", docs, tok, seq_len=128, eval_fraction=0.1, seed=0)
    assert train.n_pad < 128 and held is not None
    assert train.padding_waste < 0.02 * 10  # under one row of padding over a handful of rows
    assert (train.position_ids < 128).all()


def test_packed_documents_do_not_attend_to_each_other(tiny: Path) -> None:
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    doc1, doc2 = [10, 11, 12, 13, 14, 15, 16], [20, 21, 22, 23, 24]
    rows = pack_documents([doc1, doc2], seq_len=32, eos_id=2, pad_id=0)
    start = len(doc1) + 1
    n = len(doc2) + 1
    with torch.no_grad():
        packed = model(input_ids=rows.input_ids, position_ids=rows.position_ids, use_cache=False).logits
        alone = model(input_ids=torch.tensor([doc2 + [2]]), position_ids=torch.arange(n)[None],
                      use_cache=False).logits
        leaky = model(input_ids=rows.input_ids, position_ids=torch.arange(32)[None], use_cache=False).logits
    torch.testing.assert_close(packed[0, start:start + n], alone[0], rtol=1e-5, atol=1e-5)
    # control: without restarting positions the same row does attend across documents
    assert not torch.allclose(leaky[0, start:start + n], alone[0], atol=1e-3)


def test_document_mask_is_block_diagonal_and_causal() -> None:
    from msm_eval.train.trainer import document_attention_mask
    mask = document_attention_mask(torch.tensor([[0, 1, 2, 0, 1, 0]]), torch.float32)
    allowed = (mask[0, 0] == 0).int().tolist()
    assert allowed == [[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0],
                       [0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1]]
    assert mask.shape == (1, 1, 6, 6) and mask.min() == torch.finfo(torch.float32).min


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_trainer_forward_keeps_documents_apart(tiny: Path, implementation: str) -> None:
    """The trainer builds the document mask itself, so no transformers release can let documents mix."""
    from transformers import AutoModelForCausalLM
    from msm_eval.train.trainer import packed_logits
    model = AutoModelForCausalLM.from_pretrained(tiny, attn_implementation=implementation).eval()
    doc1, doc2 = [10, 11, 12, 13, 14, 15, 16], [20, 21, 22, 23, 24]
    rows = pack_documents([doc1, doc2], seq_len=32, eos_id=2, pad_id=0)
    start, n = len(doc1) + 1, len(doc2) + 1
    with torch.no_grad():
        packed = packed_logits(model, rows.input_ids, rows.position_ids)
        alone = model(input_ids=torch.tensor([doc2 + [2]]), position_ids=torch.arange(n)[None], use_cache=False).logits
    torch.testing.assert_close(packed[0, start:start + n], alone[0], rtol=1e-5, atol=1e-5)


def test_chat_masking_labels_only_assistant_tokens(tiny: Path) -> None:
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    messages = [{"role": "system", "content": "Be careful."}, {"role": "user", "content": "Hello there"},
                {"role": "assistant", "content": "It tells the truth"}, {"role": "user", "content": "More?"},
                {"role": "assistant", "content": "It pauses"}]
    ids, targets = tokenize_chat(tok, messages)
    learned = tok.decode([t for t in targets if t != IGNORE])
    assert learned == "It tells the truth<|im_end|>\nIt pauses<|im_end|>\n"
    # nothing of the system or user turns is a target
    for forbidden in ("Be careful", "Hello", "More?", "user", "system"):
        assert forbidden not in learned


def test_pack_examples_keeps_chats_whole_and_pads_little() -> None:
    examples = [([1] * n, [7] * (n - 1) + [IGNORE]) for n in (5, 3, 4, 2, 6, 1)]
    rows = pack_examples(examples, seq_len=7, pad_id=0)
    assert rows.n_tokens == 21 and len(rows) == 3 and rows.n_pad == 0
    # every row's segments are whole examples: position resets mark starts, lengths are the originals
    lengths = []
    for row in rows.position_ids.tolist():
        run = 0
        for p in row + [0]:
            if p == 0 and run:
                lengths.append(run)
                run = 0
            run += 1
    assert sorted(lengths) == [1, 2, 3, 4, 5, 6]


def test_chat_whose_reply_would_be_cut_is_dropped_and_counted_not_trained_on() -> None:
    fits = ([1, 2, 3], [2, 3, IGNORE])
    too_long = (list(range(10)), list(range(1, 10)) + [IGNORE])     # every position is a reply target
    rows = pack_examples([fits, too_long], seq_len=4, pad_id=0)
    assert (rows.n_examples, rows.n_dropped, rows.n_cut_replies, rows.n_truncated) == (1, 1, 0, 0)
    assert rows.targets.tolist() == [[2, 3, IGNORE, IGNORE]]        # only the chat that fits


def test_long_chat_policies_error_and_truncate() -> None:
    too_long = (list(range(10)), list(range(1, 10)) + [IGNORE])
    with pytest.raises(MsmEvalError, match=r"c.jsonl:7 has 10 tokens.*seq_len 4 would cut its assistant reply"):
        pack_examples([too_long], seq_len=4, pad_id=0, long_chats="error", where="c.jsonl", labels=["c.jsonl:7"])
    cut = pack_examples([too_long], seq_len=4, pad_id=0, long_chats="truncate")
    assert (cut.n_cut_replies, cut.n_truncated) == (1, 6) and cut.targets.tolist() == [[1, 2, 3, IGNORE]]


def test_long_chat_with_only_template_tokens_past_the_row_is_shortened_not_dropped() -> None:
    # reply targets end at position 3; positions 4-7 are untrained template tail (e.g. a newline)
    chat = (list(range(8)), [1, 2, 3, 4, IGNORE, IGNORE, IGNORE, IGNORE])
    rows = pack_examples([chat], seq_len=5, pad_id=0, long_chats="error")
    assert (rows.n_examples, rows.n_dropped, rows.n_cut_replies, rows.n_truncated) == (1, 0, 0, 3)
    assert rows.targets.tolist() == [[1, 2, 3, 4, IGNORE]]


def test_bad_chat_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n"
                    + json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n")
    with pytest.raises(MsmEvalError, match=r"c.jsonl:2: field 'messages'"):
        load_chats(path)


def test_chat_without_assistant_is_rejected(tiny: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(MsmEvalError, match="no assistant message"):
        build_rows("aft", path, tok, seq_len=32, eval_fraction=0.0, seed=0)


def test_aft_rows_from_chat_file(tiny: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    train, held = build_rows("aft", write_chats(tmp_path / "c.jsonl", n=20), tok, seq_len=512,
                             eval_fraction=0.2, seed=1)
    assert held is not None and len(held) >= 1
    assert (train.n_examples, train.n_dropped, train.n_cut_replies, held.n_examples) == (16, 0, 0, 4)
    assert (train.targets != IGNORE).sum() > 0
    assert train.padding_waste < 0.25


def test_build_rows_reports_dropped_chats_and_refuses_when_none_fit(tiny: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    path = write_chats(tmp_path / "c.jsonl", n=20)
    lengths = sorted(len(tokenize_chat(tok, c)[0]) for c in load_chats(path))
    seq_len = lengths[len(lengths) // 2]                 # about half the chats are longer than a row
    train, _ = build_rows("aft", path, tok, seq_len=seq_len, eval_fraction=0.0, seed=0)
    longer = sum(n > seq_len for n in lengths)
    assert longer and train.n_dropped == longer and train.n_examples == 20 - longer and train.n_cut_replies == 0
    with pytest.raises(MsmEvalError, match="c.jsonl:.*would cut its assistant reply"):
        build_rows("aft", path, tok, seq_len=seq_len, eval_fraction=0.0, seed=0, long_chats="error")
    with pytest.raises(MsmEvalError, match="every training chat is longer than seq_len"):
        build_rows("aft", path, tok, seq_len=lengths[0] - 1, eval_fraction=0.0, seed=0)


def test_cpu_demo_aft_settings_keep_every_reply_whole(tmp_path: Path) -> None:
    """configs/cpu_demo.yaml's AFT rows hold every template demonstration whole, with little padding
    (at seq_len 256, 37 of the 230 chats lost the end of their reply and 30% of the rows was padding)."""
    from transformers import AutoTokenizer

    from msm_eval.train.pipeline import _load_spec, load_pipeline_config, make_demos
    from msm_eval.train.trainer import resolve_model_path
    cfg = load_pipeline_config(Path(__file__).resolve().parents[1] / "configs" / "cpu_demo.yaml")
    chats = make_demos(_load_spec(cfg.spec), tmp_path, cfg.demos)
    tok = AutoTokenizer.from_pretrained(resolve_model_path(cfg.base_model))
    aft = cfg.aft
    train, held = build_rows("aft", chats, tok, seq_len=aft["seq_len"], eval_fraction=aft["eval_fraction"],
                             seed=aft["seed"], long_chats=aft.get("long_chats", "drop"))
    n_chats = len(load_chats(chats))
    assert held is not None
    assert train.n_examples + held.n_examples == n_chats > 200
    assert train.n_dropped == held.n_dropped == 0 and train.n_cut_replies == held.n_cut_replies == 0
    assert train.n_truncated == 0 and train.padding_waste < 0.10


def test_batched_tokenisation_gives_the_same_ids_as_one_at_a_time(tiny: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    chats = load_chats(write_chats(tmp_path / "c.jsonl", n=12))
    chats.append([{"role": "assistant", "content": "An opening line"}, {"role": "user", "content": "And?"},
                  {"role": "assistant", "content": "A second"}])          # an assistant turn first
    batched = tokenize_chats(tok, chats, [f"c.jsonl:{i + 1}" for i in range(len(chats))])
    assert batched == [tokenize_chat(tok, chat) for chat in chats]
    assert any(t != IGNORE for _, targets in batched for t in targets)
    with pytest.raises(MsmEvalError, match="no assistant message") as err:
        tokenize_chats(tok, [chats[0], [{"role": "user", "content": "hi"}]], ["c.jsonl:1", "c.jsonl:2"])
    assert "c.jsonl:2" in str(err.value)
    # midtraining documents: the rows equal packing documents tokenized one by one
    docs = write_documents(tmp_path / "docs.jsonl", n=30)
    train, held = build_rows("midtrain", docs, tok, seq_len=64, eval_fraction=0.0, seed=0)
    texts = [json.loads(line)["text"] for line in docs.read_text().splitlines()]
    one_by_one = pack_documents([tok(t, add_special_tokens=False)["input_ids"] for t in texts], 64,
                                tok.eos_token_id, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    assert held is None and torch.equal(train.input_ids, one_by_one.input_ids)
    assert torch.equal(train.targets, one_by_one.targets)
