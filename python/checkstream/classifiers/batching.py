"""Async micro-batching: every text submitted while the model is busy (or within one event-loop
tick) goes into the next single model run, so 64 concurrent streams cost one run, not 64.

There is at most one run in flight per classifier and loop. A submission waits for at most the
run in progress plus its own run; callers bound that with a timeout given at submission: when it
expires the submission's future fails with :class:`BatchTimeout` and the batcher drops the text
if it has not run yet. All submissions share one timer (re-armed for the earliest deadline still
open), not one timer handle each: a guarded stream submits a window every few tokens, and a
timer per window cost more than the window's share of the model run.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

ScoreFn = Callable[[Sequence[str]], list[dict[str, float]]]


# The least delay the shared timer is re-armed with after firing early (MicroBatcher._expire):
# uvloop rounds a delay to whole milliseconds, this one to 1 ms, not to 0 (run at once).
_REARM_S = 0.0006


class BatchTimeout(TimeoutError):
    """A submission's timeout expired before the model's scores came in."""


class ScoreFuture(asyncio.Future[dict[str, float]]):
    """The scores of one submitted text; ``resolved_at`` is the ``time.perf_counter()`` at
    which it got them (or failed, or timed out), so that a caller that polls it, rather than
    awaiting it, still records the model's real latency."""

    # Set by the batcher when it resolves the future (no __init__ of ours: one is made per
    # classifier window, and a Python __init__ doubles what it costs).
    __slots__ = ("resolved_at",)
    resolved_at: float


class MicroBatcher:
    def __init__(
        self,
        score: ScoreFn,
        loop: asyncio.AbstractEventLoop,
        *,
        max_batch: int = 64,
        offload: bool = True,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        # Weak: the classifier keeps batchers in a WeakKeyDictionary keyed by loop.
        self._loop = weakref.ref(loop)
        self._score = score
        self._max_batch = max_batch
        # One worker: ONNX sessions run single-threaded by default, and a second concurrent
        # run would only compete for the same cores.
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="cs-batch") if offload else None
        )
        self._pending: list[tuple[str, ScoreFuture]] = []
        # Open deadlines: (loop time, submission number, future), earliest first; one timer.
        self._deadlines: list[tuple[float, int, ScoreFuture]] = []
        self._seq = itertools.count()
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0  # when it fires (uvloop's handles have no when())
        self._scheduled = False
        self._running = False
        # Observability: totals since start, and the sizes of the most recent runs (bounded, so
        # a long-running proxy does not grow it).
        self.runs = 0
        self.windows = 0
        self.batch_sizes: deque[int] = deque(maxlen=1024)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        if loop is None:
            raise RuntimeError("the event loop of this batcher is gone")
        return loop

    def submit(self, text: str, timeout_s: float | None = None) -> ScoreFuture:
        """Queue ``text`` for the next run. With ``timeout_s``, the future fails with
        :class:`BatchTimeout` that many seconds from now unless its scores are in by then."""
        loop = self.loop
        future = ScoreFuture(loop=loop)
        self._pending.append((text, future))
        if not self._scheduled and not self._running:
            self._scheduled = True
            # call_soon, not an immediate run: everything submitted in this tick joins the batch.
            loop.call_soon(self._start_run)
        if timeout_s is not None:
            deadline = loop.time() + timeout_s
            heapq.heappush(self._deadlines, (deadline, next(self._seq), future))
            timer = self._timer
            if timer is None or deadline < self._timer_at:
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(deadline, self._expire)
                self._timer_at = deadline
        return future

    def _expire(self) -> None:
        """Fail the submissions whose deadline has passed; forget those already resolved."""
        self._timer = None
        heap = self._deadlines
        now = self.loop.time()
        while heap:
            deadline, _, future = heap[0]
            if not future.done():
                if deadline > now:
                    at = deadline
                    if deadline <= self._timer_at:
                        # The timer fired before the deadline it was armed for: uvloop rounds
                        # a delay to whole milliseconds and runs one under half a millisecond
                        # at once. Re-armed with at least _REARM_S, not in a busy loop (that
                        # deadline then passes by up to a millisecond; none expires early).
                        at = max(deadline, now + _REARM_S)
                    self._timer = self.loop.call_at(at, self._expire)
                    self._timer_at = at
                    return
                future.resolved_at = time.perf_counter()
                future.set_exception(BatchTimeout())
                # Retrieved here: a caller that polls may drop it unread (a stopped stream).
                future.exception()
            heapq.heappop(heap)

    def _start_run(self) -> None:
        self._scheduled = False
        if self._running or not self._pending:
            return
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        # Callers that already gave up (timed out, or cancelled) need no score.
        live = [(t, f) for t, f in batch if not f.done()]
        if not live:
            self._after_run()
            return
        self._running = True
        self.runs += 1
        self.windows += len(live)
        self.batch_sizes.append(len(live))
        texts = [t for t, _ in live]
        if self._executor is None:
            try:
                results = self._score(texts)
            except Exception as exc:
                self._resolve(live, None, exc)
            else:
                self._resolve(live, results, None)
            self._running = False
            self._after_run()
            return
        task = self.loop.run_in_executor(self._executor, self._score, texts)
        task.add_done_callback(lambda t: self._finish(live, t))

    def _finish(
        self,
        live: list[tuple[str, ScoreFuture]],
        task: asyncio.Future[list[dict[str, float]]],
    ) -> None:
        self._running = False
        exc = task.exception()
        self._resolve(live, None if exc else task.result(), exc)
        self._after_run()

    @staticmethod
    def _resolve(
        live: list[tuple[str, ScoreFuture]],
        results: list[dict[str, float]] | None,
        exc: BaseException | None,
    ) -> None:
        now = time.perf_counter()
        for i, (_, future) in enumerate(live):
            if future.done():
                continue
            future.resolved_at = now
            if exc is not None or results is None:
                future.set_exception(exc or RuntimeError("model returned no result"))
                # Mark it retrieved: a caller that timed out meanwhile will never await it, and
                # the failure is already recorded by the callers that do.
                future.exception()
            else:
                future.set_result(results[i])

    def _after_run(self) -> None:
        if self._pending and not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._start_run)
