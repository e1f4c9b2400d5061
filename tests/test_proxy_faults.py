"""Faults: each gives a protocol-valid, specific error, a metric and a log line, and the proxy
keeps serving. Upstream misbehaviour is injected by the replay upstream's fault knobs."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from checkstream.proxy.loopback import LoopbackStack
from checkstream.proxy.sse import SSEParser
from proxy_helpers import write_policy

POLICY = """
name: faults-test
version: "1"
rules:
  - name: banned-phrase
    phases: [midstream]
    trigger:
      phrases: [forbidden fruit]
    actions:
      - stop: {message: "Stopped by policy."}
"""
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackStack]:
    folder = write_policy(tmp_path_factory.mktemp("faults"), POLICY)
    config = {
        "server": {"max_body_bytes": 64 * 1024},
        # Generous enough that a loaded 2-core CI box never trips it by accident; the stall tests
        # stall far longer (ReplayUpstream's stall_s).
        "backend": {"idle_timeout": "2s", "retry": {"max_attempts": 3, "base_delay": "5ms",
                                                        "max_delay": "20ms"}},
    }
    with LoopbackStack(policies=folder, config=config) as s:
        yield s


def errors(stack: LoopbackStack, kind: str) -> float:
    value = stack.state.metrics.registry.get_sample_value(
        "checkstream_errors_total", {"endpoint": "chat.completions", "kind": kind})
    return value or 0.0


def client(stack: LoopbackStack, **faults: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key="k", max_retries=0,
                         default_headers={"x-replay-faults": json.dumps(faults)})


def still_serving(stack: LoopbackStack) -> None:
    r = client(stack).chat.completions.create(model="weather", messages=MSG)  # type: ignore[arg-type]
    assert r.choices[0].finish_reason == "stop"


def test_upstream_closes_mid_stream(stack: LoopbackStack, caplog: pytest.LogCaptureFixture) -> None:
    before = errors(stack, "upstream_closed")
    with caplog.at_level(logging.WARNING, logger="checkstream.proxy"), \
            pytest.raises(openai.APIError, match=r"ended before its terminator|broke mid-stream"):
        for _ in client(stack, close_after=6).chat.completions.create(
                model="weather", messages=MSG, stream=True):  # type: ignore[arg-type]
            pass
    assert errors(stack, "upstream_closed") == before + 1
    assert any("upstream_closed mid-stream" in r.getMessage() for r in caplog.records)
    still_serving(stack)


def test_anthropic_mid_stream_error_is_an_error_event(stack: LoopbackStack) -> None:
    ac = anthropic.Anthropic(base_url=stack.url, api_key="k", max_retries=0,
                             default_headers={"x-replay-faults": '{"close_after": 5}'})
    with pytest.raises(anthropic.APIStatusError) as exc, \
            ac.messages.stream(model="weather", max_tokens=10, messages=MSG) as s:  # type: ignore[arg-type]
        for _ in s:
            pass
    assert "ended before its terminator" in str(exc.value) or "mid-stream" in str(exc.value)


def test_responses_mid_stream_error_event(stack: LoopbackStack) -> None:
    with httpx.stream("POST", stack.url + "/v1/responses",
                      json={"model": "weather", "input": "x", "stream": True},
                      headers={"x-replay-faults": '{"close_after": 8}'}) as r:
        events = SSEParser().feed(b"".join(r.iter_raw()))
    last = events[-1].json()
    assert events[-1].event == "error" and last["type"] == "error"
    assert last["code"] == "upstream_closed"
    seqs = [e.json()["sequence_number"] for e in events]
    assert seqs == list(range(len(seqs)))


def test_upstream_in_stream_error_is_forwarded_as_error(stack: LoopbackStack) -> None:
    before = errors(stack, "upstream_protocol")
    with pytest.raises(openai.APIError, match="upstream error"):
        for _ in client(stack, error_after=4).chat.completions.create(
                model="weather", messages=MSG, stream=True):  # type: ignore[arg-type]
            pass
    assert errors(stack, "upstream_protocol") == before + 1


def test_malformed_sse(stack: LoopbackStack, caplog: pytest.LogCaptureFixture) -> None:
    before = errors(stack, "malformed_sse")
    with caplog.at_level(logging.WARNING, logger="checkstream.proxy"), \
            pytest.raises(openai.APIError, match="malformed event stream"):
        for _ in client(stack, malformed_after=3).chat.completions.create(
                model="weather", messages=MSG, stream=True):  # type: ignore[arg-type]
            pass
    assert errors(stack, "malformed_sse") == before + 1
    assert any("malformed_sse" in r.getMessage() for r in caplog.records)
    still_serving(stack)


def test_idle_stall_mid_stream(stack: LoopbackStack) -> None:
    before = errors(stack, "upstream_idle_timeout")
    received = ""
    with pytest.raises(openai.APIError, match="sent nothing for"):
        for ch in client(stack, stall_after=8, stall_s=3).chat.completions.create(
                model="weather", messages=MSG, stream=True):  # type: ignore[arg-type]
            received += "".join(c.delta.content or "" for c in ch.choices)
    assert errors(stack, "upstream_idle_timeout") == before + 1
    still_serving(stack)


def test_stall_before_first_byte_is_a_504(stack: LoopbackStack) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        client(stack, stall_after=0, stall_s=3).chat.completions.create(
            model="weather", messages=MSG, stream=True)  # type: ignore[arg-type]
    assert exc.value.status_code == 504
    assert exc.value.body["code"] == "upstream_idle_timeout"  # type: ignore[index]


def test_5xx_after_retries_keeps_provider_shape(stack: LoopbackStack) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        client(stack, status=503, key="always").chat.completions.create(
            model="weather", messages=MSG)  # type: ignore[arg-type]
    assert exc.value.status_code == 503
    assert "injected HTTP 503" in exc.value.message
    retried = stack.state.metrics.registry.get_sample_value(
        "checkstream_upstream_retries_total", {"reason": "503"})
    assert retried is not None and retried >= 2
    assert errors(stack, "upstream_5xx") >= 1


def test_429_then_success_is_retried_before_the_first_byte(stack: LoopbackStack) -> None:
    texts = ""
    for ch in client(stack, status=429, times=2, key="flaky-1", retry_after=0.01) \
            .chat.completions.create(model="weather", messages=MSG, stream=True):  # type: ignore[arg-type]
        texts += "".join(c.delta.content or "" for c in ch.choices)
    assert texts.startswith("London is mild")


def test_429_exhausted_is_a_429(stack: LoopbackStack) -> None:
    ac = anthropic.Anthropic(base_url=stack.url, api_key="k", max_retries=0, default_headers={
        "x-replay-faults": '{"status": 429, "key": "always-429"}'})
    with pytest.raises(anthropic.RateLimitError) as exc:
        ac.messages.create(model="weather", max_tokens=10, messages=MSG)  # type: ignore[arg-type]
    assert exc.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_backend_unreachable(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    with LoopbackStack(policies=tmp_path, config={"backend": {
            "retry": {"max_attempts": 2, "base_delay": "5ms"}}}) as s:
        rt = s.state.runtimes["default"]
        rt.upstream.backend = rt.upstream.backend.model_copy(
            update={"url": "http://127.0.0.1:9/v1"})  # discard port: nothing listens
        with pytest.raises(openai.APIStatusError) as exc:
            client(s).chat.completions.create(model="weather", messages=MSG)  # type: ignore[arg-type]
        assert exc.value.status_code == 502
        assert exc.value.body["code"] == "upstream_unreachable"  # type: ignore[index]


def test_client_disconnect_cancels_upstream(stack: LoopbackStack,
                                            caplog: pytest.LogCaptureFixture) -> None:
    aborted = stack.replay.stats.streams_aborted
    with caplog.at_level(logging.INFO, logger="checkstream.proxy"):
        with httpx.stream("POST", stack.url + "/v1/chat/completions",
                          json={"model": "weather", "stream": True, "messages": MSG},
                          headers={"x-replay-faults": '{"delay_ms": 250}'}) as r:
            for _ in r.iter_raw():
                break  # read one piece, then hang up
        # The stream still has seconds to run (37 tokens x 250 ms): the abort must come from us.
        deadline = time.monotonic() + 10
        while stack.replay.stats.streams_aborted == aborted and time.monotonic() < deadline:
            time.sleep(0.05)
    assert stack.replay.stats.streams_aborted == aborted + 1
    value = stack.state.metrics.registry.get_sample_value(
        "checkstream_client_disconnects_total", {"endpoint": "chat.completions"})
    assert value is not None and value >= 1
    assert any("client went away" in r.getMessage() for r in caplog.records)
    still_serving(stack)


@pytest.mark.parametrize("path,shape", [("/v1/chat/completions", "openai"),
                                        ("/v1/messages", "anthropic"),
                                        ("/v1/responses", "openai")])
def test_malformed_json(stack: LoopbackStack, path: str, shape: str) -> None:
    r = httpx.post(stack.url + path, content=b'{"model": "x", "messages": [',
                   headers={"content-type": "application/json"})
    assert r.status_code == 400
    body = r.json()
    if shape == "anthropic":
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        assert "could not parse the JSON" in body["error"]["message"]
    else:
        assert body["error"]["type"] == "invalid_request_error"
        assert "line 1 column" in body["error"]["message"]
    r = httpx.post(stack.url + path, json=["not", "an", "object"])
    assert r.status_code == 400


def test_oversize_body(stack: LoopbackStack, caplog: pytest.LogCaptureFixture) -> None:
    before = errors(stack, "body_too_large")
    big = {"model": "weather", "messages": [{"role": "user", "content": "x" * 100_000}]}
    with caplog.at_level(logging.WARNING, logger="checkstream.proxy"), \
            pytest.raises(openai.APIStatusError) as exc:
        client(stack).chat.completions.create(**big)  # type: ignore[arg-type]
    assert exc.value.status_code == 413
    assert "exceeds the limit" in exc.value.message
    assert errors(stack, "body_too_large") == before + 1
    assert any("rejected" in r.getMessage() for r in caplog.records)
    still_serving(stack)


def test_unknown_route_and_invalid_request(stack: LoopbackStack) -> None:
    r = httpx.post(stack.url + "/v1/nothing", json={})
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.post(stack.url + "/v1/chat/completions", json={"model": "x"})
    assert r.status_code == 400 and "'messages' must be a list" in r.json()["error"]["message"]


def test_health_and_metrics(stack: LoopbackStack) -> None:
    assert httpx.get(stack.url + "/health/live").json() == {"status": "ok"}
    ready = httpx.get(stack.url + "/health/ready").json()
    assert ready["status"] == "ready" and ready["policy_versions"]["default"]
    text = httpx.get(stack.url + "/metrics").text
    assert "checkstream_requests_total" in text and "checkstream_errors_total" in text


def test_stream_failing_before_its_first_event_is_retried(stack: LoopbackStack) -> None:
    before = stack.state.metrics.registry.get_sample_value(
        "checkstream_upstream_retries_total", {"reason": "upstream_closed"}) or 0.0
    text = ""
    for ch in client(stack, close_after=0, times=1, key="early-close-1").chat.completions.create(
            model="weather", messages=MSG, stream=True):  # type: ignore[arg-type]
        text += "".join(c.delta.content or "" for c in ch.choices)
    assert text.startswith("London is mild")
    after = stack.state.metrics.registry.get_sample_value(
        "checkstream_upstream_retries_total", {"reason": "upstream_closed"})
    assert after == before + 1


def test_attempts_are_bounded_by_max_attempts_overall(stack: LoopbackStack) -> None:
    # Each round: two 503s (retried inside the upstream client), then a stream that breaks
    # before its first event (retried by the proxy). One budget covers both kinds: 3 in all,
    # never 3 x 3.
    before = stack.replay.stats.requests
    faults = {"key": "budget", "sequence": [{"status": 503}, {"status": 503},
                                            {"close_after": 0}]}
    with pytest.raises(openai.APIStatusError) as exc:
        client(stack, **faults).chat.completions.create(
            model="weather", messages=MSG, stream=True)  # type: ignore[arg-type]
    assert exc.value.status_code == 502
    assert stack.replay.stats.requests - before == 3
    # Streams that always break before their first event: 3 attempts too.
    before = stack.replay.stats.requests
    with pytest.raises(openai.APIStatusError):
        client(stack, key="budget-2", close_after=0).chat.completions.create(
            model="weather", messages=MSG, stream=True)  # type: ignore[arg-type]
    assert stack.replay.stats.requests - before == 3
    # A first attempt that breaks, then a good one: retried, and the client sees nothing of it.
    faults = {"key": "budget-3", "sequence": [{"close_after": 0}, {}]}
    texts = "".join(
        c.delta.content or ""
        for ch in client(stack, **faults).chat.completions.create(
            model="weather", messages=MSG, stream=True)  # type: ignore[arg-type]
        for c in ch.choices)
    assert texts.startswith("London is mild")
    still_serving(stack)


def test_finished_streams_keep_their_upstream_connection(stack: LoopbackStack) -> None:
    """After the upstream's [DONE] the proxy reads the body's end, so the connection goes back
    to the pool: sequential streams reuse it (against a provider, no TLS handshake each)."""
    stats = stack.replay.stats
    c = client(stack)
    before = len(stats.peers)
    for _ in range(5):
        text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="m", messages=MSG, stream=True) if ch.choices)
        assert text
    assert len(stats.peers) - before <= 1


def test_a_finished_request_leaves_no_guard_session_for_the_collector(stack: LoopbackStack) -> None:
    """Per-request guard state is freed when the request ends (no reference cycle), so it never
    piles up for a full collection, a pause every stream in flight would wait for."""
    import gc

    from checkstream.proxy.guarding import GuardSession

    c = client(stack)
    gc.collect()
    gc.disable()
    try:
        for stream in (True, False, True):
            if stream:
                list(c.chat.completions.create(model="m", messages=MSG, stream=True))
            else:
                c.chat.completions.create(model="m", messages=MSG)
        time.sleep(0.2)  # the proxy thread finishes its records after the last byte
        alive = [o for o in gc.get_objects() if isinstance(o, GuardSession)]
    finally:
        gc.enable()
    assert alive == []
