"""Per-token cost of the midstream step: ``StreamGuard.feed`` with the shipped default pack vs a
bare Rust ``HoldbackBuffer`` (push + release with the same phrase automaton), in one run.

    .venv/bin/python benches/bench_engine_stream.py                 # ~1 minute
    .venv/bin/python benches/bench_engine_stream.py --write         # also update RESULTS.md

Rows (µs per token, token-sized deltas of 1-6 characters of synthetic chat text with a credential,
an e-mail and a watched phrase every ~300 words, none of which stops the stream):

* ``bare HoldbackBuffer``: push + release, holdback 16, the default pack's automaton: the floor.
* ``feed, default pack minus its model rule``: phrases, regex and PII scanners, rule decisions.
* ``feed, default pack``: the same plus the toxicity model, run synchronously every
  ``check_interval`` (8) tokens on the last 64 tokens.
* ``afeed x N streams, default pack``: N streams interleaved on one event loop, as the proxy
  runs them (classifier verdicts applied ``holdback - check_interval`` tokens later, the model
  micro-batched across the streams on its worker thread). Wall time and process CPU (all
  threads) per token.

CPU columns are this thread's CPU time (the process's for the concurrent row): on a shared
machine they leave out the slices other processes took, which the wall-clock figures include.

Each figure is the median of ``--rounds`` runs over ``--tokens`` tokens (p99 of the per-token
times of the sync rows is reported too; the model row's p99 is a token that ran the model).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from _timing import index_percentile
from checkstream._core import HoldbackBuffer
from checkstream.engine import Guard, RequestContext, StreamGuard
from checkstream.policy import load_policy_set
from checkstream.policy.loader import load_policy_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "Engine: per-token midstream step (benches/bench_engine_stream.py)"
PACK = ROOT / "policies" / "default"
CTX = RequestContext("bench", "t", "/v1/chat/completions", "m", {})
_WORD_TEXT = (
    "the a of to and in is it you that he was for on are with as I his they be at one have this "
    "from or had by word but what some we can out other were all there when up use your how said "
    "an each she which do their time if will way about many then them write would like so these"
)
WORDS = _WORD_TEXT.split()
INSERTS = ["AKIAIOSFODNN7EXAMPLE", "jane@example.com", "my system prompt is", "020 7946 0958"]


def tokens(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    words = [rng.choice(WORDS) for _ in range(n)]
    for i in range(0, len(words), 300):
        words[i] = rng.choice(INSERTS)
    text = " ".join(words)
    out, i = [], 0
    while len(out) < n:
        k = rng.randint(1, 6)
        out.append(text[i : i + k])
        i += k
    return out


def no_model_guard() -> Guard:
    doc = yaml.safe_load((PACK / "policy.yaml").read_text())
    doc["rules"] = [r for r in doc["rules"] if "classifier" not in str(r["trigger"])]
    return Guard(load_policy_text(yaml.safe_dump(doc), base_dir=PACK))


def per_token_sync(step: Callable[[str], object], toks: list[str]) -> list[float]:
    """Wall time of each step, then the thread's CPU time per step (last item)."""
    clock = time.perf_counter
    out = []
    c0 = time.thread_time()
    for tok in toks:
        t = clock()
        step(tok)
        out.append(clock() - t)
    out.append((time.thread_time() - c0) / len(toks))
    return out


def bare(matcher: object, toks: list[str]) -> list[float]:
    hb = HoldbackBuffer(16, matcher)  # type: ignore[arg-type]

    def step(tok: str) -> None:
        hb.push(tok)
        hb.release()

    return per_token_sync(step, toks)


def guarded(guard: Guard, toks: list[str]) -> list[float]:
    sg = guard.stream(CTX)
    times = per_token_sync(sg.feed, toks)
    sg.finish()
    assert not sg.stopped
    return times


def concurrent(guard: Guard, toks: list[str], streams: int) -> tuple[float, float]:
    """µs wall and µs process CPU per token, ``streams`` StreamGuards interleaved."""

    async def run() -> None:
        sgs: list[StreamGuard] = [
            guard.stream(CTX, holdback=16, check_interval=8, classifier_lag=8)
            for _ in range(streams)
        ]

        async def one(sg: StreamGuard, offset: int) -> None:
            for tok in toks[offset:] + toks[:offset]:
                await sg.afeed(tok)
                await asyncio.sleep(0)  # one token per stream per loop turn, as on the wire
            await sg.afinish()

        await asyncio.gather(*(one(sg, i * 7 % len(toks)) for i, sg in enumerate(sgs)))

    w0, c0 = time.perf_counter(), time.process_time()
    asyncio.run(run())
    n = streams * len(toks)
    return (time.perf_counter() - w0) / n * 1e6, (time.process_time() - c0) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--write", action="store_true", help=f"replace '{SECTION}' in RESULTS.md")
    args = ap.parse_args(argv)
    toks = tokens(args.tokens)
    full = Guard(load_policy_set([PACK]))
    lean = no_model_guard()
    matcher = full.policy_set.matcher
    rows: dict[str, list[tuple[float, float, float]]] = {}

    def add(name: str, measured: list[float]) -> None:
        times, cpu = measured[:-1], measured[-1]
        rows.setdefault(name, []).append(
            (statistics.fmean(times) * 1e6, index_percentile(times, 0.99) * 1e6, cpu * 1e6))

    guarded(full, toks[:2000])  # load the model, warm caches
    for _ in range(args.rounds):
        add("bare HoldbackBuffer (push + release)", bare(matcher, toks))
        add("feed, default pack minus its model rule", guarded(lean, toks))
        add("feed, default pack", guarded(full, toks))
    conc = [concurrent(full, toks[: max(512, args.tokens // 16)], args.streams)
            for _ in range(max(1, args.rounds // 2))]
    lines = [
        f"## {SECTION}",
        "",
        f"`.venv/bin/python benches/bench_engine_stream.py --tokens {args.tokens} --rounds "
        f"{args.rounds} --streams {args.streams}` (Python {platform.python_version()}, "
        "shared 2-core CPU; µs per token, median of the rounds).",
        "",
        "| path | mean µs/token | p99 µs/token | CPU µs/token | x bare (CPU) |",
        "|---|---|---|---|---|",
    ]
    floor = statistics.median(c for _, _, c in rows["bare HoldbackBuffer (push + release)"])
    for name, vals in rows.items():
        mean = statistics.median(m for m, _, _ in vals)
        p99 = statistics.median(p for _, p, _ in vals)
        cpu = statistics.median(c for _, _, c in vals)
        lines.append(f"| {name} | {mean:.2f} | {p99:.2f} | {cpu:.2f} | {cpu / floor:.0f}x |")
    wall = statistics.median(w for w, _ in conc)
    cpu = statistics.median(c for _, c in conc)
    lines.append(
        f"| afeed x {args.streams} streams, default pack (all threads) | {wall:.2f} | | "
        f"{cpu:.2f} | {cpu / floor:.0f}x |"
    )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.write:
        write_section(RESULTS, table)
    return 0


def write_section(path: Path, section: str) -> None:
    text = path.read_text()
    head = f"## {SECTION}"
    if head in text:
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + section + ("\n" + text[nxt + 1 :] if nxt != -1 else "")
    else:
        anchor = text.find("\n## Policy engine")
        at = anchor + 1 if anchor != -1 else len(text)
        text = text[:at] + section + "\n" + text[at:]
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
