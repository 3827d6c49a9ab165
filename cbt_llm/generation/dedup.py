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
                    exact_below: int = 400, num_perm: int = 64, bands: int = 16,
                    bucket_limit: int = 200) -> list[DuplicatePair]:
    """Pairs of answers whose character n-gram Jaccard similarity is at least ``threshold``.

    Up to ``exact_below`` texts are compared pairwise; above that, MinHash signatures split into
    LSH bands propose candidates, checked with the exact Jaccard. An LSH bucket of more than
    ``bucket_limit`` answers (a stuck teacher repeating itself) is not compared pair by pair but
    split into clusters, each answer paired with its cluster's first answer: ``duplicate_groups``
    turns the pairs into clusters.
    """
    items = list(texts.items()) if isinstance(texts, Mapping) else list(texts)
    sets = [shingles(text, n) for _, text in items]
    found: dict[tuple[int, int], float] = {}
    exact = len(items) <= exact_below
    for members in [list(range(len(items)))] if exact else _lsh_buckets(sets, num_perm, bands):
        if exact or len(members) <= bucket_limit:
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    pair = (members[x], members[y])
                    if pair not in found:
                        found[pair] = jaccard(sets[pair[0]], sets[pair[1]])
        else:
            found.update(_leader_pairs(members, sets, threshold))
    pairs = [DuplicatePair(items[i][0], items[j][0], round(sim, 3)) for (i, j), sim in sorted(found.items())
             if sim >= threshold]
    pairs.sort(key=lambda p: -p.similarity)
    return pairs


def duplicate_groups(pairs: Iterable[DuplicatePair]) -> list[list[str]]:
    """The clusters that near-duplicate pairs link (connected ids), largest first."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pair in pairs:
        parent[root(pair.first)] = root(pair.second)
    groups: dict[str, list[str]] = {}
    for x in parent:
        groups.setdefault(root(x), []).append(x)
    return sorted(groups.values(), key=len, reverse=True)


def _leader_pairs(members: list[int], sets: list[set[str]], threshold: float) -> dict[tuple[int, int], float]:
    """Cluster a large bucket greedily: each answer joins the first cluster whose leader it matches,
    else leads a new one; returns (leader, member) pairs with their similarity. Linear in the
    bucket's size when the bucket is mostly one answer repeated."""
    leaders: list[int] = []
    pairs = {}
    for index in members:
        for leader in leaders:
            similarity = jaccard(sets[leader], sets[index])
            if similarity >= threshold:
                pairs[(min(leader, index), max(leader, index))] = similarity
                break
        else:
            leaders.append(index)
    return pairs


def _lsh_buckets(sets: list[set[str]], num_perm: int, bands: int) -> list[list[int]]:
    """The LSH buckets (answers whose MinHash signatures agree on a band) with more than one member."""
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
    return [members for members in buckets.values() if len(members) > 1]
