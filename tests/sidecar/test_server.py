"""vLLM's OpenAI-compatible server (the session's ``server`` fixture, in conftest) with
checkstream enabled by ``--additional-config`` and per-request options in ``vllm_xargs``, over
real HTTP on loopback."""

from __future__ import annotations

from typing import Any

import httpx
from tinymodel import Picks, TinyModel

from conftest import ALLOWED_RECIPIENT, ban_sequences, occurrences


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


def test_vllm_xargs_request_ban_list_over_http(server: str, tiny: TinyModel, picks: Picks) -> None:
    """``checkstream_ban`` in ``vllm_xargs``: none of the phrase's compiled spellings is in the
    completions of the requests that carry it; the same server produces them without it."""
    c, d = picks.own_ids
    spellings = ban_sequences(tiny, [picks.own_phrase])
    bias = {str(c): 5, str(d): 7}
    found: dict[bool, int] = {True: 0, False: 0}
    counted: dict[bool, int] = {True: 0, False: 0}
    for carry in (True, False):
        xargs: dict[str, Any] = {"checkstream": "on"}
        if carry:
            xargs["checkstream_ban"] = [picks.own_phrase]
        for seed in range(4):
            r = complete(
                server,
                str(tiny.path),
                prompt="so kalo mite",
                n=25,
                seed=seed,
                logit_bias=bias,
                ignore_eos=True,
                return_token_ids=True,
                vllm_xargs=xargs,
            )
            assert r.status_code == 200, r.text
            for choice in r.json()["choices"]:
                counted[carry] += 1
                found[carry] += occurrences(choice["token_ids"], spellings)
    assert counted == {True: 100, False: 100}
    assert found[True] == 0
    assert found[False] > 5


def test_bad_request_ban_lists_get_a_400(server: str, tiny: TinyModel) -> None:
    from checkstream.sidecar.requests import MAX_BAN_PHRASE_CHARS, MAX_BAN_PHRASES

    model = str(tiny.path)
    # vllm_xargs carries flat values only: vLLM's own schema turns a nested list into a 400.
    nested = complete(server, model, prompt="so", vllm_xargs={"checkstream_ban": [["a", "b"]]})
    assert nested.status_code == 400, nested.text
    assert "vllm_xargs" in nested.json()["error"]["message"]
    for value, message in [
        (
            [f"p{i}" for i in range(MAX_BAN_PHRASES + 1)],
            f"checkstream_ban has {MAX_BAN_PHRASES + 1} phrases; the limit is {MAX_BAN_PHRASES}",
        ),
        (
            "x" * (MAX_BAN_PHRASE_CHARS + 1),
            f"the limit is {MAX_BAN_PHRASE_CHARS}",
        ),
        (["fine", "  "], "checkstream_ban[1] is empty or whitespace only"),
        (["fine", 3], "checkstream_ban[1] must be a string"),
    ]:
        r = complete(server, model, prompt="so", vllm_xargs={"checkstream_ban": value})
        assert r.status_code == 400, r.text
        assert message in r.json()["error"]["message"]
