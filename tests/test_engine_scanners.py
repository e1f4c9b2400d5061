"""The incremental regex scanner finds exactly what a whole-text scan finds, whatever the chunks."""

from __future__ import annotations

import itertools

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkstream.engine.scanners import PatternStream, pattern_events
from checkstream.policy.policyset import PatternLeaf

PATTERNS = [
    r"ab+c",
    r"\bcat\b",
    r"\d{3,5}",
    r"a[bc]*?d",
    r"(?<!x)yz",
    r"(?:ab|abc)d?",
    r"c\s+a",
    r"\b(?:ba|ab)+\b",
]


def leaf(source: str) -> PatternLeaf:
    return PatternLeaf(0, source, regex.compile(source, regex.V1), 512)


def stream_events(source: str, chunks: list[str]) -> list[tuple[int, int]]:
    scanner = PatternStream(leaf(source))
    text, found = "", []
    for chunk in chunks:
        text += chunk
        found += scanner.step(text, 0, final=False)
    found += scanner.step(text, 0, final=True)
    return sorted((e.start, e.end) for e in found)


@pytest.mark.parametrize("source", PATTERNS)
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(alphabet="abcdxyz 0123 t", max_size=40), data=st.data())
def test_stream_scan_equals_whole_scan(source: str, text: str, data: st.DataObject) -> None:
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(text)), max_size=10))))
    edges = [0, *cuts, len(text)]
    chunks = [text[a:b] for a, b in itertools.pairwise(edges)]
    whole = sorted((e.start, e.end) for e in pattern_events(leaf(source), text))
    assert stream_events(source, chunks) == whole


def test_pending_match_holds_scan_position() -> None:
    scanner = PatternStream(leaf(r"\d{3,5}"))
    assert scanner.step("call 12", 0, final=False) == []
    assert scanner.scan_from == 5  # "12" could still become a match: hold from it
    events = scanner.step("call 1234 now", 0, final=False)
    assert [(e.start, e.end) for e in events] == [(5, 9)] and scanner.scan_from == 13
