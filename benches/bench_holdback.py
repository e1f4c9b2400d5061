"""Holdback buffer push + release per token from Python, side by side with a Python baseline.

Run (release build first):

    VIRTUAL_ENV=$PWD/.venv maturin develop --release -q
    .venv/bin/python benches/bench_holdback.py --write

Tokens are 1-6 char pieces of the same synthetic corpus as bench_matcher.py (LLM tokens average
about 4 chars). Each token is pushed; when matches come back they are redacted and `release()`
is called, as the stream guard does. The baseline is the obvious pure-Python buffer: append the
token, rescan the last `max_len + token` chars with ahocorasick-rs, release what is older than
the last 16 tokens and the last `max_len - 1` chars (no normalisation, no whole-word check).
`--write` replaces the "Text hot path: holdback" section of benches/RESULTS.md.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import deque

import ahocorasick_rs

from bench_matcher import best, make_corpus, make_phrases, vocabulary, write_section
from checkstream._core import HoldbackBuffer, PhraseMatcher

HOLDBACK = 16


def tokenize(rng: random.Random, text: str) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, 6)
        out.append(text[i : i + n])
        i += n
    return out


class PythonHoldback:
    """Baseline: the straightforward Python implementation of the same job."""

    def __init__(self, ac: ahocorasick_rs.AhoCorasick, max_len: int) -> None:
        self.ac = ac
        self.keep = max_len - 1
        self.held = ""
        self.ends: deque[int] = deque(maxlen=HOLDBACK + 1)
        self.pos = 0
        self.released = 0

    def push(self, tok: str) -> tuple[str, list[tuple[int, int, int]]]:
        self.held += tok
        self.pos += len(tok)
        self.ends.append(self.pos)
        window = self.held[-(self.keep + len(tok)) :]
        base = self.pos - len(window)
        found = [
            (p, base + s, base + e)
            for p, s, e in self.ac.find_matches_as_indexes(window, overlapping=True)
            if base + e > self.pos - len(tok)
        ]
        limit = min(self.ends[0] if len(self.ends) > HOLDBACK else 0, self.pos - self.keep)
        if found:
            limit = min(limit, *(s for _, s, _ in found))
        out = ""
        if limit > self.released:
            cut = limit - self.released
            out, self.held = self.held[:cut], self.held[cut:]
            self.released = limit
        return out, found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    rng = random.Random(7)
    vocab = vocabulary(rng, 20_000)
    phrases = make_phrases(rng, vocab, 10_000)
    text = make_corpus(rng, vocab, phrases, args.tokens * 4)
    tokens = tokenize(rng, text)[: args.tokens]
    m = PhraseMatcher(phrases)
    ac = ahocorasick_rs.AhoCorasick(phrases)
    max_len = max(len(p) for p in phrases)

    def ours(matcher: PhraseMatcher | None) -> str:
        h = HoldbackBuffer(HOLDBACK, matcher)
        out = []
        for tok in tokens:
            released, new = h.push(tok)
            out.append(released)
            if new:
                for _, s, e in new:
                    h.redact(s, e, "[x]")
                out.append(h.release())
        h.finish()
        out.append(h.flush())
        return "".join(out)

    def baseline() -> None:
        h = PythonHoldback(ac, max_len)
        for tok in tokens:
            h.push(tok)

    n = len(tokens)
    t_m = best(lambda: ours(m), args.repeat) / n
    t_none = best(lambda: ours(None), args.repeat) / n
    t_base = best(baseline, args.repeat) / n
    rows = [
        ("`HoldbackBuffer(16, matcher)`: push (+ redact, release on a match)", t_m, ""),
        ("`HoldbackBuffer(16)` without matcher: push", t_none, ""),
        (
            "pure Python buffer + ahocorasick-rs tail rescan (baseline)",
            t_base,
            f"{t_base / t_m:.2f}x",
        ),
    ]
    lines = [
        "## Text hot path: holdback",
        "",
        "Command: `VIRTUAL_ENV=$PWD/.venv maturin develop --release -q && "
        ".venv/bin/python benches/bench_holdback.py --write` "
        f"({n:,} tokens of 1-6 chars, 10,000 phrases, holdback {HOLDBACK}, best of "
        f"{args.repeat} in thread CPU time; Python {sys.version.split()[0]}).",
        "",
        "| measure | per token | baseline / ours |",
        "|---|---|---|",
        *[f"| {a} | {t * 1e6:.3f} µs | {c} |" for a, t, c in rows],
        "",
        "Target (issue 2): push + release ≤ 2 µs per token from Python.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(report)


if __name__ == "__main__":
    main()
