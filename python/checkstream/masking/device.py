"""Writing a step's banned entries into a logits tensor where it lives.

One write per kind of ban per step, whatever the batch, and no Python loop over rows or
phrases (vLLM #18767 measured a per-request Python loop taking GPU utilisation from ~83% to
~12%):

- ``apply_pairs``: the masker's ``(rows, token_ids)`` pairs, ``logits[rows, ids] = value``; on
  a GPU both index arrays travel in one host-to-device copy and the write is one
  ``index_put_``;
- ``apply_columns``: the same token ids in every row (or in a row subset), for the one-token
  sequences that every state bans (``TokenMasker.global_banned()``): one ``index_fill_``
  along the vocabulary (or one broadcast ``index_put_`` for a subset), from an index that
  can stay on the device;
- ``apply_flat``: flat offsets ``row * width + id`` from ``TokenMasker.banned_flat_into``: one
  copy and one ``index_fill_`` on the flattened logits.

Measured on an H200 (benches/RESULTS.md, "Token masker"): columns for the one-token sequences
plus pairs for the rest was the fastest at batch 512 (~90 µs per step against ~330 µs for all
pairs), because it does not ship batch x one-token-set pairs every step.

torch is imported lazily, only when a torch tensor is passed, so this module (and the
sidecar) imports without torch and without initialising CUDA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch  # type: ignore[import-not-found, unused-ignore]

Logits = TypeVar("Logits")
Index = Any  # a 1-D int64 numpy array, or a torch int64 tensor (e.g. cached on the device)


def apply_pairs(
    logits: Logits,
    rows: npt.NDArray[np.int64],
    token_ids: npt.NDArray[np.int64],
    value: float = float("-inf"),
) -> Logits:
    """Sets ``logits[rows[k], token_ids[k]] = value`` for all k, in place; returns `logits`.

    `logits` is a 2-D numpy array or torch tensor (any device and float dtype).
    """
    if rows.shape != token_ids.shape or rows.ndim != 1:
        raise ValueError(
            f"rows and token_ids must be 1-D of one length, got {rows.shape} and {token_ids.shape}"
        )
    if isinstance(logits, np.ndarray):
        _check_2d(logits.shape)
        if len(rows):
            logits[rows, token_ids] = value
        return logits
    if _is_torch(logits):
        _apply_torch(logits, rows, token_ids, value)
        return logits
    raise _wrong_type(logits)


def apply_columns(
    logits: Logits,
    token_ids: Index,
    rows: Index | None = None,
    value: float = float("-inf"),
) -> Logits:
    """Sets ``logits[r, t] = value`` for every t in `token_ids` and every row r (all rows when
    `rows` is None), in place; returns `logits`."""
    if isinstance(logits, np.ndarray):
        _check_2d(logits.shape)
        ids = np.asarray(token_ids, dtype=np.int64)
        if rows is None:
            logits[:, ids] = value
        else:
            logits[np.ix_(np.asarray(rows, dtype=np.int64), ids)] = value
        return logits
    if _is_torch(logits):
        import torch

        tensor: Any = logits
        _check_2d(tuple(tensor.shape))
        ids_d = _device_index(token_ids, tensor.device)
        if len(ids_d) == 0:
            return logits
        if rows is None:
            tensor.index_fill_(1, ids_d, value)
        else:
            rows_d = _device_index(rows, tensor.device)
            fill = torch.tensor(value, dtype=tensor.dtype, device=tensor.device)
            tensor.index_put_((rows_d[:, None], ids_d[None, :]), fill)
        return logits
    raise _wrong_type(logits)


def apply_flat(logits: Logits, offsets: Index, value: float = float("-inf")) -> Logits:
    """Sets ``logits.flat[o] = value`` for every offset (``row * width + token``, as written
    by ``TokenMasker.banned_flat_into``), in place; `logits` must be contiguous."""
    if isinstance(logits, np.ndarray):
        _check_2d(logits.shape)
        if not logits.flags.c_contiguous:
            raise ValueError("logits must be C-contiguous for flat offsets")
        logits.reshape(-1)[np.asarray(offsets, dtype=np.int64)] = value
        return logits
    if _is_torch(logits):
        tensor: Any = logits
        _check_2d(tuple(tensor.shape))
        if not tensor.is_contiguous():
            raise ValueError("logits must be contiguous for flat offsets")
        idx = _device_index(offsets, tensor.device)
        if len(idx):
            tensor.view(-1).index_fill_(0, idx, value)
        return logits
    raise _wrong_type(logits)


def pairs_to_device(
    rows: npt.NDArray[np.int64], token_ids: npt.NDArray[np.int64], device: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both index arrays on `device` in one host-to-device copy (torch int64 tensors)."""
    import torch

    both = torch.from_numpy(np.stack((rows, token_ids)))
    if both.device != torch.device(device):
        both = both.to(device, non_blocking=True)
    return both[0], both[1]


def _apply_torch(
    logits: torch.Tensor,
    rows: npt.NDArray[np.int64],
    token_ids: npt.NDArray[np.int64],
    value: float,
) -> None:
    import torch

    _check_2d(tuple(logits.shape))
    if len(rows) == 0:
        return
    r, t = pairs_to_device(rows, token_ids, logits.device)
    logits.index_put_((r, t), torch.tensor(value, dtype=logits.dtype, device=logits.device))


def _device_index(index: Index, device: Any) -> torch.Tensor:
    import torch

    if isinstance(index, torch.Tensor):
        return index.to(device=device, dtype=torch.int64, non_blocking=True)
    return torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64)).to(
        device, non_blocking=True
    )


def _is_torch(obj: object) -> bool:
    return type(obj).__module__.startswith("torch")


def _check_2d(shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise ValueError(f"logits must be 2-D [rows, vocab], got shape {shape}")


def _wrong_type(obj: object) -> TypeError:
    return TypeError(f"logits must be a numpy array or a torch tensor, got {type(obj).__name__}")
