"""MicroBatcher deadlines: one shared timer fails each submission at its own timeout, drops texts
whose caller gave up before their run, and never touches a submission that got its scores."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest
import uvloop

from checkstream.classifiers.batching import BatchTimeout, MicroBatcher

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=[asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a test body on each loop: the proxy serves on uvloop, whose timer handles differ."""
    factory: LoopFactory = request.param

    def runner(body: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=factory) as r:
            r.run(body)

    return runner


class Model:
    """A model on the worker thread that blocks until released, and remembers what it scored."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[str] = []

    def __call__(self, texts: Sequence[str]) -> list[dict[str, float]]:
        self.release.wait(5)
        self.seen.extend(texts)
        return [{"toxic": float(len(t))} for t in texts]


def test_each_submission_times_out_at_its_own_deadline(run: Run) -> None:
    async def body() -> None:
        model = Model()
        batcher = MicroBatcher(model, asyncio.get_running_loop())
        began = time.perf_counter()
        slow = batcher.submit("a", 0.2)  # runs first (alone), and blocks the worker
        await asyncio.sleep(0)
        quick = batcher.submit("bb", 0.02)  # submitted later with an earlier deadline
        with pytest.raises(BatchTimeout):
            await quick
        waited = time.perf_counter() - began
        assert 0.015 <= waited < 0.15  # the earlier deadline re-armed the shared timer
        assert quick.resolved_at - began >= 0.015
        assert not slow.done()  # its own deadline is still ahead
        model.release.set()
        assert await slow == {"toxic": 1.0}
        await asyncio.sleep(0.05)  # the worker is free: a next run would have started by now
        assert model.seen == ["a"]  # the timed-out text was dropped before its run, not scored

    run(body())


def test_scores_in_time_are_kept_and_the_timer_forgets_them(run: Run) -> None:
    async def body() -> None:
        model = Model()
        model.release.set()
        batcher = MicroBatcher(model, asyncio.get_running_loop())
        futures = [batcher.submit(t, 0.05) for t in ("x", "yy", "zzz")]
        assert [await f for f in futures] == [{"toxic": 1.0}, {"toxic": 2.0}, {"toxic": 3.0}]
        assert batcher.runs == 1 and list(batcher.batch_sizes) == [3]
        await asyncio.sleep(0.08)  # past every deadline: nothing is failed after the fact
        assert all(f.exception() is None for f in futures)
        assert batcher._deadlines == [] and batcher._timer is None

    run(body())


def test_a_cancelled_submission_is_not_scored(run: Run) -> None:
    async def body() -> None:
        model = Model()
        model.release.set()
        batcher = MicroBatcher(model, asyncio.get_running_loop())
        dropped = batcher.submit("dropped", 1.0)
        kept = batcher.submit("kept")  # no timeout: waits as long as the run takes
        dropped.cancel()
        assert await kept == {"toxic": 4.0}
        assert model.seen == ["kept"]

    run(body())


def test_a_model_error_fails_the_batch_and_the_batcher_goes_on(run: Run) -> None:
    async def body() -> None:
        calls = 0

        def flaky(texts: Sequence[str]) -> list[dict[str, float]]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("model crashed")
            return [{"toxic": 0.0} for _ in texts]

        batcher = MicroBatcher(flaky, asyncio.get_running_loop())
        with pytest.raises(RuntimeError, match="model crashed"):
            await batcher.submit("a", 1.0)
        assert await batcher.submit("b", 1.0) == {"toxic": 0.0}

    run(body())


def test_a_deadline_below_the_loops_timer_resolution(run: Run) -> None:
    """uvloop runs a timer due within half a millisecond as a plain callback (a handle with no
    ``when()``): a later submission must still arm, and both resolve."""

    async def body() -> None:
        model = Model()
        batcher = MicroBatcher(model, asyncio.get_running_loop())
        tiny = batcher.submit("a", 0.0001)
        later = batcher.submit("bb", 1.0)
        with pytest.raises(BatchTimeout):
            await tiny
        model.release.set()
        assert await later == {"toxic": 2.0}

    run(body())
