"""Collector pauses in the server under steady load: how often and how long each generation runs.

At 64 concurrent streams a stream's objects (request, response, connection and guard state)
live for the whole stream, so they survive young collections and each middle-generation
collection walks thousands of them: one pause that every chunk arriving meanwhile waits for.
This run serves N steady streams (``bench_proxy.run_steady``) through each path, with the
server process recording every collection (``gc.callbacks``), and prints per generation the
count, median, p90 and longest pause, with the thresholds given by ``--thresholds`` (default:
what the server sets, ``checkstream.proxy.server.tune_gc``).

    .venv/bin/python benches/bench_proxy_gc.py                     # ~1 minute
    .venv/bin/python benches/bench_proxy_gc.py --thresholds 700,10,10   # CPython's defaults
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_proxy as bp

PATHS = ("relay", "proxy-plumbing", "proxy-default")


def _serve_recording(kind: str, upstream: str, q: Any, cpu: int | None, out: str,
                     thresholds: tuple[int, int, int] | None) -> None:
    import gc

    from checkstream.proxy import app, server

    log = open(out, "w", buffering=1)  # noqa: SIM115 - open for the process's life
    started: list[float] = [0.0]

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            ms = (time.perf_counter() - started[0]) * 1000
            log.write(json.dumps([time.time(), info["generation"], ms]) + "\n")

    if thresholds is not None:
        # After the server's own tuning (the proxy calls tune_gc when it starts serving).
        real = server.tune_gc

        def tune() -> None:
            real()
            gc.set_threshold(*thresholds)

        server.tune_gc = app.tune_gc = tune  # type: ignore[assignment]
    gc.callbacks.append(record)
    bp._serve(kind, upstream, q, cpu)


def pauses(kind: str, replay: bp.Server, n: int, interval_ms: float, cpu: int | None,
           thresholds: tuple[int, int, int] | None) -> tuple[dict[int, list[float]], float]:
    """Pauses (ms) per generation while the steady load ran, and the load's p99 (ms)."""
    out = Path(tempfile.mkdtemp()) / f"gc-{kind}.jsonl"
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_serve_recording,
                       args=(kind, replay.url, q, cpu, str(out), thresholds), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{q.get(timeout=60)}"
    time.sleep(1.0)  # start-up collections are over
    t0 = time.time()
    results, _ = asyncio.run(bp.run_steady(url, replay.url, n, interval_ms))
    t1 = time.time()
    proc.terminate()
    proc.join()
    by_gen: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for line in out.read_text().splitlines():
        ts, gen, ms = json.loads(line)
        if t0 <= ts <= t1:
            by_gen[gen].append(ms)
    lat = sorted(x for r in results for x in r.latencies)
    return by_gen, lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--thresholds", default=None,
                    help="gc thresholds for the servers, e.g. 700,10,10 (default: tune_gc's)")
    args = ap.parse_args(argv)
    thresholds = tuple(int(x) for x in args.thresholds.split(",")) if args.thresholds else None
    if thresholds is not None and len(thresholds) != 3:
        ap.error("--thresholds takes three integers")
    client_cpu, server_cpu = bp.setup_client()
    replay = bp.start("replay", cpu=client_cpu)
    print(f"{args.streams} steady streams, one chunk every {args.interval_ms:g} ms; "
          f"thresholds {args.thresholds or 'tune_gc'}; pauses in the server while it served")
    print("| path | gen | collections | median ms | p90 ms | max ms | total ms | chunk p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for kind in PATHS:
            by_gen, p99 = pauses(kind, replay, args.streams, args.interval_ms, server_cpu,
                                 thresholds)  # type: ignore[arg-type]
            for gen, ms in by_gen.items():
                if not ms:
                    print(f"| {kind} | {gen} | 0 | | | | | {p99:.3f} |")
                    continue
                ms.sort()
                p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
                print(f"| {kind} | {gen} | {len(ms)} | {statistics.median(ms):.3f} | {p90:.3f} "
                      f"| {ms[-1]:.3f} | {sum(ms):.1f} | {p99:.3f} |")
    finally:
        replay.proc.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
