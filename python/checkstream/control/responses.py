"""The control plane's JSON answers: a body, or ``{"error": {"reason", "message"}}`` with a status.

``reason`` is a stable machine-readable word (``bad_channel``, ``chain_gap``, ...) that clients
branch on; ``message`` is for the person reading the log.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response

__all__ = ["error_response", "json_response"]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json",
                    headers=headers)


def error_response(status: int, reason: str, message: str, **extra: Any) -> Response:
    """``extra`` goes next to ``error`` in the body (e.g. the stored chain head on a 409)."""
    return json_response({"error": {"reason": reason, "message": message}, **extra}, status)
