"""What the proxy tests share: a policy folder on disk, a chat request, a read of /metrics."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from checkstream.proxy.loopback import LoopbackStack

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
