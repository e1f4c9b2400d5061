"""Decision log append throughput vs a plain ``json.dumps`` + ``write`` baseline, in one run.

Run:

    .venv/bin/python benches/bench_audit.py --write

Each case writes the same N realistic decision records (a ``build_record``-shaped dict of ~1.3 KB:
3 rule hits, 4 classifier scores, latencies, coverage) to a fresh file in a temporary directory
and is timed from the first append to the file being closed (everything on disk):

- baseline: ``json.dumps(record)`` + buffered ``file.write`` per record, one thread, no chain;
- DecisionLog with fsync="never" / "batch" (the default), without keys, with HMAC, with Ed25519.

It also times what the request path pays: the caller-side ``append()`` (canonical JSON of the
record and a queue put), as p50 / p99 per call, against ``json.dumps`` alone.
`--write` replaces the "Decision log (audit)" section of benches/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from _results import move_section_last
from _timing import rank_percentile
from checkstream.audit import DecisionLog, verify_log

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "## Decision log (audit)"


def make_record(i: int) -> dict[str, Any]:
    def hit(rule: str, start: int) -> dict[str, Any]:
        return {
            "rule": rule, "policy": "fca-consumer-duty", "phase": "midstream", "action": "redact",
            "actions": ["redact", "audit"], "mode": "enforce", "start": start, "end": start + 12,
            "score": None, "regulation": "FCA PRIN 2A", "citation": "PRIN 2A.2.1R",
            "detail": "phrase 3", "message_index": None, "stream": 0,
        }  # fmt: skip

    def check(name: str) -> dict[str, Any]:
        return {
            "classifier": name, "phase": "midstream", "start": 0, "end": 256,
            "scores": {"safe": 0.91, "unsafe": 0.09}, "model_version": "a1b2c3d4e5f6",
            "latency_ms": 1.234, "timed_out": False, "failed": False, "resolution": "ok",
            "message_index": None, "stream": 0,
        }  # fmt: skip

    return {
        "schema": "checkstream.decision/1",
        "time": "2026-11-27T07:00:00.000000+00:00",
        "request_id": f"req-{i:08d}",
        "tenant": "acme-bank",
        "endpoint": "/v1/chat/completions",
        "model": "gpt-4o-mini",
        "metadata": {"segment": "retail"},
        "policy_version": "9f86d081884c7d65",
        "decision": "redact",
        "input_sha256": hashlib.sha256(b"in %d" % i).hexdigest(),
        "output_sha256": hashlib.sha256(b"out %d" % i).hexdigest(),
        "rules": [hit("pii-email", 10), hit("advice-boundary", 80), hit("promo-balance", 200)],
        "scores": [check("toxicity"), check("injection"), check("advice"), check("vulnerable")],
        "regulations": ["FCA PRIN 2A"],
        "latencies_ms": {"ingress": 0.412, "midstream": 3.1, "egress": 0.2},
        "coverage": {"ingress_checks": 1, "streams": [{"index": 0, "tokens": 412}]},
        "full_evidence": False,
    }


def baseline(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def decision_log(**kwargs: Any) -> Callable[[Path, list[dict[str, Any]]], None]:
    def run(path: Path, records: list[dict[str, Any]]) -> None:
        log = DecisionLog(path, **kwargs)
        for record in records:
            log.append(record)
        log.close()

    return run


def best_of(fn: Callable[[Path, list[dict[str, Any]]], None], records: list[dict[str, Any]],
            repeat: int) -> float:  # fmt: skip
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            path = Path(tmp) / "decisions.jsonl"
            start = time.perf_counter()
            fn(path, records)
            times.append(time.perf_counter() - start)
            if fn is not baseline:
                assert verify_log([path]).records == len(records)
    return min(times)


def per_call_us(
    fn: Callable[[dict[str, Any]], object], records: list[dict[str, Any]]
) -> tuple[float, float]:
    samples = []
    clock = time.perf_counter_ns
    for record in records:
        t0 = clock()
        fn(record)
        samples.append((clock() - t0) / 1000)
    return statistics.median(samples), rank_percentile(samples, 0.99)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20_000, help="records per case")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="update benches/RESULTS.md")
    args = ap.parse_args()
    records = [make_record(i) for i in range(args.n)]
    size = len(json.dumps(records[0]))
    signing_key = Ed25519PrivateKey.generate()
    cases: list[tuple[str, Callable[[Path, list[dict[str, Any]]], None]]] = [
        ("baseline: json.dumps + buffered write", baseline),
        ('DecisionLog fsync="never", no keys', decision_log(fsync="never")),
        ('DecisionLog fsync="batch" (default), no keys', decision_log()),
        ('DecisionLog fsync="batch", HMAC-SHA256', decision_log(hmac_key=b"k" * 32)),
        ('DecisionLog fsync="batch", Ed25519', decision_log(signing_key=signing_key)),
    ]
    rows = []
    base_rate = 0.0
    for name, fn in cases:
        seconds = best_of(fn, records, args.repeat)
        rate = args.n / seconds
        base_rate = base_rate or rate
        rows.append(f"| {name} | {rate:,.0f} | {1e6 / rate:.1f} | {rate / base_rate:.2f} |")
        print(rows[-1], flush=True)

    dumps_p50, dumps_p99 = per_call_us(json.dumps, records)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        log = DecisionLog(Path(tmp) / "d.jsonl", hmac_key=b"k" * 32)
        append_p50, append_p99 = per_call_us(log.append, records)
        log.close()
    calls = [
        f"| `json.dumps(record)` (baseline) | {dumps_p50:.1f} | {dumps_p99:.1f} |",
        f"| `DecisionLog.append(record)` (HMAC log) | {append_p50:.1f} | {append_p99:.1f} |",
    ]
    print("\n".join(calls))

    # Reading back: verify_log over a sealed log of the same records.
    verify_rows = []
    for name, kwargs, check in [
        ("no keys", {}, {}),
        ("HMAC-SHA256", {"hmac_key": b"k" * 32}, {"hmac_key": b"k" * 32}),
        ("Ed25519", {"signing_key": signing_key}, {"public_key": signing_key.public_key()}),
    ]:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            path = Path(tmp) / "d.jsonl"
            decision_log(fsync="never", **kwargs)(path, records)
            start = time.perf_counter()
            result = verify_log([path], **check)
            seconds = time.perf_counter() - start
            assert result.ok and result.records == len(records)
        verify_rows.append(f"| `verify_log`, {name} | {len(records) / seconds:,.0f} |")
    print("\n".join(verify_rows))
    report = "\n".join(
        [
            HEADER,
            "",
            f"Command: `.venv/bin/python benches/bench_audit.py -n {args.n} --repeat "
            f"{args.repeat} --write` ({platform.python_implementation()} "
            f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs shared "
            f"with other work; temp files on {os.environ.get('BENCH_DIR') or tempfile.gettempdir()}"
            f"). {args.n:,} records of {size:,} bytes (JSON), best of {args.repeat}; timed "
            "from the first append until the file is closed, every record on disk (and, for "
            "the log, verified afterwards).",
            "",
            "| case | records/s | µs/record | vs baseline |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            "Request-path cost per record (the caller's side; hashing, sealing and I/O are on "
            "the writer thread):",
            "",
            "| call | p50 µs | p99 µs |",
            "|---|---:|---:|",
            *calls,
            "",
            "Verifying from disk:",
            "",
            "| check | records/s |",
            "|---|---:|",
            *verify_rows,
            "",
        ]
    )
    if args.write:
        move_section_last(RESULTS, HEADER, report)
    print(report)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
