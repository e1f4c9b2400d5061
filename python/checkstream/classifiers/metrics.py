"""Binary classification metrics in plain numpy (no scikit-learn at run time)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class BinaryMetrics:
    n: int
    positives: int
    precision: float
    recall: float
    f1: float
    accuracy: float
    roc_auc: float | None  # None when only one class is present
    threshold: float

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve as the Mann-Whitney U statistic (ties count one half)."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0  # average rank of a tie group
        i = j + 1
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def binary_metrics(
    labels: Sequence[int], scores: Sequence[float], threshold: float
) -> BinaryMetrics:
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores")
    if not labels:
        raise ValueError("no examples to evaluate")
    y = np.asarray(labels, dtype=np.int64)
    pred = np.asarray(scores, dtype=np.float64) >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BinaryMetrics(
        n=len(y),
        positives=int(y.sum()),
        precision=precision,
        recall=recall,
        f1=f1,
        accuracy=float((pred == (y == 1)).mean()),
        roc_auc=roc_auc(labels, scores),
        threshold=threshold,
    )
