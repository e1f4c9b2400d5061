"""Normalizer (Rust core through the bindings): the canonical form and its map back."""

# These tests are about look-alike characters: writing them literally is the point.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checkstream._core import Normalizer

PLAIN = Normalizer()
LEET = Normalizer(leetspeak=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("HeLLo WoRLD", "hello world"),
        ("ｆｕｌｌ－ｗｉｄｔｈ", "full-width"),
        ("ze\u200bro\u200d wi\u2060dth\ufeff", "zero width"),
        ("b\u0430d w\u043erd", "bad word"),  # Cyrillic а, о
        ("h\u0435llo", "hello"),  # Cyrillic е
        ("\u039a\u0399LL", "kill"),  # Greek capitals Κ, Ι
        ("cafe\u0301 caf\u00e9", "cafe cafe"),
        ("\ufb01ne", "fine"),  # ligature
        ("a\u00a0b\tc\nd", "a b c d"),
        ("kill  him", "kill him"),  # whitespace runs collapse to one space
        ("kill\u00a0\nhim", "kill him"),
        ("kill \t him", "kill him"),
        ("kill \u200b\u0301\r\n\u3000him ", "kill him "),  # dropped chars inside a run
        ("modem modern", "modem modern"),  # ASCII letters are never merged by the skeleton
    ],
)
def test_canonical_forms(text: str, expected: str) -> None:
    assert PLAIN.normalize(text) == expected


def test_leetspeak_is_opt_in() -> None:
    assert PLAIN.normalize("k1ll 4ll") == "k1ll 4ll"
    assert LEET.normalize("k1ll 4ll h3r0$") == "kill all heros"
    assert LEET.normalize("ｋ１ｌｌ") == "kill"
    assert LEET.normalize("kill!") == "kill!"  # '!' ends sentences; it is not folded
    assert LEET.leetspeak and not PLAIN.leetspeak


def test_offsets_point_at_the_producing_char() -> None:
    norm, offs = PLAIN.normalize_with_offsets("\ufb01\u200bX\u0301y")
    assert norm == "fixy"
    assert offs == [0, 0, 2, 4]


def test_a_collapsed_run_maps_to_its_first_char() -> None:
    norm, offs = PLAIN.normalize_with_offsets("a \u200b\r\n b\t")
    assert norm == "a b "
    assert offs == [0, 1, 6, 7]


# Unicode White_Space (what Rust's `char::is_whitespace` tests; Python's `str.isspace` also
# accepts U+001C..U+001F, which are not White_Space).
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def model_with_offsets(n: Normalizer, text: str) -> tuple[str, list[int]]:
    """The collapse modelled in Python on top of the per-code-point folds."""
    out: list[str] = []
    offs: list[int] = []
    for i, c in enumerate(text):
        for ch in n.normalize(c):
            if ch == " " and out and out[-1] == " ":
                continue
            out.append(ch)
            offs.append(i)
    return "".join(out), offs


@pytest.mark.parametrize("c", WHITE_SPACE)
def test_every_white_space_char_is_a_space(c: str) -> None:
    assert PLAIN.normalize(c) == LEET.normalize(c) == " "
    assert PLAIN.normalize(f"x{c}{c} {c}y") == "x y"


WS_TEXT = st.text(st.sampled_from("ab1 \u200b\u0301\ufb01\u0430" + WHITE_SPACE), max_size=40)


@given(WS_TEXT)
def test_collapse_matches_the_python_model(text: str) -> None:
    for n in (PLAIN, LEET):
        assert n.normalize_with_offsets(text) == model_with_offsets(n, text)
        assert "  " not in n.normalize(text)


def test_bad_input_types_are_type_errors() -> None:
    with pytest.raises(TypeError):
        PLAIN.normalize(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(UnicodeEncodeError):
        PLAIN.normalize("lone \ud800 surrogate")


@given(st.one_of(st.text(max_size=60), WS_TEXT))
def test_offsets_map_inside_the_text_and_are_monotonic(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    norm, offs = LEET.normalize_with_offsets(text)
    assert len(offs) == len(norm)
    assert all(0 <= o < len(text) for o in offs)
    assert offs == sorted(offs)
    assert norm == LEET.normalize(text)


@given(st.text(max_size=40), st.integers(0, 40))
def test_per_code_point_so_chunking_cannot_change_it(text: str, cut: int) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    a, b = text[:cut], text[cut:]
    # Only a whitespace run across the cut joins (streams carry that one bit of state).
    assert re.sub(" +", " ", PLAIN.normalize(a) + PLAIN.normalize(b)) == PLAIN.normalize(text)


@given(st.text(max_size=40))
def test_output_has_no_invisible_characters_or_upper_case_ascii(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    norm = PLAIN.normalize(text)
    assert not any(unicodedata.category(c) in {"Cf", "Mn", "Me"} for c in norm)
    assert not any("A" <= c <= "Z" for c in norm)


def test_large_text_is_folded_in_one_call() -> None:
    text = "Ｈｅｌｌｏ w\u043erld. " * 5000
    norm, offs = PLAIN.normalize_with_offsets(text)
    assert norm == "hello world. " * 5000
    assert len(offs) == len(norm)
