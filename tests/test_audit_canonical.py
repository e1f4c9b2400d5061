"""Canonical JSON: one byte string per value, stable under parse and re-serialise."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checkstream.audit import CanonicalError, canonical_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


def test_sorted_keys_no_whitespace_utf8() -> None:
    value = {"b": [1, 2.5, True, None], "a": {"é": "ü", "c": "日本"}}
    assert canonical_json(value) == '{"a":{"c":"日本","é":"ü"},"b":[1,2.5,true,null]}'.encode()


def test_mappings_and_tuples_are_plain_objects_and_arrays() -> None:
    assert canonical_json(MappingProxyType({"t": (1, 2)})) == b'{"t":[1,2]}'


@given(json_values)
def test_parse_and_reserialise_gives_the_same_bytes(value: Any) -> None:
    data = canonical_json(value)
    assert canonical_json(json.loads(data)) == data


@pytest.mark.parametrize(
    ("value", "path", "problem"),
    [
        (float("nan"), "$", "not a JSON number"),
        ({"a": [0, float("-inf")]}, "$.a[1]", "not a JSON number"),
        ({"a": {2: 1}}, "$.a", "key 2 is not a string"),
        ({"s": {1, 2}}, "$.s", "set is not JSON"),
        ({"b": b"bytes"}, "$.b", "bytes is not JSON"),
        ("\udcff", "$", "not valid Unicode"),
    ],
)
def test_values_without_a_canonical_form_are_rejected(value: Any, path: str, problem: str) -> None:
    with pytest.raises(CanonicalError) as info:
        canonical_json(value)
    assert info.value.path == path and problem in str(info.value)
