"""Token masker on CUDA logits: the sidecar's full per-step path, timed and checked.

Self-contained: needs only numpy, torch with CUDA, and checkstream's wheel
(``pip install --no-index --no-deps checkstream-*.whl``; only ``checkstream._core`` is used).

    python3 benches/gpu/mask_cuda.py            # prints a JSON summary, writes $OUT/mask_cuda.json
    python3 benches/gpu/mask_cuda.py --dry-run  # no torch/CUDA: workload + numpy checks only

Workload: 10k banned sequences over a 128,256-id vocabulary (lengths 1-6, 2% one-token),
streams that replay banned prefixes half the time (rows sit deep in the automaton). For batch
1, 64 and 512 and for float32, bfloat16 and float16 logits on the GPU, one step is:

    masker.advance(states, sampled)                      # CPU, in place
    n = masker.banned_into(states, rows_pin, ids_pin)    # CPU, into pinned host buffers
    rows, ids = H2D copies of rows_pin[:n], ids_pin[:n]  # non_blocking
    logits.index_put_((rows, ids), -inf)                 # one kernel

Variants: ``pairs`` (all pairs, one index_put_), ``split`` (one-token sequences as a
constant device column set: ``logits.index_fill_(1, global_ids, -inf)`` + the remaining
pairs) and ``flat`` (``banned_flat_into``: flat offsets row * vocab + id, one H2D copy, one
``logits.view(-1).index_fill_``). Baseline in the same run: a naive per-row Python loop
(one small H2D copy and one indexing kernel per row), the pattern that cut vLLM's GPU
utilisation in vllm #18767.

Each step starts on an idle GPU (synchronised), so the CUDA-event time from before
``advance`` to after the write is the step's latency, CPU work included. The logits are reset
from a pristine copy outside the timed region, and every few steps the result is checked
against a CPU reference: exactly the banned pairs are -inf, every other value unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from checkstream._core import TokenMasker

VOCAB = 128_256
NUM_SEQUENCES = 10_000
BATCHES = (1, 64, 512)
LENGTHS = (1, 2, 3, 4, 5, 6)
LENGTH_P = (0.02, 0.30, 0.33, 0.22, 0.09, 0.04)


def make_sequences(rng: np.random.Generator, n: int, vocab: int) -> list[list[int]]:
    """Distinct sequences from a 30k sub-vocabulary, so prefixes are shared."""
    pool = rng.choice(vocab, size=min(vocab, 30_000), replace=False)
    out: set[tuple[int, ...]] = set()
    while len(out) < n:
        k = int(rng.choice(LENGTHS, p=LENGTH_P))
        out.add(tuple(int(t) for t in rng.choice(pool, size=k)))
    return [list(q) for q in sorted(out)]


def make_streams(
    rng: np.random.Generator, seqs: list[list[int]], batch: int, steps: int, vocab: int
) -> npt.NDArray[np.int64]:
    """[steps, batch] sampled tokens; half the time a row replays a banned prefix."""
    out = np.empty((steps, batch), dtype=np.int64)
    for r in range(batch):
        t = 0
        while t < steps:
            if rng.random() < 0.5:
                q = seqs[int(rng.integers(len(seqs)))]
                piece = q[:-1] or [int(rng.integers(vocab))]
            else:
                piece = rng.integers(vocab, size=int(rng.integers(1, 4))).tolist()
            for tok in piece[: steps - t]:
                out[t, r] = tok
                t += 1
    return out


def expected_mask(masker: TokenMasker, states: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    """CPU reference: which [row, token] entries must be masked in this state."""
    mask = np.zeros((len(states), masker.vocab_size), dtype=bool)
    rows, ids = masker.banned(states)
    mask[rows, ids] = True
    return mask


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_us": round(statistics.median(ordered), 2),
        "p99_us": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "steps": len(ordered),
    }


def dry_run(args: argparse.Namespace) -> dict[str, Any]:
    """Everything but the GPU: workload, masker, pair buffers and the numpy reference write."""
    rng = np.random.default_rng(args.seed)
    seqs = make_sequences(rng, args.sequences, args.vocab)
    masker = TokenMasker(seqs, args.vocab)
    results: dict[str, Any] = {}
    for batch in args.batches:
        tokens = make_streams(rng, seqs, batch, args.steps, args.vocab)
        states = np.zeros(batch, dtype=np.uint32)
        cap = batch * (len(masker.global_banned()) + 256)
        rows_buf, ids_buf = np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64)
        checked = pairs = 0
        for i in range(args.steps):
            masker.advance(states, tokens[i])
            n = masker.banned_into(states, rows_buf, ids_buf)
            logits = np.zeros((batch, args.vocab), dtype=np.float32)
            logits[rows_buf[:n], ids_buf[:n]] = -np.inf
            expected = expected_mask(masker, states)
            assert np.array_equal(np.isneginf(logits), expected)
            # The flat variant's offsets address the same entries of the flattened logits.
            assert masker.banned_flat_into(states, args.vocab, rows_buf) == n
            flat = np.zeros(batch * args.vocab, dtype=np.float32)
            flat[rows_buf[:n]] = -np.inf
            assert np.array_equal(np.isneginf(flat.reshape(batch, args.vocab)), expected)
            checked += 1
            pairs += n
        results[str(batch)] = {"checked_steps": checked, "mean_pairs": pairs / args.steps}
    return results


class CudaCase:
    """One batch size and dtype on the GPU: logits, pinned pair buffers and the step variants."""

    def __init__(
        self, torch: Any, masker: TokenMasker, batch: int, dtype: Any, vocab: int, seed: int
    ) -> None:
        self.torch, self.masker, self.batch, self.vocab = torch, masker, batch, vocab
        self.device = torch.device("cuda")
        self.global_ids = torch.from_numpy(masker.global_banned()).to(self.device)
        cap = batch * (len(self.global_ids) + 256)
        # banned_into writes straight into pinned host memory, so the H2D copies are async DMA.
        self.rows_pin = torch.empty(cap, dtype=torch.int64, pin_memory=True)
        self.ids_pin = torch.empty(cap, dtype=torch.int64, pin_memory=True)
        self.rows_np, self.ids_np = self.rows_pin.numpy(), self.ids_pin.numpy()
        gen = torch.Generator(device=self.device).manual_seed(seed)
        self.pristine = torch.randn((batch, vocab), device=self.device, generator=gen).to(dtype)
        self.logits = self.pristine.clone()
        self.value = torch.tensor(float("-inf"), dtype=dtype, device=self.device)
        self.states = np.zeros(batch, dtype=np.uint32)

    def _write_pairs(self, include_global: bool) -> int:
        n = self.masker.banned_into(self.states, self.rows_np, self.ids_np, include_global)
        if n:
            rows = self.rows_pin[:n].to(self.device, non_blocking=True)
            ids = self.ids_pin[:n].to(self.device, non_blocking=True)
            self.logits.index_put_((rows, ids), self.value)
        return n

    def pairs(self, sampled: npt.NDArray[np.int64]) -> int:
        self.masker.advance(self.states, sampled)
        return self._write_pairs(include_global=True)

    def split(self, sampled: npt.NDArray[np.int64]) -> int:
        self.masker.advance(self.states, sampled)
        self.logits.index_fill_(1, self.global_ids, float("-inf"))
        return self._write_pairs(include_global=False)

    def flat(self, sampled: npt.NDArray[np.int64]) -> int:
        self.masker.advance(self.states, sampled)
        n = self.masker.banned_flat_into(self.states, self.vocab, self.rows_np)
        if n:
            idx = self.rows_pin[:n].to(self.device, non_blocking=True)
            self.logits.view(-1).index_fill_(0, idx, float("-inf"))
        return n

    def naive_per_row_loop(self, sampled: npt.NDArray[np.int64]) -> int:
        self.masker.advance(self.states, sampled)
        n = 0
        for row in range(self.batch):
            banned = self.masker.banned_tokens(int(self.states[row]))
            if banned:
                self.logits[row, self.torch.tensor(banned, device=self.device)] = float("-inf")
                n += len(banned)
        return n

    def run(
        self, name: str, tokens: npt.NDArray[np.int64], steps: int, warmup: int, check_every: int
    ) -> dict[str, Any]:
        torch = self.torch
        step: Callable[[npt.NDArray[np.int64]], int] = getattr(self, name)
        self.states = np.zeros(self.batch, dtype=np.uint32)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        times: list[float] = []
        wall: list[float] = []
        checked = 0
        for i in range(warmup + steps):
            self.logits.copy_(self.pristine)
            torch.cuda.synchronize()
            w0 = time.perf_counter()
            start.record()
            step(tokens[i])
            end.record()
            end.synchronize()
            if i >= warmup:
                times.append(start.elapsed_time(end) * 1e3)
                wall.append((time.perf_counter() - w0) * 1e6)
            if i % check_every == 0:
                mask = torch.from_numpy(expected_mask(self.masker, self.states)).to(self.device)
                assert torch.equal(torch.isneginf(self.logits), mask), (self.batch, name, i)
                assert torch.equal(self.logits[~mask], self.pristine[~mask]), (self.batch, name, i)
                checked += 1
        entry = percentiles(times)
        entry["wall_median_us"] = round(statistics.median(wall), 2)
        entry["checked_steps"] = checked
        return entry


def guarded(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    try:
        return fn(*args)
    except Exception as e:  # recorded in the summary; main() fails the run afterwards
        return {"error": f"{type(e).__name__}: {e}"}


def gpu_run(args: argparse.Namespace) -> dict[str, Any]:
    import torch  # type: ignore[import-not-found, unused-ignore]

    if not torch.cuda.is_available():
        raise SystemExit("CUDA is not available; use --dry-run for the CPU-only checks")
    rng = np.random.default_rng(args.seed)
    seqs = make_sequences(rng, args.sequences, args.vocab)
    t0 = time.perf_counter()
    masker = TokenMasker(seqs, args.vocab)
    build_ms = (time.perf_counter() - t0) * 1e3
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "build_ms": round(build_ms, 2),
        "num_states": masker.num_states,
        "one_token_sequences": len(masker.global_banned()),
        "results": {},
    }
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    for batch in args.batches:
        tokens = make_streams(rng, seqs, batch, args.steps + args.warmup, args.vocab)
        for dname, dtype in dtypes.items():
            case = CudaCase(torch, masker, batch, dtype, args.vocab, args.seed)
            res = out["results"]
            key = f"batch{batch}/{dname}"
            # A failed check or error is recorded and the run goes on, so that one broken
            # variant does not cost the others' figures; main() exits non-zero at the end.
            for name in ("pairs", "split", "flat"):
                res[f"{key}/{name}"] = guarded(
                    case.run, name, tokens, args.steps, args.warmup, args.check_every
                )
            base = guarded(case.run, "naive_per_row_loop", tokens, args.baseline_steps, 1, 1)
            res[f"{key}/naive_per_row_loop"] = base
            for name in ("pairs", "split", "flat"):
                entry = res[f"{key}/{name}"]
                if "median_us" in entry and "median_us" in base:
                    entry["speedup_vs_naive"] = round(base["median_us"] / entry["median_us"], 1)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="no torch/CUDA: CPU checks only")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--baseline-steps", type=int, default=20)
    parser.add_argument("--check-every", type=int, default=10)
    parser.add_argument("--sequences", type=int, default=NUM_SEQUENCES)
    parser.add_argument("--vocab", type=int, default=VOCAB)
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {
        "script": "benches/gpu/mask_cuda.py",
        "command": " ".join(["python3", "benches/gpu/mask_cuda.py", *(argv or sys.argv[1:])]),
        "mode": "dry-run" if args.dry_run else "cuda",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "vocab": args.vocab,
        "sequences": args.sequences,
        "batches": args.batches,
    }
    summary.update(dry_run(args) if args.dry_run else gpu_run(args))
    summary["total_s"] = round(time.perf_counter() - t0, 2)
    text = json.dumps(summary, indent=2)
    print(text)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "mask_cuda.json"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
    failed = [k for k, v in summary.get("results", {}).items() if "error" in v]
    if failed:
        raise SystemExit(f"failed: {failed}")
    return summary


if __name__ == "__main__":
    main()
