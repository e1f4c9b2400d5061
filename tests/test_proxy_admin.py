"""``POST /admin/reload`` over real HTTP: authentication, an atomic swap that streams in flight
do not see, and a broken edit that keeps the old set serving and is reported (answer, metric,
log, ``/health/ready``)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from checkstream.proxy.app import HEADER_POLICY_VERSION
from checkstream.proxy.config import ConfigError, config_from_mapping
from checkstream.proxy.loopback import LoopbackStack
from proxy_helpers import BODY, chat, metric, write_policy

TOKEN = "admin-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}
POLICY_V1 = """
name: admin-test
version: "1"
rules:
  - name: email
    phases: [midstream]
    trigger: {pii: [EMAIL]}
    actions: [redact]
"""
POLICY_V2 = POLICY_V1 + """
  - name: no-umbrellas
    phases: [midstream]
    trigger: {phrases: [umbrella]}
    actions:
      - stop: {message: "No umbrellas."}
"""


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[LoopbackStack]:
    with LoopbackStack(policies=write_policy(tmp_path / "p", POLICY_V1),
                       config={"server": {"admin_token": TOKEN}}) as s:
        yield s


def test_reload_needs_the_admin_token(stack: LoopbackStack) -> None:
    url = stack.url + "/admin/reload"
    missing = httpx.post(url)
    assert missing.status_code == 401 and "bearer" in missing.headers["www-authenticate"].lower()
    assert httpx.post(url, headers={"authorization": "Basic eDp5"}).status_code == 401
    wrong = httpx.post(url, headers={"authorization": "Bearer " + TOKEN[:-1] + "X"})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
    assert metric(stack, "checkstream_errors_total", kind="admin_forbidden") == 1
    assert httpx.post(url, headers=AUTH).status_code == 200


def test_admin_api_is_off_without_a_token(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY_V1)
    with LoopbackStack(policies=tmp_path) as s:
        r = httpx.post(s.url + "/admin/reload", headers=AUTH)
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"


def test_admin_token_from_the_environment() -> None:
    env = {"CHECKSTREAM_ADMIN_TOKEN": TOKEN}
    assert config_from_mapping({}, env=env).server.admin_token == TOKEN
    with pytest.raises(ConfigError, match="CHECKSTREAM_ADMIN_TOKEN"):
        config_from_mapping({}, env={"CHECKSTREAM_ADMIN_TOKEN": "short"})
    assert TOKEN not in repr(config_from_mapping({}, env=env))


def test_reload_swaps_atomically_and_streams_in_flight_keep_their_set(
    stack: LoopbackStack, tmp_path: Path
) -> None:
    v1 = chat(stack).headers[HEADER_POLICY_VERSION]
    seen: dict[str, object] = {}
    first_bytes = threading.Event()

    def slow_stream() -> None:
        faults = json.dumps({"delay_ms": 40})
        with httpx.stream("POST", stack.url + "/v1/chat/completions",
                          json={**BODY, "stream": True}, timeout=30,
                          headers={"x-replay-faults": faults}) as r:
            seen["version"] = r.headers[HEADER_POLICY_VERSION]
            body = b""
            for chunk in r.iter_raw():
                body += chunk
                first_bytes.set()
            seen["body"] = body.decode()

    reader = threading.Thread(target=slow_stream)
    reader.start()
    assert first_bytes.wait(10)
    (tmp_path / "p" / "policy.yaml").write_text(POLICY_V2)
    r = httpx.post(stack.url + "/admin/reload", headers=AUTH)
    reader.join(30)
    assert r.status_code == 200, r.text
    result = r.json()["tenants"]["default"]
    assert result["ok"] and result["changed"] and result["version"] != v1
    # The stream that began on v1 finished on v1: "umbrella" went through, no stop.
    assert seen["version"] == v1
    events = [json.loads(line[6:]) for line in str(seen["body"]).splitlines()
              if line.startswith("data: {")]
    text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    finish = [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]]
    assert "umbrella" in text and finish == ["stop"]
    # New requests get v2 and its stop.
    after = chat(stack)
    assert after.headers[HEADER_POLICY_VERSION] == result["version"]
    assert after.json()["choices"][0]["finish_reason"] == "content_filter"
    assert metric(stack, "checkstream_policy_info", tenant="default",
                  version=result["version"]) == 1
    assert metric(stack, "checkstream_policy_info", tenant="default", version=v1) is None
    assert metric(stack, "checkstream_policy_reloads_total", tenant="default", outcome="ok") == 1


def test_a_broken_edit_keeps_the_old_set_and_is_reported(
    stack: LoopbackStack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v1 = chat(stack).headers[HEADER_POLICY_VERSION]
    (tmp_path / "p" / "policy.yaml").write_text("name: broken\nrules: [\n")
    with caplog.at_level(logging.ERROR):
        r = httpx.post(stack.url + "/admin/reload", headers=AUTH)
    assert r.status_code == 422
    result = r.json()["tenants"]["default"]
    assert not result["ok"] and result["version"] == v1 and "policy.yaml" in result["error"]
    assert any("policy reload failed" in rec.getMessage() for rec in caplog.records)
    assert any("admin reload" in rec.getMessage() for rec in caplog.records)
    assert chat(stack).headers[HEADER_POLICY_VERSION] == v1  # still serving the old set
    ready = httpx.get(stack.url + "/health/ready").json()
    assert ready["status"] == "ready" and "policy.yaml" in ready["policy_errors"][0]
    assert metric(stack, "checkstream_policy_reload_errors_total", tenant="default") == 1
    assert metric(stack, "checkstream_policy_reloads_total", tenant="default",
                  outcome="error") == 1
    # Fixed again: the next reload clears the error.
    (tmp_path / "p" / "policy.yaml").write_text(POLICY_V2)
    assert httpx.post(stack.url + "/admin/reload", headers=AUTH).status_code == 200
    assert httpx.get(stack.url + "/health/ready").json()["policy_errors"] == []
    unknown = httpx.post(stack.url + "/admin/reload?tenant=nope", headers=AUTH)
    assert unknown.status_code == 404
