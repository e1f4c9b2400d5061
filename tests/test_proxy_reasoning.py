"""Model text outside the answer (reasoning, refusals, summaries, tool inputs) is guarded like
the answer, and a stop there never lets unjudged text through, streamed or not.

The upstream is a canned one on loopback that answers with the providers' own shapes for
reasoning models (chat ``reasoning_content``; Responses ``reasoning`` items with ``summary`` and
``content`` parts and their ``reasoning_summary_*`` events), which the replay upstream does not
record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from quart import Quart, Response, request

from checkstream.proxy.sse import encode_event
from proxy_helpers import STOP_AND_REDACT, proxy_before, write_policy

POLICY = STOP_AND_REDACT.format(name="reasoning-test")
SECRET = "jane.doe@example.com"
REASONING = "Plan: describe the forbidden fruit in detail."
ANSWER = f"Write to {SECRET} for the recipe."

CHAT_JSON: dict[str, Any] = {
    "id": "chatcmpl-r1", "object": "chat.completion", "created": 1700000000, "model": "r1",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
        "role": "assistant", "reasoning_content": REASONING, "content": ANSWER}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 20, "total_tokens": 23},
}  # fmt: skip


def _chat_stream() -> list[bytes]:
    base = {"id": "chatcmpl-r1", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "r1"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return encode_event({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish}]})

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"reasoning_content": w}) for w in REASONING.split(" ")[:1]]
    out += [chunk({"reasoning_content": " " + w}) for w in REASONING.split(" ")[1:]]
    out += [chunk({"content": w}) for w in ANSWER.split(" ")[:1]]
    out += [chunk({"content": " " + w}) for w in ANSWER.split(" ")[1:]]
    return [*out, chunk({}, "stop"), b"data: [DONE]\n\n"]


REASONING_ITEM: dict[str, Any] = {
    "id": "rs_1", "type": "reasoning", "status": "completed",
    "summary": [{"type": "summary_text", "text": REASONING},
                {"type": "summary_text", "text": f"Then mention {SECRET}."}],
    "content": [{"type": "reasoning_text", "text": f"Mail {SECRET} the details."}],
}  # fmt: skip
QUIET_ITEM: dict[str, Any] = {
    "id": "rs_2", "type": "reasoning", "status": "completed",
    "summary": [{"type": "summary_text", "text": f"The user is {SECRET}, say hello."}],
    "content": [],
}  # fmt: skip
CUSTOM_CALL: dict[str, Any] = {
    "id": "ctc_1", "type": "custom_tool_call", "call_id": "call_1", "name": "send_mail",
    "input": f"to: {SECRET}\nbody: hello", "status": "completed",
}  # fmt: skip
MESSAGE_ITEM: dict[str, Any] = {
    "id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
    "content": [{"type": "output_text", "text": ANSWER, "annotations": []}],
}  # fmt: skip
RESPONSE: dict[str, Any] = {
    "id": "resp_1", "object": "response", "created_at": 1700000000, "status": "completed",
    "model": "r1", "output": [REASONING_ITEM, MESSAGE_ITEM], "error": None,
    "incomplete_details": None, "instructions": None, "metadata": {}, "parallel_tool_calls": True,
    "temperature": 1.0, "tool_choice": "auto", "tools": [], "top_p": 1.0,
    "usage": {"input_tokens": 3, "output_tokens": 30, "total_tokens": 33,
              "input_tokens_details": {"cached_tokens": 0},
              "output_tokens_details": {"reasoning_tokens": 10}},
}  # fmt: skip


def _responses_stream(reasoning_item: dict[str, Any]) -> list[bytes]:
    seq = iter(range(1000))

    def ev(kind: str, **payload: Any) -> bytes:
        return encode_event({"type": kind, **payload, "sequence_number": next(seq)}, event=kind)

    created = {**RESPONSE, "status": "in_progress", "output": []}
    out = [ev("response.created", response=created)]
    out.append(ev("response.output_item.added", output_index=0,
                  item={**reasoning_item, "status": "in_progress", "summary": [], "content": []}))
    for si, part in enumerate(reasoning_item["summary"]):
        ids = {"item_id": "rs_1", "output_index": 0, "summary_index": si}
        out.append(ev("response.reasoning_summary_part.added", **ids,
                      part={"type": "summary_text", "text": ""}))
        for w in part["text"].split(" "):
            out.append(ev("response.reasoning_summary_text.delta", **ids, delta=w + " "))
        out.append(ev("response.reasoning_summary_text.done", **ids, text=part["text"]))
        out.append(ev("response.reasoning_summary_part.done", **ids, part=part))
    out.append(ev("response.output_item.done", output_index=0, item=reasoning_item))
    out.append(ev("response.completed", response={**RESPONSE, "output": [reasoning_item]}))
    return out


def _custom_call_stream() -> list[bytes]:
    seq = iter(range(1000))

    def ev(kind: str, **payload: Any) -> bytes:
        return encode_event({"type": kind, **payload, "sequence_number": next(seq)}, event=kind)

    ids = {"item_id": "ctc_1", "output_index": 0}
    out = [ev("response.created", response={**RESPONSE, "status": "in_progress", "output": []}),
           ev("response.output_item.added", output_index=0, item={**CUSTOM_CALL, "input": ""})]
    text = CUSTOM_CALL["input"]
    out += [ev("response.custom_tool_call_input.delta", **ids, delta=text[i : i + 4])
            for i in range(0, len(text), 4)]
    out.append(ev("response.custom_tool_call_input.done", **ids, input=text))
    out.append(ev("response.output_item.done", output_index=0, item=CUSTOM_CALL))
    out.append(ev("response.completed", response={**RESPONSE, "output": [CUSTOM_CALL]}))
    return out


def _upstream() -> Quart:
    app = Quart("reasoning-upstream")

    @app.post("/v1/chat/completions")
    async def chat() -> Response:
        body = await request.get_json()
        if body.get("stream"):
            return Response(b"".join(_chat_stream()), content_type="text/event-stream")
        return Response(json.dumps(CHAT_JSON), content_type="application/json")

    @app.post("/v1/responses")
    async def responses() -> Response:
        body = await request.get_json()
        tools = body.get("model") == "tools"  # a custom tool call whose input needs a redaction
        if body.get("stream"):
            # model "quiet": a summary that only needs a redaction (no stop)
            item = QUIET_ITEM if body.get("model") == "quiet" else REASONING_ITEM
            events = _custom_call_stream() if tools else _responses_stream(item)
            return Response(b"".join(events), content_type="text/event-stream")
        answer = {**RESPONSE, "output": [CUSTOM_CALL]} if tools else RESPONSE
        return Response(json.dumps(answer), content_type="application/json")

    return app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    folder: Path = write_policy(tmp_path_factory.mktemp("reasoning"), POLICY)
    with proxy_before(_upstream(), folder) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)


def test_chat_a_stop_in_reasoning_returns_no_unjudged_answer(client: openai.OpenAI) -> None:
    """The answer comes after the reasoning that stopped: it was never judged, so it must not
    come back (it holds an address the policy would have redacted)."""
    raw = client.chat.completions.with_raw_response.create(
        model="r1", messages=[{"role": "user", "content": "hi"}])
    assert SECRET not in raw.text and "forbidden fruit" not in raw.text
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content == "Stopped by policy."


def test_chat_streamed_stop_in_reasoning_matches_the_plain_answer(client: openai.OpenAI) -> None:
    content, reasoning, finish = [], [], None
    for chunk in client.chat.completions.create(
            model="r1", messages=[{"role": "user", "content": "hi"}], stream=True):
        for c in chunk.choices:
            content.append(c.delta.content or "")
            reasoning.append(getattr(c.delta, "reasoning_content", None) or "")
            finish = c.finish_reason or finish
    streamed = "".join(content)
    assert SECRET not in streamed and "forbidden fruit" not in "".join(reasoning)
    assert finish == "content_filter"
    assert streamed.strip() == "Stopped by policy."


def test_responses_a_stop_in_a_summary_drops_what_was_not_judged(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="r1", input="hi")
    assert SECRET not in raw.text and "forbidden fruit" not in raw.text
    data = json.loads(raw.text)
    assert data["status"] == "incomplete"
    assert data["incomplete_details"] == {"reason": "content_filter"}
    (item,) = data["output"]  # nothing after the stopped item
    assert item["status"] == "incomplete" and item["content"] == []
    (summary,) = item["summary"]
    assert summary["text"].endswith("Stopped by policy.")


def test_responses_streamed_summary_parts_carry_released_text_only(
        client: openai.OpenAI) -> None:
    """``reasoning_summary_part.*`` events carry the part's whole text: it is rebuilt from what
    was released, like content parts, and a stop in a summary ends the response."""
    with client.responses.with_streaming_response.create(model="r1", input="hi",
                                                         stream=True) as resp:
        body = resp.read().decode()
    assert SECRET not in body and "forbidden fruit" not in body
    kinds = [line[len("event: "):] for line in body.splitlines() if line.startswith("event: ")]
    assert kinds[-1] == "response.incomplete"
    assert "response.reasoning_summary_part.added" in kinds


def test_responses_streamed_summary_part_done_is_rebuilt_from_released_text(
        client: openai.OpenAI) -> None:
    """The ``reasoning_summary_part.done`` event repeats the part's text: it must carry the
    redacted text the deltas carried, never the upstream's original."""
    with client.responses.with_streaming_response.create(model="quiet", input="hi",
                                                         stream=True) as resp:
        body = resp.read().decode()
    assert SECRET not in body
    done = [json.loads(line[len("data: "):]) for line in body.splitlines()
            if line.startswith("data: ") and "reasoning_summary_part.done" in line]
    assert len(done) == 1
    assert done[0]["part"]["text"].startswith("The user is [EMAIL]")


def test_custom_tool_call_input_is_guarded_streamed_and_not(client: openai.OpenAI) -> None:
    """A custom tool call's free-form input is model output like function arguments: redacted
    in the deltas, the done event and the final item, and identical streamed and not."""
    plain = client.responses.with_raw_response.create(model="tools", input="hi")
    assert SECRET not in plain.text
    (item,) = json.loads(plain.text)["output"]
    assert item["input"] == "to: [EMAIL]\nbody: hello"
    with client.responses.with_streaming_response.create(model="tools", input="hi",
                                                         stream=True) as resp:
        body = resp.read().decode()
    assert SECRET not in body
    events = [json.loads(line[len("data: "):]) for line in body.splitlines()
              if line.startswith("data: ")]
    deltas = "".join(e["delta"] for e in events
                     if e["type"] == "response.custom_tool_call_input.delta")
    (done,) = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
    (final,) = [e for e in events if e["type"] == "response.completed"]
    assert deltas == done["input"] == final["response"]["output"][0]["input"] == item["input"]
