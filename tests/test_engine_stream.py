"""Streaming: zero leak and streaming parity under random chunkings (hypothesis)."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
