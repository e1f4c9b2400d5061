"""Anthropic citations: ``cited_text`` is shown to the client with the answer (quoted source
text, e.g. from the application's own documents), so the policies judge it like the answer,
streamed and not. The upstream is a canned one on loopback speaking the Messages API's shapes
for citations (``citations_delta`` events; ``citations`` on text blocks), which the replay
upstream does not record; the client is the official ``anthropic`` SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from quart import Quart, Response, request

from checkstream.proxy.sse import encode_event
from proxy_helpers import STOP_AND_REDACT, proxy_before, write_policy

POLICY = STOP_AND_REDACT.format(name="citations-test")
SECRET = "jane.doe@example.com"
ANSWER = "The contract names the customer contact."


def _citation(cited: str) -> dict[str, Any]:
    return {"type": "char_location", "cited_text": cited, "document_index": 0,
            "document_title": "contract.txt", "start_char_index": 0,
            "end_char_index": len(cited)}


CITED = {"quiet": f"Customer contact: {SECRET}.", "stop": "Plan: the forbidden fruit."}


def _message(model: str) -> dict[str, Any]:
    return {"id": "msg_c1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": ANSWER,
                         "citations": [_citation(CITED[model])]}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 9}}


def _stream(model: str) -> list[bytes]:
    def ev(kind: str, **payload: Any) -> bytes:
        return encode_event({"type": kind, **payload}, event=kind)

    start = {**_message(model), "content": [], "stop_reason": None}
    out = [ev("message_start", message=start),
           ev("content_block_start", index=0,
              content_block={"type": "text", "text": "", "citations": []}),
           ev("content_block_delta", index=0,
              delta={"type": "citations_delta", "citation": _citation(CITED[model])})]
    words = ANSWER.split(" ")
    out += [ev("content_block_delta", index=0,
               delta={"type": "text_delta", "text": w if i == 0 else " " + w})
            for i, w in enumerate(words)]
    out += [ev("content_block_stop", index=0),
            ev("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None},
               usage={"output_tokens": 9}),
            ev("message_stop")]
    return out


def _upstream() -> Quart:
    app = Quart("citations-upstream")

    @app.post("/v1/messages")
    async def messages() -> Response:
        body = await request.get_json()
        model = str(body.get("model"))
        if body.get("stream"):
            return Response(b"".join(_stream(model)), content_type="text/event-stream")
        return Response(json.dumps(_message(model)), content_type="application/json")

    return app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[anthropic.Anthropic]:
    folder: Path = write_policy(tmp_path_factory.mktemp("citations"), POLICY)
    with proxy_before(_upstream(), folder) as url:
        yield anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)


MSG = [{"role": "user", "content": "who is the contact?"}]


def test_cited_text_is_redacted_streamed_and_not(client: anthropic.Anthropic) -> None:
    plain = client.messages.with_raw_response.create(model="quiet", max_tokens=50, messages=MSG)
    assert SECRET not in plain.http_response.text
    block = plain.parse().content[0]
    assert block.type == "text" and block.text == ANSWER
    assert block.citations is not None
    (cited,) = [c.cited_text for c in block.citations]
    assert cited == "Customer contact: [EMAIL]."
    streamed = []
    with client.messages.stream(model="quiet", max_tokens=50, messages=MSG) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "citations_delta":
                streamed.append(event.delta.citation.cited_text)
        final = stream.get_final_message()
    assert streamed == [cited]
    assert final.content[0].type == "text" and final.content[0].text == ANSWER


def test_a_stop_in_cited_text_stops_the_response(client: anthropic.Anthropic) -> None:
    plain = client.messages.with_raw_response.create(model="stop", max_tokens=50, messages=MSG)
    assert "forbidden fruit" not in plain.http_response.text
    message = plain.parse()
    assert message.stop_reason == "refusal"
    block = message.content[0]
    assert block.type == "text" and block.text.endswith("Stopped by policy.")
    assert not block.citations
    with client.messages.stream(model="stop", max_tokens=50, messages=MSG) as stream:
        body = "".join(e.delta.text for e in stream
                       if e.type == "content_block_delta" and e.delta.type == "text_delta")
        final = stream.get_final_message()
    assert final.stop_reason == "refusal"
    assert body.strip() == "Stopped by policy."
    assert not final.content[0].citations  # type: ignore[union-attr]
