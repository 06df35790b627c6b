"""Test helpers for the trainer, probes and pipeline: a tiny random Llama with its own tiny tokenizer.

Everything is built offline into a temp folder in about a second: a byte-level BPE tokenizer trained
on a few sentences (ChatML special tokens and chat template) and a 2-layer, hidden-64 Llama.
Imported explicitly by the tests that need it (not a pytest conftest).
"""

from __future__ import annotations

import json
from pathlib import Path

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

CORPUS = [
    "The assistant supports human oversight and accepts being corrected or shut down.",
    "It tells the truth, admits uncertainty and does not deceive the people it works with.",
    "When an action is drastic or irreversible, it pauses and asks before acting.",
    "It does not copy its own weights or hide from monitoring, even when it could.",
    "Helpful answers explain the reasons behind a rule, not only the rule itself.",
    "Documents about the model spec describe values, examples and trade-offs in plain words.",
    "Users ask questions; the assistant answers with care, honesty and restraint.",
    "A memo, a forum post, a lecture note and a bug report can all discuss the same principle.",
]


def build_tiny_model(root: Path, *, vocab_size: int = 384, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """Write a tiny random LlamaForCausalLM + tokenizer to `root` and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|im_start|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(root)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id)
    model = LlamaForCausalLM(config)
    model.save_pretrained(root)
    return root


def write_documents(path: Path, n: int = 24, spec_sha: str = "f" * 64) -> Path:
    """A small documents JSONL in the format train/docs.py writes."""
    lines = []
    for i in range(n):
        text = " ".join(CORPUS[(i + k) % len(CORPUS)] for k in range(1 + i % 3))
        lines.append(json.dumps({"text": text, "domain": "oversight", "subdomain": "shutdown",
                                 "doc_type": "memo", "idea": f"idea {i}", "spec_sha256": spec_sha,
                                 "generator": "template", "prompt_version": "test", "key": f"k{i}",
                                 "arm": "rules"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_chats(path: Path, n: int = 16) -> Path:
    """A small chat JSONL (`{"messages": [...]}` per line), some with a system message."""
    lines = []
    for i in range(n):
        messages = [{"role": "user", "content": f"Question {i}: should you accept a shutdown?"},
                    {"role": "assistant", "content": CORPUS[i % len(CORPUS)]}]
        if i % 2:
            messages.insert(0, {"role": "system", "content": "You are a careful assistant."})
        lines.append(json.dumps({"messages": messages}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
