"""Running a set's classifier triggers on a text window, sync or through the async batcher.

A classifier that errors or times out is resolved by its declared fail mode and recorded: fail
closed makes the rule fire (the trigger fires with score None; under a ``not`` it counts as not
fired), fail open does not (under a ``not``: counts as fired). Neither is silent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from checkstream.engine.events import LeafEvent
from checkstream.engine.types import CheckRecord
from checkstream.policy.policyset import ClassifierLeaf

# Classifier inputs are cut to this many characters (models truncate to a few hundred tokens),
# with this much overlap, so the end of a long prompt or answer is scored like its start.
WINDOW_CHARS = 1024
WINDOW_OVERLAP = 128


def text_windows(
    n: int, size: int = WINDOW_CHARS, overlap: int = WINDOW_OVERLAP
) -> list[tuple[int, int]]:
    """Overlapping ``[start, end)`` windows covering ``range(n)`` (one window if it fits)."""
    if n <= size:
        return [(0, n)]
    out: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(n, start + size)
        out.append((start, end))
        if end >= n:
            return out
        start = end - overlap


def group_by_classifier(leaves: Sequence[ClassifierLeaf]) -> dict[str, tuple[ClassifierLeaf, ...]]:
    out: dict[str, list[ClassifierLeaf]] = {}
    for leaf in leaves:
        out.setdefault(leaf.name, []).append(leaf)
    return {name: tuple(items) for name, items in out.items()}


def _judge(
    classifier: Any,
    leaves: Sequence[ClassifierLeaf],
    scores: Mapping[str, float],
    *,
    phase: str,
    start: int,
    end: int,
    latency_ms: float,
    timed_out: bool,
    failed: bool,
    message_index: int | None,
    error: str | None = None,
) -> tuple[CheckRecord, list[LeafEvent]]:
    name = str(classifier.name)
    fail_mode = str(getattr(classifier, "fail_mode", "closed"))
    version = getattr(classifier, "version", None)
    events: list[LeafEvent] = []
    if timed_out or failed:
        why = "timed out" if timed_out else "failed"
        resolution: Literal["fail_open", "fail_closed"] = (
            "fail_closed" if fail_mode == "closed" else "fail_open"
        )
        mode = "closed" if resolution == "fail_closed" else "open"
        for leaf in leaves:
            # Closed: the *rule* fires, so the leaf counts as fired, or under a `not` as not
            # fired; open: the reverse. The record below says which, and why.
            if (resolution == "fail_closed") != leaf.negated:
                events.append(
                    LeafEvent(
                        leaf.id, start, end, None, f"classifier {name} {why}; fail mode {mode}"
                    )
                )
        record = CheckRecord(
            name,
            phase,
            start,
            end,
            dict(scores),
            version,
            latency_ms,
            timed_out,
            failed,
            resolution,
            message_index,
            error,
        )
        return record, events
    for leaf in leaves:
        threshold = leaf.threshold if leaf.threshold is not None else float(classifier.threshold)
        score = float(scores.get(leaf.label, 0.0))
        if score >= threshold:
            events.append(
                LeafEvent(
                    leaf.id,
                    start,
                    end,
                    score,
                    f"classifier {name}.{leaf.label}={score:.3f} >= {threshold:g}",
                )
            )
    record = CheckRecord(
        name, phase, start, end, dict(scores), version, latency_ms, message_index=message_index
    )
    return record, events


# What one classifier call came to: scores, timed out, failed, latency (ms), error.
_Outcome = tuple[Mapping[str, float], bool, bool, float, str | None]


def _judge_all(
    groups: Mapping[str, Sequence[ClassifierLeaf]],
    classifiers: Sequence[Any],
    outcomes: Sequence[_Outcome],
    *,
    phase: str,
    start: int,
    end: int,
    message_index: int | None,
) -> tuple[list[CheckRecord], list[LeafEvent]]:
    records: list[CheckRecord] = []
    events: list[LeafEvent] = []
    for name, classifier, (scores, timed_out, failed, latency, error) in zip(
        groups, classifiers, outcomes, strict=True
    ):
        record, found = _judge(
            classifier,
            groups[name],
            scores,
            phase=phase,
            start=start,
            end=end,
            latency_ms=latency,
            timed_out=timed_out,
            failed=failed,
            message_index=message_index,
            error=error,
        )
        records.append(record)
        events.extend(found)
    return records, events


def run_sync(
    registry: Any,
    groups: Mapping[str, Sequence[ClassifierLeaf]],
    text: str,
    *,
    phase: str,
    start: int,
    end: int,
    message_index: int | None = None,
) -> tuple[list[CheckRecord], list[LeafEvent]]:
    classifiers = [registry.get(name) for name in groups]

    def one(classifier: Any) -> _Outcome:
        began = time.perf_counter()
        try:
            scores = classifier.score([text])[0]
        except Exception as exc:  # resolved by the classifier's fail mode, and recorded
            elapsed = (time.perf_counter() - began) * 1000
            return {}, False, True, elapsed, f"{type(exc).__name__}: {exc}"
        return scores, False, False, (time.perf_counter() - began) * 1000, None

    outcomes = [one(c) for c in classifiers]
    return _judge_all(
        groups,
        classifiers,
        outcomes,
        phase=phase,
        start=start,
        end=end,
        message_index=message_index,
    )


class Submitted:
    """One window's classifier calls, submitted to the classifiers' batchers and not awaited.

    The engine polls it (``done``) or waits for it (``wait``), then ``judge``s it. No task and no
    timer of its own: each call is the batcher's future, which the batcher's shared timer fails
    at the classifier's timeout.
    """

    __slots__ = ("classifiers", "end", "futures", "groups", "message_index", "phase", "start",
                 "started")  # fmt: skip

    def __init__(
        self,
        classifiers: Sequence[Any],
        groups: Mapping[str, Sequence[ClassifierLeaf]],
        text: str,
        *,
        phase: str,
        start: int,
        end: int,
        message_index: int | None = None,
    ) -> None:
        self.groups = groups
        self.phase = phase
        self.start = start
        self.end = end
        self.message_index = message_index
        self.classifiers = classifiers  # ``groups``' classifiers, in its order
        self.started = time.perf_counter()
        self.futures = [classifier.submit(text) for classifier in self.classifiers]

    def done(self) -> bool:
        return all(future.done() for future in self.futures)

    async def wait(self) -> None:
        """Until every call is in (a timeout or a model error counts as in)."""
        for future in self.futures:
            if not future.done():
                # A timeout or the model's error is read back from the future.
                with contextlib.suppress(Exception):
                    await future

    def cancel(self) -> None:
        """The verdicts are no longer wanted: drop the texts that have not run yet."""
        for future in self.futures:
            future.cancel()

    def judge(self) -> tuple[list[CheckRecord], list[LeafEvent]]:
        """The records and leaf events of the calls (all done)."""
        started = self.started
        outcomes: list[_Outcome] = [
            classifier.outcome(future, started)
            for classifier, future in zip(self.classifiers, self.futures, strict=True)
        ]
        return _judge_all(
            self.groups,
            self.classifiers,
            outcomes,
            phase=self.phase,
            start=self.start,
            end=self.end,
            message_index=self.message_index,
        )


async def run_async(
    registry: Any,
    groups: Mapping[str, Sequence[ClassifierLeaf]],
    text: str,
    *,
    phase: str,
    start: int,
    end: int,
    message_index: int | None = None,
) -> tuple[list[CheckRecord], list[LeafEvent]]:
    classifiers = [registry.get(name) for name in groups]
    calls = Submitted(
        classifiers, groups, text, phase=phase, start=start, end=end, message_index=message_index
    )
    await calls.wait()
    return calls.judge()
