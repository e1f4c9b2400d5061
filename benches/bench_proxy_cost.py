"""Server CPU per chunk and per request: the relay, the proxy's plumbing and the default pack.

Latency percentiles on a shared 2-core box move with everything else that runs; CPU time of the
server process is steadier. Each path serves N concurrent unpaced streams of a short and of a
long recording (same token mix as bench_proxy.py); the slope of server CPU per stream over the
stream length is the cost of one upstream chunk, the intercept the cost of one request (its
set-up, upstream connection handling, record and metrics). Servers run as in bench_proxy.py
(own process, uvloop, pinned to CPU 1; the client and the replay on CPU 0).

    .venv/bin/python benches/bench_proxy_cost.py              # ~1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

import httpx

import bench_proxy as bp

PATHS = ("relay", "proxy-plumbing", "proxy-default")


async def _load(url: str, n: int, repeats: int) -> None:
    body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one() -> None:
            async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
                r.raise_for_status()
                async for _ in r.aiter_raw():
                    pass

        for _ in range(repeats):
            await asyncio.gather(*(one() for _ in range(n)))


def cpu_per_stream(srv: bp.Server, n: int, repeats: int, rounds: int) -> float:
    asyncio.run(_load(srv.url, n, 1))  # warm: connections, caches
    samples = []
    for _ in range(rounds):
        c0 = srv.cpu_seconds()
        asyncio.run(_load(srv.url, n, repeats))
        samples.append((srv.cpu_seconds() - c0) / (n * repeats))
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--short", type=int, default=16, help="chunks per stream, short recording")
    ap.add_argument("--long", type=int, default=256, help="chunks per stream, long recording")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    client_cpu, server_cpu = bp.setup_client()
    per: dict[tuple[str, int], float] = {}
    for chunks in (args.short, args.long):
        replay = bp.start("replay", cpu=client_cpu, chunks=chunks)
        try:
            for path in PATHS:
                srv = bp.start(path, replay.url, server_cpu)
                try:
                    per[(path, chunks)] = cpu_per_stream(srv, args.streams, args.repeats,
                                                         args.rounds)
                finally:
                    srv.proc.terminate()
        finally:
            replay.proc.terminate()
    print(f"{args.streams} concurrent unpaced streams of {args.short} and {args.long} chunks; "
          f"server CPU, median of {args.rounds} rounds; pinned: {server_cpu is not None}")
    print("| path | µs per chunk | ms per request | x relay per chunk |")
    print("|---|---|---|---|")
    slopes = {}
    for path in PATHS:
        a, b = per[(path, args.short)], per[(path, args.long)]
        slopes[path] = (b - a) / (args.long - args.short)
        fixed = a - args.short * slopes[path]
        print(f"| {path} | {slopes[path] * 1e6:.1f} | {fixed * 1e3:.2f} | "
              f"{slopes[path] / slopes['relay']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
