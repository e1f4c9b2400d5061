"""``notify`` actions: signed webhook POSTs, sent by a background thread off the request path.

The body is canonical JSON with no raw text (rule, span, score, request id, policy version). The
signature header is ``X-Checkstream-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." +
body)>`` with the timestamp in ``X-Checkstream-Timestamp``, so receivers can reject replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import time
from dataclasses import asdict
from typing import Any

import httpx

from checkstream.policy.models import NotifyAction

log = logging.getLogger("checkstream.notify")
SIGNATURE_HEADER = "X-Checkstream-Signature"
TIMESTAMP_HEADER = "X-Checkstream-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return (
        "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )


class Notifier:
    """A bounded queue drained by one daemon thread; a full queue drops (and counts) the event
    rather than block a request."""

    def __init__(self, *, max_queue: int = 1000, client: httpx.Client | None = None) -> None:
        self._queue: queue.Queue[tuple[NotifyAction, bytes] | None] = queue.Queue(max_queue)
        self._client = client or httpx.Client()
        self._thread = threading.Thread(target=self._run, name="checkstream-notify", daemon=True)
        self._thread.start()
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def submit(self, action: NotifyAction, hit: Any, ctx: Any, policy_version: str) -> None:
        payload = {
            "event": "checkstream.rule_fired",
            "hit": asdict(hit),
            "request_id": ctx.request_id,
            "tenant": ctx.tenant,
            "endpoint": ctx.endpoint,
            "model": ctx.model,
            "policy_version": policy_version,
            "time": time.time(),
        }
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        try:
            self._queue.put_nowait((action, body))
        except queue.Full:
            self.dropped += 1
            log.error("notify queue full; dropped notification for rule %s", hit.rule)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._send(*item)
            finally:
                self._queue.task_done()

    def _send(self, action: NotifyAction, body: bytes) -> None:
        secret = os.environ.get(action.secret_env)
        if not secret:
            self.failed += 1
            log.error("notify: environment variable %s is not set; not sent", action.secret_env)
            return
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(secret.encode(), stamp, body),
        }
        try:
            response = self._client.post(
                action.webhook, content=body, headers=headers, timeout=action.timeout_s
            )
            response.raise_for_status()
            self.sent += 1
        except httpx.HTTPError as exc:
            self.failed += 1
            log.error("notify to %s failed: %s", action.webhook, exc)

    def flush(self) -> None:
        """Block until every queued notification was attempted."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._client.close()


_default: Notifier | None = None
_default_lock = threading.Lock()


def default_notifier() -> Notifier:
    global _default
    with _default_lock:
        if _default is None:
            _default = Notifier()
        return _default
