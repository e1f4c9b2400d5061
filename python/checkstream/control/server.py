"""The control plane's HTTP API (Quart on Hypercorn, over HTTP, TLS or mutual TLS).

==============================================  ======  =========================================
route                                           auth    what
==============================================  ======  =========================================
``POST /v1/bundles?channel=stable``             admin   upload a bundle (from ``control bundle
                                                        build``): checked, loaded, signed, stored,
                                                        released on the channel
``GET /v1/bundles/latest?channel=stable``       any     the channel's signed bundle; ETag = version
``GET /v1/bundles/{version}``                   any     one signed bundle (``If-None-Match`` -> 304)
``POST /v1/channels/{channel}/release``         admin   release a stored version (release_routes)
``POST /v1/channels/{channel}/rollback``        admin   back to the previous release
``GET /v1/channels/{channel}/history``          admin   the channel's release events
``POST /v1/nodes/{node_id}/heartbeat``          node    status + aggregate telemetry of an interval
``POST /v1/nodes/{node_id}/evidence``           node    a decision-log segment (evidence_routes)
``GET /v1/fleet``, ``GET /fleet``               admin   the fleet view, JSON or the operator page
``GET /v1/evidence/export?format=jsonl|csv``    admin   shipped decision records, chain-checked
``GET /v1/telemetry/export?since&until&node``   admin   the aggregate telemetry as CSV
``GET /health``                                 none    liveness
==============================================  ======  =========================================

Nodes poll with ``If-None-Match: "<version>"``; an unchanged channel answers 304 with no body,
so polling every 30 s costs one small request. The control plane never receives LLM traffic
(aggregate telemetry only), unless both it and a node opt into full-evidence upload.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from quart import Quart, Response, request

from checkstream.audit.export import parse_time
from checkstream.audit.keys import public_key_id
from checkstream.control.access import Access, auth_error_response
from checkstream.control.auth import AuthError, Tokens
from checkstream.control.bundle import MAX_BUNDLE_BYTES, Bundle, BundleError, sign_bundle
from checkstream.control.bundle import verify_bundle as _verify
from checkstream.control.dashboard import fleet_html
from checkstream.control.evidence_routes import register_evidence_routes
from checkstream.control.fleet import fleet_view, telemetry_csv
from checkstream.control.names import NODE_ID, VERSION
from checkstream.control.release_routes import register_release_routes
from checkstream.control.responses import channel_error, error_response, json_response
from checkstream.control.storage import ControlStore
from checkstream.control.telemetry import Heartbeat
from checkstream.control.tls import ServerTLS
from checkstream.policy.loader import RegistryLike

__all__ = ["create_app", "serve_control"]

log = logging.getLogger("checkstream.control")


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
    accept_evidence: bool = False,
) -> Quart:
    """``down_after``: seconds without a heartbeat before a node shows as down (3 polls);
    ``accept_evidence``: take full-evidence uploads (off: 403 ``evidence_disabled``)."""
    app = Quart("checkstream.control")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BUNDLE_BYTES
    key_id = public_key_id(signing_key.public_key())
    access = Access(tokens)

    @app.errorhandler(AuthError)
    async def _denied(exc: AuthError) -> Response:
        return auth_error_response(exc)

    def bundle_response(version: str) -> Response:
        etag = f'"{version}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache",
                   "X-Checkstream-Bundle-Version": version}
        if _etag_matches(request.headers.get("If-None-Match"), version):
            return Response("", status=304, headers=headers)
        data = store.read_bundle(version)
        if data is None:
            return error_response(404, "not_found", f"no bundle {version}")
        return Response(data, status=200, content_type="application/json", headers=headers)

    @app.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok", "signing_key_id": key_id})

    @app.post("/v1/bundles")
    async def upload() -> Response:
        who = access.admin()
        channel = request.args.get("channel", "stable")
        if (bad := channel_error(channel)) is not None:
            return bad
        data = await request.get_data(cache=False, as_text=False)
        assert isinstance(data, bytes)
        try:
            # The upload's own signature (if any) is not trusted: the control plane re-signs.
            bundle, policy_set = await asyncio.to_thread(
                _verify, Bundle.from_bytes(data), None, registry=registry)
        except BundleError as exc:
            log.warning("bundle upload refused (%s): %s", exc.reason, exc)
            return error_response(400, exc.reason, str(exc))
        signed = sign_bundle(bundle, signing_key)
        created = store.put_bundle(bundle.version, signed.to_bytes(),
                                   content_sha256=bundle.content_sha256, key_id=key_id)
        released = store.release(channel, bundle.version, actor=who.label, action="publish")
        log.info("bundle %s %s; channel %s %s (by %s)", policy_set.short_version,
                 "stored" if created else "already held", channel,
                 "now serves it" if released else "unchanged", who.label)
        return json_response(
            {"version": bundle.version, "channel": channel, "created": created,
             "released": released, "content_sha256": bundle.content_sha256, "key_id": key_id,
             "rules": len(policy_set.rules)},
            201 if created else 200,
            {"ETag": f'"{bundle.version}"', "Location": f"/v1/bundles/{bundle.version}"},
        )

    @app.get("/v1/bundles/latest")
    async def latest() -> Response:
        access.reader()
        channel = request.args.get("channel", "stable")
        if (bad := channel_error(channel)) is not None:
            return bad
        release = store.latest(channel)
        if release is None:
            return error_response(404, "not_found", f"nothing released on channel {channel!r}")
        return bundle_response(release.version)

    @app.get("/v1/bundles/<version>")
    async def one_bundle(version: str) -> Response:
        access.reader()
        if not VERSION.match(version):
            return error_response(400, "bad_version", "a bundle version is 64 lowercase hex digits")
        return bundle_response(version)

    @app.post("/v1/nodes/<node_id>/heartbeat")
    async def heartbeat(node_id: str) -> Response:
        if not NODE_ID.match(node_id):
            return error_response(400, "bad_node_id", f"{node_id[:64]!r} is not a node id")
        access.node(node_id)
        raw = await request.get_data(cache=False, as_text=False)
        assert isinstance(raw, bytes)
        if len(raw) > 256 * 1024:
            return error_response(413, "too_large", "a heartbeat is at most 256 KiB")
        try:
            beat = Heartbeat.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "(body)"
            message = str(first["msg"]).removeprefix("Value error, ")
            return error_response(422, "invalid_heartbeat", f"{where}: {message}")
        if beat.node_id is not None and beat.node_id != node_id:
            return error_response(422, "invalid_heartbeat",
                                  f"node_id {beat.node_id!r} does not match the URL's {node_id!r}")
        store.record_heartbeat(node_id, beat)
        release = store.latest(beat.channel)
        latest_version = release.version if release else None
        return json_response({"ok": True, "latest_version": latest_version,
                              "drift": latest_version is not None
                              and beat.policy_version != latest_version})

    @app.get("/v1/fleet")
    async def fleet() -> Response:
        access.admin()
        return json_response(fleet_view(store, down_after=down_after))

    @app.get("/fleet")
    async def fleet_page() -> Response:
        access.admin()
        page = fleet_html(fleet_view(store, down_after=down_after))
        return Response(page, content_type="text/html; charset=utf-8", headers={
            # Everything is inline and server-rendered: nothing else may load or run.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})

    @app.get("/v1/telemetry/export")
    async def telemetry_export() -> Response:
        access.admin()
        bounds: dict[str, float | None] = {}
        for name in ("since", "until"):
            text = request.args.get(name)
            try:
                bounds[name] = parse_time(text).timestamp() if text else None
            except ValueError as exc:
                return error_response(400, f"bad_{name}", str(exc))
        node = request.args.get("node")
        body = telemetry_csv(store.telemetry(since=bounds["since"], until=bounds["until"],
                                             node_id=node))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return Response(body, content_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="checkstream-telemetry-{stamp}.csv"'})

    register_release_routes(app, store, access)
    register_evidence_routes(app, store, access, accept=accept_evidence)

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
    tls: ServerTLS | None = None,
    accept_evidence: bool = False,
) -> None:
    """Run the control plane until SIGINT/SIGTERM (blocks)."""
    from checkstream.control.serving import run_control

    if tls is not None:
        tls.context()  # a bad certificate, key or CA file fails now, with its name
    app = create_app(ControlStore(data_dir), signing_key, tokens, down_after=down_after,
                     accept_evidence=accept_evidence)
    log.info("checkstream control plane: data %s, signing key %s%s", data_dir,
             public_key_id(signing_key.public_key()),
             ", accepting full evidence" if accept_evidence else "")
    run_control(app, host=host, port=port, tls=tls)
