"""The control plane's HTTP API (Quart on Hypercorn).

==========================================  ======  ===========================================
route                                       auth    what
==========================================  ======  ===========================================
``POST /v1/bundles?channel=stable``          admin   upload a bundle (from ``control bundle
                                                     build``): checked, loaded, signed, stored
``GET /v1/bundles/latest?channel=stable``    any     the channel's signed bundle; ETag = version
``GET /v1/bundles/{version}``                any     one signed bundle (``If-None-Match`` -> 304)
``POST /v1/nodes/{node_id}/heartbeat``       node    status + aggregate telemetry of an interval
``GET /v1/fleet``, ``GET /fleet``            admin   the fleet view, JSON or an HTML table
``GET /v1/evidence/export?since&until``      admin   the aggregate telemetry as CSV
``GET /health``                              none    liveness
==========================================  ======  ===========================================

Nodes poll with ``If-None-Match: "<version>"``; an unchanged channel answers 304 with no body,
so polling every 30 s costs one small request. The control plane never receives LLM traffic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from quart import Quart, Response, request

from checkstream.audit.export import parse_time
from checkstream.audit.keys import public_key_id
from checkstream.control.auth import AuthError, Tokens
from checkstream.control.bundle import MAX_BUNDLE_BYTES, Bundle, BundleError, sign_bundle
from checkstream.control.bundle import verify_bundle as _verify
from checkstream.control.fleet import evidence_csv, fleet_html, fleet_view
from checkstream.control.storage import ControlStore
from checkstream.control.telemetry import Heartbeat
from checkstream.policy.loader import RegistryLike

__all__ = ["create_app"]

log = logging.getLogger("checkstream.control")

CHANNEL = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
VERSION = re.compile(r"^[0-9a-f]{64}$")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, indent=None), status=status,
                    content_type="application/json", headers=headers)


def _error(status: int, reason: str, message: str, **headers: str) -> Response:
    return _json({"error": {"reason": reason, "message": message}}, status,
                 {k.replace("_", "-"): v for k, v in headers.items()})


def _etag_matches(header: str | None, version: str) -> bool:
    if not header:
        return False
    tags = {t.strip().removeprefix("W/").strip('"') for t in header.split(",")}
    return version in tags or "*" in tags


def create_app(
    store: ControlStore,
    signing_key: Ed25519PrivateKey,
    tokens: Tokens,
    *,
    down_after: float = 90.0,
    registry: RegistryLike | None = None,
) -> Quart:
    """``down_after``: seconds without a heartbeat before a node shows as down (3 polls)."""
    app = Quart("checkstream.control")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BUNDLE_BYTES
    key_id = public_key_id(signing_key.public_key())

    def refused(check: Callable[..., object], *args: str) -> Response | None:
        """The 401/403 answer when the request's Authorization fails ``check``, else None."""
        try:
            check(request.headers.get("Authorization"), *args)
        except AuthError as exc:
            # /fleet is for browsers: offer Basic auth so they prompt for the admin token.
            scheme = 'Basic realm="checkstream"' if request.path == "/fleet" else "Bearer"
            if exc.status == 401:
                return _error(401, "unauthorized", str(exc), WWW_Authenticate=scheme)
            return _error(403, "forbidden", str(exc))
        return None

    def bundle_response(version: str) -> Response:
        etag = f'"{version}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache",
                   "X-Checkstream-Bundle-Version": version}
        if _etag_matches(request.headers.get("If-None-Match"), version):
            return Response("", status=304, headers=headers)
        data = store.read_bundle(version)
        if data is None:
            return _error(404, "not_found", f"no bundle {version}")
        return Response(data, status=200, content_type="application/json", headers=headers)

    @app.get("/health")
    async def health() -> Response:
        return _json({"status": "ok", "signing_key_id": key_id})

    @app.post("/v1/bundles")
    async def upload() -> Response:
        if (denied := refused(tokens.admin)) is not None:
            return denied
        channel = request.args.get("channel", "stable")
        if not CHANNEL.match(channel):
            return _error(400, "bad_channel", f"channel {channel!r} is not a channel name")
        data = await request.get_data(cache=False, as_text=False)
        assert isinstance(data, bytes)
        try:
            # The upload's own signature (if any) is not trusted: the control plane re-signs.
            bundle, policy_set = await asyncio.to_thread(
                _verify, Bundle.from_bytes(data), None, registry=registry)
        except BundleError as exc:
            log.warning("bundle upload refused (%s): %s", exc.reason, exc)
            return _error(400, exc.reason, str(exc))
        signed = sign_bundle(bundle, signing_key)
        created = store.put_bundle(bundle.version, signed.to_bytes(),
                                   content_sha256=bundle.content_sha256, key_id=key_id)
        released = store.release(channel, bundle.version)
        log.info("bundle %s %s; channel %s %s", policy_set.short_version,
                 "stored" if created else "already held", channel,
                 "now serves it" if released else "unchanged")
        return _json(
            {"version": bundle.version, "channel": channel, "created": created,
             "released": released, "content_sha256": bundle.content_sha256, "key_id": key_id,
             "rules": len(policy_set.rules)},
            201 if created else 200,
            {"ETag": f'"{bundle.version}"', "Location": f"/v1/bundles/{bundle.version}"},
        )

    @app.get("/v1/bundles/latest")
    async def latest() -> Response:
        if (denied := refused(tokens.reader)) is not None:
            return denied
        channel = request.args.get("channel", "stable")
        if not CHANNEL.match(channel):
            return _error(400, "bad_channel", f"channel {channel!r} is not a channel name")
        release = store.latest(channel)
        if release is None:
            return _error(404, "not_found", f"nothing released on channel {channel!r}")
        return bundle_response(release.version)

    @app.get("/v1/bundles/<version>")
    async def one_bundle(version: str) -> Response:
        if (denied := refused(tokens.reader)) is not None:
            return denied
        if not VERSION.match(version):
            return _error(400, "bad_version", "a bundle version is 64 lowercase hex digits")
        return bundle_response(version)

    @app.post("/v1/nodes/<node_id>/heartbeat")
    async def heartbeat(node_id: str) -> Response:
        if not NODE_ID.match(node_id):
            return _error(400, "bad_node_id", f"{node_id[:64]!r} is not a node id")
        if (denied := refused(tokens.node, node_id)) is not None:
            return denied
        raw = await request.get_data(cache=False, as_text=False)
        assert isinstance(raw, bytes)
        if len(raw) > 256 * 1024:
            return _error(413, "too_large", "a heartbeat is at most 256 KiB")
        try:
            beat = Heartbeat.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "(body)"
            message = str(first["msg"]).removeprefix("Value error, ")
            return _error(422, "invalid_heartbeat", f"{where}: {message}")
        if beat.node_id is not None and beat.node_id != node_id:
            return _error(422, "invalid_heartbeat",
                          f"node_id {beat.node_id!r} does not match the URL's {node_id!r}")
        store.record_heartbeat(node_id, beat)
        release = store.latest(beat.channel)
        latest_version = release.version if release else None
        return _json({"ok": True, "latest_version": latest_version,
                      "drift": latest_version is not None
                      and beat.policy_version != latest_version})

    @app.get("/v1/fleet")
    async def fleet() -> Response:
        if (denied := refused(tokens.admin)) is not None:
            return denied
        return _json(fleet_view(store, down_after=down_after))

    @app.get("/fleet")
    async def fleet_page() -> Response:
        if (denied := refused(tokens.admin)) is not None:
            return denied
        page = fleet_html(fleet_view(store, down_after=down_after))
        return Response(page, content_type="text/html; charset=utf-8")

    @app.get("/v1/evidence/export")
    async def export() -> Response:
        if (denied := refused(tokens.admin)) is not None:
            return denied
        bounds: dict[str, float | None] = {}
        for name in ("since", "until"):
            text = request.args.get(name)
            try:
                bounds[name] = parse_time(text).timestamp() if text else None
            except ValueError as exc:
                return _error(400, f"bad_{name}", str(exc))
        node = request.args.get("node")
        body = evidence_csv(store.telemetry(since=bounds["since"], until=bounds["until"],
                                            node_id=node))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return Response(body, content_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="checkstream-evidence-{stamp}.csv"'})

    @app.after_serving
    async def _close() -> None:
        store.close()

    return app


def serve_control(
    data_dir: Path,
    signing_key: Ed25519PrivateKey,
    tokens: Tokens,
    *,
    host: str,
    port: int,
    down_after: float = 90.0,
) -> None:
    """Run the control plane until SIGINT/SIGTERM (blocks)."""
    from checkstream.proxy.server import serve

    app = create_app(ControlStore(data_dir), signing_key, tokens, down_after=down_after)
    log.info("checkstream control plane: data %s, signing key %s", data_dir,
             public_key_id(signing_key.public_key()))
    serve(app, host=host, port=port)
