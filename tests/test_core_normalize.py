"""Normalizer (Rust core through the bindings): the canonical form and its map back."""

# These tests are about look-alike characters: writing them literally is the point.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

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


def test_bad_input_types_are_type_errors() -> None:
    with pytest.raises(TypeError):
        PLAIN.normalize(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(UnicodeEncodeError):
        PLAIN.normalize("lone \ud800 surrogate")


@given(st.text(max_size=60))
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
    assert PLAIN.normalize(a) + PLAIN.normalize(b) == PLAIN.normalize(text)


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
