"""Streaming: zero leak and streaming parity under random chunkings (hypothesis)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkstream.classifiers.registry import ClassifierRegistry
from checkstream.classifiers.rules import PatternClassifier
from checkstream.engine import Guard, RequestContext
from checkstream.policy.loader import load_policy_text

CTX = RequestContext("req-s", "acme", "/v1/chat/completions", "m", {})
POLICY = """
name: leak
version: "1"
defaults: {leetspeak: true}
rules:
  - name: banned
    trigger: {phrases: [swordfish, open sesame, ultra secret plan]}
    actions: [redact]
  - name: stop-word
    trigger: {phrases: [detonator]}
    actions: [{stop: {message: stopped}}]
  - name: pii
    trigger: {pii: [EMAIL, CREDIT_CARD, PHONE, UK_NINO, SECRET]}
    actions: [redact]
  - name: order-ref
    trigger: {pattern: 'ORD-\\d{6}'}
    actions: [{redact: {replacement: '[ORDER]'}}]
"""
GUARD = Guard(load_policy_text(POLICY))

SECRETS = {
    "swordfish": "[REDACTED]",
    "open sesame": "[REDACTED]",
    "jane.doe@example.com": "[EMAIL]",
    "4111 1111 1111 1111": "[CREDIT_CARD]",
    "020 7946 0958": "[PHONE]",
    "AB123456C": "[UK_NINO]",
    "AKIAIOSFODNN7EXAMPLE": "[SECRET]",
    "ORD-123456": "[ORDER]",
}
WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "left", "quickly", "hello", "x"]


def split(text: str, cuts: list[int]) -> list[str]:
    edges = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(edges) if b > a]


def stream(chunks: list[str], holdback: int) -> tuple[str, bool]:
    sg = GUARD.stream(CTX, holdback=holdback)
    released = "".join(sg.feed(c).text for c in chunks) + sg.finish().text
    return released, sg.stopped


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, list[str]]:
    words = draw(st.lists(st.sampled_from(WORDS), min_size=2, max_size=30))
    secrets = draw(st.lists(st.sampled_from(sorted(SECRETS)), min_size=1, max_size=3))
    for secret in secrets:
        # A word after each secret: two numbers side by side are one longer number to the PII
        # recognizers, which is their call, not the engine's.
        words.insert(draw(st.integers(0, len(words))), f"{secret} and")
    text = " ".join(words) + draw(st.sampled_from(["", ".", " end"]))
    return text, secrets


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=documents(), data=st.data(), holdback=st.integers(0, 20))
def test_zero_leak_and_parity_under_random_chunking(
    doc: tuple[str, list[str]], data: st.DataObject, holdback: int
) -> None:
    text, secrets = doc
    cuts = data.draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=40))
    chunks = split(text, cuts)
    released, stopped = stream(chunks, holdback)
    assert not stopped
    for secret in secrets:
        assert secret not in released
    whole = GUARD.check_output(text, CTX)
    assert released == whole.text  # streaming parity: same output whatever the chunking
    expected = text
    for secret, replacement in SECRETS.items():
        expected = expected.replace(secret, replacement)
    assert released == expected


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    before=st.lists(st.sampled_from(WORDS), max_size=20),
    after=st.lists(st.sampled_from(WORDS), max_size=20),
    data=st.data(),
    holdback=st.integers(0, 20),
)
def test_stop_releases_nothing_from_the_stop_phrase_on(
    before: list[str], after: list[str], data: st.DataObject, holdback: int
) -> None:
    prefix = " ".join([*before, ""])
    text = prefix + "detonator " + " ".join(after)
    cuts = data.draw(st.lists(st.integers(1, len(text) - 1), max_size=30))
    released, stopped = stream(split(text, cuts), holdback)
    assert stopped
    assert prefix.startswith(released)  # only text before the phrase, never the phrase
    assert GUARD.check_output(text, CTX).stopped


def test_character_by_character_stream_with_zero_holdback() -> None:
    text = "mail jane.doe@example.com now, key AKIAIOSFODNN7EXAMPLE, ref ORD-123456."
    released, _ = stream(list(text), holdback=0)
    assert released == "mail [EMAIL] now, key [SECRET], ref [ORDER]."


def test_a_pattern_that_never_completes_is_released_at_finish() -> None:
    released, _ = stream(["ref ORD-12", "34 ok"], holdback=0)
    assert released == "ref ORD-1234 ok"


def test_after_stop_every_step_is_empty() -> None:
    sg = GUARD.stream(CTX, holdback=0)
    first = sg.feed("the detonator ")
    assert first.stopped and first.stop_message == "stopped"
    later = sg.feed("more text")
    assert (later.text, later.stopped, later.hits) == ("", True, [])
    assert sg.finish().text == ""


def test_long_stream_keeps_bounded_state() -> None:
    # The scanners judge each character once and drop judged text (no O(n^2) rescans).
    sg = GUARD.stream(CTX, holdback=16)
    released = 0
    for _ in range(20000):
        released += len(sg.feed("the cat sat ").text)
    released += len(sg.finish().text)
    assert released == 20000 * len("the cat sat ")
    assert len(sg._text) < 8192  # only a bounded tail of the stream is kept for the scanners


# --------------------------------------------------------------------------- classifier lag
# A classifier verdict may be applied `classifier_lag` deltas after its check started (the
# proxy lets the model run in the background meanwhile). Nothing it judges may leave before.


@dataclasses.dataclass
class SlowTox(PatternClassifier):
    """The pattern classifier on a worker thread, slower than a token: verdicts arrive late."""

    delay_s: float = 0.0

    @property
    def offload(self) -> bool:
        return True

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        time.sleep(self.delay_s)
        return super().score(texts)


def tox_guard(delay_s: float = 0.0, mode: str = "enforce", also_enforced: bool = False) -> Guard:
    """The SlowTox classifier behind a stop rule in ``mode``; ``also_enforced`` adds an
    enforced (redacting) rule that reads the same classifier."""
    tox = SlowTox(
        name="toxicity", labels=("toxic",), version="p1", threshold=0.5,
        patterns={"toxic": ("idiot",)}, timeout_ms=5000, delay_s=delay_s,
    )  # fmt: skip
    reg = ClassifierRegistry({"toxicity": tox}, {})
    policy = (
        "name: lag\nversion: '1'\nrules:\n"
        f"  - {{name: tox, mode: {mode}, "
        "trigger: {classifier: {name: toxicity, label: toxic}}, "
        "actions: [{stop: {message: stopped}}]}\n"
        "  - {name: pii, trigger: {pii: [EMAIL]}, actions: [redact]}\n"
    )
    if also_enforced:
        policy += (
            "  - {name: tox-redact, trigger: {classifier: {name: toxicity, label: toxic, "
            "threshold: 0.99}}, actions: [redact]}\n"
        )
    return Guard(load_policy_text(policy, registry=reg), reg)


LAG_GUARD = tox_guard()
Steps = list[tuple[str, bool, int]]


def run_lagged(chunks: list[str], holdback: int, interval: int, lag: int,
               offset: int = 0) -> tuple[Steps, Steps]:
    """Per step (released text, stopped, checks applied) through feed and through afeed."""

    def sync() -> Steps:
        sg = LAG_GUARD.stream(
            CTX, holdback=holdback, check_interval=interval, window=interval + 8,
            classifier_lag=lag, check_offset=offset,
        )  # fmt: skip
        steps = [sg.feed(c) for c in chunks] + [sg.finish()]
        return [(s.text, s.stopped, len(s.checks)) for s in steps]

    async def asynchronous() -> Steps:
        sg = LAG_GUARD.stream(
            CTX, holdback=holdback, check_interval=interval, window=interval + 8,
            classifier_lag=lag, check_offset=offset,
        )  # fmt: skip
        steps = [await sg.afeed(c) for c in chunks] + [await sg.afinish()]
        return [(s.text, s.stopped, len(s.checks)) for s in steps]

    return sync(), asyncio.run(asynchronous())


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    words=st.lists(st.sampled_from([*WORDS, "idiot", "jane.doe@example.com"]), min_size=1,
                   max_size=40),
    data=st.data(),
    holdback=st.integers(0, 20),
    interval=st.integers(1, 8),
    lag=st.integers(0, 24),
)  # fmt: skip
def test_lagged_verdicts_never_leak_and_feed_equals_afeed(
    words: list[str], data: st.DataObject, holdback: int, interval: int, lag: int
) -> None:
    text = " ".join(words)
    cuts = data.draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=40))
    chunks = split(text, cuts)
    offset = data.draw(st.integers(0, interval - 1))  # the first check that much earlier
    lagged, alagged = run_lagged(chunks, holdback, interval, lag, offset)
    assert lagged == alagged  # the verdict lands on the same delta on both paths
    released = "".join(t for t, _, _ in lagged)
    assert "idiot" not in released and "jane.doe@example.com" not in released
    stopped = any(s for _, s, _ in lagged)
    assert stopped == ("idiot" in words)
    if not stopped:  # a late verdict (or an early first check) changes when text leaves,
        # never what leaves
        now, _ = run_lagged(chunks, holdback, interval, 0)
        assert released == "".join(t for t, _, _ in now)


def test_check_offsets_spread_lockstep_streams_over_the_interval() -> None:
    """Eight streams fed the same deltas in lockstep: with offsets 0..7 one stream launches a
    check on each delta; with none, all eight launch on every eighth delta."""

    def launches(offsets: list[int]) -> list[int]:
        streams = [LAG_GUARD.stream(CTX, holdback=16, check_interval=8, window=16,
                                    check_offset=o) for o in offsets]
        per_delta = []
        for i in range(32):
            before = sum(len(sg.checks) for sg in streams)
            for sg in streams:
                sg.feed(f"w{i} ")
            per_delta.append(sum(len(sg.checks) for sg in streams) - before)
        return per_delta

    assert launches(list(range(8))) == [1] * 32  # offset k: first check on delta 8 - k
    assert launches([0] * 8) == [8 if i % 8 == 7 else 0 for i in range(32)]
    with pytest.raises(ValueError, match="check_offset"):
        LAG_GUARD.stream(CTX, check_interval=8, check_offset=8)


def test_a_slow_verdict_holds_its_text_until_it_lands() -> None:
    g = tox_guard(delay_s=0.05)  # far slower than the deltas arrive

    async def run() -> tuple[list[str], list[bool]]:
        sg = g.stream(CTX, holdback=2, check_interval=2, window=8, classifier_lag=2)
        texts, stops = [], []
        for delta in ["fine ", "words ", "you ", "idiot ", "and ", "more ", "text ", "here"]:
            step = await sg.afeed(delta)
            texts.append(step.text)
            stops.append(step.stopped)
            if step.stopped:
                break
        return texts, stops

    texts, stops = asyncio.run(run())
    assert stops[-1] and "idiot" not in "".join(texts)
    # "idiot " arrived at delta 4; its check started there and was applied at delta 6.
    assert len(stops) == 6 and "".join(texts) == "fine words "


SHADOW_DELTAS = ["fine ", "words ", "you ", "idiot ", "and ", "more ", "text ", "here"]


async def _arun(g: Guard) -> tuple[list[str], Any]:
    sg = g.stream(CTX, holdback=2, check_interval=2, window=8, classifier_lag=0)
    texts = [(await sg.afeed(d)).text for d in SHADOW_DELTAS]
    texts.append((await sg.afinish()).text)
    return texts, sg


def test_a_shadow_only_classifier_never_holds_text() -> None:
    """Only shadow rules read the (slow) model: text leaves as if there were no model, and every
    verdict is still in the record by the end of the stream."""
    texts, sg = asyncio.run(_arun(tox_guard(delay_s=0.05, mode="shadow")))
    # Holdback 2, no hold for the model: each delta leaves two deltas after it arrived.
    assert texts[:-1] == ["", "", "fine ", "words ", "you ", "idiot ", "and ", "more "]
    assert texts[-1] == "text here"
    assert not sg.stopped
    assert len(sg.checks) == 4  # one window every 2 deltas, none lost
    # The three windows that saw "idiot" (deltas 4, 6 and 8; windows of 8 deltas) each fired it.
    assert [(h.rule, h.mode) for h in sg.hits] == [("tox", "shadow")] * 3


def test_shadow_verdicts_are_the_same_sync_and_async() -> None:
    g = tox_guard(delay_s=0.01, mode="shadow")
    sg = g.stream(CTX, holdback=2, check_interval=2, window=8, classifier_lag=0)
    texts = [sg.feed(d).text for d in SHADOW_DELTAS] + [sg.finish().text]
    atexts, asg = asyncio.run(_arun(g))
    assert "".join(texts) == "".join(atexts) == "".join(SHADOW_DELTAS)
    key = lambda c: (c.start, c.end)  # noqa: E731
    assert [(c.start, c.end, c.scores) for c in sorted(sg.checks, key=key)] == [
        (c.start, c.end, c.scores) for c in sorted(asg.checks, key=key)
    ]
    assert [(h.rule, h.mode) for h in sg.hits] == [(h.rule, h.mode) for h in asg.hits]


def test_a_classifier_an_enforced_rule_reads_still_gates_release() -> None:
    """The same model behind a shadow rule and an enforced one: its text waits for it."""
    texts, sg = asyncio.run(_arun(tox_guard(delay_s=0.05, mode="shadow", also_enforced=True)))
    released = "".join(texts)
    assert "idiot" not in released  # redacted by the enforced rule before it could leave
    assert len(sg.checks) == 4


def test_a_stop_drops_the_verdicts_still_out_unscored() -> None:
    """Shadow windows launched before a stop and not yet scored are taken out of the model's
    batch (their calls are cancelled): after the stop the model runs for nothing of this stream,
    and no verdict lands in the record after it."""
    tox = SlowTox(
        name="toxicity", labels=("toxic",), version="p1", threshold=0.5,
        patterns={"toxic": ("idiot",)}, timeout_ms=5000, delay_s=0.05,
    )  # fmt: skip
    reg = ClassifierRegistry({"toxicity": tox}, {})
    policy = (
        "name: drop\nversion: '1'\nrules:\n"
        "  - {name: tox, mode: shadow, trigger: {classifier: {name: toxicity, label: toxic}}, "
        "actions: [{stop: {message: s}}]}\n"
        "  - {name: halt, trigger: {phrases: [detonator]}, actions: [{stop: {message: halt}}]}\n"
    )
    g = Guard(load_policy_text(policy, registry=reg), reg)

    async def run() -> tuple[Any, Any]:
        sg = g.stream(CTX, holdback=2, check_interval=1, window=8)
        for delta in ["one ", "two ", "three ", "detonator ", "four "]:
            step = await sg.afeed(delta)
            if step.stopped:
                break
            await asyncio.sleep(0)  # the loop turns between deltas, as on the wire
        await asyncio.sleep(0.15)  # the run in flight finishes; nothing else may start
        return sg, tox._batcher()

    sg, batcher = asyncio.run(run())
    assert sg.stopped and sg.stop_message == "halt"
    assert sg.checks == []  # the one verdict in flight at the stop is not recorded either
    assert batcher.runs == 1 and batcher.windows == 1  # the first window; the others dropped


def test_checks_launched_by_afeed_are_judged_when_the_stream_goes_on_with_feed() -> None:
    """A stream fed with ``afeed`` and then with ``feed`` (a caller that leaves its loop): the
    checks ``afeed`` launched are judged from their futures when in, else run synchronously
    (and their futures cancelled); either way it decides what ``feed`` alone decides."""
    g = tox_guard(delay_s=0.02)
    deltas = ["fine ", "words ", "and ", "more ", "you ", "idiot ", "text ", "here ", "now"]

    def steps(fed: list[Any]) -> list[tuple[str, bool, int]]:
        return [(s.text, s.stopped, len(s.checks)) for s in fed]

    sync = g.stream(CTX, holdback=4, check_interval=2, window=8, classifier_lag=2)
    expected = steps([sync.feed(d) for d in deltas] + [sync.finish()])

    for wait_s in (0.0, 0.1):  # the verdicts still out, or all in, when the loop is left

        async def start(sg: Any, wait_s: float = wait_s) -> list[Any]:
            out = [await sg.afeed(d) for d in deltas[:4]]
            await asyncio.sleep(wait_s)
            return out

        sg = g.stream(CTX, holdback=4, check_interval=2, window=8, classifier_lag=2)
        first = asyncio.run(start(sg))
        rest = [sg.feed(d) for d in deltas[4:]] + [sg.finish()]
        assert steps(first + rest) == expected, wait_s
        assert sg.stopped and "idiot" not in "".join(s.text for s in first + rest)


def test_a_cancelled_afeed_drops_every_window_of_the_check_it_awaited() -> None:
    """A client that goes away while its stream waits for a verdict: none of that check's
    windows is scored after it (the model runs for nothing)."""
    g = tox_guard(delay_s=0.1)
    tox = g.registry.get("toxicity")  # type: ignore[union-attr]

    async def run() -> int:
        blocker = tox.submit("the worker is busy with this one")
        sg = g.stream(CTX, holdback=2, check_interval=2, window=8, window_chars=256)

        async def feed() -> None:
            await sg.afeed("fine ")
            await sg.afeed("word " * 120)  # due now: three windows, queued behind the blocker

        task = asyncio.ensure_future(feed())
        await asyncio.sleep(0.02)
        assert not task.done()
        task.cancel()
        await asyncio.sleep(0.25)  # the blocker's run ends; a next run would be over by now
        assert blocker.done() and task.cancelled()
        return int(tox._batcher().windows)

    assert asyncio.run(run()) == 1  # the blocker only
