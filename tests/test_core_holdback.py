"""HoldbackBuffer (Rust core through the bindings): nothing that could still match leaks."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkstream._core import (
    HoldbackBuffer,
    InputError,
    Normalizer,
    PatternError,
    PhraseMatcher,
    StateError,
)

Match = tuple[int, int, int]
ALPHABET = "abckil -.'\u0430\u200b\u00e9\u00a0\n\t\u3000"
PHRASE_ALPHABET = "abckil -\u0430\u00a0\n"


def apply_redactions(text: str, spans: list[tuple[int, int]], replacement: str) -> str:
    """Overlapping spans merge into one replacement; touching spans stay separate."""
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        if merged and s < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    out, at = [], 0
    for s, e in merged:
        out += [text[at:s], replacement]
        at = e
    out.append(text[at:])
    return "".join(out)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[str], bool, str, list[str], int]:
    phrases = draw(
        st.lists(
            st.text(PHRASE_ALPHABET, min_size=1, max_size=5).filter(
                lambda p: Normalizer().normalize(p).strip(" ") != ""
            ),
            min_size=1,
            max_size=5,
        )
    )
    whole = draw(st.booleans())
    parts = draw(
        st.lists(st.one_of(st.sampled_from(phrases), st.text(ALPHABET, max_size=5)), max_size=10)
    )
    text = "".join(parts)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=12))) | {0, len(text)})
    tokens = [text[a:b] for a, b in pairwise(cuts)]
    holdback = draw(st.integers(0, 4))
    return phrases, whole, text, tokens, holdback


def push_ends(tokens: list[str]) -> list[int]:
    ends, at = [], 0
    for t in tokens:
        at += len(t)
        ends.append(at)
    return ends


@settings(max_examples=300, deadline=None)
@given(streams())
def test_redacting_every_match_leaves_no_phrase_in_the_released_text(
    case: tuple[list[str], bool, str, list[str], int],
) -> None:
    phrases, whole, text, tokens, holdback = case
    m = PhraseMatcher(phrases, whole_word=whole)
    h = HoldbackBuffer(holdback, m)
    released: list[str] = []
    reported: list[Match] = []
    ends = push_ends(tokens)
    for n, tok in enumerate(tokens):
        out, new = h.push(tok)
        released.append(out)
        # The last `holdback` pushes are never released.
        if holdback:
            assert h.released_chars <= (ends[n - holdback] if n >= holdback else 0)
        assert h.released_chars + len(h.held_text) == h.position == ends[n]
        for _, s, e in new:
            h.redact(s, e, "#")  # raises if any of the span had already been released
        reported += new
        released.append(h.release())
    final_matches = h.finish()
    for _, s, e in final_matches:
        h.redact(s, e, "#")
    reported += final_matches
    released.append(h.flush())

    assert reported == m.find_all(text)
    out = "".join(released)
    assert out == apply_redactions(text, [(s, e) for _, s, e in reported], "#")
    if not whole:
        # Substring mode: a redaction cannot create a new occurrence, so none may remain.
        assert m.find_all(out) == []


@settings(max_examples=200, deadline=None)
@given(streams(), st.data())
def test_without_redaction_everything_comes_out_once_in_order(
    case: tuple[list[str], bool, str, list[str], int], data: st.DataObject
) -> None:
    phrases, whole, text, tokens, holdback = case
    h = HoldbackBuffer(holdback, PhraseMatcher(phrases, whole_word=whole))
    out: list[str] = []
    for tok in tokens:
        if data.draw(st.booleans()):
            h.hold_from(data.draw(st.one_of(st.none(), st.integers(0, len(text)))))
        released, _ = h.push(tok)
        out.append(released)
        if data.draw(st.booleans()):
            out.append(h.release())
        assert "".join(out) == text[: h.released_chars]
    h.finish()
    out.append(h.flush())
    assert "".join(out) == text
    assert h.held_text == ""


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=40), st.data())
def test_any_unicode_no_reported_match_was_released_before_it_was_reported(
    text: str, data: st.DataObject
) -> None:
    phrases = ["x"]
    for _ in range(3):
        a = data.draw(st.integers(0, len(text)))
        b = data.draw(st.integers(a, min(len(text), a + 5)))
        if text[a:b].strip():
            phrases.append(text[a:b])
    try:
        m = PhraseMatcher(phrases, whole_word=data.draw(st.booleans()))
    except PatternError:
        return  # a slice made only of characters the normaliser drops
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(text)), max_size=8))))
    h = HoldbackBuffer(data.draw(st.integers(0, 2)), m)
    out: list[str] = []
    reported: list[Match] = []
    for a, b in pairwise([0, *cuts, len(text)]):
        released, new = h.push(text[a:b])
        out.append(released)
        for _, s, e in new:
            h.redact(s, e, "#")  # InputError here would mean part of the match had leaked
        reported += new
        out.append(h.release())
    final = h.finish()
    for _, s, e in final:
        h.redact(s, e, "#")
    out.append(h.flush())
    assert reported + final == m.find_all(text)
    assert "".join(out) == apply_redactions(text, [(s, e) for _, s, e in reported + final], "#")


def test_a_phrase_split_across_tokens_is_held_then_redacted_whole() -> None:
    h = HoldbackBuffer(0, PhraseMatcher(["kill him"]))
    assert h.push("I will ") == ("I will ", [])
    assert h.push("ki") == ("", [])
    assert h.push("ll h") == ("", [])
    assert h.push("im") == ("", [])
    out, new = h.push(" now")
    assert (out, new) == ("", [(0, 7, 15)])
    h.redact(7, 15, "[removed]")
    assert h.release() == "[removed] now"
    assert h.released_chars == 19


@pytest.mark.parametrize(
    "tokens",
    [
        ["I will kill", "  ", "him", " now"],
        ["I will kill", "\u00a0", "\n", "\t ", "\r\n", "him", " now"],
        ["I will kill \u3000", "\u200b ", " him now"],
        ["I will ki", "ll\u2003\u2003h", "im", " now"],
    ],
)
def test_odd_whitespace_inside_a_phrase_is_held_then_redacted_whole(tokens: list[str]) -> None:
    text = "".join(tokens)
    h = HoldbackBuffer(0, PhraseMatcher(["kill him"]))
    out: list[str] = []
    found: list[Match] = []
    for tok in tokens:
        released, new = h.push(tok)
        out.append(released)
        for _, s, e in new:
            h.redact(s, e, "[removed]")
        found += new
        out.append(h.release())
    found += h.finish()
    out.append(h.flush())
    assert found == [(0, 7, len(text) - 4)]
    assert "".join(out) == "I will [removed] now"


def test_holds_the_last_tokens_and_respects_an_external_hold() -> None:
    h = HoldbackBuffer(2)
    assert [h.push(t)[0] for t in ["a", "b", "c", "d"]] == ["", "", "a", "b"]
    h.hold_from(2)
    assert h.push("e")[0] == ""
    h.hold_from(None)
    assert h.release() == "c"
    assert h.held_text == "de"
    assert h.flush() == "de"


def test_redactions_merge_and_never_go_out_half() -> None:
    h = HoldbackBuffer(0)
    h.hold_from(0)
    h.push("0123456789")
    h.redact(2, 5, "A")
    h.redact(4, 7, "B")
    h.hold_from(3)
    assert h.release() == "01"  # the merged span 2..7 is not cut at the hold
    h.hold_from(None)
    assert h.release() == "A789"


def test_stop_discards_and_later_calls_raise() -> None:
    h = HoldbackBuffer(4)
    h.push("secret")
    h.stop()
    assert h.stopped and h.held_text == ""
    for call in (lambda: h.push("x"), h.release, h.flush):
        with pytest.raises(StateError):
            call()


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(InputError, match="holdback"):
        HoldbackBuffer(-1)
    with pytest.raises(InputError, match="limit"):
        HoldbackBuffer(2**40)
    h = HoldbackBuffer(0)
    h.hold_from(0)
    h.push("abc")
    with pytest.raises(InputError, match="redact"):
        h.redact(1, 9, "x")
    with pytest.raises(InputError, match="redact"):
        h.redact(2, 2, "x")
    with pytest.raises(InputError, match="start"):
        h.redact(-1, 2, "x")
    h.hold_from(None)
    assert h.release() == "abc"
    with pytest.raises(InputError):
        h.redact(0, 1, "x")  # already released
    h.finish()
    with pytest.raises(StateError):
        h.push("more")


def test_never_releases_half_a_code_point() -> None:
    h = HoldbackBuffer(1)
    out = [h.push(t)[0] for t in ["\U0001f600", "é", "\u200b", "x"]]
    out.append(h.flush())
    assert "".join(out) == "\U0001f600é\u200bx"
    assert h.released_chars == 4
