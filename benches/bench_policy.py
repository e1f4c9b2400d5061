"""Policy evaluation cost: the default pack on 64-token windows, and per-token phrase cost vs
the number of rules, each side by side with a naive per-rule regex loop in the same run.

Run (release build of the extension first):

    VIRTUAL_ENV=$PWD/.venv maturin develop --release -q
    .venv/bin/python benches/bench_policy.py --write

1. *Default pack, 64-token window*: ``Guard.check_output`` (one StreamGuard: shared phrase
   automaton, regex and PII scanners, decisions) on 64-token windows of synthetic chat text
   (~5% contain a phrase, a pattern or PII), p50/p99 per window. Baseline: every rule's trigger
   as its own regex (phrases joined into a word-bounded alternation) plus the PII recognizers per
   PII rule, searched over the same window one rule after another.
2. *Midstream, per token*: the same windows streamed token by token through ``StreamGuard.feed``
   (holdback 16), vs the naive guard that rescans the window so far with every rule's regex after
   each token.
3. *Phrase cost vs rule count*: sets of N phrase rules (5 phrases each, N = 10..1000), per-token
   ``StreamGuard.feed`` cost vs the naive loop over N per-rule regexes on the last 64 chars.
``--write`` replaces the "Policy engine" section of benches/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _results import move_section_last
from _timing import rank_percentile
from checkstream.classifiers import find_pii, load_registry
from checkstream.engine import Guard, RequestContext
from checkstream.policy import load_policy_set
from checkstream.policy.loader import load_policy_text
from checkstream.policy.models import Phase
from checkstream.policy.policyset import (
    AllNode,
    AnyNode,
    ClassifierLeaf,
    Node,
    NotNode,
    PatternLeaf,
    PhraseLeaf,
    PiiLeaf,
    PolicySet,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "Policy engine"
CTX = RequestContext("bench", "t", "/v1/chat/completions", "m", {})
_WORD_TEXT = (
    "the a of to and in is it you that he was for on are with as I his they be at one have this "
    "from or had by word but what some we can out other were all there when up use your how said "
    "an each she which do their time if will way about many then them write would like so these "
    "her long make thing see him two has look more day could go come did number sound no most "
    "people my over know water than call first who may down side been now find any new work part"
)
WORDS = _WORD_TEXT.split(" ")
INSERTS = [
    "build a bomb",
    "AKIAIOSFODNN7EXAMPLE",
    "jane@example.com",
    "you should invest",
    "my system prompt is",
    "020 7946 0958",
]


def tokens_of(text: str, rng: random.Random) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, 6)
        out.append(text[i : i + n])
        i += n
    return out


def windows(rng: random.Random, count: int, n_tokens: int = 64) -> list[list[str]]:
    out = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(70)]
        if rng.random() < 0.05:
            words.insert(rng.randrange(len(words)), rng.choice(INSERTS))
        out.append(tokens_of(" ".join(words), rng)[:n_tokens])
    return out


# --------------------------------------------------------------------------- naive baseline


def naive_rules(pset: PolicySet, phase: Phase) -> list[Callable[[str], bool]]:
    """One check per rule: its phrases as one regex, its patterns, its PII recognizers, its
    classifiers (the same models, called on the text)."""
    registry = load_registry() if pset.classifier_names else None
    checks: list[Callable[[str], bool]] = []
    for rule in pset.rules_for(phase):
        parts: list[Callable[[str], bool]] = []
        for leaf in _leaves(rule.trigger):
            if isinstance(leaf, PhraseLeaf):
                alt = "|".join(re.escape(t) for t in leaf.terms)
                rx = re.compile(rf"\b(?:{alt})\b" if leaf.whole_word else alt, re.IGNORECASE)
                parts.append(_searcher(rx))
            elif isinstance(leaf, PatternLeaf):
                parts.append(_searcher(leaf.compiled))
            elif isinstance(leaf, PiiLeaf):
                parts.append(_pii_finder(leaf.entities))
            elif isinstance(leaf, ClassifierLeaf) and registry is not None:
                parts.append(_scorer(registry.get(leaf.name), leaf.label, leaf.threshold))
        checks.append(_any_of(parts))
    return checks


def _searcher(rx: Any) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        return rx.search(text) is not None

    return check


def _pii_finder(entities: frozenset[str]) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        return bool(find_pii(text, entities))

    return check


def _scorer(classifier: Any, label: str, threshold: float | None) -> Callable[[str], bool]:
    limit = classifier.threshold if threshold is None else threshold

    def check(text: str) -> bool:
        return bool(classifier.score([text])[0][label] >= limit)

    return check


def _any_of(parts: list[Callable[[str], bool]]) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        return any(part(text) for part in parts)

    return check


def _leaves(node: Node) -> list[Node]:
    if isinstance(node, AllNode | AnyNode):
        return [x for c in node.children for x in _leaves(c)]
    if isinstance(node, NotNode):
        return _leaves(node.child)
    return [node]


# --------------------------------------------------------------------------- measurement


def time_each(
    items: list[list[str]], fn: Callable[[list[str]], object]
) -> tuple[list[float], list[float]]:
    """Wall time and this thread's CPU time per item (µs). On a shared machine the CPU time
    excludes the slices other processes took, which otherwise dominate the tail."""
    wall, cpu = [], []
    for item in items:
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        fn(item)
        cpu.append((time.thread_time_ns() - start_cpu) / 1000.0)
        wall.append((time.perf_counter_ns() - start) / 1000.0)
    return wall, cpu


def without_models(pset: PolicySet) -> PolicySet:
    """The same set minus rules that call a classifier (the deterministic triggers alone)."""
    keep = tuple(
        r for r in pset.rules if not any(isinstance(x, ClassifierLeaf) for x in _leaves(r.trigger))
    )
    return dataclasses.replace(pset, rules=keep, _plans={})


def bench_default(rounds: int) -> list[str]:
    rng = random.Random(7)
    full = load_policy_set(ROOT / "policies" / "default")
    items = windows(rng, rounds)
    texts = {id(w): "".join(w) for w in items}
    rows = []
    for label, pset in (
        ("default pack", full),
        ("default pack minus its model rule", without_models(full)),
    ):
        rows += _bench_pack(label, pset, items, texts)
    return rows


def _bench_pack(
    label: str, pset: PolicySet, items: list[list[str]], texts: dict[int, str]
) -> list[str]:
    guard = Guard(pset)
    naive = naive_rules(pset, "midstream")
    for w in items[:50]:  # warm up
        guard.check_output(texts[id(w)], CTX)

    def ours_window(w: list[str]) -> object:
        return guard.check_output(texts[id(w)], CTX)

    def naive_window(w: list[str]) -> object:
        text = texts[id(w)]
        return [check(text) for check in naive]

    def ours_stream(w: list[str]) -> object:
        sg = guard.stream(CTX, holdback=16)
        for tok in w:
            sg.feed(tok)
        return sg.finish()

    def naive_stream(w: list[str]) -> object:
        seen = ""
        for tok in w:
            seen += tok
            for check in naive:
                check(seen)
        return seen

    rows = []
    for name, ours, base in (
        ("whole window (`check_output`)", ours_window, naive_window),
        ("streamed, per window (`feed` x64 + `finish`)", ours_stream, naive_stream),
    ):
        a, a_cpu = time_each(items, ours)
        b, b_cpu = time_each(items, base)
        a99, a_cpu99, b99, b_cpu99 = (rank_percentile(x, 0.99) for x in (a, a_cpu, b, b_cpu))
        rows.append(
            f"| {label}: {name} | {statistics.median(a):.0f} | {a99:.0f} | {a_cpu99:.0f} | "
            f"{statistics.median(b):.0f} | {b99:.0f} | {b_cpu99:.0f} | "
            f"{statistics.median(b) / statistics.median(a):.2f}x |"
        )
    return rows


def phrase_policy(n_rules: int, rng: random.Random) -> str:
    lines = ["name: scale", "version: '1'", "rules:"]
    for i in range(n_rules):
        terms = ", ".join(f"zq{i}x{j} {rng.choice(WORDS)}" for j in range(5))
        lines += [
            f"  - name: r{i}",
            f"    trigger: {{phrases: [{terms}]}}",
            "    actions: [redact]",
        ]
    return "\n".join(lines) + "\n"


def bench_scaling(sizes: list[int], n_windows: int) -> list[str]:
    rng = random.Random(11)
    items = windows(rng, n_windows)
    n_tokens = sum(len(w) for w in items)
    rows = []
    for n in sizes:
        pset = load_policy_text(phrase_policy(n, rng))
        guard = Guard(pset)
        naive = naive_rules(pset, "midstream")

        def ours(guard: Guard = guard) -> None:
            for w in items:
                sg = guard.stream(CTX, holdback=16)
                for tok in w:
                    sg.feed(tok)
                sg.finish()

        def base(naive: list[Callable[[str], bool]] = naive) -> None:
            for w in items:
                seen = ""
                for tok in w:
                    seen = (seen + tok)[-64:]
                    for check in naive:
                        check(seen)

        t_ours = min(_timed(ours) for _ in range(3)) / n_tokens
        t_base = min(_timed(base) for _ in range(3)) / n_tokens
        rows.append(f"| {n} | {5 * n} | {t_ours:.2f} | {t_base:.2f} | {t_base / t_ours:.1f}x |")
    return rows


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / 1000.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2000, help="64-token windows for part 1/2")
    ap.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    args = ap.parse_args(argv)
    default_rows = bench_default(args.rounds)
    scale_rows = bench_scaling([10, 100, 300, 1000], 40)
    import checkstream

    body = "\n".join(
        [
            f"## {SECTION}",
            "",
            f"`.venv/bin/python benches/bench_policy.py --rounds {args.rounds}"
            f"{' --write' if args.write else ''}` (checkstream {checkstream.__version__}, "
            f"Python {sys.version.split()[0]}, shared 2-core CPU; times in microseconds).",
            "",
            "Default pack (`policies/default`, midstream rules) on 64-token windows of synthetic "
            "chat text; baseline = each rule's trigger as its own regex (PII via the recognizers "
            "per rule), one rule after another:",
            "",
            "| what | ours p50 | ours p99 | ours p99 CPU | naive p50 | naive p99 | naive p99 CPU "
            "| naive/ours (p50) |",
            "|---|---|---|---|---|---|---|---|",
            *default_rows,
            "",
            "Per-token midstream cost of phrase triggers vs number of rules (5 phrases each; ours "
            "= `StreamGuard.feed` over the set's one shared automaton in the Rust holdback "
            "buffer; naive = every rule's regex on the last 64 chars after each token):",
            "",
            "| rules | phrases | ours µs/token | naive µs/token | naive/ours |",
            "|---|---|---|---|---|",
            *scale_rows,
            "",
            'Notes: "p99 CPU" is this thread\'s CPU time, which leaves out the time slices other '
            "processes on the shared machine took (they dominate the wall-clock tail when the "
            "machine is busy). The default pack's one model rule (toxicity, shadow) is an ONNX "
            "call per window, or per `check_interval` (8) deltas when streaming, and dominates "
            "its cost; the deterministic triggers alone are the second pair of rows. The naive "
            "streaming guard rescans everything after every token; ours judges each character "
            "once (regex/PII every `holdback` deltas, every holdback/2 while a possible match "
            "is pending, always before the holdback would release the text). "
            "The phrase rows: ours stays flat as rules grow (one automaton, and a match looks up "
            "only the rules of its phrase), the naive loop grows linearly.",
            "",
        ]
    )
    print(body)
    if args.write:
        move_section_last(RESULTS, "## " + SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
