"""TokenMasker (Rust core through the bindings) against a brute-force reference."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkstream._core import PatternError, TokenMasker

Seqs = list[list[int]]


def reference_banned(seqs: Sequence[Sequence[int]], history: Sequence[int]) -> set[int]:
    """Token t is banned after `history` iff some sequence is `history`'s tail + [t]."""
    out = set()
    for q in seqs:
        k = len(q) - 1
        if k <= len(history) and list(history[len(history) - k :]) == list(q[:k]):
            out.add(q[-1])
    return out


def contains_banned(seqs: Sequence[Sequence[int]], stream: Sequence[int]) -> bool:
    n = len(stream)
    return any(
        n >= len(q) and list(stream[i : i + len(q)]) == list(q)
        for q in seqs
        for i in range(n - len(q) + 1)
    )


@st.composite
def masker_cases(draw: st.DrawFn) -> tuple[int, Seqs, list[list[int]]]:
    vocab = draw(st.integers(2, 12))
    token = st.integers(0, vocab - 1)
    seqs = draw(st.lists(st.lists(token, min_size=1, max_size=5), min_size=1, max_size=15))
    rows = draw(st.integers(1, 5))
    length = draw(st.integers(0, 30))
    streams = [draw(st.lists(token, min_size=length, max_size=length)) for _ in range(rows)]
    return vocab, seqs, streams


def pairs(rows: npt.NDArray[np.int64], toks: npt.NDArray[np.int64]) -> set[tuple[int, int]]:
    return set(zip(rows.tolist(), toks.tolist(), strict=True))


@settings(max_examples=300, deadline=None)
@given(masker_cases())
def test_banned_pairs_equal_brute_force_at_every_step(
    case: tuple[int, Seqs, list[list[int]]],
) -> None:
    vocab, seqs, streams = case
    m = TokenMasker(seqs, vocab)
    glob = set(m.global_banned().tolist())
    assert glob == {q[0] for q in seqs if len(q) == 1}
    states = np.full(len(streams), m.start_state(), dtype=np.uint32)
    for step in range(len(streams[0]) + 1):
        rows, toks = m.banned(states)
        assert len(rows) == len(set(zip(rows.tolist(), toks.tolist(), strict=True))), "duplicates"
        expected = {(r, t) for r, s in enumerate(streams) for t in reference_banned(seqs, s[:step])}
        assert pairs(rows, toks) == expected
        assert pairs(*m.banned(states, include_global=False)) == {
            (r, t) for r, t in expected if t not in glob
        }
        assert m.count_banned(states) == len(rows)
        buf_rows = np.full(len(rows) + 2, -7, dtype=np.int64)
        buf_toks = np.full(len(rows) + 2, -7, dtype=np.int64)
        n = m.banned_into(states, buf_rows, buf_toks)
        assert n == len(rows)
        assert buf_rows[:n].tolist() == rows.tolist() and buf_toks[:n].tolist() == toks.tolist()
        flat = np.empty(len(rows), dtype=np.int64)
        assert m.banned_flat_into(states, vocab + 1, flat) == len(rows)
        assert flat.tolist() == (rows * (vocab + 1) + toks).tolist()
        for r, s in enumerate(streams):
            assert m.walk(m.start_state(), s[:step]) == states[r]
            assert set(m.banned_tokens(int(states[r]))) == reference_banned(seqs, s[:step])
        if step < len(streams[0]):
            m.advance(states, np.array([s[step] for s in streams], dtype=np.int64))


@settings(max_examples=150, deadline=None)
@given(masker_cases(), st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float16]))
def test_apply_then_greedy_never_completes_a_banned_sequence(
    case: tuple[int, Seqs, list[list[int]]], seed: int, dtype: type[np.floating]
) -> None:
    _, seqs, streams = case
    # A vocabulary larger than the set guarantees every row keeps an allowed token.
    vocab = max(max(t for q in seqs for t in q) + 1, len(seqs) + 1)
    m = TokenMasker(seqs, vocab)
    rng = np.random.default_rng(seed)
    rows = len(streams)
    states = np.zeros(rows, dtype=np.uint32)
    generated: list[list[int]] = [[] for _ in range(rows)]
    for _ in range(25):
        logits = rng.normal(size=(rows, vocab + 3)).astype(dtype)
        before = logits.copy()
        written = m.apply(states, logits)
        b_rows, b_toks = m.banned(states)
        assert written == len(b_rows)
        assert np.all(np.isneginf(logits[b_rows, b_toks]))
        untouched = np.ones(logits.shape, dtype=bool)
        untouched[b_rows, b_toks] = False
        assert np.array_equal(logits[untouched], before[untouched])
        choice = logits[:, :vocab].argmax(axis=1).astype(np.int64)
        m.advance(states, choice)
        for r in range(rows):
            generated[r].append(int(choice[r]))
    for stream in generated:
        assert not contains_banned(seqs, stream)


def test_apply_custom_value_and_wider_logits() -> None:
    m = TokenMasker([[1, 2], [3]], 4)
    states = np.array([m.walk(0, [1]), m.start_state()], dtype=np.uint32)
    logits = np.zeros((2, 6), dtype=np.float32)
    assert m.apply(states, logits, value=-1e4) == 3
    assert logits.tolist() == [[0, 0, -1e4, -1e4, 0, 0], [0, 0, 0, -1e4, 0, 0]]


def test_big_batch_from_threads_matches_serial() -> None:
    """Batches large enough to release the GIL give the same answers from several threads."""
    rng = np.random.default_rng(7)
    seqs = [rng.integers(0, 50, size=rng.integers(1, 4)).tolist() for _ in range(200)]
    m = TokenMasker(seqs, 50)
    tokens = rng.integers(0, 50, size=(20, 512))

    def run() -> tuple[list[int], int]:
        states = np.zeros(512, dtype=np.uint32)
        count = 0
        for step in tokens:
            m.advance(states, step)
            count += len(m.banned(states)[0])
        return states.tolist(), count

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run(), range(4)))
    assert all(r == results[0] for r in results)


def test_properties_and_repr() -> None:
    m = TokenMasker([[5, 6, 7], [5, 6, 7], [8]], 10)
    assert (m.vocab_size, m.num_sequences) == (10, 3)
    assert m.num_states == 5  # root, 5, 5-6, 5-6-7, 8
    assert m.memory_bytes > 0
    assert "num_sequences=3" in repr(m)


@pytest.mark.parametrize(
    ("sequences", "vocab", "message"),
    [
        ([], 10, "empty"),
        ([[1], []], 10, "sequence 1 is empty"),
        ([[1], [2, 10]], 10, "sequence 1, position 1: token id 10"),
        ([[-1]], 10, "sequence 0, position 0: token id -1"),
    ],
)
def test_constructor_rejects_bad_sequences(sequences: Seqs, vocab: int, message: str) -> None:
    with pytest.raises(PatternError, match=message):
        TokenMasker(sequences, vocab)


def test_constructor_rejects_bad_vocab_and_types() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        TokenMasker([[1]], 0)
    with pytest.raises(TypeError):
        TokenMasker(["abc"], 10)  # type: ignore[list-item]


def test_batch_calls_reject_bad_arrays() -> None:
    m = TokenMasker([[1, 2]], 8)
    states = np.zeros(3, dtype=np.uint32)
    tokens = np.array([1, 2, 3], dtype=np.int64)
    with pytest.raises(TypeError, match=r"states must be .*uint32, got a 1-D array of dtype int64"):
        m.advance(np.zeros(3, dtype=np.int64), tokens)
    with pytest.raises(TypeError, match="got a 2-D array"):
        m.banned(np.zeros((3, 1), dtype=np.uint32))
    with pytest.raises(TypeError, match=r"tokens must be .*float64"):
        m.advance(states, np.array([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match="got list"):
        m.advance(states, [1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="3 rows but tokens has 2"):
        m.advance(states, tokens[:2])
    with pytest.raises(ValueError, match="C-contiguous"):
        m.advance(states, np.arange(6, dtype=np.int64)[::2])
    with pytest.raises(ValueError, match="token id 8 at row 2"):
        m.advance(states, np.array([1, 2, 8], dtype=np.int32))
    with pytest.raises(ValueError, match="token id -1 at row 0"):
        m.advance(states, np.array([-1, 2, 3], dtype=np.int64))
    assert states.tolist() == [0, 0, 0], "a rejected batch leaves the states untouched"
    with pytest.raises(ValueError, match="state 99 at row 1"):
        m.banned(np.array([0, 99], dtype=np.uint32))
    with pytest.raises(ValueError, match="state -1"):
        m.walk(-1, [1])
    with pytest.raises(ValueError, match="position 1"):
        m.walk(0, [1, 9])
    frozen = states.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        m.advance(frozen, tokens)

    two = np.array([m.walk(0, [1]), 0], dtype=np.uint32)
    small = np.zeros(0, dtype=np.int64)
    with pytest.raises(ValueError, match="hold 0 pairs but this step bans 1"):
        m.banned_into(two, small, small.copy())
    with pytest.raises(ValueError, match="holds 0 entries but this step bans 1"):
        m.banned_flat_into(two, 8, small)
    with pytest.raises(ValueError, match="width 7 is smaller than vocab_size 8"):
        m.banned_flat_into(two, 7, np.zeros(4, dtype=np.int64))
    with pytest.raises(OverflowError):
        m.banned_flat_into(two, -1, np.zeros(4, dtype=np.int64))
    with pytest.raises(TypeError, match=r"rows must be .*int64, got a 1-D array of dtype int32"):
        m.banned_into(two, np.zeros(4, dtype=np.int32), np.zeros(4, dtype=np.int64))

    logits = np.zeros((3, 8), dtype=np.float32)
    with pytest.raises(TypeError, match="float32 or float16, got a 2-D array of dtype float64"):
        m.apply(states, logits.astype(np.float64))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 rows but states has 3"):
        m.apply(states, logits[:2])
    with pytest.raises(ValueError, match="fewer than vocab_size"):
        m.apply(states, np.zeros((3, 7), dtype=np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        m.apply(states, np.asfortranarray(logits))
    readonly = logits.copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        m.apply(states, readonly)
