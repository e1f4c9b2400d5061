"""apply_pairs: the one advanced-index write, on numpy here and on torch where it exists."""

from __future__ import annotations

import numpy as np
import pytest

from checkstream._core import TokenMasker
from checkstream.masking import apply_columns, apply_flat, apply_pairs


def stepped_masker() -> tuple[TokenMasker, np.ndarray]:
    rng = np.random.default_rng(3)
    seqs = [rng.integers(0, 64, size=rng.integers(1, 4)).tolist() for _ in range(80)]
    masker = TokenMasker(seqs, 64)
    states = np.zeros(16, dtype=np.uint32)
    for _ in range(6):
        masker.advance(states, rng.integers(0, 64, size=16))
    return masker, states


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_numpy_write_equals_the_maskers_own_apply(dtype: type[np.floating]) -> None:
    masker, states = stepped_masker()
    rows, ids = masker.banned(states)
    assert len(rows) > 0
    base = np.random.default_rng(0).normal(size=(16, 70)).astype(dtype)
    by_pairs = apply_pairs(base.copy(), rows, ids)
    by_masker = base.copy()
    assert masker.apply(states, by_masker) == len(rows)
    assert np.array_equal(by_pairs, by_masker)
    assert np.isneginf(by_pairs).sum() == len(rows)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_columns_plus_local_pairs_and_flat_offsets_equal_the_full_mask(
    dtype: type[np.floating],
) -> None:
    masker, states = stepped_masker()
    assert len(masker.global_banned()) > 0
    base = np.random.default_rng(1).normal(size=(16, 64)).astype(dtype)
    expected = base.copy()
    masker.apply(states, expected)

    split = apply_columns(base.copy(), masker.global_banned())
    apply_pairs(split, *masker.banned(states, include_global=False))
    assert np.array_equal(split, expected)

    offsets = np.empty(masker.count_banned(states), dtype=np.int64)
    n = masker.banned_flat_into(states, 64, offsets)
    assert np.array_equal(apply_flat(base.copy(), offsets[:n]), expected)


def test_columns_on_a_row_subset() -> None:
    logits = np.zeros((4, 6), dtype=np.float32)
    apply_columns(logits, np.array([1, 4]), rows=np.array([0, 2]), value=-5.0)
    assert np.argwhere(logits == -5.0).tolist() == [[0, 1], [0, 4], [2, 1], [2, 4]]
    assert np.count_nonzero(logits) == 4


def test_empty_pairs_leave_logits_alone_and_bad_input_is_rejected() -> None:
    logits = np.ones((2, 5), dtype=np.float32)
    empty = np.zeros(0, dtype=np.int64)
    assert np.array_equal(apply_pairs(logits, empty, empty), np.ones((2, 5)))
    with pytest.raises(ValueError, match="1-D of one length"):
        apply_pairs(logits, np.zeros(2, dtype=np.int64), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="2-D"):
        apply_pairs(np.ones(5, dtype=np.float32), empty, empty)
    with pytest.raises(TypeError, match="numpy array or a torch tensor, got list"):
        apply_pairs([[0.0]], empty, empty)
    with pytest.raises(TypeError, match="got list"):
        apply_columns([[0.0]], empty)
    with pytest.raises(ValueError, match="C-contiguous"):
        apply_flat(np.asfortranarray(np.ones((3, 4), dtype=np.float32)), empty)
    with pytest.raises(ValueError, match="2-D"):
        apply_flat(np.ones(4, dtype=np.float32), empty)


def test_torch_write_on_cpu_and_cuda() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed in this environment")
    masker, states = stepped_masker()
    rows, ids = masker.banned(states)
    expected = np.zeros((16, 64), dtype=np.float32)
    masker.apply(states, expected)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            logits = torch.zeros((16, 64), dtype=dtype, device=device)
            apply_pairs(logits, rows, ids)
            got = logits.float().cpu().numpy()
            assert np.array_equal(np.isneginf(got), np.isneginf(expected)), (device, dtype)

            split = torch.zeros((16, 64), dtype=dtype, device=device)
            global_ids = torch.from_numpy(masker.global_banned()).to(device)
            apply_columns(split, global_ids)
            apply_pairs(split, *masker.banned(states, include_global=False))
            got = split.float().cpu().numpy()
            assert np.array_equal(np.isneginf(got), np.isneginf(expected)), (device, dtype)

            flat = torch.zeros((16, 64), dtype=dtype, device=device)
            offsets = np.empty(len(rows), dtype=np.int64)
            n = masker.banned_flat_into(states, 64, offsets)
            apply_flat(flat, offsets[:n])
            got = flat.float().cpu().numpy()
            assert np.array_equal(np.isneginf(got), np.isneginf(expected)), (device, dtype)

            subset = torch.zeros((16, 64), dtype=dtype, device=device)
            apply_columns(subset, np.array([3, 5]), rows=np.array([2, 7]))
            assert torch.isneginf(subset).nonzero().tolist() == [[2, 3], [2, 5], [7, 3], [7, 5]]
