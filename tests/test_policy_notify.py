"""notify: a signed webhook POST to a real loopback HTTP server, off the request path."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from checkstream.engine import Guard, RequestContext
from checkstream.policy.loader import load_policy_text
from checkstream.policy.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, Notifier

SECRET = "s3cr3t-for-tests"
CTX = RequestContext("req-n", "acme", "/v1/chat/completions", "m", {})


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(({k: v for k, v in self.headers.items()}, body))
        self.send_response(Hook.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Hook.received = []
    Hook.status = 200
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    httpd.shutdown()


def guard(url: str, notifier: Notifier) -> Guard:
    text = f"""
name: n
version: "1"
rules:
  - name: alert
    regulation: FCA PRIN 2A
    trigger: {{phrases: [bomb]}}
    actions:
      - stop
      - notify: {{webhook: "{url}", secret_env: CHECKSTREAM_TEST_HOOK_SECRET}}
  - name: quiet
    mode: shadow
    trigger: {{phrases: [quiet]}}
    actions:
      - notify: {{webhook: "{url}", secret_env: CHECKSTREAM_TEST_HOOK_SECRET}}
"""
    return Guard(load_policy_text(text), notifier=notifier)


def test_notify_posts_signed_json_without_raw_text(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHECKSTREAM_TEST_HOOK_SECRET", SECRET)
    notifier = Notifier()
    g = guard(server, notifier)
    assert g.check_output("make a bomb, be quiet", CTX).stopped
    notifier.flush()
    assert len(Hook.received) == 1  # the shadow rule is recorded, never acted on
    headers, body = Hook.received[0]
    stamp = headers[TIMESTAMP_HEADER]
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    assert headers[SIGNATURE_HEADER] == "sha256=" + expected.hexdigest()
    payload = json.loads(body)
    assert payload["hit"]["rule"] == "alert" and payload["hit"]["start"] == 7
    assert payload["request_id"] == "req-n" and payload["policy_version"] == g.policy_version
    assert "make a bomb" not in body.decode()
    assert notifier.sent == 1
    notifier.close()


def test_notify_failures_are_counted_not_raised(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier = Notifier()
    g = guard(server, notifier)
    monkeypatch.delenv("CHECKSTREAM_TEST_HOOK_SECRET", raising=False)
    g.check_output("bomb", CTX)  # no secret: not sent, counted
    notifier.flush()
    monkeypatch.setenv("CHECKSTREAM_TEST_HOOK_SECRET", SECRET)
    Hook.status = 500
    g.check_output("bomb", CTX)  # receiver error: counted
    notifier.flush()
    assert (notifier.sent, notifier.failed) == (0, 2)
    assert len(Hook.received) == 1
    notifier.close()
