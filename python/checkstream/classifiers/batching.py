"""Async micro-batching: every text submitted while the model is busy (or within one event-loop
tick) goes into the next single model run, so 64 concurrent streams cost one run, not 64.

There is at most one run in flight per classifier and loop. A submission waits for at most the
run in progress plus its own run; callers bound that with their timeout (``Classifier.ascore``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

ScoreFn = Callable[[Sequence[str]], list[dict[str, float]]]


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
        self._pending: list[tuple[str, asyncio.Future[dict[str, float]]]] = []
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

    def submit(self, text: str) -> asyncio.Future[dict[str, float]]:
        future: asyncio.Future[dict[str, float]] = self.loop.create_future()
        self._pending.append((text, future))
        if not self._scheduled and not self._running:
            self._scheduled = True
            # call_soon, not an immediate run: everything submitted in this tick joins the batch.
            self.loop.call_soon(self._start_run)
        return future

    def _start_run(self) -> None:
        self._scheduled = False
        if self._running or not self._pending:
            return
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        # Callers that already gave up (timeout) need no score.
        live = [(t, f) for t, f in batch if not f.cancelled()]
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
        live: list[tuple[str, asyncio.Future[dict[str, float]]]],
        task: asyncio.Future[list[dict[str, float]]],
    ) -> None:
        self._running = False
        exc = task.exception()
        self._resolve(live, None if exc else task.result(), exc)
        self._after_run()

    @staticmethod
    def _resolve(
        live: list[tuple[str, asyncio.Future[dict[str, float]]]],
        results: list[dict[str, float]] | None,
        exc: BaseException | None,
    ) -> None:
        for i, (_, future) in enumerate(live):
            if future.done():
                continue
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
