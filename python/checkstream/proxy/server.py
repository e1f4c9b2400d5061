"""Running ASGI apps on Hypercorn: the production entry point and a loopback thread runner.

``serve`` is what ``checkstream proxy`` runs. ``BackgroundServer`` runs any ASGI app on a free
loopback port in a daemon thread with its own event loop; the demo, the tests and the load
benchmark use it so that every HTTP exchange goes over a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig

log = logging.getLogger("checkstream.proxy")

ASGIApp = Callable[..., Awaitable[None]]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop where uvloop is installed (Linux/macOS), else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def tune_gc() -> None:
    """After start-up: move everything alive now (modules, config, compiled policies) out of the
    collector's view with ``gc.freeze()``, so that a full collection while serving no longer walks
    it (~50 ms on the proxy process, a pause every stream in flight waits for).

    Then collect the middle generation every 2 young collections instead of every 10, and the
    oldest every 50 middle ones instead of 10 (full collections stay about as rare: every ~150
    young ones instead of ~120). A stream's objects live as long as the stream, so they survive
    young collections and pile up in the middle generation; collected every 10th time, that was
    one ~2 ms pause (up to ~6) at 64 streams, which every chunk arriving meanwhile waited for;
    every 2nd time it is ~0.6 ms (`benches/bench_proxy_gc.py`). The young threshold stays at
    700: raised to 20000, each young collection became a ~9 ms pause."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 2, 50)


def hypercorn_config(*, graceful_timeout: float = 5.0, keep_alive: float = 75.0) -> HypercornConfig:
    cfg = HypercornConfig()
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("hypercorn.error")
    cfg.graceful_timeout = graceful_timeout
    cfg.keep_alive_timeout = keep_alive
    # Quart enforces its own body limit with a provider-shaped error; Hypercorn's is a backstop.
    cfg.h11_max_incomplete_size = 64 * 1024
    return cfg


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (IPv6 when ``host`` has a colon); port 0 picks a free one."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def run_until_signal(serve_with: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]) -> None:
    """Run ``serve_with(shutdown_trigger)`` on a fresh event loop until SIGINT/SIGTERM; blocks."""
    import signal

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(serve_with(stop.wait))
    finally:
        loop.close()


def serve(app: Any, *, host: str, port: int, graceful_timeout: float = 10.0) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; blocks."""
    cfg = hypercorn_config(graceful_timeout=graceful_timeout)
    cfg.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    log.info("checkstream proxy listening on %s", cfg.bind[0])
    run_until_signal(lambda stop: hypercorn_serve(app, cfg, shutdown_trigger=stop))


class BackgroundServer:
    """An ASGI app on ``127.0.0.1:<free port>`` in a daemon thread. Use as a context manager."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", name: str = "server") -> None:
        self.app = app
        self.name = name
        self._sock = listen_socket(host, 0)
        self._sock.set_inheritable(True)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"checkstream-{name}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"{self.name} did not start within 30 s")
        if self._error is not None:
            raise RuntimeError(f"{self.name} failed to start: {self._error}") from self._error
        return self

    async def _serve(self, shutdown_trigger: Callable[[], Awaitable[Any]]) -> None:
        """Serve ``self.app`` on the listening socket until ``shutdown_trigger`` returns
        (subclasses serve it differently, e.g. over TLS)."""
        cfg = hypercorn_config(graceful_timeout=1.0)
        # Hypercorn takes ownership of the descriptor it is given: hand it a duplicate.
        cfg.bind = [f"fd://{os.dup(self._sock.fileno())}"]
        await hypercorn_serve(self.app, cfg, shutdown_trigger=shutdown_trigger)

    def _run(self) -> None:
        loop = new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        self._stop = asyncio.Event()

        async def main() -> None:
            assert self._stop is not None
            loop.call_soon(self._ready.set)
            await self._serve(self._stop.wait)

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
