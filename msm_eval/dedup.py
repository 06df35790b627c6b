"""Near-duplicate detection for generated text (documents, demonstrations, scenario seeds).

Similarity is the Jaccard index of word n-gram shingles (default n=5 words); two texts whose
similarity is at or above the threshold (default 0.6) are near-duplicates. Shingles are indexed
by MinHash-free inverted lookup, which is exact and fast enough for corpora of tens of thousands.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_NGRAM = 5
DEFAULT_THRESHOLD = 0.6

_WORD = re.compile(r"[a-z0-9']+")


def shingles(text: str, n: int = DEFAULT_NGRAM) -> frozenset[int]:
    """Hashed word n-grams of `text` (lower-cased; punctuation ignored)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return frozenset([hash(tuple(words))]) if words else frozenset()
    return frozenset(hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    """Jaccard similarity of two shingle sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass
class NearDuplicateIndex:
    """Incremental near-duplicate filter: `add(text)` keeps a text unless it is too close to one kept."""

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


def near_duplicate_indices(texts: Iterable[str], threshold: float = DEFAULT_THRESHOLD,
                           n: int = DEFAULT_NGRAM) -> list[int]:
    """Indices of texts that duplicate an earlier text (the first occurrence is kept)."""
    index = NearDuplicateIndex(threshold=threshold, n=n)
    return [i for i, text in enumerate(texts) if not index.add(text)]
