"""What the proxy tests share: a policy folder on disk, a chat request, a read of /metrics, a
proxy in front of a canned upstream app."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from checkstream.proxy.loopback import LoopbackStack

STOP_AND_REDACT = """
name: {name}
version: "1"
rules:
  - name: banned-phrase
    phases: [midstream]
    trigger:
      phrases: [forbidden fruit]
    actions:
      - stop: {{message: "Stopped by policy."}}
  - name: email
    phases: [midstream]
    trigger:
      pii: [EMAIL]
    actions: [redact]
"""
"""A stop on "forbidden fruit" and e-mail addresses redacted: ``.format(name=...)``."""

BODY = {"model": "weather", "messages": [{"role": "user", "content": "hi"}]}


def write_policy(folder: Path, text: str) -> Path:
    """``folder`` (created if needed) holding one ``policy.yaml`` with ``text``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.yaml").write_text(text)
    return folder


def chat(s: LoopbackStack, **extra: object) -> httpx.Response:
    return httpx.post(s.url + "/v1/chat/completions", json={**BODY, **extra}, timeout=30)


def metric(s: LoopbackStack, name: str, **labels: str) -> float | None:
    """A sample read from the proxy's own /metrics page."""
    text = httpx.get(s.url + "/metrics").text
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if m is None or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


@contextlib.contextmanager
def proxy_before(upstream: Any, policies: Path) -> Iterator[str]:
    """The proxy (its URL) in front of ``upstream``, an ASGI app that answers canned provider
    responses, both on loopback."""
    from checkstream.proxy.app import create_app
    from checkstream.proxy.config import config_from_mapping
    from checkstream.proxy.server import BackgroundServer

    with BackgroundServer(upstream, name="upstream") as up:
        cfg = config_from_mapping({"backend": {"url": up.url + "/v1"},
                                   "policies": {"path": str(policies)}}, env={})
        with BackgroundServer(create_app(cfg), name="proxy") as proxy:
            yield proxy.url
