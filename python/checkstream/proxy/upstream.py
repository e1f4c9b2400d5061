"""The backend: httpx streaming with retries before the first byte, and three timeouts.

* connect: ``backend.connect_timeout`` per attempt;
* idle: ``backend.idle_timeout`` between two reads (a stalled stream is cut);
* total: ``backend.timeout`` for the whole exchange, body included.

Retries (``backend.retry``) happen only while nothing has been sent to the client: on connect
errors, timeouts before the response, and 429/5xx statuses, honouring ``Retry-After`` up to
``max_delay``. Once the client has a byte, a failure becomes an in-stream error instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from checkstream.proxy.config import BackendConfig

log = logging.getLogger("checkstream.proxy")

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
    "cookie",
})
_CREDENTIALS = frozenset({"authorization", "x-api-key", "api-key"})


class UpstreamError(Exception):
    """The backend could not be reached or did not answer in time (before the first byte)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


class UpstreamStreamError(Exception):
    """The backend failed after its response started: idle stall, total timeout, broken body."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


DRAIN_BYTES = 64 * 1024
DRAIN_SECONDS = 1.0


@dataclass
class UpstreamResponse:
    response: httpx2.Response
    deadline: float
    idle_timeout: float
    attempts: int
    _raw: AsyncIterator[bytes] | None = None  # the body iterator, once reading has started

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx2.Headers:
        return self.response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """Raw body pieces; ``UpstreamStreamError`` on stall, total timeout or a broken body.

        The idle timeout is httpx's read timeout (the client is built with ``read=idle``), so a
        normal read costs no timer of ours; an ``asyncio.timeout`` is armed only for the reads
        that could outlive the total deadline, i.e. once less than one idle period is left.
        """
        it = self._raw = self.response.aiter_raw().__aiter__()
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamStreamError("upstream_timeout", "upstream exceeded the total timeout")
            try:
                if remaining > self.idle_timeout:
                    chunk = await it.__anext__()
                else:
                    async with asyncio.timeout(remaining):
                        chunk = await it.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise UpstreamStreamError(
                    "upstream_timeout", "upstream exceeded the total timeout") from None
            except httpx2.ReadTimeout:
                raise UpstreamStreamError(
                    "upstream_idle_timeout",
                    f"upstream sent nothing for {self.idle_timeout:g} s") from None
            except httpx2.HTTPError as exc:
                raise UpstreamStreamError(
                    "upstream_closed", f"upstream connection broke mid-stream: {exc!r}"
                ) from None
            if chunk:
                yield chunk

    async def drain(self) -> None:
        """After the upstream's own terminator ([DONE], message_stop, ...): read what is left of
        the body, normally only the chunked encoding's last chunk, so that the connection goes
        back to the pool. Left unread, httpx closes it, and every request pays a new connection
        (a TLS handshake, against a provider). A body that goes on past ``DRAIN_BYTES`` or does
        not end within ``DRAIN_SECONDS`` is cut: the connection is closed, nothing else."""
        it = self._raw
        if it is None:
            return
        seen = 0
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                async for chunk in it:
                    seen += len(chunk)
                    if seen > DRAIN_BYTES:
                        return
        except (TimeoutError, httpx2.HTTPError):
            return

    async def read_json(self, limit: int = 64 * 1024 * 1024) -> Any:
        body = bytearray()
        async for chunk in self.chunks():
            body += chunk
            if len(body) > limit:
                raise UpstreamStreamError("upstream_too_large", "upstream body exceeds the limit")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UpstreamStreamError(
                "upstream_malformed", f"upstream answered with invalid JSON: {exc}") from None

    async def read_text(self, limit: int = 64 * 1024) -> str:
        body = bytearray()
        async for chunk in self.chunks():
            body += chunk
            if len(body) > limit:
                break
        return body[:limit].decode("utf-8", "replace")

    async def aclose(self) -> None:
        await self.response.aclose()


class Upstream:
    """One backend (URL, credentials, timeouts, retry policy) over a shared httpx client."""

    def __init__(self, backend: BackendConfig, *,
                 transport: httpx2.AsyncBaseTransport | None = None,
                 metrics: Any | None = None) -> None:
        self.backend = backend
        self.metrics = metrics
        self.client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(
                connect=backend.connect_timeout, read=backend.idle_timeout,
                write=backend.idle_timeout, pool=backend.connect_timeout,
            ),
            limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=200),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def url(self, path: str) -> str:
        url = self.backend.url + path
        if self.backend.kind == "azure" and self.backend.azure_api_version:
            url += ("&" if "?" in url else "?") + f"api-version={self.backend.azure_api_version}"
        return url

    def headers(self, incoming: Mapping[str, str], *, forward_credentials: bool) -> dict[str, str]:
        """Client headers minus hop-by-hop ones; credentials replaced by the managed key."""
        out = {k.lower(): v for k, v in incoming.items() if k.lower() not in _HOP_BY_HOP}
        managed = self.backend.api_key
        if managed is not None or not forward_credentials:
            for k in _CREDENTIALS:
                out.pop(k, None)
        if managed is not None:
            kind = self.backend.kind
            if kind == "anthropic":
                out["x-api-key"] = managed
            elif kind == "azure":
                out["api-key"] = managed
            else:
                out["authorization"] = f"Bearer {managed}"
        if self.backend.kind == "anthropic":
            out.setdefault("anthropic-version", "2023-06-01")
        out.update({k.lower(): v for k, v in self.backend.headers.items()})
        out["accept-encoding"] = "identity"  # the proxy must parse what it relays
        out["content-type"] = "application/json"  # bodies are re-serialised JSON
        return out

    def retry_delay(self, attempt: int) -> float:
        return self._delay(attempt, None)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        r = self.backend.retry
        if retry_after:
            try:
                return min(float(retry_after), r.max_delay)
            except ValueError:
                pass
        if r.backoff == "none":
            return 0.0
        base = r.base_delay if r.backoff == "constant" else r.base_delay * 2 ** (attempt - 1)
        return min(base * (0.5 + random.random() / 2), r.max_delay)  # jitter spreads herds

    async def send(self, method: str, path: str, *, headers: Mapping[str, str],
                   body: bytes | None = None, deadline: float | None = None,
                   first_attempt: int = 1) -> UpstreamResponse:
        """Open the request, retrying before the response; the body is read by the caller.

        A final non-2xx answer is returned as is (the caller maps it to the client's format).
        ``backend.retry.max_attempts`` bounds the attempts of the whole exchange: a caller that
        tries again after a response failed (a stream that broke before its first event) passes
        the number of its next attempt, and the returned ``attempts`` is the last one made.
        """
        deadline = min(deadline or float("inf"), time.monotonic() + self.backend.timeout)
        attempts = self.backend.retry.max_attempts
        last: UpstreamError | None = None
        for attempt in range(max(1, first_attempt), attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            request = self.client.build_request(method, self.url(path), headers=dict(headers),
                                                content=body)
            try:
                async with asyncio.timeout(remaining):
                    resp = await self.client.send(request, stream=True)
            except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
                last = UpstreamError(502, "upstream_unreachable",
                                     f"cannot connect to the backend: {exc!r}")
            except (httpx2.TimeoutException, TimeoutError):
                last = UpstreamError(504, "upstream_timeout", "the backend did not answer in time")
            except httpx2.HTTPError as exc:
                last = UpstreamError(502, "upstream_error", f"backend request failed: {exc!r}")
            else:
                wrapped = UpstreamResponse(resp, deadline, self.backend.idle_timeout, attempt)
                if resp.status_code not in RETRY_STATUSES or attempt == attempts:
                    return wrapped
                retry_after = resp.headers.get("retry-after")
                await resp.aclose()
                last = UpstreamError(resp.status_code, "upstream_status",
                                     f"backend answered HTTP {resp.status_code}")
                log.info("upstream HTTP %s on attempt %d/%d; retrying", resp.status_code,
                         attempt, attempts)
                if self.metrics is not None:
                    self.metrics.retries.labels(reason=str(resp.status_code)).inc()
                await asyncio.sleep(max(0.0, min(self._delay(attempt, retry_after),
                                                 deadline - time.monotonic())))
                continue
            if attempt < attempts:
                log.info("upstream %s on attempt %d/%d; retrying", last.kind, attempt, attempts)
                if self.metrics is not None:
                    self.metrics.retries.labels(reason=last.kind).inc()
                await asyncio.sleep(max(0.0, min(self._delay(attempt, None),
                                                 deadline - time.monotonic())))
        raise last or UpstreamError(504, "upstream_timeout", "the backend did not answer in time")
