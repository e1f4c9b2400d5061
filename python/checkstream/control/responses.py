"""The control plane's JSON answers: a body, or ``{"error": {"reason", "message"}}`` with a status.

``reason`` is a stable machine-readable word (``bad_channel``, ``chain_gap``, ...) that clients
branch on; ``message`` is for the person reading the log.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response

from checkstream.control.names import CHANNEL

__all__ = ["channel_error", "error_response", "json_response"]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json",
                    headers=headers)


def error_response(status: int, reason: str, message: str, **extra: Any) -> Response:
    """``extra`` goes next to ``error`` in the body (e.g. the stored chain head on a 409)."""
    return json_response({"error": {"reason": reason, "message": message}, **extra}, status)


def channel_error(channel: str) -> Response | None:
    """The 400 for a name that is not a channel name, else None."""
    if CHANNEL.match(channel):
        return None
    return error_response(400, "bad_channel", f"{channel[:64]!r} is not a channel name "
                          "(lowercase letters, digits, _ . -; at most 64)")
