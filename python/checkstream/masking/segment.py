"""Bounded enumeration of the token sequences that spell a byte string.

A model can emit any token sequence, not only the one its tokenizer would produce, so a
phrase is banned in every segmentation of its bytes into vocabulary tokens. Their number
grows exponentially with length (every byte is a token in byte-level vocabularies), so the
search is best-first by token count and stops at a cap: the few-token spellings, which a
model is likeliest to produce, come first. The remaining unlikely ones are left to the
reactive text check.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from checkstream.masking.spelling import TokenSpelling


@dataclass(frozen=True)
class Segmentations:
    sequences: list[tuple[int, ...]]
    #: number of segmentations that exist (saturates at 2**63)
    total: int

    @property
    def truncated(self) -> bool:
        return self.total > len(self.sequences)


def segmentations(target: bytes, spelling: TokenSpelling, limit: int) -> Segmentations:
    """Up to `limit` token sequences spelling `target`, fewest tokens first."""
    n = len(target)
    if n == 0 or limit <= 0:
        return Segmentations([], 0)
    # edges[i]: (end, ids) for every vocabulary spelling that starts at byte i.
    edges: list[list[tuple[int, tuple[int, ...]]]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, min(n, i + spelling.max_len) + 1):
            ids = spelling.by_bytes.get(target[i:j])
            if ids:
                edges[i].append((j, ids))
    # Exact fewest-tokens-to-the-end (the search's heuristic) and exact counts, right to left.
    cap = 2**63
    rest: list[float] = [math.inf] * (n + 1)
    count = [0] * (n + 1)
    rest[n], count[n] = 0, 1
    for i in range(n - 1, -1, -1):
        for j, ids in edges[i]:
            rest[i] = min(rest[i], rest[j] + 1)
            count[i] = min(cap, count[i] + len(ids) * count[j])
    if count[0] == 0:
        return Segmentations([], 0)
    # Best-first search; with an exact heuristic every popped path completes, so the work is
    # bounded by limit x length pops.
    out: list[tuple[int, ...]] = []
    heap: list[tuple[float, tuple[int, ...], int]] = [(rest[0], (), 0)]
    while heap and len(out) < limit:
        _, path, i = heapq.heappop(heap)
        if i == n:
            out.append(path)
            continue
        for j, ids in edges[i]:
            if rest[j] < math.inf:
                for idx in ids:
                    heapq.heappush(heap, (len(path) + 1 + rest[j], (*path, idx), j))
    return Segmentations(out, count[0])
