"""The incremental regex scanner finds exactly what a whole-text scan finds, whatever the chunks."""

from __future__ import annotations

import itertools

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkstream.engine.scanners import PatternProbe, PatternStream, pattern_events, union_safe
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


# --------------------------------------------------------------------------- the union probe
# One search of the union of a stream's patterns runs before their own scans; when it finds
# nothing, the scans are skipped. It must never skip a match, nor the start of one.

UNION_PATTERNS = [
    *PATTERNS,
    r"\b(?:make|build|assemble)\s+(?:a\s+)?(?:pipe\s+)?bomb\b",
    r"\bmy\s+(?:system\s+prompt|instructions)\s+(?:is|are|says?)\b",
    r"(?<=a)b",
    r"x(?=y)",
    r"(?>a+)b",
    r"\d+(?!\d)",
    r"^ab",
    r"cd$",
    r"t{2,}",
    r"\bb\w*",
]
UNION_TEXT = st.text(alphabet="abcdxyzt 0123mkeuildpo\n", max_size=60)


def leaves_of(sources: list[str], flags: int = regex.V1) -> list[PatternLeaf]:
    return [
        PatternLeaf(i, source, regex.compile(source, flags), 512)
        for i, source in enumerate(sources)
    ]


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    sources=st.lists(st.sampled_from(UNION_PATTERNS), min_size=2, max_size=4, unique=True),
    ignore_case=st.booleans(),
    text=UNION_TEXT,
    data=st.data(),
    final=st.booleans(),
)
def test_the_probe_never_skips_what_a_leaf_scan_finds(
    sources: list[str], ignore_case: bool, text: str, data: st.DataObject, final: bool
) -> None:
    leaves = leaves_of(sources, regex.V1 | (regex.IGNORECASE if ignore_case else 0))
    probe = PatternProbe(leaves)
    assert probe.compiled is not None
    pos = data.draw(st.integers(0, len(text)))
    if not probe.clear(text, pos, final):
        return
    for leaf in leaves:  # every leaf, from the probe's start or any later one, finds nothing
        scanner = PatternStream(leaf)
        scanner.scan_from = data.draw(st.integers(pos, len(text)))
        assert scanner.step(text, 0, final=final) == []
        assert scanner.scan_from == len(text) and scanner.timeout is None


STREAM_POLICY = """
name: probe
version: "1"
rules:
  - name: weapons
    trigger: {pattern: {regex: '\\b(?:make|build)\\s+(?:a\\s+)?bomb\\b', ignore_case: true}}
    actions: [{stop: {message: stopped}}]
  - name: orders
    trigger: {pattern: {regex: 'ORD-\\d{4,6}', ignore_case: true}}
    actions: [{redact: {replacement: '[ORDER]'}}]
  - name: leak
    mode: shadow
    trigger: {pattern: {regex: '\\bmy\\s+prompt\\s+(?:is|says)\\b', ignore_case: true}}
    actions: [redact]
"""
STREAM_WORDS = ["make", "a", "bomb", "build", "ORD-12345", "ord-99", "my", "prompt", "is",
                "says", "the", "cat", " ", "ORD-", "1234"]  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    words=st.lists(st.sampled_from(STREAM_WORDS), min_size=1, max_size=30),
    data=st.data(),
    holdback=st.integers(0, 12),
)
def test_a_stream_decides_the_same_with_and_without_the_probe(
    words: list[str], data: st.DataObject, holdback: int
) -> None:
    from checkstream.engine import Guard, RequestContext
    from checkstream.policy.loader import load_policy_text

    guard = Guard(load_policy_text(STREAM_POLICY))
    text = " ".join(words)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=25))))
    chunks = [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]
    ctx = RequestContext("req-p", "acme", "/v1/chat/completions", "m", {})

    def run(probe: bool) -> tuple[list[str], list[tuple[str, int | None, int | None]]]:
        sg = guard.stream(ctx, holdback=holdback)
        assert sg._probe.compiled is not None
        if not probe:
            sg._probe.compiled = None
        out = [sg.feed(c).text for c in chunks] + [sg.finish().text]
        return out, [(h.rule, h.start, h.end) for h in sg.hits]

    assert run(True) == run(False)


def test_only_patterns_that_mean_the_same_in_a_union_are_united() -> None:
    plain = [r"\bcat\b", r"(?<!x)yz", r"(?>a+)b"]
    assert PatternProbe(leaves_of(plain)).compiled is not None
    assert PatternProbe(leaves_of(plain[:1])).compiled is None  # one leaf: nothing to save
    for unsafe in [r"(a)\1", r"(?P<n>a)", r"(?i)cat", r"(?#note)cat", r"a(?R)?b", r"\Gab",
                   r"(?|a|b)", r"(?:(?=a)|x)(?(DEFINE)(?<d>a))"]:  # fmt: skip
        assert not union_safe(leaves_of([unsafe])[0]), unsafe
        assert PatternProbe(leaves_of([*plain, unsafe])).compiled is None, unsafe
    mixed = [*leaves_of(plain[:1]), *leaves_of(plain[1:], regex.V1 | regex.IGNORECASE)]
    assert PatternProbe(mixed).compiled is None  # different flags: no union


def test_a_probe_that_times_out_is_dropped_and_the_leaves_keep_their_budgets() -> None:
    evil = "(?:a|aa)+$"  # exponential in the regex module, and no group: unitable
    attack = "Here you go: " + "a" * 3000 + "b and the rest of the answer."
    leaves = [
        PatternLeaf(0, evil, regex.compile(evil, regex.V1), 8192, 0.005),
        PatternLeaf(1, r"\bcat\b", regex.compile(r"\bcat\b", regex.V1), 512, 0.005),
    ]
    probe = PatternProbe(leaves)
    assert probe.compiled is not None
    assert not probe.clear(attack, 0, final=True)  # ran out of time: scan leaf by leaf
    assert probe.compiled is None and not probe.clear("nothing here", 0, final=True)
    scanner = PatternStream(leaves[0])
    events = scanner.step(attack, 0, final=True)
    assert scanner.timeout is not None and [e.timed_out for e in events] == [True]
