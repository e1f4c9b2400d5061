"""The proxy's Quart app: routes, the request pipeline, error shaping, health and metrics.

Pipeline for a guarded call (chat/completions/responses/messages):
  tenant (key or path prefix) -> body (size limit, JSON) -> ingress (block | rewrite | pass)
  -> upstream (retries before the first byte) -> codec translation through the Guard's channels
  -> client; one decision record per request.

Before the first byte errors are HTTP statuses with the API's own error JSON; after it they are
in-stream error events in the API's shape. The upstream stream is read until the translator has
produced its first output before the response starts, so failures up to that point can still be
retried or reported with a status.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx2
from prometheus_client import CollectorRegistry
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from checkstream.engine import ChatMessage, RequestContext
from checkstream.proxy.codecs import CODECS, Codec, UpstreamProtocolError
from checkstream.proxy.codecs.base import decision_comment
from checkstream.proxy.codecs.openai_chat import OpenAIChatCodec
from checkstream.proxy.config import ConfigError, ProxyConfig
from checkstream.proxy.guarding import GuardSession
from checkstream.proxy.runtime import TenantRuntime
from checkstream.proxy.server import tune_gc
from checkstream.proxy.sse import SSEError, SSEParser
from checkstream.proxy.tenants import TenantError, TenantResolver
from checkstream.proxy.upstream import UpstreamError, UpstreamResponse, UpstreamStreamError
from checkstream.telemetry.metrics import Metrics

log = logging.getLogger("checkstream.proxy")

HEADER_REQUEST_ID = "x-checkstream-request-id"
HEADER_POLICY_VERSION = "x-checkstream-policy-version"
HEADER_DECISION = "x-checkstream-decision"
_OPENAI = OpenAIChatCodec()


class ProxyState:
    """Everything the routes share; created by ``create_app``, torn down after serving."""

    def __init__(self, config: ProxyConfig, *, registry: Any | None = None,
                 decision_log: Any | None = None,
                 transport: httpx2.AsyncBaseTransport | None = None,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        # One registry per app (tests and embedded apps never share state); the decision log
        # counts into the same set, so /metrics shows the audit figures too.
        self.metrics = metrics if metrics is not None else Metrics(CollectorRegistry())
        self.resolver = TenantResolver(config)
        self.registry = registry
        self.runtimes = {
            t.name: TenantRuntime(t, registry=registry, metrics=self.metrics, transport=transport,
                                  control=config.control if t.name == "default" else None,
                                  evidence_log=config.telemetry.decision_log)
            for t in self.resolver.all()
        }
        self.decision_log = decision_log
        self.ready = False
        # The last decisions by request id, for the demo and for debugging (bounded).
        self.recent: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()

    def record(self, session: GuardSession, endpoint: str) -> None:
        """The request is over: count its decision, log its record, release its guard state."""
        m = self.metrics
        self.recent[session.ctx.request_id] = session.summary()
        while len(self.recent) > 256:
            self.recent.popitem(last=False)
        m.decisions.labels(endpoint=endpoint, tenant=session.ctx.tenant,
                           action=session.action).inc()
        for h in session.hits:
            m.rule_hits.labels(policy=h.policy, rule=h.rule, phase=h.phase, action=h.action,
                               mode=h.mode).inc()
        for c in session.checks():
            outcome = "timeout" if c.timed_out else "failed" if c.failed else "ok"
            m.classifier_calls.labels(classifier=c.classifier, outcome=outcome).inc()
        for t in session.timeouts():
            m.pattern_timeouts.labels(policy=t.policy, rule=t.rule, phase=t.phase,
                                      resolution=t.resolution).inc()
        for stage, seconds in session.stage_seconds().items():
            m.stage_latency.labels(stage=stage).observe(seconds)
        if self.decision_log is not None:
            try:
                self.decision_log.append(session.record())
            except Exception:  # the log must never take a request down; it is counted
                log.exception("request %s: decision record failed", session.ctx.request_id)
                m.errors.labels(endpoint=endpoint, kind="decision_log").inc()
        session.end()


def _error(codec: Codec, status: int, message: str, kind: str,
           headers: dict[str, str] | None = None) -> Response:
    resp = Response(json.dumps(codec.error_body(status, message, kind)), status=status,
                    content_type="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def create_app(config: ProxyConfig, *, registry: Any | None = None,
               decision_log: Any | None = None,
               transport: httpx2.AsyncBaseTransport | None = None) -> Quart:
    """The proxy as an ASGI app. ``decision_log`` defaults to ``telemetry.decision_log``."""
    metrics = Metrics(CollectorRegistry())
    if decision_log is None and config.telemetry.decision_log is not None:
        from checkstream.audit import DecisionLog

        decision_log = DecisionLog(config.telemetry.decision_log, metrics=metrics)
    registry = _checked_registry(config, registry)
    state = ProxyState(config, registry=registry, decision_log=decision_log, transport=transport,
                       metrics=metrics)
    app = Quart("checkstream.proxy")
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes
    app.config["RESPONSE_TIMEOUT"] = config.server.timeout
    app.config["BODY_TIMEOUT"] = min(config.server.timeout, 60)
    app.extensions["checkstream"] = state

    @app.before_serving
    async def _start() -> None:
        for rt in state.runtimes.values():
            rt.start()
        tune_gc()
        state.ready = True

    @app.after_serving
    async def _stop() -> None:
        state.ready = False
        for rt in state.runtimes.values():
            await rt.aclose()
        if state.decision_log is not None:
            state.decision_log.close()

    # ------------------------------------------------------------------ health and metrics
    @app.get("/health/live")
    async def live() -> Response:
        return Response('{"status":"ok"}', content_type="application/json")

    @app.get("/health/ready")
    async def ready() -> Response:
        problems = [f"{name}: {rt.store.last_error}" for name, rt in state.runtimes.items()
                    if rt.store.last_error is not None]
        body = {"status": "ready" if state.ready else "starting",
                "policy_versions": {n: rt.store.current.version
                                    for n, rt in state.runtimes.items()},
                "policy_errors": problems}
        return Response(json.dumps(body), status=200 if state.ready else 503,
                        content_type="application/json")

    @app.get("/metrics")
    async def metrics_page() -> Response:
        body, content_type = state.metrics.render()
        return Response(body, content_type=content_type)

    # ------------------------------------------------------------------ admin
    @app.post("/admin/reload")
    async def admin_reload() -> Response:
        """Rebuild every tenant's policy set (or ``?tenant=NAME``'s) aside and swap it in.

        Requests in flight keep the set they began with. A set that fails to load leaves the
        old one serving; the answer (422), ``checkstream_policy_reload_errors_total``, the log
        and ``/health/ready`` say why.
        """
        denied = _admin_denied(state)
        if denied is not None:
            return denied
        wanted = request.args.get("tenant")
        if wanted is not None and wanted not in state.runtimes:
            return _error(_OPENAI, 404, f"no tenant named {wanted!r}", "unknown_tenant")
        results: dict[str, dict[str, Any]] = {}
        for name, rt in state.runtimes.items():
            if wanted is None or wanted == name:
                # Loading parses YAML and compiles the automaton: off the event loop.
                r = await asyncio.to_thread(rt.store.reload)
                results[name] = {"ok": r.ok, "changed": r.changed, "version": r.version,
                                 "error": r.error}
        ok = all(r["ok"] for r in results.values())
        log.log(logging.INFO if ok else logging.ERROR, "admin reload: %s",
                ", ".join(f"{n} {'ok' if r['ok'] else 'FAILED'} "
                          f"({'changed' if r['changed'] else 'unchanged'}, {r['version'][:12]})"
                          for n, r in results.items()))
        return Response(json.dumps({"ok": ok, "tenants": results}), status=200 if ok else 422,
                        content_type="application/json")

    # ------------------------------------------------------------------ errors
    @app.errorhandler(RequestEntityTooLarge)
    async def too_large(exc: RequestEntityTooLarge) -> Response:
        codec = _codec_for_path(request.path)
        state.metrics.errors.labels(endpoint=codec.endpoint, kind="body_too_large").inc()
        log.warning("%s: request body over %d bytes rejected", request.path,
                    config.server.max_body_bytes)
        return _error(codec, 413, f"request body exceeds the limit of "
                      f"{config.server.max_body_bytes} bytes", "request_too_large")

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        codec = _codec_for_path(request.path)
        status = exc.code or 500
        kind = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        return _error(codec, status, f"{exc.name}: {request.method} {request.path}", kind)

    @app.errorhandler(Exception)
    async def crash(exc: Exception) -> Response:
        codec = _codec_for_path(request.path)
        log.exception("%s: internal error", request.path)
        state.metrics.errors.labels(endpoint=codec.endpoint, kind="internal").inc()
        return _error(codec, 500, f"internal proxy error: {type(exc).__name__}", "internal_error")

    # ------------------------------------------------------------------ routes
    for path, codec in CODECS.items():
        _add_guarded_route(app, state, codec, path)

    async def models(prefix: str | None = None) -> Response:
        return await _passthrough_get(state, prefix, "/models")

    async def embeddings(prefix: str | None = None) -> Response:
        return await _embeddings(state, prefix)

    app.add_url_rule("/v1/models", "models", models, methods=["GET"])
    app.add_url_rule("/<prefix>/v1/models", "models_t", models, methods=["GET"])
    app.add_url_rule("/v1/embeddings", "embeddings", embeddings, methods=["POST"])
    app.add_url_rule("/<prefix>/v1/embeddings", "embeddings_t", embeddings, methods=["POST"])
    return app


def _checked_registry(config: ProxyConfig, registry: Any | None) -> Any | None:
    """Classifier names in ``guardrails`` must exist: an unknown name is a start-up error,
    never a check that silently scores nothing. The policies decide when each one runs."""
    g = config.guardrails
    listed = [("ingress", n) for n in g.ingress.classifiers] + [
        ("midstream", n) for n in g.midstream.classifiers]
    if not listed:
        return registry
    if registry is None:
        from checkstream.classifiers.registry import load_registry

        registry = load_registry()
    known = registry.names()
    timeouts: dict[str, float] = {}
    for phase, name in listed:
        if name not in known:
            raise ConfigError(f"guardrails.{phase}.classifiers: unknown classifier {name!r}; "
                              f"the registry has {', '.join(sorted(known))}")
        budget = float(getattr(g, phase).timeout_ms)
        timeouts[name] = min(budget, timeouts.get(name, budget))
    # A phase's timeout_ms is the budget of the classifiers it lists (past it, each resolves
    # by its declared fail mode); listed in two phases, the tighter budget applies.
    for name, budget in timeouts.items():
        registry.get(name).timeout_ms = budget
    return registry


def _admin_denied(state: ProxyState) -> Response | None:
    """None when the request carries the admin bearer token; else the 401/403 answer."""
    token = state.config.server.admin_token
    if token is None:
        return _error(_OPENAI, 403, "the admin API is disabled: set server.admin_token or "
                      "CHECKSTREAM_ADMIN_TOKEN", "admin_disabled")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return _error(_OPENAI, 401, "admin API: missing bearer token", "unauthorized",
                      {"www-authenticate": 'Bearer realm="checkstream-admin"'})
    # Digests first: compare_digest is constant-time only for inputs of equal length.
    if not hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(),
                               hashlib.sha256(token.encode()).digest()):
        state.metrics.errors.labels(endpoint="admin", kind="admin_forbidden").inc()
        log.warning("admin API: wrong token from %s", request.remote_addr)
        return _error(_OPENAI, 403, "admin API: wrong token", "forbidden")
    return None


def _headers() -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def _codec_for_path(path: str) -> Codec:
    for suffix, codec in CODECS.items():
        if path.endswith(suffix):
            return codec
    return _OPENAI


def _add_guarded_route(app: Quart, state: ProxyState, codec: Codec, path: str) -> None:
    async def handler(prefix: str | None = None) -> Response:
        return await _guarded(state, codec, prefix)

    name = codec.endpoint.replace(".", "_")
    app.add_url_rule(f"/v1{path}", name, handler, methods=["POST"])
    app.add_url_rule(f"/<prefix>/v1{path}", f"{name}_t", handler, methods=["POST"])


async def _read_json(state: ProxyState, codec: Codec) -> tuple[dict[str, Any] | None,
                                                                Response | None]:
    raw = await request.get_data(cache=False)
    assert isinstance(raw, bytes)
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        state.metrics.errors.labels(endpoint=codec.endpoint, kind="malformed_json").inc()
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}" \
            if isinstance(exc, json.JSONDecodeError) else "body is not UTF-8"
        log.warning("%s: malformed request JSON: %s", request.path, detail)
        return None, _error(codec, 400, f"We could not parse the JSON body of your request "
                            f"({detail}).", "invalid_json")
    if not isinstance(body, dict):
        state.metrics.errors.labels(endpoint=codec.endpoint, kind="malformed_json").inc()
        return None, _error(codec, 400, "the request body must be a JSON object", "invalid_json")
    return body, None


def _resolve(state: ProxyState, codec: Codec, prefix: str | None) -> TenantRuntime | Response:
    try:
        tenant = state.resolver.resolve(prefix, _headers())
    except TenantError as exc:
        state.metrics.errors.labels(endpoint=codec.endpoint, kind=exc.kind).inc()
        log.warning("%s: tenant rejected: %s", request.path, exc.message)
        return _error(codec, exc.status, exc.message, exc.kind)
    return state.runtimes[tenant.name]


async def _upstream_error_response(state: ProxyState, codec: Codec, up: UpstreamResponse,
                                   rid: str) -> Response:
    """A non-2xx answer from the backend, in the client's API's error format."""
    status = up.status_code
    try:
        text = await up.read_text()
    except UpstreamStreamError:
        text = ""
    finally:
        await up.aclose()
    kind = "upstream_429" if status == 429 else f"upstream_{status // 100}xx"
    state.metrics.errors.labels(endpoint=codec.endpoint, kind=kind).inc()
    log.warning("request %s: backend answered HTTP %d after %d attempt(s)", rid, status,
                up.attempts)
    headers = {HEADER_REQUEST_ID: rid}
    if up.headers.get("retry-after"):
        headers["retry-after"] = up.headers["retry-after"]
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and ("error" in parsed):
        resp = Response(json.dumps(parsed), status=status, content_type="application/json")
        for k, v in headers.items():
            resp.headers[k] = v
        return resp
    return _error(codec, status, f"backend error (HTTP {status}): {text[:200]}", kind, headers)


async def _guarded(state: ProxyState, codec: Codec, prefix: str | None) -> Response:
    t0 = time.perf_counter()
    rid = f"cs-{uuid.uuid4().hex}"
    rt = _resolve(state, codec, prefix)
    if isinstance(rt, Response):
        return rt
    body, err = await _read_json(state, codec)
    if err is not None or body is None:
        return err  # type: ignore[return-value]
    problem = codec.validate(body)
    if problem:
        state.metrics.errors.labels(endpoint=codec.endpoint, kind="invalid_request").inc()
        return _error(codec, 400, problem, "invalid_request")
    stream = bool(body.get("stream"))
    ctx = RequestContext(rid, rt.tenant.name, codec.endpoint, str(body.get("model") or ""), {})
    session = GuardSession(rt.guard(), ctx, state.config.guardrails,
                           full_evidence=state.config.telemetry.mode == "full_evidence")
    headers = {HEADER_REQUEST_ID: rid, HEADER_POLICY_VERSION: session.policy_version}
    if codec.provider == "anthropic":
        headers["request-id"] = rid
    else:
        headers["x-request-id"] = rid

    slots = codec.prompt_slots(body)
    ingress = await session.ingress([s.message for s in slots])
    if ingress is not None and ingress.action == "block":
        state.record(session, codec.endpoint)
        state.metrics.requests.labels(codec.endpoint, ctx.tenant, str(stream),
                                      str(ingress.block_status)).inc()
        log.info("request %s: prompt blocked (%s)", rid,
                 ", ".join(sorted({h.rule for h in ingress.hits})))
        return _error(codec, ingress.block_status,
                      ingress.block_message or "The request was blocked by policy.",
                      "content_policy_violation", {**headers, HEADER_DECISION: "block"})
    if ingress is not None and ingress.action == "modify":
        if len(ingress.messages) != len(slots):
            raise RuntimeError("engine returned a different number of ingress messages")
        for slot, msg in zip(slots, ingress.messages, strict=True):
            if msg.content != slot.message.content:
                slot.write(msg.content)
        if ingress.system_additions:
            codec.add_system(body, list(ingress.system_additions))

    deadline = time.monotonic() + state.config.server.timeout
    up_headers = rt.upstream.headers(_headers(),
                                     forward_credentials=not rt.tenant.authenticates)
    payload = json.dumps(body).encode()
    # One budget of attempts for the whole exchange: status retries inside `send` and tries
    # after a stream that failed before its first event count alike.
    max_attempts = rt.upstream.backend.retry.max_attempts
    attempt = 0
    while True:
        try:
            up = await rt.upstream.send("POST", codec.path, headers=up_headers, body=payload,
                                        deadline=deadline, first_attempt=attempt + 1)
        except UpstreamError as exc:
            state.metrics.errors.labels(endpoint=codec.endpoint, kind=exc.kind).inc()
            log.warning("request %s: %s", rid, exc.message)
            state.metrics.requests.labels(codec.endpoint, ctx.tenant, str(stream),
                                          str(exc.status)).inc()
            return _error(codec, exc.status, exc.message, exc.kind, headers)
        attempt = up.attempts
        if up.status_code >= 400:
            state.metrics.requests.labels(codec.endpoint, ctx.tenant, str(stream),
                                          str(up.status_code)).inc()
            return await _upstream_error_response(state, codec, up, rid)
        is_sse = up.headers.get("content-type", "").startswith("text/event-stream")
        if stream and is_sse:
            resp = await _stream_response(state, codec, session, body, up, headers, t0,
                                          last_attempt=attempt >= max_attempts
                                          or time.monotonic() >= deadline)
            if resp is not None:
                return resp
            # The stream failed before its first event: nothing reached the client, so the
            # whole exchange can be tried again.
            await asyncio.sleep(rt.upstream.retry_delay(attempt))
            continue
        break
    if stream:
        log.warning("request %s: stream requested, backend answered %s", rid,
                    up.headers.get("content-type"))
    try:
        data = await up.read_json()
    except UpstreamStreamError as exc:
        state.metrics.errors.labels(endpoint=codec.endpoint, kind=exc.kind).inc()
        log.warning("request %s: %s", rid, exc.message)
        return _error(codec, 502, exc.message, exc.kind, headers)
    finally:
        await up.aclose()
    if not isinstance(data, dict):
        return _error(codec, 502, "backend answered with a non-object JSON",
                      "upstream_malformed", headers)
    guarded = await codec.guard_response(session, data)
    state.record(session, codec.endpoint)
    state.metrics.requests.labels(codec.endpoint, ctx.tenant, "False", "200").inc()
    state.metrics.request_seconds.labels(codec.endpoint).observe(time.perf_counter() - t0)
    resp = Response(json.dumps(guarded, ensure_ascii=False), status=200,
                    content_type="application/json")
    for k, v in {**headers, HEADER_DECISION: session.action}.items():
        resp.headers[k] = v
    return resp


async def _stream_response(state: ProxyState, codec: Codec, session: GuardSession,
                           body: dict[str, Any], up: UpstreamResponse, headers: dict[str, str],
                           t0: float, *, last_attempt: bool = True) -> Response | None:
    """The client's streaming response; None when the upstream failed before its first event
    and another attempt is allowed."""
    rid = session.ctx.request_id
    m = state.metrics
    translator = codec.translator(session, body)
    parser = SSEParser()

    # Policy time per upstream read; nothing to observe when no policy runs on the output
    # (a zero per read would only cost a histogram update per chunk).
    observe = m.guard_seconds.observe \
        if session.guard is not None and session.settings.midstream.enabled else None

    async def translated() -> AsyncGenerator[bytes, None]:
        """Client bytes; raises on upstream failure (the caller turns it into an event)."""
        on_event = translator.on_event
        async for chunk in up.chunks():
            # Everything one upstream read produced goes out as one write.
            pending: list[bytes] = []
            g0 = session.guard_seconds
            try:
                for ev in parser.feed(chunk):
                    pending += await on_event(ev)
                    if translator.done:
                        break
            except (SSEError, UpstreamProtocolError):
                if pending:  # released text is final: deliver it before the error
                    yield b"".join(pending)
                raise
            if observe is not None:
                observe(session.guard_seconds - g0)
            if pending:
                yield b"".join(pending)
            if translator.done:
                if translator.saw_terminator:  # the upstream finished: keep its connection
                    await up.drain()
                return
        pending = []
        for ev in parser.finish():
            pending += await translator.on_event(ev)
            if translator.done:
                break
        if pending:
            yield b"".join(pending)
        if translator.done:
            return
        if not translator.done:
            raise UpstreamStreamError("upstream_closed", "upstream stream ended before its "
                                      "terminator" + (" (truncated event)"
                                                      if parser.has_partial else ""))

    source = translated()
    first: list[bytes] = []
    failure: tuple[str, str] | None = None
    try:
        # Hold the response until the first client bytes exist: a failure before them can
        # still be an HTTP status.
        first.append(await source.__anext__())
    except StopAsyncIteration:
        pass
    except (UpstreamStreamError, SSEError, UpstreamProtocolError) as exc:
        failure = _failure(exc)
    if failure is not None and not translator.started:
        await up.aclose()
        await source.aclose()
        kind, message = failure
        m.errors.labels(endpoint=codec.endpoint, kind=kind).inc()
        if not last_attempt:
            m.retries.labels(reason=kind).inc()
            log.info("request %s: %s before the first event; retrying", rid, kind)
            return None
        m.requests.labels(codec.endpoint, session.ctx.tenant, "True", "502").inc()
        log.warning("request %s: %s before the first byte: %s", rid, kind, message)
        state.record(session, codec.endpoint)
        return _error(codec, 504 if "timeout" in kind else 502, message, kind, headers)

    async def body_iter() -> AsyncIterator[bytes]:
        nonlocal failure
        m.active_streams.inc()
        finished = False
        try:
            for b in first:
                yield b
            if failure is None:
                try:
                    async for b in source:
                        yield b
                except (UpstreamStreamError, SSEError, UpstreamProtocolError) as exc:
                    failure = _failure(exc)
            if failure is not None:
                kind, message = failure
                m.errors.labels(endpoint=codec.endpoint, kind=kind).inc()
                log.warning("request %s: %s mid-stream: %s", rid, kind, message)
                yield decision_comment(session)
                yield translator.error_event(message, kind)
            finished = True
        finally:
            m.active_streams.dec()
            if not finished:
                m.client_disconnects.labels(endpoint=codec.endpoint).inc()
                m.errors.labels(endpoint=codec.endpoint, kind="client_disconnect").inc()
                log.info("request %s: client went away; upstream request cancelled", rid)
            await source.aclose()
            await up.aclose()
            status = "200" if failure is None else "200-error"
            m.requests.labels(codec.endpoint, session.ctx.tenant, "True", status).inc()
            m.request_seconds.labels(codec.endpoint).observe(time.perf_counter() - t0)
            state.record(session, codec.endpoint)

    resp = Response(body_iter(), status=200, content_type="text/event-stream; charset=utf-8")
    resp.timeout = None
    resp.headers["cache-control"] = "no-cache"
    resp.headers["x-accel-buffering"] = "no"
    for k, v in headers.items():
        resp.headers[k] = v
    return resp


def _failure(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, UpstreamStreamError):
        return exc.kind, exc.message
    if isinstance(exc, SSEError):
        return "malformed_sse", f"upstream sent a malformed event stream: {exc}"
    return "upstream_protocol", str(exc)


async def _passthrough_get(state: ProxyState, prefix: str | None, path: str) -> Response:
    rt = _resolve(state, _OPENAI, prefix)
    if isinstance(rt, Response):
        return rt
    headers = rt.upstream.headers(_headers(), forward_credentials=not rt.tenant.authenticates)
    try:
        up = await rt.upstream.send("GET", path, headers=headers)
        text = await up.read_text(limit=16 * 1024 * 1024)
    except (UpstreamError, UpstreamStreamError) as exc:
        state.metrics.errors.labels(endpoint="models", kind=exc.kind).inc()
        return _error(_OPENAI, getattr(exc, "status", 502), exc.message, exc.kind)
    await up.aclose()
    return Response(text, status=up.status_code,
                    content_type=up.headers.get("content-type", "application/json"))


async def _embeddings(state: ProxyState, prefix: str | None) -> Response:
    """Embeddings carry no generated text; the inputs still go through ingress."""
    rt = _resolve(state, _OPENAI, prefix)
    if isinstance(rt, Response):
        return rt
    body, err = await _read_json(state, _OPENAI)
    if err is not None or body is None:
        return err  # type: ignore[return-value]
    rid = f"cs-{uuid.uuid4().hex}"
    ctx = RequestContext(rid, rt.tenant.name, "embeddings", str(body.get("model") or ""), {})
    session = GuardSession(rt.guard(), ctx, state.config.guardrails)
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else inputs if isinstance(inputs, list) else []
    idx = [i for i, t in enumerate(texts) if isinstance(t, str)]
    ingress = await session.ingress([ChatMessage("user", texts[i]) for i in idx])
    headers = {HEADER_REQUEST_ID: rid, HEADER_POLICY_VERSION: session.policy_version}
    if ingress is not None and ingress.action == "block":
        state.record(session, "embeddings")
        return _error(_OPENAI, ingress.block_status, ingress.block_message or "blocked by policy",
                      "content_policy_violation", headers)
    if ingress is not None and ingress.action == "modify":
        new = [m.content for m in ingress.messages]
        if isinstance(inputs, str):
            body["input"] = new[0]
        else:
            for i, text in zip(idx, new, strict=True):
                body["input"][i] = text
    up_headers = rt.upstream.headers(_headers(),
                                     forward_credentials=not rt.tenant.authenticates)
    try:
        up = await rt.upstream.send("POST", "/embeddings", headers=up_headers,
                                    body=json.dumps(body).encode())
        text = await up.read_text(limit=256 * 1024 * 1024)
    except (UpstreamError, UpstreamStreamError) as exc:
        state.metrics.errors.labels(endpoint="embeddings", kind=exc.kind).inc()
        return _error(_OPENAI, getattr(exc, "status", 502), exc.message, exc.kind, headers)
    await up.aclose()
    state.record(session, "embeddings")
    resp = Response(text, status=up.status_code,
                    content_type=up.headers.get("content-type", "application/json"))
    for k, v in headers.items():
        resp.headers[k] = v
    return resp


__all__ = ["HEADER_POLICY_VERSION", "HEADER_REQUEST_ID", "ProxyState", "create_app"]
