"""Streaming phrase matcher vs ahocorasick-rs, side by side in one run.

Run (release build first, the debug build is ~20x slower):

    VIRTUAL_ENV=$PWD/.venv maturin develop --release -q
    .venv/bin/python benches/bench_matcher.py --write

Two corpora, each with 10k phrases:
- "synthetic": random words from a 20k vocabulary, phrases of 1-3 words drawn from the same
  vocabulary (so about half the words of the text begin some phrase: a hard case for any
  Aho-Corasick automaton, whose walks then run deep into cold states);
- "english": the docstrings of the CPython standard library (real English prose, found on any
  machine with Python), phrases of 2-3 words of 4+ letters drawn from the prose's own 20k most
  frequent words.

Measures, per corpus:
- per 16-byte chunk fed from Python: `MatchStream.feed` vs ahocorasick-rs rescanning the tail
  (the previous `max_len - 1` chars + the chunk, overlapping search; raw text, no normalisation,
  no whole-word check: strictly less work than ours);
- throughput of `find_all` (normalisation + whole-word on), of `Normalizer.normalize`, and of
  ahocorasick-rs on the raw text, in MB/s;
- build time and memory for 10k and 100k phrases.
`--write` replaces the "Text hot path: matcher" section of benches/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import ahocorasick_rs

from checkstream._core import Normalizer, PhraseMatcher

RESULTS = Path(__file__).with_name("RESULTS.md")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def vocabulary(rng: random.Random, n: int) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 10))))
    return sorted(words)


def make_phrases(rng: random.Random, vocab: list[str], n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add(" ".join(rng.sample(vocab, rng.randint(1, 3))))
    return sorted(out)


def make_corpus(
    rng: random.Random, vocab: list[str], phrases: list[str], size: int, non_ascii: bool = False
) -> str:
    """Words and punctuation; one phrase every ~300 words; optional curly quotes and accents."""
    parts: list[str] = []
    total = 0
    while total < size:
        if rng.random() < 1 / 300:
            w = rng.choice(phrases)
        else:
            w = rng.choice(vocab)
            if rng.random() < 0.1:
                w = w.capitalize()
        if non_ascii and rng.random() < 0.05:
            w = rng.choice(["\u201c", "\u2018", "caf\u00e9 ", "na\u00efve "]) + w
        sep = rng.choice([" "] * 12 + [", ", ". ", "\n"])
        parts.append(w + sep)
        total += len(w) + len(sep)
    return "".join(parts)


def english_corpus(rng: random.Random, n_phrases: int) -> tuple[str, list[str]]:
    """CPython stdlib docstrings and phrases made of their frequent words."""
    import ast
    import re
    import sysconfig
    from collections import Counter

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs: list[str] = []
    for path in sorted(stdlib.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts or "tests" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    docs.append(doc)
    text = "\n\n".join(docs)
    counts = Counter(re.findall(r"[a-z]+", text.lower()))
    vocab = [w for w, _ in counts.most_common(20_000) if len(w) >= 4]
    phrases: set[str] = set()
    while len(phrases) < n_phrases:
        phrases.add(" ".join(rng.choice(vocab) for _ in range(rng.randint(2, 3))))
    return text, sorted(phrases)


def best(fn: Callable[[], object], repeat: int) -> float:
    """Best of `repeat` runs in CPU time of this thread (`time.thread_time`): on a shared
    machine, time spent preempted by other processes is not counted (cache contention still is)."""
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return min(times)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build_figures(rng: random.Random, vocab: list[str], n: int) -> dict[str, float]:
    phrases = make_phrases(rng, vocab, n)
    gc.collect()
    before = rss()
    t0 = time.perf_counter()
    m = PhraseMatcher(phrases)
    ours = time.perf_counter() - t0
    grown = rss() - before
    t0 = time.perf_counter()
    ahocorasick_rs.AhoCorasick(phrases)
    base = time.perf_counter() - t0
    return {
        "n": n,
        "build_s": ours,
        "base_build_s": base,
        "memory_usage": m.memory_usage,
        "rss_growth": grown,
        "engine": 0 if m.engine == "dfa" else 1,
    }


def stream_rows(
    name: str, text: str, phrases: list[str], repeat: int
) -> list[tuple[str, str, str]]:
    """Per-chunk and throughput figures for one corpus."""
    m = PhraseMatcher(phrases)
    ac = ahocorasick_rs.AhoCorasick(phrases)
    keep = max(len(p) for p in phrases) - 1
    mb = len(text.encode()) / 1e6
    stream_text = text[:1_000_000]
    chunks = [stream_text[i : i + 16] for i in range(0, len(stream_text), 16)]
    byte_chunks = [c.encode() for c in chunks]

    def ours_stream() -> int:
        s = m.stream()
        found = 0
        for c in chunks:
            found += len(s.feed(c))
        return found + len(s.finish())

    def ours_stream_bytes() -> int:
        s = m.stream()
        found = 0
        for c in byte_chunks:
            found += len(s.feed_bytes(c))
        return found + len(s.finish())

    def base_stream() -> int:
        tail = ""
        found = 0
        for c in chunks:
            hay = tail + c
            cut = len(tail)
            for _, _, e in ac.find_matches_as_indexes(hay, overlapping=True):
                if e > cut:
                    found += 1
            tail = hay[-keep:]
        return found

    assert ours_stream() == len(m.find_all(stream_text)) == ours_stream_bytes()
    t_ours = best(ours_stream, repeat) / len(chunks)
    t_ours_b = best(ours_stream_bytes, repeat) / len(chunks)
    t_base = best(base_stream, repeat) / len(chunks)
    t_find = best(lambda: m.find_all(text), repeat)
    t_ac = best(lambda: ac.find_matches_as_indexes(text, overlapping=True), repeat)
    t_norm = best(lambda: Normalizer().normalize(text), repeat)
    big = [text[i : i + 4096] for i in range(0, len(text), 4096)]

    def ours_4k() -> None:
        s = m.stream()
        for c in big:
            s.feed(c)
        s.finish()

    t_4k = best(ours_4k, repeat)
    return [
        (f"{name}: 16-byte chunk, `MatchStream.feed(str)`", f"{t_ours * 1e6:.3f} µs/chunk", ""),
        (f"{name}: 16-byte chunk, `MatchStream.feed_bytes`", f"{t_ours_b * 1e6:.3f} µs/chunk", ""),
        (
            f"{name}: 16-byte chunk, ahocorasick-rs rescanning the tail (baseline)",
            f"{t_base * 1e6:.3f} µs/chunk",
            f"ours (feed) {t_base / t_ours:.2f}x faster",
        ),
        (f"{name}: `find_all`, normalisation + whole-word", f"{mb / t_find:.0f} MB/s", ""),
        (f"{name}: `MatchStream.feed`, 4 KiB chunks", f"{mb / t_4k:.0f} MB/s", ""),
        (f"{name}: `Normalizer.normalize` alone", f"{mb / t_norm:.0f} MB/s", ""),
        (
            f"{name}: ahocorasick-rs overlapping, raw text (baseline)",
            f"{mb / t_ac:.0f} MB/s",
            f"ours (`find_all`) {t_ac / t_find:.2f}x its speed",
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus-mb", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    ap.add_argument(
        "--dump",
        type=Path,
        help="only write the english phrases and corpus to DIR (for the Rust bench) and exit",
    )
    args = ap.parse_args()
    if args.dump:
        en_text, en_phrases = english_corpus(random.Random(3), 10_000)
        args.dump.mkdir(parents=True, exist_ok=True)
        (args.dump / "phrases.txt").write_text("\n".join(en_phrases))
        (args.dump / "corpus.txt").write_text(en_text)
        return

    rng = random.Random(7)
    vocab = vocabulary(rng, 20_000)
    phrases = make_phrases(rng, vocab, 10_000)
    text = make_corpus(rng, vocab, phrases, int(args.corpus_mb * 1e6))
    en_text, en_phrases = english_corpus(random.Random(3), 10_000)
    rows = stream_rows("synthetic", text, phrases, args.repeat)
    rows += stream_rows("english", en_text, en_phrases, args.repeat)
    # The synthetic corpus and phrases with a-z mapped to Cyrillic letters (2 bytes each).
    cyr = str.maketrans(LETTERS, "абвгдежзийклмнопрстуфхцчшщ")
    cy_text = text[: len(text) // 2].translate(cyr)
    cy_phrases = [p.translate(cyr) for p in phrases]
    cy_m = PhraseMatcher(cy_phrases)
    cy_mb = len(cy_text.encode()) / 1e6
    t_cy = best(lambda: cy_m.find_all(cy_text), args.repeat)
    t_cy_norm = best(lambda: Normalizer().normalize(cy_text), args.repeat)
    rows.append(
        ("cyrillic (synthetic, transliterated): `find_all`", f"{cy_mb / t_cy:.0f} MB/s", "")
    )
    rows.append(("cyrillic: `Normalizer.normalize` alone", f"{cy_mb / t_cy_norm:.0f} MB/s", ""))
    text_na = make_corpus(rng, vocab, phrases, int(args.corpus_mb * 1e6), non_ascii=True)
    m = PhraseMatcher(phrases)
    t_na = best(lambda: m.find_all(text_na), args.repeat)
    rows.append(
        (
            "synthetic, 5% of words with non-ASCII (curly quotes, accents): `find_all`",
            f"{len(text_na.encode()) / 1e6 / t_na:.0f} MB/s",
            "",
        )
    )
    for b in [build_figures(random.Random(11), vocab, n) for n in (10_000, 100_000)]:
        rows.append(
            (
                f"build {b['n']:,} phrases ({'dfa' if b['engine'] == 0 else 'nfa'})",
                f"{b['build_s'] * 1e3:.0f} ms, {b['memory_usage'] / 2**20:.1f} MiB "
                f"(RSS +{b['rss_growth'] / 2**20:.1f} MiB)",
                f"ahocorasick-rs build {b['base_build_s'] * 1e3:.0f} ms",
            )
        )

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    lines = [
        "## Text hot path: matcher",
        "",
        "Command: `VIRTUAL_ENV=$PWD/.venv maturin develop --release -q && "
        ".venv/bin/python benches/bench_matcher.py --write` "
        f"(synthetic corpus {len(text) / 1e6:.1f} MB, english corpus {len(en_text) / 1e6:.1f} MB; "
        f"10,000 phrases each; best of {args.repeat} in thread CPU time; {cpu}, "
        f"{os.cpu_count()} CPUs, one used; "
        f"Python {sys.version.split()[0]}). Baseline: ahocorasick-rs (standard match kind, "
        "overlapping) on the raw text; it does no normalisation, no whole-word check and no "
        "offset mapping. See the module docstring of benches/bench_matcher.py for the corpora.",
        "",
        "| measure | result | vs baseline |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "Targets (issue 2): ≤ 1 µs per 16-byte chunk and ≥ 1.5x faster than the baseline; "
        "≥ 200 MB/s with normalisation on.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section(report)


def write_section(report: str) -> None:
    """Replaces our `## ` section of RESULTS.md (or appends it), leaving the others alone."""
    header = report.splitlines()[0]
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    blocks = old.split("\n## ")
    kept = [blocks[0]] + [b for b in blocks[1:] if "## " + b.splitlines()[0] != header]
    body = "\n## ".join(kept).rstrip("\n") + "\n\n" + report
    RESULTS.write_text(body)


if __name__ == "__main__":
    main()
