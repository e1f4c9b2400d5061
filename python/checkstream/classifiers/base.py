"""The ``Classifier`` interface every kind implements, and the result of one async check."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from checkstream.classifiers.batching import BatchTimeout, MicroBatcher, ScoreFuture

FailMode = Literal["open", "closed"]
# What one classifier call came to: scores, timed out, failed, latency (ms), error.
Outcome = tuple[dict[str, float], bool, bool, float, str | None]


class ClassifierError(ValueError):
    """A classifier could not be configured, loaded or run (message names which and why)."""


@dataclass(frozen=True)
class ScoreResult:
    """One check's outcome as the engine records it.

    When the check timed out or failed, ``scores`` holds the fail mode's verdict for every label:
    1.0 for ``closed`` (treat as flagged), 0.0 for ``open`` (let through), so a caller that only
    reads scores still honours the declared fail mode; ``timed_out``/``failed`` say it happened.
    """

    scores: dict[str, float]
    timed_out: bool
    failed: bool
    fail_mode: FailMode
    model_version: str
    latency_ms: float
    error: str | None = None


@dataclass
class Classifier(abc.ABC):
    """A named, versioned scorer of texts. ``score`` is sync and batched; ``ascore`` is async
    and micro-batched across concurrent callers (one model run per event-loop tick)."""

    name: str
    labels: tuple[str, ...]
    version: str
    threshold: float = 0.5
    timeout_ms: float = 50.0
    fail_mode: FailMode = "open"
    kind: str = "onnx"
    max_batch: int = 64
    # One batcher per running event loop; weak so that a finished loop's batcher goes with it.
    _batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MicroBatcher] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False, compare=False
    )

    @property
    def provider(self) -> str:
        """The execution provider really in use (pure-Python kinds report ``"python"``)."""
        return "python"

    @property
    def offload(self) -> bool:
        """Whether a batch runs on a worker thread (ONNX) or inline on the loop (pure Python)."""
        return False

    @abc.abstractmethod
    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Scores per label in [0, 1] for each text, in order."""

    def flagged(self, scores: dict[str, float]) -> bool:
        return any(value >= self.threshold for value in scores.values())

    def _fail_scores(self) -> dict[str, float]:
        value = 1.0 if self.fail_mode == "closed" else 0.0
        return dict.fromkeys(self.labels, value)

    def _batcher(self) -> MicroBatcher:
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = MicroBatcher(self.score, loop, max_batch=self.max_batch, offload=self.offload)
            self._batchers[loop] = batcher
        return batcher

    def submit(self, text: str) -> ScoreFuture:
        """Queue one text for scoring, batched with every other pending call on this classifier,
        and return its future without awaiting it: it resolves to the scores, or fails with the
        model's error or (after ``timeout_ms``) :class:`BatchTimeout`. ``result`` turns it, once
        done, into the :class:`ScoreResult` that ``ascore`` returns. Cancelling it drops the
        text from the batch if it has not run yet.

        The engine's background checks poll these futures: a task and a timer per check cost
        more than the check's share of the model run.
        """
        if not isinstance(text, str):
            raise TypeError(f"classifier {self.name!r} expects str to score, got {type(text)}")
        return self._batcher().submit(text, self.timeout_ms / 1000.0)

    def outcome(self, future: ScoreFuture, start: float) -> Outcome:
        """What a done ``submit`` future came to: ``(scores, timed_out, failed, latency_ms,
        error)``; ``start`` is the ``perf_counter()`` read just before it was submitted. A
        timeout or an error resolves by ``fail_mode`` (its scores are the fail mode's verdict)."""
        exc = future.exception()  # first: a cancelled future raises here, unresolved
        latency_ms = (future.resolved_at - start) * 1000.0
        if exc is None:
            return future.result(), False, False, latency_ms, None
        if isinstance(exc, BatchTimeout):
            error = f"timeout after {self.timeout_ms} ms"
            return self._fail_scores(), True, False, latency_ms, error
        return self._fail_scores(), False, True, latency_ms, f"{type(exc).__name__}: {exc}"

    def result(self, future: ScoreFuture, start: float) -> ScoreResult:
        """``outcome`` as the :class:`ScoreResult` that ``ascore`` returns."""
        scores, timed_out, failed, latency_ms, error = self.outcome(future, start)
        return ScoreResult(
            scores=scores,
            timed_out=timed_out,
            failed=failed,
            fail_mode=self.fail_mode,
            model_version=self.version,
            latency_ms=latency_ms,
            error=error,
        )

    async def ascore(self, text: str) -> ScoreResult:
        """Score one text, batched with every other pending call on this classifier.

        Never raises for a slow or broken model: a timeout or error resolves by ``fail_mode``
        and is reported in the result. Cancelling the call drops its text from the batch.
        """
        start = time.perf_counter()
        future = self.submit(text)
        # A timeout or the model's error is read back from the future.
        with contextlib.suppress(Exception):
            await future
        return self.result(future, start)

    def describe(self) -> dict[str, object]:
        """What a startup log or ``/health/ready`` shows about this classifier."""
        return {
            "name": self.name,
            "kind": self.kind,
            "labels": list(self.labels),
            "version": self.version,
            "provider": self.provider,
            "threshold": self.threshold,
            "timeout_ms": self.timeout_ms,
            "fail_mode": self.fail_mode,
        }
