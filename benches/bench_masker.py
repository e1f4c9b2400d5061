"""Token masker vs a Python replica of vLLM's bad_words loop, side by side in one run.

Run (release build first, the debug build is much slower):

    VIRTUAL_ENV=$PWD/.venv maturin develop --release -q
    .venv/bin/python benches/bench_masker.py --write

Workload: 10k banned sequences over a 128,256-id vocabulary (Llama 3 size), lengths 1-6 tokens
(2% one-token, like single words that are one token), drawn from a 30k-token sub-vocabulary
so that prefixes are shared as in real phrase expansions. Each row's token stream follows a
banned sequence's prefix half of the time, so rows sit in deep automaton states, not only at
the root. Per step and per batch size (1, 64, 256):

- `advance + banned`: the sidecar's CPU work per step (states advanced in place by the sampled
  tokens, then the (rows, token_ids) pairs for the device write);
- `advance + banned_into`: the same pairs written into two int64 buffers reused every step
  (what a sidecar does with pinned host memory): no fresh allocation per step;
- `advance + banned(include_global=False)`: the same without the one-token sequences, for
  callers that mask those columns once with a constant device tensor;
- `advance + apply`: the in-place write into float32 numpy logits [batch, 128256];
- the replica of vLLM's V1 `bad_words` (per row, per sequence: compare the last k-1 output
  tokens with the sequence's prefix, then write -inf), on the same numpy logits.

The replica is O(batch x sequences) Python operations per step, so it runs a few steps only.
`--write` replaces the "Token masker" section of benches/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from _timing import rank_percentile
from checkstream._core import TokenMasker

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Token masker"
VOCAB = 128_256
LENGTHS = (1, 2, 3, 4, 5, 6)
LENGTH_P = (0.02, 0.30, 0.33, 0.22, 0.09, 0.04)


def make_sequences(rng: np.random.Generator, n: int, vocab: int = VOCAB) -> list[list[int]]:
    pool = rng.choice(vocab, size=30_000, replace=False)
    out: set[tuple[int, ...]] = set()
    while len(out) < n:
        k = int(rng.choice(LENGTHS, p=LENGTH_P))
        out.add(tuple(int(t) for t in rng.choice(pool, size=k)))
    return [list(q) for q in sorted(out)]


def make_streams(
    rng: np.random.Generator, seqs: list[list[int]], batch: int, steps: int
) -> npt.NDArray[np.int64]:
    """[steps, batch] token ids: half the time a row replays a banned sequence's prefix."""
    out = np.empty((steps, batch), dtype=np.int64)
    for r in range(batch):
        t = 0
        while t < steps:
            if rng.random() < 0.5:
                q = seqs[int(rng.integers(len(seqs)))]
                piece = q[:-1] or [int(rng.integers(VOCAB))]
            else:
                piece = rng.integers(VOCAB, size=int(rng.integers(1, 4))).tolist()
            for tok in piece[: steps - t]:
                out[t, r] = tok
                t += 1
    return out


def time_steps(step: Callable[[int], object], steps: int) -> list[float]:
    """Per-step wall times in microseconds."""
    times = []
    for i in range(steps):
        t0 = time.perf_counter_ns()
        step(i)
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return times


class BadWordsReplica:
    """vLLM V1 `bad_words` algorithm (vllm/v1/sample/ops/bad_words.py), re-implemented:
    per row, per banned sequence, compare the last len-1 output tokens with its prefix and set
    the last token's logit to -inf on a match."""

    def __init__(self, seqs: list[list[int]], batch: int) -> None:
        self.seqs = seqs
        self.past: list[list[int]] = [[] for _ in range(batch)]

    def step(self, logits: npt.NDArray[np.float32], sampled: npt.NDArray[np.int64]) -> int:
        written = 0
        for row, past in enumerate(self.past):
            past.append(int(sampled[row]))
            for word in self.seqs:
                if len(word) > len(past) + 1:
                    continue
                k = len(word) - 1
                actual = past[-k:] if k > 0 else []
                if actual == word[:k]:
                    logits[row, word[-1]] = -np.inf
                    written += 1
        return written


def summarise(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), rank_percentile(times, 0.99)


def measure(
    masker: TokenMasker, tokens: npt.NDArray[np.int64], kind: str, steps: int
) -> tuple[list[float], int]:
    """Per-step times of one masker path over the streams, and the pairs it produced."""
    batch = tokens.shape[1]
    states = np.zeros(batch, dtype=np.uint32)
    logits = np.zeros((batch, VOCAB), dtype=np.float32) if kind == "apply" else None
    cap = batch * (len(masker.global_banned()) + 64)
    buf_rows, buf_toks = np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64)
    pairs = 0

    def step(i: int) -> None:
        nonlocal pairs
        masker.advance(states, tokens[i])
        if kind == "banned":
            pairs += len(masker.banned(states)[0])
        elif kind == "into":
            masker.banned_into(states, buf_rows, buf_toks)
        elif kind == "local":
            masker.banned(states, include_global=False)
        elif logits is not None:
            masker.apply(states, logits)

    time_steps(step, min(steps, 200))  # warm-up
    states[:] = 0
    pairs = 0
    return time_steps(step, steps), pairs


def measure_replica(
    seqs: list[list[int]], tokens: npt.NDArray[np.int64], steps: int
) -> list[float]:
    batch = tokens.shape[1]
    replica = BadWordsReplica(seqs, batch)
    logits = np.zeros((batch, VOCAB), dtype=np.float32)
    # Skip the replica's cheap first steps (short histories): time it at depth.
    for i in range(3):
        replica.step(logits, tokens[i])
    return time_steps(lambda i: replica.step(logits, tokens[3 + i]), steps)


def run(steps: int, baseline_steps: int) -> tuple[list[str], dict[str, float]]:
    rng = np.random.default_rng(20261127)
    seqs = make_sequences(rng, 10_000)
    t0 = time.perf_counter()
    masker = TokenMasker(seqs, VOCAB)
    build_ms = (time.perf_counter() - t0) * 1e3
    seqs_100k = make_sequences(rng, 100_000)
    t0 = time.perf_counter()
    masker_100k = TokenMasker(seqs_100k, VOCAB)
    build_100k_ms = (time.perf_counter() - t0) * 1e3

    root_mib = VOCAB * 4 / 2**20
    lines = [
        f"10k sequences: build {build_ms:.1f} ms, {masker.num_states} states, "
        f"{masker.memory_bytes / 2**20:.2f} MiB (dense root row {root_mib:.2f} MiB of it), "
        f"{len(masker.global_banned())} one-token sequences.",
        f"100k sequences: build {build_100k_ms:.1f} ms, {masker_100k.num_states} states, "
        f"{masker_100k.memory_bytes / 2**20:.2f} MiB.",
        "",
        "| batch | advance + banned | pairs/step | advance + banned_into | advance + banned "
        "(no global) | advance + apply (f32) | vLLM bad_words replica "
        "| ratio (replica / advance + banned) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    key: dict[str, float] = {}
    for batch in (1, 64, 256):
        tokens = make_streams(rng, seqs, batch, max(steps, baseline_steps + 3) + 1)
        banned_t, pairs = measure(masker, tokens, "banned", steps)
        b_med, b_p99 = summarise(banned_t)
        i_med, _ = summarise(measure(masker, tokens, "into", steps)[0])
        l_med, _ = summarise(measure(masker, tokens, "local", steps)[0])
        a_med, a_p99 = summarise(measure(masker, tokens, "apply", steps)[0])
        r_med, _ = summarise(measure_replica(seqs, tokens, baseline_steps))
        key[f"banned_{batch}"] = b_med
        key[f"local_{batch}"] = l_med
        key[f"ratio_{batch}"] = r_med / b_med
        lines.append(
            f"| {batch} | {b_med:.1f} µs (p99 {b_p99:.1f}) | {pairs / steps:.0f} "
            f"| {i_med:.1f} µs | {l_med:.1f} µs | {a_med:.1f} µs (p99 {a_p99:.1f}) "
            f"| {r_med / 1e3:,.1f} ms | **{r_med / b_med:,.0f}x** |"
        )
    return lines, key


def gpu_lines(path: Path) -> list[str]:
    """The CUDA figures written by benches/gpu/mask_cuda.py, as a table."""
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    lines = [
        "",
        f"### CUDA: {data['gpu']}, torch {data['torch']} (`{data['command']}`, "
        f"raw JSON in `{path.relative_to(Path(__file__).parent.parent)}`)",
        "",
        "Full per-step path, CUDA events from before `advance` to after the write, on an idle "
        "GPU (median / p99 µs over 200 steps after 20 warm-up; the naive loop over 20 steps). "
        "`pairs`: `banned_into` pinned buffers -> 2 H2D copies -> one `index_put_`; `split`: "
        "one-token sequences as a constant device column set (`index_fill_`) + the remaining "
        "pairs; `flat`: `banned_flat_into` offsets row * vocab + id -> 1 H2D copy -> one "
        "`logits.view(-1).index_fill_`; naive: per-row Python loop, one small H2D + one "
        "indexing kernel per row. Every 10th step checked against the CPU reference "
        "(exactly the banned entries are -inf, all others unchanged): all passed.",
        "",
        "| batch | dtype | pairs | split | flat | naive per-row loop "
        "| speed-up vs naive (pairs / split / flat) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    res = data["results"]
    for batch in data["batches"]:
        for dtype in ("float32", "bfloat16", "float16"):
            key = f"batch{batch}/{dtype}"
            p, s, f, n = (
                res[f"{key}/{v}"] for v in ("pairs", "split", "flat", "naive_per_row_loop")
            )
            lines.append(
                f"| {batch} | {dtype} | {p['median_us']:.0f} / {p['p99_us']:.0f} "
                f"| {s['median_us']:.0f} / {s['p99_us']:.0f} "
                f"| {f['median_us']:.0f} / {f['p99_us']:.0f} | {n['median_us']:,.0f} "
                f"| {p['speedup_vs_naive']}x / {s['speedup_vs_naive']}x "
                f"/ {f['speedup_vs_naive']}x |"
            )
    return lines


NOTES = [
    "",
    "Reading: the issue's target (batch 256, 10k sequences, one step <= 20 µs on CPU) is met "
    "by `advance + banned(include_global=False)` (the per-state pairs, ~80 per step here). "
    "With the one-token sequences included, every row bans all of them (185 here), so a "
    "batch-256 step is ~47k pairs and its cost is writing them (~1 ns per pair); a sidecar "
    "should mask those columns once per step with a constant device index (`split` below) "
    "rather than ship them as pairs. The vLLM bad_words replica is O(batch x sequences) "
    "Python work per step: over 1,000x slower at every batch size in our runs (target "
    ">= 500x; the ratio column).",
]


def write_section(body: list[str], command: str) -> None:
    header = [
        SECTION,
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other work, "
        f"CPython {platform.python_version()}, release build, "
        f"{time.strftime('%Y-%m-%d')}. Medians over the steps (µs per step for the whole batch), "
        "replica and masker on the same sequences, streams and logits shape in one run.",
        "",
    ]
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    start = text.find(SECTION + "\n")
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start].rstrip("\n") + ("\n\n" + text[end + 1 :] if end >= 0 else "\n")
    RESULTS.write_text(text.rstrip("\n") + "\n\n" + "\n".join(header + body) + "\n", "utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--baseline-steps", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    parser.add_argument(
        "--gpu-json", type=Path, help="add the CUDA table from a mask_cuda.py JSON summary"
    )
    args = parser.parse_args()
    lines, _ = run(args.steps, args.baseline_steps)
    lines += NOTES
    if args.gpu_json:
        lines += gpu_lines(args.gpu_json.resolve())
    print("\n".join(lines))
    if args.write:
        command = " ".join([".venv/bin/python", "benches/bench_masker.py", *sys.argv[1:]])
        write_section(lines, command)


if __name__ == "__main__":
    main()
