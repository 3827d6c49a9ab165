"""Near-duplicate answers: character n-gram Jaccard, with MinHash/LSH candidates when there are many.

A teacher that gets stuck repeats itself; ``near_duplicates`` reports such pairs after a run.
Pure Python plus numpy for MinHash; no model is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def shingles(text: str, n: int = 5) -> set[str]:
    """Character n-grams of the text with whitespace and punctuation removed."""
    clean = re.sub(r"[\s\W_]+", "", text.lower())
    if len(clean) <= n:
        return {clean} if clean else set()
    return {clean[i:i + n] for i in range(len(clean) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class DuplicatePair:
    first: str
    second: str
    similarity: float


def near_duplicates(texts: Mapping[str, str] | Iterable[tuple[str, str]], threshold: float = 0.8, n: int = 5,
                    exact_below: int = 400, num_perm: int = 64, bands: int = 16) -> list[DuplicatePair]:
    """Pairs of answers whose character n-gram Jaccard similarity is at least ``threshold``.

    Up to ``exact_below`` texts are compared pairwise; above that, MinHash signatures split into
    LSH bands propose candidate pairs, which are then checked with the exact Jaccard.
    """
    items = list(texts.items()) if isinstance(texts, Mapping) else list(texts)
    sets = [shingles(text, n) for _, text in items]
    candidates: set[tuple[int, int]] = set()
    if len(items) <= exact_below:
        candidates = {(i, j) for i in range(len(items)) for j in range(i + 1, len(items))}
    else:
        candidates = _lsh_candidates(sets, num_perm, bands)
    pairs = []
    for i, j in sorted(candidates):
        sim = jaccard(sets[i], sets[j])
        if sim >= threshold:
            pairs.append(DuplicatePair(items[i][0], items[j][0], round(sim, 3)))
    pairs.sort(key=lambda p: -p.similarity)
    return pairs


def _lsh_candidates(sets: list[set[str]], num_perm: int, bands: int) -> set[tuple[int, int]]:
    import hashlib

    import numpy as np

    prime = np.uint64((1 << 61) - 1)
    rng = np.random.default_rng(1)
    a = rng.integers(1, (1 << 61) - 1, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, (1 << 61) - 1, size=num_perm, dtype=np.uint64)
    rows = num_perm // bands
    buckets: dict[tuple, list[int]] = {}
    for index, shingle_set in enumerate(sets):
        if not shingle_set:
            continue
        hashes = np.fromiter(
            (int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=7).digest(), "big") for s in shingle_set),
            dtype=np.uint64, count=len(shingle_set))
        # (a*h + b) mod p with 61-bit values would overflow uint64; fold h to 31 bits first.
        h = hashes & np.uint64((1 << 31) - 1)
        signature = ((np.outer(h, a & np.uint64((1 << 31) - 1)) + b) % prime).min(axis=0)
        for band in range(bands):
            key = (band, signature[band * rows:(band + 1) * rows].tobytes())
            buckets.setdefault(key, []).append(index)
    candidates = set()
    for members in buckets.values():
        if 1 < len(members) <= 200:
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    candidates.add((members[x], members[y]))
    return candidates
