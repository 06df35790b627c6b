"""Near-duplicate detection for generated text (documents, demonstrations, scenario seeds).

Similarity is the Jaccard index of word n-gram shingles (default n=5 words); two texts whose
similarity is at or above the threshold (default 0.6) are near-duplicates.

`NearDuplicateIndex` finds candidates with MinHash locality-sensitive hashing (126 hash
functions in bands; at the default threshold 42 bands of 3 rows, so a pair at similarity 0.6 is
missed with probability 0.784^42 < 1e-4, and at 0.7 with < 1e-7; lower thresholds get shorter
bands, `band_rows`) and then checks each candidate with the exact Jaccard
index, so nothing below the threshold is ever flagged. Signatures are computed with numpy for
batches of texts and the bands are plain dicts. Cost grows with the number of candidates, not
with the corpus squared (`benchmarks/dedup_speed.py`). `ExactNearDuplicateIndex`
is the exhaustive reference (an inverted index over shingles; quadratic on large corpora).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_NGRAM = 5
DEFAULT_THRESHOLD = 0.6

_WORD = re.compile(r"[a-z0-9']+")
_M64 = (1 << 64) - 1


_ROLL = np.uint64(0x100000001B3)              # polynomial base for combining word hashes
_MIX1, _MIX2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)


def shingle_array(text: str, n: int = DEFAULT_NGRAM) -> np.ndarray:
    """Hashed word n-grams of `text` (lower-cased; punctuation ignored): sorted unique uint64.

    Each word is hashed once; an n-gram's hash is a polynomial of its words' hashes, finished
    with a 64-bit mixer, all in numpy (a text shorter than n words is one shingle)."""
    words = _WORD.findall(text.lower())
    if not words:
        return np.empty(0, dtype=np.uint64)
    if len(words) < n:
        return np.array([hash(tuple(words)) & _M64], dtype=np.uint64)
    word_hashes = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
    count = len(words) - n + 1
    grams = word_hashes[:count].copy()
    for k in range(1, n):
        grams *= _ROLL
        grams += word_hashes[k:k + count]
    grams ^= grams >> np.uint64(33)
    grams *= _MIX1
    grams ^= grams >> np.uint64(33)
    grams *= _MIX2
    grams ^= grams >> np.uint64(33)
    return np.unique(grams)


def shingles(text: str, n: int = DEFAULT_NGRAM) -> frozenset[int]:
    """The shingle set of `text` (see `shingle_array`)."""
    return frozenset(shingle_array(text, n).tolist())


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    """Jaccard similarity of two shingle sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass
class ExactNearDuplicateIndex:
    """Exhaustive near-duplicate filter (the reference): `add(text)` keeps a text unless it is too
    close to one kept. Every kept text sharing a shingle is compared, so large corpora of similar
    texts cost quadratic time; `NearDuplicateIndex` is the scalable one."""

    threshold: float = DEFAULT_THRESHOLD
    n: int = DEFAULT_NGRAM
    _sets: list[frozenset[int]] = field(default_factory=list)
    _postings: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))

    def most_similar(self, text: str) -> tuple[int | None, float]:
        """Index and similarity of the closest kept text (None, 0.0 when there is none)."""
        candidate = shingles(text, self.n)
        overlap: dict[int, int] = defaultdict(int)
        for shingle in candidate:
            for index in self._postings.get(shingle, ()):
                overlap[index] += 1
        best, best_sim = None, 0.0
        for index, shared in overlap.items():
            union = len(candidate) + len(self._sets[index]) - shared
            sim = shared / union if union else 1.0
            if sim > best_sim:
                best, best_sim = index, sim
        return best, best_sim

    def is_duplicate(self, text: str) -> bool:
        """Whether `text` is a near-duplicate of a kept text."""
        return self.most_similar(text)[1] >= self.threshold

    def add(self, text: str) -> bool:
        """Keep `text` unless it is a near-duplicate; returns True when kept."""
        if self.is_duplicate(text):
            return False
        self.force_add(text)
        return True

    def force_add(self, text: str) -> None:
        """Index `text` without checking (e.g. texts already accepted in an earlier run)."""
        index = len(self._sets)
        sset = shingles(text, self.n)
        self._sets.append(sset)
        for shingle in sset:
            self._postings[shingle].append(index)

    def __len__(self) -> int:
        return len(self._sets)


NUM_PERM = 126
MAX_MISS = 1e-4                                # largest chance of missing a pair at the threshold


def band_rows(threshold: float) -> int:
    """Rows per LSH band: the most (fewest candidates) for which a pair exactly at `threshold`
    is missed with probability under `MAX_MISS` (3 rows, 42 bands at the default 0.6)."""
    best = 1
    for rows in (1, 2, 3, 6, 7, 9, 14, 18, 21):
        if (1 - threshold ** rows) ** (NUM_PERM // rows) < MAX_MISS:
            best = rows
    return best


_CHUNK = 64                                    # texts per vectorised signature batch
_rng = np.random.default_rng(20261202)
_A = _rng.integers(1, 2**63, NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)   # odd multipliers
_B = _rng.integers(0, 2**63, NUM_PERM, dtype=np.uint64)


def signatures(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """MinHash signatures (`[len(arrays), NUM_PERM]`, uint32) of shingle arrays, vectorised.

    Hash family: multiply-add-shift, h -> ((a*h + b) mod 2^64) >> 32 with odd a (universal for
    32-bit outputs). An empty array gets the all-ones signature (handled separately)."""
    out = np.full((len(arrays), NUM_PERM), np.iinfo(np.uint32).max, dtype=np.uint32)
    lengths = np.fromiter((len(x) for x in arrays), dtype=np.int64, count=len(arrays))
    nonempty = np.flatnonzero(lengths)
    if nonempty.size == 0:
        return out
    flat = np.concatenate([arrays[i] for i in nonempty])
    # [perm, shingle] layout, in place; the shift commutes with the min, so it runs on the result only
    hashed = np.multiply.outer(_A, flat)
    hashed += _B[:, None]
    starts = np.concatenate([[0], np.cumsum(lengths[nonempty])[:-1]])
    out[nonempty] = (np.minimum.reduceat(hashed, starts, axis=1).T >> np.uint64(32)).astype(np.uint32)
    return out


class NearDuplicateIndex:
    """Incremental near-duplicate filter: `add(text)` keeps a text unless it is too close to one kept.

    MinHash LSH proposes candidates (texts agreeing with this one on all rows of at least one
    band); the exact Jaccard index of the shingle sets decides. Same interface and decisions as
    `ExactNearDuplicateIndex`, except that a pair is missed with the (tiny) probability given in
    the module docstring."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, n: int = DEFAULT_NGRAM) -> None:
        self.threshold = threshold
        self.n = n
        self._arrays: list[np.ndarray] = []   # sorted unique shingle hashes (a tenth of a set's memory)
        self._empty: list[int] = []           # texts without words: similar only to each other
        self._rows = band_rows(threshold)
        self._bands: list[dict[int, list[int]]] = [{} for _ in range(NUM_PERM // self._rows)]

    def _keys(self, signature: np.ndarray) -> list[int]:
        """One 64-bit key per band (a collision only adds a candidate, which the exact check rejects)."""
        rows = signature.reshape(len(self._bands), self._rows).astype(np.uint64)
        key = rows[:, 0].copy()
        for r in range(1, self._rows):
            key *= _MIX1
            key ^= rows[:, r]
        return key.tolist()

    def _best(self, arr: np.ndarray, keys: list[int] | None) -> tuple[int | None, float]:
        if not arr.size:
            return (self._empty[0], 1.0) if self._empty else (None, 0.0)
        keys = keys if keys is not None else self._keys(signatures([arr])[0])
        candidates: set[int] = set()
        for band, key in zip(self._bands, keys):
            hit = band.get(key)
            if hit:
                candidates.update(hit)
        best, best_sim = None, 0.0
        for index in sorted(candidates):
            other = self._arrays[index]
            shared = np.intersect1d(arr, other, assume_unique=True).size
            sim = shared / (arr.size + other.size - shared)
            if sim > best_sim:
                best, best_sim = index, sim
        return best, best_sim

    def most_similar(self, text: str) -> tuple[int | None, float]:
        """Index and similarity of the closest kept text among the LSH candidates (None, 0.0 when none)."""
        return self._best(shingle_array(text, self.n), None)

    def is_duplicate(self, text: str) -> bool:
        """Whether `text` is a near-duplicate of a kept text."""
        return self.most_similar(text)[1] >= self.threshold

    def add(self, text: str) -> bool:
        """Keep `text` unless it is a near-duplicate; returns True when kept."""
        return self.add_many([text])[0]

    def _add(self, arr: np.ndarray, keys: list[int] | None) -> bool:
        if self._best(arr, keys)[1] >= self.threshold:
            return False
        self._insert(arr, keys)
        return True

    def add_many(self, texts: Sequence[str]) -> list[bool]:
        """`add` for each text in order (signatures computed in vectorised batches); kept flags."""
        kept: list[bool] = []
        for start in range(0, len(texts), _CHUNK):
            arrays = [shingle_array(t, self.n) for t in texts[start:start + _CHUNK]]
            sigs = signatures(arrays)
            kept.extend(self._add(arr, self._keys(sig) if arr.size else None) for arr, sig in zip(arrays, sigs))
        return kept

    def force_add(self, text: str) -> None:
        """Index `text` without checking (e.g. texts already accepted in an earlier run)."""
        arr = shingle_array(text, self.n)
        self._insert(arr, self._keys(signatures([arr])[0]) if arr.size else None)

    def _insert(self, arr: np.ndarray, keys: list[int] | None) -> None:
        index = len(self._arrays)
        self._arrays.append(arr)
        if keys is None:
            self._empty.append(index)
            return
        for band, key in zip(self._bands, keys):
            band.setdefault(key, []).append(index)

    def __len__(self) -> int:
        return len(self._arrays)


def near_duplicate_indices(texts: Iterable[str], threshold: float = DEFAULT_THRESHOLD,
                           n: int = DEFAULT_NGRAM, *, exact: bool = False) -> list[int]:
    """Indices of texts that duplicate an earlier text (the first occurrence is kept);
    `exact=True` uses the exhaustive reference index."""
    items = list(texts)
    if exact:
        reference = ExactNearDuplicateIndex(threshold=threshold, n=n)
        return [i for i, text in enumerate(items) if not reference.add(text)]
    kept = NearDuplicateIndex(threshold=threshold, n=n).add_many(items)
    return [i for i, k in enumerate(kept) if not k]
