"""Percentiles of timing samples, as the benches in this folder report them.

Two rank rules are in use, and each bench keeps the one its published figures were made with:
``rank_percentile`` (the sample at rank ``floor(q * n)``) and ``index_percentile`` (the sample
nearest to position ``q * (n - 1)``). They differ by at most one sample.
"""

from __future__ import annotations

from collections.abc import Iterable


def rank_percentile(samples: Iterable[float], q: float) -> float:
    """The sample at rank ``floor(q * n)`` of the sorted samples (``q`` in [0, 1])."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def index_percentile(samples: Iterable[float], q: float) -> float:
    """The sorted sample nearest to position ``q * (n - 1)`` (``q`` in [0, 1]); NaN if none."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
