"""Training data: documents packed into fixed-length rows, chats with assistant-only labels.

Both stages produce the same `PackedRows`: `input_ids`, `targets` (the next token to predict at each
position, -100 where nothing is learned) and `position_ids` that restart at 0 at every document.
Targets are shifted here, not in the model, so document boundaries are explicit: the last position
of a document never learns to predict the first token of the next one. The trainer turns the
restarting `position_ids` into a block-diagonal causal mask (`trainer.document_attention_mask`),
so tokens never attend across documents (see `tests/test_train_data.py`).

- Midtraining (`pack_documents`): each document's tokens plus EOS are streamed into rows of
  `seq_len`; a document longer than the row continues in the next row. Only the last row can have
  padding, so waste is below one row.
- AFT (`tokenize_chats` + `pack_examples`): each chat is rendered with the model's chat template and
  only assistant turns get targets; whole chats are placed into rows by first-fit decreasing, so a
  chat is never split and padding stays small. A chat whose assistant reply would not fit in a row
  is left out and counted (or refused, with `long_chats: error`), never trained on a cut reply.
- Both tokenize in batches (one tokenizer call per split), which gives the same ids as tokenizing
  one document or chat at a time (`tokenize_chat`, the per-chat reference).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from msm_eval.errors import MsmEvalError
from msm_eval.fileio import read_jsonl

IGNORE = -100


@dataclass
class PackedRows:
    """Fixed-length training rows: `input_ids`, `targets`, `position_ids` (all `[rows, seq_len]`, int64)."""

    input_ids: torch.Tensor
    targets: torch.Tensor
    position_ids: torch.Tensor
    n_pad: int = 0            # padding positions (no real token)
    n_truncated: int = 0      # template tokens cut from chats longer than a row (never assistant targets)
    n_examples: int = 0       # chats packed (AFT); documents are not counted here
    n_dropped: int = 0        # chats left out because a row would have cut their assistant reply
    n_cut_replies: int = 0    # packed chats that lost assistant-target tokens (0 unless policy "truncate")

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_tokens(self) -> int:
        """Real (non-padding) token positions."""
        return int(self.input_ids.numel()) - self.n_pad

    @property
    def padding_waste(self) -> float:
        """Share of row positions that hold padding."""
        total = int(self.input_ids.numel())
        return self.n_pad / total if total else 0.0

    def select(self, index: torch.Tensor | Sequence[int]) -> dict[str, torch.Tensor]:
        """A batch (dict of tensors) for the given row indices."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return {"input_ids": self.input_ids[idx], "targets": self.targets[idx],
                "position_ids": self.position_ids[idx]}


def _doc_targets(ids: list[int], learn: list[bool] | None = None) -> list[int]:
    """Next-token targets within one document; the last position has no successor (IGNORE)."""
    targets = ids[1:] + [IGNORE]
    if learn is not None:
        # learn[t] says whether token t is a training target, i.e. whether position t-1 predicts it
        targets = [tok if (t + 1 < len(ids) and learn[t + 1]) else IGNORE for t, tok in enumerate(targets)]
    return targets


def pack_documents(docs: Iterable[Sequence[int]], seq_len: int, eos_id: int, pad_id: int) -> PackedRows:
    """Stream documents (token lists) + EOS into rows of `seq_len`; positions restart at each document.

    A document that runs past a row's end continues in the next row with positions restarting at 0,
    so every row stands alone (rows can be shuffled) and positions never exceed `seq_len`.
    """
    ids: list[int] = []
    targets: list[int] = []
    doc_index: list[int] = []
    for d, doc in enumerate(docs):
        tokens = list(doc) + [eos_id]
        ids.extend(tokens)
        targets.extend(_doc_targets(tokens))
        doc_index.extend([d] * len(tokens))
    positions: list[int] = []
    for t in range(len(ids)):
        new_segment = t % seq_len == 0 or doc_index[t] != doc_index[t - 1]
        positions.append(0 if new_segment else positions[-1] + 1)
    return _to_rows(ids, targets, positions, seq_len, pad_id, n_truncated=0)


def _to_rows(ids: list[int], targets: list[int], positions: list[int], seq_len: int, pad_id: int,
             n_truncated: int) -> PackedRows:
    """Pad the flat stream to a whole number of rows (padding: own segment, no targets) and reshape."""
    n_pad = (-len(ids)) % seq_len
    ids = ids + [pad_id] * n_pad
    targets = targets + [IGNORE] * n_pad
    positions = positions + list(range(n_pad))
    shape = (-1, seq_len)
    return PackedRows(torch.tensor(ids, dtype=torch.long).view(shape),
                      torch.tensor(targets, dtype=torch.long).view(shape),
                      torch.tensor(positions, dtype=torch.long).view(shape), n_pad=n_pad,
                      n_truncated=n_truncated)


LONG_CHAT_POLICIES = ("drop", "error", "truncate")
"""What to do with a chat whose assistant reply does not fit in one row: leave it out (counted),
stop with an error naming it, or cut it (counted in `n_cut_replies`; for experiments only)."""


def pack_examples(examples: Sequence[tuple[Sequence[int], Sequence[int]]], seq_len: int, pad_id: int,
                  *, long_chats: str = "drop", where: str = "<chats>",
                  labels: Sequence[str] | None = None) -> PackedRows:
    """Place whole (input_ids, targets) examples into rows by first-fit decreasing.

    An example longer than `seq_len` whose cut-off tail holds only untrained template tokens is
    shortened (`n_truncated` counts the tokens). One whose assistant reply (any target) would be cut
    follows `long_chats`: "drop" leaves it out (`n_dropped`), "error" raises naming the example,
    "truncate" cuts it anyway and counts it in `n_cut_replies`. So no chat is ever trained on a
    silently cut reply. `labels` name the examples in errors (e.g. `file:line`). With every example
    left out the result has no rows.
    """
    if long_chats not in LONG_CHAT_POLICIES:
        raise MsmEvalError(f"unknown long_chats policy {long_chats!r}", field="long_chats",
                           hint=f"use one of: {', '.join(LONG_CHAT_POLICIES)}")
    truncated = dropped = cut_replies = 0
    items: list[tuple[list[int], list[int]]] = []
    for n, (ids, tgt) in enumerate(examples):
        if len(ids) > seq_len:
            # position seq_len-1 would predict token seq_len, which is cut: its target is lost too
            reply_cut = any(t != IGNORE for t in list(tgt)[seq_len - 1:])
            if reply_cut and long_chats == "drop":
                dropped += 1
                continue
            if reply_cut and long_chats == "error":
                name = labels[n] if labels else f"{where}: chat {n + 1}"
                raise MsmEvalError(f"{name} has {len(ids)} tokens: a row of seq_len {seq_len} would cut "
                                   "its assistant reply", path=where, field="seq_len",
                                   hint="raise seq_len, shorten the chat, or set long_chats: drop")
            cut_replies += int(reply_cut)
            truncated += len(ids) - seq_len
            ids, tgt = list(ids[:seq_len]), list(tgt[:seq_len - 1]) + [IGNORE]
        items.append((list(ids), list(tgt)))
    order = sorted(range(len(items)), key=lambda i: (-len(items[i][0]), i))
    bins: list[list[int]] = []
    free: list[int] = []
    for i in order:
        need = len(items[i][0])
        for b, room in enumerate(free):
            if room >= need:
                bins[b].append(i)
                free[b] -= need
                break
        else:
            bins.append([i])
            free.append(seq_len - need)
    ids_out: list[int] = []
    tgt_out: list[int] = []
    pos_out: list[int] = []
    n_pad = 0
    for b, members in enumerate(bins):
        for i in members:
            ids_out.extend(items[i][0])
            tgt_out.extend(items[i][1])
            pos_out.extend(range(len(items[i][0])))
        pad = free[b]
        n_pad += pad
        ids_out.extend([pad_id] * pad)
        tgt_out.extend([IGNORE] * pad)
        pos_out.extend(range(pad))
    shape = (-1, seq_len)
    return PackedRows(torch.tensor(ids_out, dtype=torch.long).view(shape),
                      torch.tensor(tgt_out, dtype=torch.long).view(shape),
                      torch.tensor(pos_out, dtype=torch.long).view(shape), n_pad=n_pad, n_truncated=truncated,
                      n_examples=len(items), n_dropped=dropped, n_cut_replies=cut_replies)


def _render_ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                        return_dict=True)
    return list(out["input_ids"])


def tokenize_chat(tokenizer: Any, messages: list[dict[str, str]], *, where: str = "<chat>"
                  ) -> tuple[list[int], list[int]]:
    """Chat -> (input_ids, targets) where only assistant-turn tokens (and their end-of-turn) are targets.

    For each assistant turn, the template rendered up to the turn with a generation prompt must be a
    prefix of the rendering including the turn; the tokens in between are the turn's tokens.
    """
    if not messages or not any(m.get("role") == "assistant" for m in messages):
        raise MsmEvalError("chat has no assistant message to learn from", path=where, field="messages",
                           hint="each record needs at least one {'role': 'assistant', ...} message")
    full = _render_ids(tokenizer, messages, generation_prompt=False)
    turns = [(_render_ids(tokenizer, messages[:i], generation_prompt=True) if i else [],
              _render_ids(tokenizer, messages[:i + 1], generation_prompt=False))
             for i, message in enumerate(messages) if message.get("role") == "assistant"]
    return full, _turn_targets(full, turns, where)


def _turn_targets(full: list[int], turns: Sequence[tuple[list[int], list[int]]], where: str) -> list[int]:
    """Targets of a rendered chat (`full`) given each assistant turn's renderings (chat up to the turn
    with a generation prompt, chat through the turn): the tokens in between are learnt. Both
    renderings must be prefixes of the whole chat, else the template cannot be split into turns."""
    learn = [False] * len(full)
    for before, through in turns:
        if full[:len(through)] != through or through[:len(before)] != before:
            raise MsmEvalError("the chat template does not render turns as prefixes of the whole chat",
                               path=where, field="messages",
                               hint="use a model whose chat template appends turns (ChatML, Llama 3, Qwen)")
        for t in range(len(before), len(through)):
            learn[t] = True
    # trailing newline tokens after the end-of-turn marker are still template text; learning them is harmless
    return _doc_targets(full, learn)


def _chat_renders(tokenizer: Any, messages: list[dict[str, str]]) -> list[str]:
    """The texts `tokenize_chat` tokenizes for one chat: the whole chat, then per assistant turn the
    chat up to the turn with a generation prompt (none for a first turn) and through the turn."""
    def render(part: list[dict[str, str]], generation_prompt: bool) -> str:
        return str(tokenizer.apply_chat_template(part, tokenize=False, add_generation_prompt=generation_prompt))
    texts = [render(messages, False)]
    for i, message in enumerate(messages):
        if message.get("role") == "assistant":
            texts += [render(messages[:i], True) if i else "", render(messages[:i + 1], False)]
    return texts


def tokenize_chats(tokenizer: Any, chats: Sequence[list[dict[str, str]]], wheres: Sequence[str]
                   ) -> list[tuple[list[int], list[int]]]:
    """`tokenize_chat` for many chats, with one batched tokenizer call for all their renderings.

    The chat template is rendered to text per chat, and the texts are tokenized together (a fast
    tokenizer encodes a batch in parallel, outside Python). `apply_chat_template(tokenize=True)`
    tokenizes its rendering the same way (no special tokens added), so the ids are the same as
    `tokenize_chat`'s, which stays the reference (the tests compare them). Errors are the same.
    """
    renders: list[list[str]] = []
    for messages, where in zip(chats, wheres):
        if not messages or not any(m.get("role") == "assistant" for m in messages):
            raise MsmEvalError("chat has no assistant message to learn from", path=where, field="messages",
                               hint="each record needs at least one {'role': 'assistant', ...} message")
        renders.append(_chat_renders(tokenizer, messages))
    unique = list(dict.fromkeys(text for texts in renders for text in texts if text))
    encoded = dict(zip(unique, tokenizer(unique, add_special_tokens=False)["input_ids"])) if unique else {}
    out: list[tuple[list[int], list[int]]] = []
    for texts, where in zip(renders, wheres):
        full = list(encoded[texts[0]])
        turns = [(list(encoded[texts[k]]) if texts[k] else [], list(encoded[texts[k + 1]]))
                 for k in range(1, len(texts), 2)]
        out.append((full, _turn_targets(full, turns, where)))
    return out


def load_documents(path: str | Path) -> list[dict[str, Any]]:
    """Documents JSONL (one `{"text": ...}` per line, extra fields kept); errors name the line."""
    docs = []
    seen: dict[str, tuple[int, str]] = {}
    for number, record in enumerate(read_jsonl(path), start=1):
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise MsmEvalError("document without text", path=path, line=number, field="text",
                               hint="every line needs a non-empty string field 'text'")
        if _repeated_key(record, number, seen, path):
            continue
        docs.append(record)
    if not docs:
        raise MsmEvalError("no documents", path=path, hint="generate documents first (msm-eval docs ...)")
    return docs


def _repeated_key(record: dict[str, Any], number: int, seen: dict[str, tuple[int, str]], path: str | Path) -> bool:
    """Whether `record` repeats the `key` of an earlier record (skip it: the first one is kept, as
    resuming generators do). A repeat with different content is refused: the file is inconsistent."""
    key = record.get("key")
    if not isinstance(key, str):
        return False
    content = json.dumps(record, sort_keys=True, ensure_ascii=False)
    if key not in seen:
        seen[key] = (number, content)
        return False
    if seen[key][1] != content:
        raise MsmEvalError(f"key {key!r} appears twice with different content (lines {seen[key][0]} and {number})",
                           path=path, line=number, field="key",
                           hint="two runs wrote this file at once; regenerate it into a new --out")
    return True


def load_chats(path: str | Path) -> list[list[dict[str, str]]]:
    """Chat JSONL (`{"messages": [{"role", "content"}, ...]}` per line); errors name the line."""
    chats = []
    seen: dict[str, tuple[int, str]] = {}
    for number, record in enumerate(read_jsonl(path), start=1):
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            raise MsmEvalError("record without messages", path=path, line=number, field="messages",
                               hint='write {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}')
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                    or not isinstance(m.get("content"), str):
                raise MsmEvalError("each message needs role system|user|assistant and string content",
                                   path=path, line=number, field="messages", hint="fix this record")
        if _repeated_key(record, number, seen, path):
            continue
        chats.append(messages)
    if not chats:
        raise MsmEvalError("no chats", path=path, hint="generate demonstrations first")
    return chats


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (the corpus hash recorded in manifests)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_heldout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic split of `n` item indices into (train, held_out); held out is empty for tiny sets."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    k = int(round(n * fraction)) if n >= 4 else 0
    k = min(k, n - 1)
    return sorted(order[k:]), sorted(order[:k])


def build_rows(stage: str, data_path: str | Path, tokenizer: Any, seq_len: int, eval_fraction: float,
               seed: int, *, long_chats: str = "drop") -> tuple[PackedRows, PackedRows | None]:
    """Load, tokenize and pack a stage's data into (train_rows, heldout_rows or None).

    `long_chats` (AFT only): what to do with a chat whose assistant reply does not fit a row
    (`pack_examples`)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise MsmEvalError("the tokenizer has no EOS token", field="model",
                           hint="use a tokenizer with an eos_token (needed to separate packed documents)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if stage == "midtrain":
        texts = [d["text"] for d in load_documents(data_path)]
        train_idx, held_idx = split_heldout(len(texts), eval_fraction, seed)
        # one batched call per split (a fast tokenizer encodes the batch in parallel); same ids as one at a time
        encode = lambda idx: (tokenizer([texts[i] for i in idx], add_special_tokens=False)["input_ids"]  # noqa: E731
                              if idx else [])
        train = pack_documents(encode(train_idx), seq_len, eos, pad)
        held = pack_documents(encode(held_idx), seq_len, eos, pad) if held_idx else None
        return train, held
    chats = load_chats(data_path)
    train_idx, held_idx = split_heldout(len(chats), eval_fraction, seed)
    where = str(data_path)
    encode_chats = lambda idx: tokenize_chats(tokenizer, [chats[i] for i in idx],  # noqa: E731
                                              [f"{where}:{i + 1}" for i in idx])
    pack = lambda idx: pack_examples(encode_chats(idx), seq_len, pad, long_chats=long_chats, where=where,  # noqa: E731
                                     labels=[f"{where}:{i + 1}" for i in idx])
    train = pack(train_idx)
    if not len(train):
        raise MsmEvalError(f"every training chat is longer than seq_len {seq_len} ({train.n_dropped} left out)",
                           path=where, field="seq_len", hint="raise seq_len so whole chats fit in a row")
    held = pack(held_idx) if held_idx else None
    if held is not None and not len(held):
        held = None
    return train, held
