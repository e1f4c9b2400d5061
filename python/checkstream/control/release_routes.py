"""Release management routes (admin only): promote a stored version, roll back, read the history.

=============================================  ==============================================
``POST /v1/channels/{channel}/release``        body ``{"version": V}`` (full, or a unique prefix
                                               of 12+ hex digits) or ``{"from_channel": C}``
                                               (what channel C serves now)
``POST /v1/channels/{channel}/rollback``       back to the release before the current one
``GET /v1/channels/{channel}/history``         every event, newest first
=============================================  ==============================================

Nodes see a release or a rollback as a new latest on their channel (the ETag moves), so they
install it at their next poll like any upload.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from quart import Quart, Response, request

from checkstream.control.access import Access
from checkstream.control.names import VERSION_PREFIX
from checkstream.control.responses import channel_error, error_response, json_response
from checkstream.control.storage import ControlStore, RollbackError

__all__ = ["register_release_routes"]

log = logging.getLogger("checkstream.control")

_RELEASE_KEYS = frozenset({"version", "from_channel"})


async def _release_body() -> dict[str, Any] | Response:
    raw = await request.get_data(cache=False, as_text=False)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return error_response(400, "bad_request", "the body must be JSON: "
                              '{"version": "<version>"} or {"from_channel": "<channel>"}')
    if not isinstance(body, dict) or len(body) != 1 or not body.keys() <= _RELEASE_KEYS:
        got = sorted(body) if isinstance(body, dict) else type(body).__name__
        return error_response(400, "bad_request",
                              f'give exactly one of "version" or "from_channel" (got {got})')
    return body


def register_release_routes(app: Quart, store: ControlStore, access: Access) -> None:
    @app.post("/v1/channels/<channel>/release")
    async def channel_release(channel: str) -> Response:
        who = access.admin()
        if (bad := channel_error(channel)) is not None:
            return bad
        body = await _release_body()
        if isinstance(body, Response):
            return body
        source: str | None = None
        if "from_channel" in body:
            source = str(body["from_channel"])
            if (bad := channel_error(source)) is not None:
                return bad
            current = store.latest(source)
            if current is None:
                return error_response(404, "not_found", f"nothing is released on channel "
                                      f"{source!r} to promote")
            version = current.version
        else:
            wanted = str(body["version"])
            if not VERSION_PREFIX.match(wanted):
                return error_response(400, "bad_version", "a version is 64 lowercase hex digits "
                                      "(or a unique prefix of 12 or more)")
            found = store.resolve_version(wanted)
            if not found:
                return error_response(404, "not_found", f"no stored bundle {wanted}: upload it "
                                      "first (checkstream control bundle push)")
            if len(found) > 1:
                return error_response(409, "ambiguous_version", f"{wanted} starts {len(found)} "
                                      "stored versions; give more digits")
            version = found[0]
        released = store.release(channel, version, actor=who.label, action="release",
                                 source=source)
        latest = store.history(channel)[-1]
        log.info("channel %s: %s %s by %s", channel, "released" if released else "already serves",
                 version[:12], who.label)
        return json_response({"channel": channel, "version": version, "released": released,
                              "event": latest.to_json()}, 200 if not released else 201)

    @app.post("/v1/channels/<channel>/rollback")
    async def channel_rollback(channel: str) -> Response:
        who = access.admin()
        if (bad := channel_error(channel)) is not None:
            return bad
        try:
            event = store.rollback(channel, actor=who.label)
        except RollbackError as exc:
            return error_response(409, "no_previous_release", str(exc))
        log.warning("channel %s rolled back from %s to %s by %s", channel,
                    (event.source or "?")[:12], event.version[:12], who.label)
        return json_response({"channel": channel, "version": event.version,
                              "rolled_back": event.source, "event": event.to_json()})

    @app.get("/v1/channels/<channel>/history")
    async def channel_history(channel: str) -> Response:
        access.admin()
        if (bad := channel_error(channel)) is not None:
            return bad
        events = store.history(channel)
        return json_response({"channel": channel,
                              "current": events[-1].version if events else None,
                              "history": [e.to_json() for e in reversed(events)]})
