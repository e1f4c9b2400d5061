"""SSE reassembly: whatever the TCP splits (bytes, lines, UTF-8 code points), the same events."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkstream.proxy.sse import SSEError, SSEEvent, SSEParser, encode_comment, encode_event

TEXTS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=40,
)
EVENTS = st.lists(
    st.tuples(st.one_of(st.none(), st.sampled_from(["message_start", "ping", "delta"])),
              st.lists(TEXTS, min_size=1, max_size=3)),
    min_size=1, max_size=8,
)


def _wire(events: list[tuple[str | None, list[str]]], newline: str, comments: bool) -> bytes:
    out = []
    for kind, lines in events:
        if comments:
            out.append(f": keep-alive{newline}{newline}")
        if kind:
            out.append(f"event: {kind}{newline}")
        out += [f"data: {line}{newline}" for line in lines]
        out.append(newline)
    return "".join(out).encode()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, prev = [], 0
    for p in points:
        pieces.append(data[prev:p])
        prev = p
    pieces.append(data[prev:])
    return pieces


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_events_survive_any_split(events: list[tuple[str | None, list[str]]], newline: str,
                                  comments: bool, cuts: list[int]) -> None:
    wire = _wire(events, newline, comments)
    parser = SSEParser()
    got: list[SSEEvent] = []
    for piece in _split(wire, cuts):
        got += parser.feed(piece)
    got += parser.finish()
    assert [(e.event, e.data) for e in got] == [(k, "\n".join(ls)) for k, ls in events]


@settings(max_examples=100, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=6), st.lists(st.integers(0, 5000), max_size=40))
def test_encode_then_parse_roundtrip(datas: list[str], cuts: list[int]) -> None:
    wire = b"".join(encode_event({"t": d}, event="x") for d in datas) + encode_comment("c\nd")
    parser = SSEParser()
    got = [e for piece in _split(wire, cuts) for e in parser.feed(piece)]
    assert [e.json()["t"] for e in got] == datas


def test_split_inside_a_multibyte_character() -> None:
    wire = encode_event({"t": "caf\u00e9 \U0001F600"})
    parser = SSEParser()
    got = []
    for i in range(len(wire)):
        got += parser.feed(wire[i : i + 1])
    assert [e.json()["t"] for e in got] == ["caf\u00e9 \U0001F600"]


def test_invalid_utf8_is_a_clear_error() -> None:
    with pytest.raises(SSEError, match="UTF-8"):
        SSEParser().feed(b"data: \xff\xfe\n\n")


def test_stream_ending_inside_a_character_is_an_error() -> None:
    parser = SSEParser()
    parser.feed("data: \u00e9".encode()[:-1])
    with pytest.raises(SSEError, match="UTF-8"):
        parser.finish()


def test_truncated_event_is_not_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"a": 1}\n') == []
    assert parser.has_partial
    assert parser.finish() == []


def test_oversized_event_is_rejected() -> None:
    parser = SSEParser(max_event_bytes=100)
    with pytest.raises(SSEError, match="exceeds"):
        parser.feed(b"data: " + b"x" * 200 + b"\n")


def test_non_json_data_names_the_problem() -> None:
    (ev,) = SSEParser().feed(b"data: {broken\n\n")
    with pytest.raises(SSEError, match="not JSON"):
        ev.json()


def test_fields_and_bom() -> None:
    events = SSEParser().feed(b"\xef\xbb\xbfid: 7\nretry: 10\nfoo: bar\ndata:x\n\n")
    assert events == [SSEEvent(data="x", event=None, id="7", retry=10)]


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.booleans(), st.lists(st.integers(min_value=0, max_value=200), max_size=8),
       st.lists(st.sampled_from(["id: 7", "retry: 250", ": ping"]), max_size=3))
def test_reads_on_event_boundaries_parse_like_any_other_split(
    events: list[tuple[str | None, list[str]]], comments: bool, at: list[int], extra: list[str]
) -> None:
    """Reads that end exactly on event boundaries (the parser's fast path, the usual case with
    real upstreams) give the same events, ids and retries as a byte-by-byte feed."""
    blocks = [b for b in _wire(events, "\n", comments).split(b"\n\n") if b]
    blocks[:0] = [x.encode() for x in extra]  # fields that carry over to later events
    wire = b"".join(b + b"\n\n" for b in blocks)
    edges = sorted({sum(len(b) + 2 for b in blocks[: i % (len(blocks) + 1)]) for i in at})
    whole = SSEParser()
    got = [e for piece in _split(wire, edges) for e in whole.feed(piece)]
    slow = SSEParser()
    want = [e for i in range(len(wire)) for e in slow.feed(wire[i : i + 1])]
    assert got == want
    assert [(e.event, e.data) for e in got] == [(k, "\n".join(ls)) for k, ls in events]
