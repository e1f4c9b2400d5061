"""apply_pairs: the one advanced-index write, on numpy here and on torch where it exists."""

from __future__ import annotations

import numpy as np
import pytest

from checkstream._core import TokenMasker
from checkstream.masking import apply_pairs


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
