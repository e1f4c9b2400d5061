"""Running the control plane on Hypercorn, over plain HTTP or TLS/mutual TLS.

Plain HTTP is Hypercorn's own ``serve``. For TLS this module accepts the connections itself and
hands each one, TLS established, to Hypercorn's connection handler (``TCPServer``), for three
things Hypercorn's listener does not give:

* the verified client certificate reaches the app as the ASGI TLS extension
  (``scope["extensions"]["tls"]["client_cert_chain"]``), which is how a node's certificate is
  matched with the node id it posts as (Hypercorn has not implemented the extension: issue
  pgjones/hypercorn#62);
* a refused handshake (no client certificate, one from another CA, an expired one) is logged with
  the peer's address and the reason, instead of vanishing at asyncio's debug level;
* plain HTTP sent to the TLS port gets a ``400`` that says to use ``https://``, instead of a
  connection closed without a word.

The handler classes used (``TCPServer``, ``WorkerContext``, ``Lifespan``) are Hypercorn's
internals as of 0.17/0.18; the TLS tests exercise every one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.asyncio.lifespan import Lifespan
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig

from checkstream.control.tls import ServerTLS
from checkstream.proxy.server import (
    BackgroundServer,
    hypercorn_config,
    listen_socket,
    run_until_signal,
)

__all__ = ["ControlServer", "run_control", "serve_forever"]

log = logging.getLogger("checkstream.control.tls")

_TLS_HANDSHAKE = 0x16  # the first byte of every TLS connection (a handshake record)
_FIRST_BYTE_TIMEOUT = 10.0
_PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)
_PLAIN_HTTP_BODY = (
    b'{"error": {"reason": "tls_required", "message": "this control plane port speaks TLS: '
    b'use an https:// URL"}}'
)


class _WithTLSInfo:
    """Hypercorn's app wrapper, plus the connection's TLS facts in every HTTP scope."""

    def __init__(self, app: ASGIWrapper, tls: dict[str, Any]) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Any, receive: Any, send: Any, sync_spawn: Callable[..., Any],
                       call_soon: Callable[..., Any]) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["extensions"] = {**scope.get("extensions", {}), "tls": self.tls}
        await self.app(scope, receive, send, sync_spawn, call_soon)


def _tls_info(ssl_object: ssl.SSLObject | None) -> dict[str, Any]:
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    cipher = ssl_object.cipher() if ssl_object is not None else None
    # The ASGI TLS extension's keys; Python's ssl exposes only the leaf of the client chain
    # before 3.13, and it was verified against --client-ca during the handshake.
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": ssl_object.version() if ssl_object is not None else None,
        "cipher_suite": cipher[0] if cipher else None,
    }


async def _first_byte(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """Peek at the first byte without consuming it ("" on EOF)."""
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(conn.fileno(), readable)
    try:
        await asyncio.wait_for(ready, _FIRST_BYTE_TIMEOUT)
    finally:
        loop.remove_reader(conn.fileno())
    return conn.recv(1, socket.MSG_PEEK)


async def _refuse_plain_http(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    # Read what the client sent first: closing with unread data would reset the connection and
    # the client would never see the answer.
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(loop.sock_recv(conn, 65536), 1.0)
    with contextlib.suppress(OSError):
        answer = _PLAIN_HTTP_ANSWER % (len(_PLAIN_HTTP_BODY), _PLAIN_HTTP_BODY)
        await loop.sock_sendall(conn, answer)
        conn.shutdown(socket.SHUT_WR)


async def _serve_tls(
    app: Any, cfg: HypercornConfig, context: ssl.SSLContext, listener: socket.socket,
    shutdown_trigger: Callable[[], Awaitable[Any]],
) -> None:
    loop = asyncio.get_running_loop()
    wrapped = ASGIWrapper(app)
    state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, cfg, loop, state)
    lifespan_task = loop.create_task(lifespan.handle_lifespan())
    await lifespan.wait_for_startup()
    if lifespan_task.done() and (failed := lifespan_task.exception()) is not None:
        raise failed  # the app's start-up failed: do not accept connections
    worker = WorkerContext(None)
    connections: set[asyncio.Task[None]] = set()

    async def handle(conn: socket.socket, peer: Any) -> None:
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        try:
            try:
                first = await _first_byte(loop, conn)
            except TimeoutError:  # an idle connection, not an attack worth a warning
                log.info("connection from %s closed: nothing sent within %.0f s", where,
                         _FIRST_BYTE_TIMEOUT)
                conn.close()
                return
            if not first:  # a TCP health check: connected and closed
                conn.close()
                return
            if first[0] != _TLS_HANDSHAKE:
                log.warning("plain HTTP from %s on the TLS port: answered 400 tls_required", where)
                await _refuse_plain_http(loop, conn)
                conn.close()
                return
            reader = asyncio.StreamReader(limit=2**16)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=context,
                ssl_handshake_timeout=cfg.ssl_handshake_timeout)
        except (OSError, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else exc
            log.warning("TLS connection from %s refused: %s", where, reason or type(exc).__name__)
            conn.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        app_for_conn = _WithTLSInfo(wrapped, _tls_info(transport.get_extra_info("ssl_object")))
        await TCPServer(app_for_conn, loop, cfg, worker, state, reader, writer)

    async def accept() -> None:
        while True:
            conn, peer = await loop.sock_accept(listener)
            task = loop.create_task(handle(conn, peer))
            connections.add(task)
            task.add_done_callback(connections.discard)

    listener.setblocking(False)
    acceptor = loop.create_task(accept())
    try:
        await shutdown_trigger()
    finally:
        acceptor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acceptor
        await worker.terminated.set()  # open keep-alive connections close after their request
        if connections:
            _, pending = await asyncio.wait(connections, timeout=cfg.graceful_timeout)
            for task in pending:
                task.cancel()
        await lifespan.wait_for_shutdown()
        lifespan_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lifespan_task


async def serve_forever(
    app: Any, listener: socket.socket, *, tls: ServerTLS | None,
    shutdown_trigger: Callable[[], Awaitable[Any]], graceful_timeout: float = 10.0,
) -> None:
    """Serve ``app`` on the bound, listening ``listener`` until ``shutdown_trigger`` returns."""
    cfg = hypercorn_config(graceful_timeout=graceful_timeout)
    if tls is None:
        # Hypercorn takes ownership of the descriptor it is given: hand it a duplicate.
        cfg.bind = [f"fd://{os.dup(listener.fileno())}"]
        await hypercorn_serve(app, cfg, shutdown_trigger=shutdown_trigger)
        return
    context = tls.context(tls.apply(cfg))
    await _serve_tls(app, cfg, context, listener, shutdown_trigger)


def run_control(app: Any, *, host: str, port: int, tls: ServerTLS | None) -> None:
    """Serve until SIGINT/SIGTERM (blocks)."""
    listener = listen_socket(host, port)
    scheme = "https" if tls else "http"
    log.info("checkstream control plane listening on %s://%s:%d%s", scheme, host, port,
             " (mutual TLS: client certificates required)" if tls and tls.mutual else "")
    try:
        run_until_signal(lambda stop: serve_forever(app, listener, tls=tls, shutdown_trigger=stop))
    finally:
        listener.close()


class ControlServer(BackgroundServer):
    """The control plane app on ``127.0.0.1:<free port>`` in a daemon thread, over HTTP or TLS;
    for tests and demos. Use as a context manager."""

    def __init__(self, app: Any, *, tls: ServerTLS | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(app, host=host, name="control plane")
        self.tls = tls

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> ControlServer:
        if self.tls is not None:
            self.tls.context()  # a bad certificate fails here, in the caller's thread
        super().start()
        return self

    async def _serve(self, shutdown_trigger: Callable[[], Awaitable[Any]]) -> None:
        await serve_forever(self.app, self._sock, tls=self.tls,
                            shutdown_trigger=shutdown_trigger, graceful_timeout=1.0)
