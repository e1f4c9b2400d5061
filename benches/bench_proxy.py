"""Load harness for the proxy: N concurrent streams through four paths, side by side.

  direct          client -> replay upstream
  relay           client -> bare Python relay (Quart + Hypercorn + httpx2, bytes copied) -> replay
  proxy-plumbing  client -> checkstream proxy, guardrails disabled (parse, re-emit) -> replay
  proxy-default   client -> checkstream proxy with the shipped default policy pack -> replay
  litellm         client -> LiteLLM proxy (its own venv, --litellm-venv), no guardrails -> replay
  litellm-filter  client -> LiteLLM proxy with its built-in litellm_content_filter guardrail
                  (offline keywords + prebuilt regexes, pre_call + post_call) -> replay

The two LiteLLM paths are optional peers: they run only with ``--litellm-venv DIR`` (a virtual
environment where ``pip install 'litellm[proxy]'`` was run; never the project's), and are skipped
with the reason printed otherwise or when the proxy does not start.

Each server runs in its own process (uvloop), the client (httpx, asyncio) in this one. The replay
stamps the monotonic send time of every event; a client chunk's latency is its arrival time minus
the send time of the latest upstream event sent before it (the event that triggered it), so the
holdback's deliberate wait is not counted as plumbing cost; time to first token (TTFT) is
measured separately and does include it. Paced runs (one event every --interval-ms) give
latency; flood runs (no pacing) give chunks/s and proxy CPU per 1000 chunks.

Arrival (``--arrival``): ``steady`` is N users keeping the service busy: N workers run streams
back to back, their starts spread evenly over one stream's length, and only the chunks that
arrive while all N are streaming count, so the chunks (and the request set-ups) of independent
streams interleave as they do in production; ``aligned`` starts N streams at once, so every
interval brings a burst of N chunks at the same instant (the worst case: a chunk's latency then
includes draining the whole burst, i.e. N x the per-chunk cost). ``both`` (the default) runs
each. CPU pinning (``--pin``, on by default where there are >= 2 CPUs): the client and the replay
run on the first CPU, every server under test on the second, so that the path being measured
does not share its core with the load generator (a proxy is deployed on its own cores).

    .venv/bin/python benches/bench_proxy.py                 # 16 and 64 streams, ~3-4 minutes
    .venv/bin/python benches/bench_proxy.py --streams 16,64,256 --write benches/RESULTS.md
    .venv/bin/python benches/bench_proxy.py --litellm-venv /tmp/litellm-venv   # + LiteLLM peers
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import httpx2

from _results import replace_section
from _timing import index_percentile

ROOT = Path(__file__).resolve().parents[1]
TOKENS = [" word"] * 4 + [" caf\u00e9", " data", " \u65e5\u672c", " stream"]
TEXT = "".join(TOKENS * 8)  # the content each stream should deliver
LITELLM_KEY = "sk-bench-0123456789abcdef"
# LiteLLM's config: one OpenAI-compatible model on the replay; the client's x- headers (the
# replay's per-request pacing and timing key) forwarded upstream; a master key, which its proxy
# requires to start. No database, no callbacks.
LITELLM_CONFIG = """\
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: {upstream}/v1
      api_key: sk-replay
general_settings:
  master_key: {key}
  forward_client_headers_to_llm_api: true
litellm_settings:
  telemetry: false
"""
# Its built-in offline content filter, as its docs configure it: blocked keywords and prebuilt
# regexes, on the request (pre_call) and on the streamed response (post_call, which holds back
# the last 50 characters of each stream until they are scanned).
LITELLM_FILTER = """\
guardrails:
  - guardrail_name: bench-filter
    litellm_params:
      guardrail: litellm_content_filter
      mode: [pre_call, post_call]
      default_on: true
      blocked_words:
        - keyword: forbidden-term
          action: BLOCK
        - keyword: internal-codename
          action: BLOCK
      patterns:
        - pattern_type: prebuilt
          pattern_name: us_ssn
          action: MASK
        - pattern_type: prebuilt
          pattern_name: email
          action: MASK
        - pattern_type: prebuilt
          pattern_name: visa
          action: MASK
"""


# ------------------------------------------------------------------ CPU pinning
CLIENT_CPU, SERVER_CPU = 0, 1


def pin(cpu: int | None) -> None:
    """Bind this process (and the threads it starts later) to one CPU; None leaves it free."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


# ------------------------------------------------------------------ servers (child processes)
def _relay_app(upstream: str) -> Any:
    from quart import Quart, Response, request

    app = Quart("relay")
    app.config["RESPONSE_TIMEOUT"] = None
    # The proxy's own HTTP client library and pool limits: the same stack, minus the proxy.
    client = httpx2.AsyncClient(timeout=httpx2.Timeout(60.0),
                                limits=httpx2.Limits(max_connections=1000,
                                                     max_keepalive_connections=200))

    @app.post("/v1/chat/completions")
    async def relay() -> Response:
        body = await request.get_data()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "x-replay-faults", "authorization")}
        req = client.build_request("POST", upstream + "/v1/chat/completions", content=body,
                                   headers=headers)
        resp = await client.send(req, stream=True)

        async def gen() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.aiter_raw():
                    yield chunk
            finally:
                await resp.aclose()

        out = Response(gen(), status=resp.status_code,
                       content_type=resp.headers.get("content-type"))
        out.timeout = None
        return out

    return app


def _serve(kind: str, upstream: str, port_q: Any, cpu: int | None = None,
           chunks: int | None = None) -> None:
    pin(cpu)  # first, so that every thread the server starts inherits it
    from hypercorn.asyncio import serve

    from checkstream.proxy.server import hypercorn_config, new_event_loop, tune_gc

    if kind == "replay":
        from checkstream.proxy.replay import Recording, ReplayUpstream

        replay = ReplayUpstream(record_timings=True)
        tokens = TOKENS * 8 if chunks is None else (TOKENS * (chunks // len(TOKENS) + 1))[:chunks]
        replay.add_recording(Recording.from_text("bench", tokens))
        app = replay.app
    elif kind == "relay":
        app = _relay_app(upstream)
    else:
        from checkstream.proxy.app import create_app
        from checkstream.proxy.config import config_from_mapping

        guard_on = kind == "proxy-default"
        mapping = {
            "backend": {"url": upstream + "/v1", "retry": {"max_attempts": 1}},
            "policies": {"path": str(ROOT / "policies" / "default")},
            "guardrails": {"ingress": {"enabled": guard_on}, "midstream": {"enabled": guard_on},
                           "egress": {"enabled": guard_on}},
        }
        app = create_app(config_from_mapping(mapping, env={}))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    cfg = hypercorn_config(graceful_timeout=0.5)
    cfg.bind = [f"fd://{sock.fileno()}"]
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    if kind in ("replay", "relay"):
        # The proxy freezes its start-up heap itself (server.tune_gc); the load generator and
        # the baseline relay get the same, so that no path pays full collections of it.
        tune_gc()
    port_q.put(sock.getsockname()[1])
    loop.run_until_complete(serve(app, cfg))


@dataclass
class Server:
    kind: str
    proc: Any  # multiprocessing.Process or subprocess.Popen: both have pid and terminate()
    url: str
    headers: dict[str, str] = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(kind: str, upstream: str = "", cpu: int | None = None,
          chunks: int | None = None) -> Server:
    """A server process; ``chunks``: the replay's recording length (default 64)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(kind, upstream, q, cpu, chunks), daemon=True)
    proc.start()
    port = q.get(timeout=60)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/v1/models" if kind != "relay" else url, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return Server(kind, proc, url)


def setup_client(pinned: bool | None = None) -> tuple[int | None, int | None]:
    """This process as the load generator: pinned to the client CPU (``pinned`` None: where
    there are 2+ CPUs), on uvloop where installed. Returns (client CPU, server CPU)."""
    if pinned is None:
        pinned = hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2
    client_cpu, server_cpu = (CLIENT_CPU, SERVER_CPU) if pinned else (None, None)
    pin(client_cpu)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return client_cpu, server_cpu


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_litellm(venv: Path, upstream: str, guard: bool, workdir: Path,
                  cpu: int | None = None) -> Server | str:
    """LiteLLM's proxy (one uvicorn worker) on loopback, or the reason it did not start."""
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        return f"{exe} not found (pip install 'litellm[proxy]' into that venv)"
    kind = "litellm-filter" if guard else "litellm"
    cfg = workdir / f"{kind}.yaml"
    text = LITELLM_CONFIG.format(upstream=upstream, key=LITELLM_KEY)
    cfg.write_text(text + (LITELLM_FILTER if guard else ""))
    port = _free_port()
    log = workdir / f"{kind}.log"
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_DOCS": "True"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(exe), "--config", str(cfg), "--host", "127.0.0.1",
                                 "--port", str(port), "--num_workers", "1"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir,
                                preexec_fn=(lambda: pin(cpu)) if cpu is not None else None)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/health/liveliness", timeout=1).status_code == 200:
                return Server(kind, proc, url, {"authorization": f"Bearer {LITELLM_KEY}"})
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.terminate()
    tail = log.read_text(errors="replace").strip().splitlines()[-5:]
    return f"{kind} did not start (exit {proc.poll()}): " + " | ".join(tail)


# ------------------------------------------------------------------ client
@dataclass
class StreamResult:
    ttft: float
    latencies: list[float] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # when each latency's chunk arrived
    chunks: int = 0
    complete: bool = False  # no error, and the client got the whole text


async def one_stream(client: httpx.AsyncClient, base: str, replay: str, interval_ms: float,
                     headers: dict[str, str]) -> StreamResult:
    from checkstream.proxy.sse import SSEParser

    key = uuid.uuid4().hex
    faults = {"key": key, "delay_ms": interval_ms}
    body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    parser = SSEParser()
    t0 = time.monotonic()
    ttft = float("nan")
    arrivals: list[float] = []
    parts: list[str] = []
    # A failed stream counts as incomplete instead of ending the run.
    with contextlib.suppress(httpx.HTTPError):
        await _read_stream(client, base, body, headers, faults, parser, arrivals, parts)
    if arrivals:
        ttft = arrivals[0] - t0
    sends = (await client.get(replay + f"/_replay/timings/{key}")).json()
    res = StreamResult(ttft=ttft, chunks=len(arrivals), complete="".join(parts) == TEXT)
    for a in arrivals:
        i = bisect.bisect_right(sends, a) - 1
        if i >= 0:
            res.latencies.append(a - sends[i])
            res.arrivals.append(a)
    return res


async def _read_stream(client: httpx.AsyncClient, base: str, body: dict[str, Any],
                       headers: dict[str, str], faults: dict[str, Any], parser: Any,
                       arrivals: list[float], parts: list[str]) -> None:
    # Reads are only stamped and kept while the stream runs; parsing them waits until it has
    # ended (also on failure), so that the client's own JSON work does not delay the stamps of
    # the other streams' chunks.
    reads: list[tuple[float, bytes]] = []
    try:
        async with client.stream("POST", base + "/v1/chat/completions", json=body,
                                 headers={**headers,
                                          "x-replay-faults": json.dumps(faults)}) as r:
            r.raise_for_status()
            async for raw in r.aiter_raw():
                reads.append((time.monotonic(), raw))
    finally:
        for now, raw in reads:
            for ev in parser.feed(raw):
                if ev.data.startswith("[DONE]"):
                    continue
                choices = json.loads(ev.data).get("choices") or []
                text = "".join((c.get("delta") or {}).get("content") or "" for c in choices)
                if text:
                    arrivals.append(now)
                    parts.append(text)


async def run_load(base: str, replay: str, n: int, interval_ms: float,
                   headers: dict[str, str] | None = None) -> tuple[list[StreamResult], float]:
    """N concurrent streams started together (aligned, and the flood runs)."""
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
        t0 = time.monotonic()
        # No collections in the client while it stamps arrivals (a paced run lasts ~1-2 s): its
        # own pauses would be counted as latency of whichever path is being measured.
        gc.collect()
        gc.disable()
        try:
            results = await asyncio.gather(*(one_stream(client, base, replay, interval_ms,
                                                        headers or {})
                                             for _ in range(n)))
        finally:
            gc.enable()
        return list(results), time.monotonic() - t0


async def run_steady(base: str, replay: str, n: int, interval_ms: float,
                     headers: dict[str, str] | None = None,
                     streams_per_worker: int = 3) -> tuple[list[StreamResult], float]:
    """N concurrent streams in steady state, as N users keep a service busy: N workers each run
    streams back to back, worker i starting i/N of a stream's length after the first, so stream
    starts (and their request set-up) are spread evenly instead of arriving in one burst. Only
    chunks that arrive while all N workers are streaming count (the ramp-up and ramp-down have
    fewer streams); TTFT counts every stream."""
    length = len(TOKENS) * 8 * interval_ms / 1000  # one stream's duration at this pace
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:

        async def worker(i: int) -> list[StreamResult]:
            await asyncio.sleep(i * length / n)
            return [await one_stream(client, base, replay, interval_ms, headers or {})
                    for _ in range(streams_per_worker)]

        gc.collect()
        gc.disable()  # see run_load
        try:
            t0 = time.monotonic()
            done = await asyncio.gather(*(worker(i) for i in range(n)))
        finally:
            gc.enable()
        wall = time.monotonic() - t0
    lo, hi = t0 + length, t0 + streams_per_worker * length
    results = [r for rs in done for r in rs]
    for r in results:
        kept = [(lat, a) for lat, a in zip(r.latencies, r.arrivals, strict=True) if lo <= a <= hi]
        r.latencies = [lat for lat, _ in kept]
        r.arrivals = [a for _, a in kept]
    return results, wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="16,64")
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=3, help="paced rounds per path (median)")
    ap.add_argument("--arrival", choices=("steady", "aligned", "both"), default="both",
                    help="steady state (stream starts spread out, N always streaming), all N "
                         "started at once, or each")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction,
                    default=(os.cpu_count() or 1) >= 2,
                    help="client + replay on CPU 0, servers under test on CPU 1")
    ap.add_argument("--write", help="append/replace the proxy section of this RESULTS.md")
    ap.add_argument("--litellm-venv", type=Path,
                    help="venv with litellm[proxy] installed: adds the litellm and "
                         "litellm-filter paths (skipped when not given)")
    ap.add_argument("--no-litellm-filter", action="store_true",
                    help="with --litellm-venv, measure LiteLLM without guardrails only")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.streams.split(",")]
    arrivals = ["steady", "aligned"] if args.arrival == "both" else [args.arrival]
    client_cpu, server_cpu = setup_client(args.pin)
    replay = start("replay", cpu=client_cpu)
    servers = {"direct": replay, "relay": start("relay", replay.url, server_cpu),
               "proxy-plumbing": start("proxy-plumbing", replay.url, server_cpu),
               "proxy-default": start("proxy-default", replay.url, server_cpu)}
    skipped: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-litellm-"))
    if args.litellm_venv is None:
        skipped.append("litellm: skipped (no --litellm-venv given)")
    else:
        for guard in (False, True) if not args.no_litellm_filter else (False,):
            got = start_litellm(args.litellm_venv.resolve(), replay.url, guard, workdir,
                                server_cpu)
            if isinstance(got, str):
                skipped.append(got)
            else:
                servers[got.kind] = got
    for line in skipped:
        print(line, flush=True)
    rows: list[dict[str, Any]] = []
    try:
        for n in counts:
            for srv in servers.values():  # warm every path (connections, caches, JIT-free)
                asyncio.run(run_load(srv.url, replay.url, min(n, 4), args.interval_ms,
                                     srv.headers))
            for arrival in arrivals:
                rows += _paced_rows(servers, replay, n, arrival, args)
            for path, srv in servers.items():
                cpu0 = srv.cpu_seconds() if path != "direct" else 0.0
                flood, wall = asyncio.run(run_load(srv.url, replay.url, n, 0.0, srv.headers))
                cpu = (srv.cpu_seconds() - cpu0) if path != "direct" else float("nan")
                chunks = sum(r.chunks for r in flood)
                for r in rows:
                    if r["streams"] == n and r["path"] == path:
                        r["chunks_s"] = chunks / wall
                        r["cpu_ms_per_1k"] = (cpu / max(chunks, 1) * 1e6 if cpu == cpu
                                              else float("nan"))
                        r["short"] += sum(not x.complete for x in flood)
                        r["runs"] += n
            for r in (r for r in rows if r["streams"] == n):
                print(f"n={n:4d} {r['arrival']:9s} {r['path']:15s} chunk p50 {r['p50_ms']:7.3f} "
                      f"ms  p99 {r['p99_ms']:7.3f} ms  TTFT {r['ttft_ms']:7.1f} ms  "
                      f"{r['chunks_s']:8.0f} chunks/s  CPU {r['cpu_ms_per_1k']:6.1f} ms/1k "
                      f"chunks  incomplete {r['short']}/{r['runs']}", flush=True)
    finally:
        for srv in servers.values():
            srv.proc.terminate()
        shutil.rmtree(workdir, ignore_errors=True)
    table = render(rows, counts, arrivals, args, skipped)
    print(table)
    if args.write:
        replace_section(Path(args.write), "## Proxy (benches/bench_proxy.py)", table)
    return 0


def _paced_rows(servers: dict[str, Server], replay: Server, n: int, arrival: str,
                args: argparse.Namespace) -> list[dict[str, Any]]:
    """Latency rows of one arrival pattern: paths alternate within each round, so that a noisy
    moment on a shared machine hits all of them; each figure is the median over the rounds."""
    paced: dict[str, list[tuple[float, float, float]]] = {p: [] for p in servers}
    short: dict[str, int] = {p: 0 for p in servers}
    for _ in range(args.rounds):
        for path, srv in servers.items():
            if arrival == "steady":
                res, _wall = asyncio.run(run_steady(srv.url, replay.url, n, args.interval_ms,
                                                    srv.headers))
            else:
                res, _wall = asyncio.run(run_load(srv.url, replay.url, n, args.interval_ms,
                                                  srv.headers))
            lat = [x for r in res for x in r.latencies]
            ttfts = [r.ttft for r in res if r.ttft == r.ttft] or [float("nan")]
            short[path] += sum(not r.complete for r in res)
            paced[path].append((index_percentile(lat, 0.50) * 1e3,
                                index_percentile(lat, 0.99) * 1e3,
                                statistics.median(ttfts) * 1e3))
    return [{
        "streams": n, "arrival": arrival, "path": path,
        "p50_ms": statistics.median(x[0] for x in paced[path]),
        "p99_ms": statistics.median(x[1] for x in paced[path]),
        "ttft_ms": statistics.median(x[2] for x in paced[path]),
        "chunks_s": float("nan"), "cpu_ms_per_1k": float("nan"),
        "short": short[path], "runs": n * args.rounds,
    } for path in servers]


def render(rows: list[dict[str, Any]], counts: list[int], arrivals: list[str],
           args: argparse.Namespace, skipped: list[str] | None = None) -> str:
    cmd = ".venv/bin/python benches/bench_proxy.py " + " ".join(
        a if a != args.write else "benches/RESULTS.md" for a in sys.argv[1:])
    pinning = ("client and replay pinned to CPU 0, each server to CPU 1" if args.pin
               else "no CPU pinning")
    lines = [
        "## Proxy (benches/bench_proxy.py)",
        "",
        f"Command:\n\n```\n{cmd.strip()}\n```",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs), "
        f"Python {platform.python_version()}; servers in separate processes on loopback, "
        f"uvloop, {pinning}; paced upstream: one chat chunk every {args.interval_ms:g} ms, "
        f"{len(TOKENS) * 8} content chunks per stream; latency figures are medians over "
        f"{args.rounds} rounds with the paths interleaved.",
        "",
        "Per-chunk latency = client arrival - replay send time of the triggering upstream event "
        "(includes the relay hop; the holdback's wait is not counted). Added = path - direct "
        "(same arrival pattern). TTFT includes the holdback (16 tokens x interval for "
        "proxy-default). Arrival: steady = N workers run streams back to back, starts spread "
        "over one stream's length, chunks counted while all N stream (independent users); "
        "aligned = N streams start together, every interval is a burst of N chunks (worst "
        "case). chunks/s and CPU (server process, per 1000 client chunks) "
        "from unpaced flood runs, the same figure on both arrival rows. Incomplete streams: "
        "streams (paced and flood, all rounds) that failed or did not deliver the whole text.",
        "",
        "| streams | arrival | path | chunk p50 ms | chunk p99 ms | added p50 ms | added p99 ms "
        "| TTFT ms | chunks/s | CPU ms/1k chunks | incomplete streams |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for n in counts:
        for arrival in arrivals:
            group = [r for r in rows if r["streams"] == n and r["arrival"] == arrival]
            base = next(r for r in group if r["path"] == "direct")
            for r in group:
                lines.append(
                    f"| {n} | {arrival} | {r['path']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                    f"{r['p50_ms'] - base['p50_ms']:.3f} | {r['p99_ms'] - base['p99_ms']:.3f} | "
                    f"{r['ttft_ms']:.1f} | {r['chunks_s']:.0f} | {r['cpu_ms_per_1k']:.1f} | "
                    f"{r['short']}/{r['runs']} |")
            relay = next(r for r in group if r["path"] == "relay")
            plumb = next(r for r in group if r["path"] == "proxy-plumbing")
            default = next(r for r in group if r["path"] == "proxy-default")
            ra = relay["p99_ms"] - base["p99_ms"]
            pa = plumb["p99_ms"] - base["p99_ms"]
            da = default["p99_ms"] - base["p99_ms"]
            ratio = pa / ra if ra > 0 else float("nan")
            ratios.append(f"{n} streams, {arrival}: added p99 proxy plumbing {pa:.3f} ms, bare "
                          f"relay {ra:.3f} ms (ratio {ratio:.2f}), default pack {da:.3f} ms.")
    lines += ["", *ratios, *(skipped or []), ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
