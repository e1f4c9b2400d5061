"""vLLM's OpenAI-compatible server (the session's ``server`` fixture, in conftest) with
checkstream enabled by ``--additional-config`` and per-request options in ``vllm_xargs``, over
real HTTP on loopback."""

from __future__ import annotations

from typing import Any

import httpx
from tinymodel import Picks, TinyModel

from conftest import ALLOWED_RECIPIENT


def complete(base: str, model: str, **body: Any) -> httpx.Response:
    payload = {"model": model, "max_tokens": 32, "temperature": 1.0, **body}
    return httpx.post(f"{base}/v1/completions", json=payload, timeout=120)


def test_vllm_xargs_opt_in_over_http_blocks_the_phrase(
    server: str, tiny: TinyModel, picks: Picks
) -> None:
    a, b = picks.ban_ids
    bias = {str(a): 5, str(b): 7}
    texts: dict[str, list[str]] = {"on": [], "off": []}
    for switch in ("on", "off"):
        for seed in range(4):
            r = complete(
                server,
                str(tiny.path),
                prompt="so kalo mite",
                n=25,
                seed=seed,
                logit_bias=bias,
                ignore_eos=True,
                vllm_xargs={"checkstream": switch},
            )
            assert r.status_code == 200, r.text
            texts[switch].extend(c["text"] for c in r.json()["choices"])
    phrase = picks.ban_phrase.lower()
    assert len(texts["on"]) == 100
    assert not any(phrase in t.lower() for t in texts["on"])
    assert sum(phrase in t.lower() for t in texts["off"]) > 3


def test_invalid_vllm_xargs_get_a_400_with_our_message(server: str, tiny: TinyModel) -> None:
    r = complete(server, str(tiny.path), prompt="so", vllm_xargs={"checkstream_safe_top_p": 2})
    assert r.status_code == 400
    assert "checkstream_safe_top_p must be" in r.json()["error"]["message"]


def test_tool_call_rewritten_over_http(server: str, tiny: TinyModel) -> None:
    r = complete(
        server,
        str(tiny.path),
        prompt='so {"tool": "send_email", "to": "',
        n=8,
        max_tokens=40,
        vllm_xargs={"checkstream": "on"},
    )
    assert r.status_code == 200, r.text
    texts = [c["text"] for c in r.json()["choices"]]
    assert all(t.startswith(ALLOWED_RECIPIENT + '"') for t in texts), texts[:2]
    assert any('"_checkstream_modified": true' in t for t in texts)
