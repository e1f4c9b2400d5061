"""Adaptive decoding as logits transforms.

vLLM fixes a request's temperature and top-p at admission (both runners copy them into per-row
tensors), and a logits processor only sees logits. So safe mode is expressed on the logits:

- temperature: vLLM later divides the row by the request's temperature ``T``; dividing first by
  ``f = T_safe / T`` gives an effective temperature of ``T_safe`` (division commutes, so it does
  not matter that our processor runs before vLLM's temperature step). ``T_safe = 0`` keeps only
  the most likely token (greedy);
- top-p: tokens outside the ``p`` nucleus of the distribution vLLM will sample from
  (``softmax(logits / T)`` after our temperature change) are set to ``-inf``; the top token
  always survives. vLLM's own top-k/top-p still run afterwards, so this can only tighten.

Greedy requests are left alone: vLLM takes the argmax, which neither transform changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

# vLLM treats temperatures below this as greedy (vllm.sampling_params._SAMPLING_EPS).
SAMPLING_EPS = 1e-5

F64 = npt.NDArray[np.float64]


def safe_factors(req_temp: F64, safe_temp: F64) -> F64:
    """Per row: the divisor for the logits (1 = unchanged, 0 = greedy); only ever tightens."""
    target = np.where(np.isnan(safe_temp), req_temp, np.minimum(safe_temp, req_temp))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(req_temp > SAMPLING_EPS, target / req_temp, 1.0)
    factor = np.where(target <= SAMPLING_EPS, 0.0, factor)
    # Greedy requests: vLLM takes the argmax, which no transform here changes.
    return np.where(req_temp > SAMPLING_EPS, factor, 1.0)


def apply_safe_mode(
    logits: torch.Tensor,
    rows: torch.Tensor,
    req_temp: F64,
    safe_temp: F64,
    safe_top_p: F64,
) -> None:
    """Tightens decoding in place for ``rows`` of ``logits``."""
    import torch

    sampled = req_temp > SAMPLING_EPS
    if not sampled.any():
        return
    if not sampled.all():
        keep = torch.from_numpy(np.nonzero(sampled)[0]).to(rows.device)
        rows = rows[keep]
        req_temp, safe_temp, safe_top_p = req_temp[sampled], safe_temp[sampled], safe_top_p[sampled]
    factor = safe_factors(req_temp, safe_temp)
    top_p = np.where(np.isnan(safe_top_p), 1.0, safe_top_p)
    if np.all(factor == 1.0) and np.all(top_p >= 1.0):
        return
    dev = logits.device
    sub = logits.index_select(0, rows)
    greedy = factor == 0.0
    scale = np.where(greedy, 1.0, factor)
    sub.div_(torch.from_numpy(scale).to(device=dev, dtype=sub.dtype).unsqueeze(1))
    neg_inf = torch.tensor(float("-inf"), dtype=sub.dtype, device=dev)
    if greedy.any():
        g = torch.from_numpy(greedy).to(dev)
        top = sub.max(dim=1, keepdim=True).values
        sub = torch.where(g.unsqueeze(1) & (sub < top), neg_inf, sub)
    nucleus = (top_p < 1.0) & ~greedy
    if nucleus.any():
        # The distribution vLLM samples from: our (already divided) row over the request's T.
        t = torch.from_numpy(req_temp).to(device=dev, dtype=sub.dtype).unsqueeze(1)
        probs = torch.softmax(sub / t, dim=1)
        sorted_p, order = probs.sort(dim=1, descending=True)
        before = sorted_p.cumsum(dim=1) - sorted_p  # mass of strictly more likely tokens
        p = torch.from_numpy(top_p).to(device=dev, dtype=sub.dtype).unsqueeze(1)
        drop_sorted = before >= p
        drop_sorted[:, 0] = False
        drop_sorted &= torch.from_numpy(nucleus).to(dev).unsqueeze(1)
        drop = torch.zeros_like(drop_sorted).scatter_(1, order, drop_sorted)
        sub = sub.masked_fill(drop, float("-inf"))
    logits.index_copy_(0, rows, sub)
