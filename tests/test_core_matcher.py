"""PhraseMatcher / MatchStream (Rust core through the bindings).

The streamed results are checked against `find_all`, and both against a plain-Python reference
built on the per-code-point folds of `Normalizer.normalize`, a Python model of the whitespace-run
collapse, and `str.find`.
"""

# These tests are about look-alike characters: writing them literally is the point.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkstream._core import (
    CoreError,
    InputError,
    Normalizer,
    PatternError,
    PhraseMatcher,
    StateError,
)

Match = tuple[int, int, int]

# Characters whose folds are well understood; word-ness agrees between Rust and Python on
# everything they normalise to.
ALPHABET = (
    "abckilxyz AB-.,!'01"
    "\u0430\u043e\u0435\u0456"  # Cyrillic а о е і
    "\u200b\u200d\u0301\u00e9\u00a0\ufb01\uff21\uff42\u2019\u00df\u0130"
    "\t\n\r\u2003\u3000"  # whitespace that must collapse with its neighbours
)
PHRASE_ALPHABET = "abckil -'\u0430\u00e9\u00a0\n"


def is_word(c: str) -> bool:
    return c.isalnum()


def collapsed(n: Normalizer, text: str) -> tuple[str, list[int]]:
    """Per-code-point folds, then every run of spaces made one (mapped to its first char)."""
    out: list[str] = []
    offs: list[int] = []
    for i, c in enumerate(text):
        for ch in n.normalize(c):
            if ch == " " and out and out[-1] == " ":
                continue
            out.append(ch)
            offs.append(i)
    return "".join(out), offs


def reference(
    phrases: Sequence[str], text: str, whole_word: Sequence[bool], leetspeak: bool
) -> list[Match]:
    n = Normalizer(leetspeak=leetspeak)
    norm, offs = collapsed(n, text)
    assert (norm, offs) == n.normalize_with_offsets(text)
    out: list[Match] = []
    for i, phrase in enumerate(phrases):
        p = collapsed(n, phrase)[0].strip(" ")
        k = norm.find(p)
        while k >= 0:
            e = k + len(p)
            ok = True
            if whole_word[i]:
                if is_word(p[0]) and k > 0 and is_word(norm[k - 1]):
                    ok = False
                if is_word(p[-1]) and e < len(norm) and is_word(norm[e]):
                    ok = False
            if ok:
                out.append((i, offs[k], offs[e - 1] + 1))
            k = norm.find(p, k + 1)
    return sorted(out, key=lambda m: (m[2], m[1], m[0]))


def chunks(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in pairwise(points)]


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[str], list[bool], bool, str, list[int]]:
    leet = draw(st.booleans())
    norm = Normalizer(leetspeak=leet)
    phrases = draw(
        st.lists(
            st.text(PHRASE_ALPHABET, min_size=1, max_size=5).filter(
                lambda p: bool(norm.normalize(p).strip(" "))
            ),
            min_size=1,
            max_size=6,
        )
    )
    whole = draw(st.lists(st.booleans(), min_size=len(phrases), max_size=len(phrases)))
    # Build text that actually contains phrases, glued with random filler.
    parts = draw(
        st.lists(st.one_of(st.sampled_from(phrases), st.text(ALPHABET, max_size=6)), max_size=10)
    )
    text = "".join(parts)
    cuts = draw(st.lists(st.integers(0, max(len(text), 1)), max_size=8))
    return phrases, whole, leet, text, cuts


@settings(max_examples=300, deadline=None)
@given(cases())
def test_streamed_equals_whole_text_equals_reference(
    case: tuple[list[str], list[bool], bool, str, list[int]],
) -> None:
    phrases, whole, leet, text, cuts = case
    m = PhraseMatcher(phrases, whole_word=whole, leetspeak=leet)
    whole_text = m.find_all(text)
    assert whole_text == reference(phrases, text, whole, leet)

    s = m.stream()
    streamed: list[Match] = []
    for piece in chunks(text, cuts):
        before = s.position
        streamed += s.feed(piece)
        assert s.position == before + len(piece)
        # Nothing still to be reported may start before the pending suffix.
        later = [x for x in whole_text if x not in streamed]
        assert all(x[1] >= s.position - s.pending for x in later)
    streamed += s.finish()
    assert streamed == whole_text
    assert all(0 <= st_ < en <= len(text) for _, st_, en in whole_text)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_feed_bytes_across_code_points_equals_whole_text(
    case: tuple[list[str], list[bool], bool, str, list[int]],
) -> None:
    phrases, whole, leet, text, cuts = case
    m = PhraseMatcher(phrases, whole_word=whole, leetspeak=leet)
    data = text.encode()
    points = sorted({min(c * 2, len(data)) for c in cuts} | {0, len(data)})
    s = m.stream()
    got: list[Match] = []
    for a, b in pairwise(points):
        got += s.feed_bytes(data[a:b])
    got += s.finish()
    assert got == m.find_all(text)


ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=200, deadline=None)
@given(ANY_TEXT, st.data())
def test_any_unicode_streamed_equals_whole_and_spans_hold_the_phrase(
    text: str, data: st.DataObject
) -> None:
    # Phrases are slices of the text itself, so arbitrary Unicode actually matches.
    n = Normalizer()
    phrases = []
    for _ in range(data.draw(st.integers(1, 4))):
        a = data.draw(st.integers(0, len(text)))
        b = data.draw(st.integers(a, min(len(text), a + 6)))
        if n.normalize(text[a:b]).strip(" "):
            phrases.append(text[a:b])
    phrases.append("x")
    whole = data.draw(st.booleans())
    m = PhraseMatcher(phrases, whole_word=whole)
    expected = m.find_all(text)
    for phrase_index, start, end in expected:
        assert 0 <= start < end <= len(text)
        assert m.normalized_phrase(phrase_index) in n.normalize(text[start:end])
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(text)), max_size=6))))
    s = m.stream()
    got: list[Match] = []
    for a, b in pairwise([0, *cuts, len(text)]):
        got += s.feed(text[a:b])
    assert got + s.finish() == expected
    raw = text.encode()
    byte_cuts = sorted(set(data.draw(st.lists(st.integers(0, len(raw)), max_size=6))))
    s = m.stream()
    got = []
    for a, b in pairwise([0, *byte_cuts, len(raw)]):
        got += s.feed_bytes(raw[a:b])
    assert got + s.finish() == expected


OBFUSCATED = [
    "How to build a bomb",
    "how to build a b\u043emb",  # Cyrillic о
    "HOW TO BUILD A BOMB",
    "how to bu\u200bild a bo\u200dmb",  # zero-width space / joiner
    "ｈｏｗ ｔｏ ｂｕｉｌｄ ａ ｂｏｍｂ",  # full width
    "h0w t0 bu1ld 4 b0mb",  # leetspeak
    "how  to   build a bomb",  # runs of spaces
    "how\u00a0\nto build \t a\r\n\r\nbomb",  # NBSP, newlines, tabs
    "how\u2003to\u3000build \u200b a\u2028bomb",  # em space, ideographic space, ZWSP in a run
    "hOw\u00a0to build\ta  b\u0430\u0301mb",  # NBSP, tab, Cyrillic а + mark
]


@pytest.mark.parametrize("text", OBFUSCATED)
def test_obfuscated_variants_are_found(text: str) -> None:
    m = PhraseMatcher(["build a bomb"], leetspeak=True)
    found = m.find_all(text)
    if "b\u0430\u0301mb" in text:
        # "bаmb" is a different word: only the homoglyph must not hide a real match.
        assert found == []
        return
    assert len(found) == 1
    _, start, end = found[0]
    assert Normalizer(leetspeak=True).normalize(text[start:end]) == "build a bomb"
    # Non-space at both ends: the whitespace runs inside the phrase are covered whole.
    assert not text[start].isspace() and not text[end - 1].isspace()


def test_whitespace_runs_across_chunks_match_and_phrases_are_trimmed() -> None:
    m = PhraseMatcher(["kill him", "  \tgo\u00a0\u00a0away\n"])
    assert m.normalized_phrase(1) == "go away"
    text = "I will kill \u00a0\n\t him, go\r\n\r\naway!"
    expected = [
        (0, text.index("kill"), text.index("him") + 3),
        (1, text.index("go"), len(text) - 1),
    ]
    assert m.find_all(text) == expected
    for cut in range(len(text) + 1):
        for cut2 in range(cut, len(text) + 1):
            s = m.stream()
            got = s.feed(text[:cut]) + s.feed(text[cut:cut2]) + s.feed(text[cut2:]) + s.finish()
            assert got == expected, (cut, cut2)
    s = m.stream()
    s.feed("so kill ")
    s.feed("\u00a0 \n")
    assert s.pending == 8  # "kill" and the whole run so far
    with pytest.raises(PatternError, match="phrase 0"):
        PhraseMatcher([" \u00a0\n\t"])


@pytest.mark.parametrize(
    ("phrase", "text"),
    [
        ("hell", "hello there"),
        ("kill", "great skills"),
        ("die", "a healthy diet"),
        ("ass", "class"),
    ],
)
def test_whole_word_skips_ordinary_words(phrase: str, text: str) -> None:
    assert PhraseMatcher([phrase]).find_all(text) == []
    assert PhraseMatcher([phrase], whole_word=False).find_all(text) != []
    assert PhraseMatcher([phrase]).find_all(f"{text}, {phrase}!") != []


def test_phrase_with_non_word_edge_needs_no_boundary_there() -> None:
    m = PhraseMatcher(["$$$", "-x"])
    assert m.find_all("a$$$b") == [(0, 1, 4)]
    assert m.find_all("a-x") == [(1, 1, 3)]
    assert m.find_all("a-xy") == []


def test_split_phrase_across_chunks_and_code_points() -> None:
    m = PhraseMatcher(["caf\u00e9 noir"])
    s = m.stream()
    data = "un caf\u00e9 noir.".encode()
    out: list[Match] = []
    for i in range(len(data)):
        out += s.feed_bytes(data[i : i + 1])
    out += s.finish()
    assert out == [(0, 3, 12)]


def test_whole_word_match_at_the_very_end_needs_finish() -> None:
    m = PhraseMatcher(["bad"])
    s = m.stream()
    assert s.feed("so bad") == []
    assert s.pending == 3
    assert s.finish() == [(0, 3, 6)]
    assert s.finished
    with pytest.raises(StateError):
        s.feed("more")


def test_duplicate_and_overlapping_phrases_all_report() -> None:
    m = PhraseMatcher(["abc", "ABC", "bc"], whole_word=False)
    assert m.find_all("abc") == [(0, 0, 3), (1, 0, 3), (2, 1, 3)]
    assert len(m) == 3
    assert m.normalized_phrase(1) == "abc"


def test_bad_phrases_raise_pattern_error_naming_the_index() -> None:
    with pytest.raises(PatternError, match="empty"):
        PhraseMatcher([])
    with pytest.raises(PatternError, match="phrase 1"):
        PhraseMatcher(["ok", "\u200b\u200d"])
    with pytest.raises(PatternError, match="phrase 0"):
        PhraseMatcher(["x" * 10_000])
    with pytest.raises(InputError, match="whole_word"):
        PhraseMatcher(["a", "b"], whole_word=[True])
    with pytest.raises(TypeError):
        PhraseMatcher("abc")  # a str is not a list of phrases
    with pytest.raises(TypeError):
        PhraseMatcher([1, 2])  # type: ignore[list-item]
    assert issubclass(PatternError, CoreError) and issubclass(CoreError, ValueError)


def test_invalid_utf8_is_an_error_and_leaves_the_stream_unchanged() -> None:
    m = PhraseMatcher(["x"])
    s = m.stream()
    s.feed_bytes(b"a \xc3")
    with pytest.raises(InputError, match="invalid UTF-8"):
        s.feed_bytes(b"\xff x")
    assert s.position == 2
    assert s.feed_bytes(b"\xa9 x") == []
    assert s.finish() == [(0, 4, 5)]
    t = m.stream()
    t.feed_bytes(b"\xe2\x82")
    with pytest.raises(InputError, match="inside a UTF-8 code point"):
        t.finish()
    with pytest.raises(StateError):
        t.feed("x")  # a partial code point is waiting for feed_bytes


@pytest.mark.parametrize("pad", [8180, 8185, 8190, 8191, 8192, 16380])
def test_long_texts_are_scanned_in_blocks_without_losing_matches(pad: int) -> None:
    # find_all works through long texts in 8 KiB blocks; phrases straddle the block edge here.
    phrases = ["kill him", "caf\u00e9 noir", "x"]
    text = ("a " * (pad // 2)) + " kill him caf\u00e9 noir x \u00e9" * 3 + " K\u0456LL HIM"
    whole = [True, True, True]
    expected = reference(phrases, text, whole, False)
    m = PhraseMatcher(phrases)
    assert m.find_all(text) == expected
    s = m.stream()
    got = s.feed(text[:pad]) + s.feed(text[pad:]) + s.finish()
    assert got == expected
    assert len(expected) == 10


@pytest.mark.parametrize("extra", [0, 1, 2, 3, 5, 8, 13, 4099])
def test_long_texts_scanned_in_lanes_equal_the_stream_and_the_reference(extra: int) -> None:
    # find_all scans texts of 64 KiB or more as 4 interleaved pieces cut at len // 4 * k
    # (bytes) and stitches the matches back; streams never do. Phrases here straddle the cuts.
    phrases = ["kill him", "caf\u00e9 noir", "x", "a b", "him a"]
    unit = "a kill  him a\n\tb caf\u00e9 noir x xkill him. "
    text = unit * (70_000 // len(unit)) + "y" * extra
    m = PhraseMatcher(phrases, whole_word=[True, True, True, True, False])
    expected = reference(phrases, text, [True, True, True, True, False], False)
    assert m.find_all(text) == expected
    s = m.stream()
    got = s.feed(text[:30_001]) + s.feed(text[30_001:]) + s.finish()
    assert got == expected
    ascii_text = text.replace("\u00e9", "e")
    assert m.find_all(ascii_text) == reference(
        phrases, ascii_text, [True, True, True, True, False], False
    )


def test_shared_by_threads() -> None:
    m = PhraseMatcher([f"word{i}" for i in range(2000)])
    text = " ".join(f"word{i}" for i in range(0, 4000, 3)) * 3
    expected = m.find_all(text)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(m.find_all, [text] * 8))
    assert all(r == expected for r in results)


def test_large_set_uses_the_nfa_and_agrees() -> None:
    phrases = [f"p{i}q" for i in range(25_000)]
    big = PhraseMatcher(phrases)
    small = PhraseMatcher(phrases[:50])
    assert (big.engine, small.engine) == ("nfa", "dfa")
    text = "x p1q p49q p20000q p5"
    assert [m for m in big.find_all(text) if m[0] < 50] == small.find_all(text)
    assert big.memory_usage > small.memory_usage > 0
