"""The usual text event re-emitted in its own envelope (``checkstream._core.TextDeltaSplicer``):
OpenAI chat and legacy completion chunks, Anthropic content block deltas, and (rewritten by
``OutputTextDeltaWriter`` with the proxy's sequence numbers) Responses output text deltas.

The splice must mean exactly what the general path (decode, judge, encode) means: the same
envelope, only the text replaced by the released text. Properties: the splice round-trips
random chat envelopes and texts; any shape beyond the usual one is refused; and a stream of
each API through the guard gives the client the same events whether its text events
take the splice or the general path.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkstream._core import StateError, TextDeltaSplicer
from checkstream.engine import Guard, RequestContext
from checkstream.policy.loader import load_policy_text
from checkstream.proxy.codecs.anthropic_messages import MessagesTranslator
from checkstream.proxy.codecs.base import StreamTranslator
from checkstream.proxy.codecs.openai_chat import ChatTranslator
from checkstream.proxy.codecs.openai_completions import CompletionsTranslator
from checkstream.proxy.codecs.openai_responses import ResponsesTranslator
from checkstream.proxy.config import GuardrailsConfig, MidstreamConfig
from checkstream.proxy.guarding import GuardSession
from checkstream.proxy.replay import Recording, responses_stream
from checkstream.proxy.sse import SSEParser
from proxy_helpers import STOP_AND_REDACT

TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), TEXT,
                    st.floats(allow_nan=False, allow_infinity=False))
ENVELOPES = st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
                            .filter(lambda k: k not in ("choices", "error")),
                            st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                                      st.dictionaries(st.text(max_size=5), SCALARS, max_size=3)),
                            max_size=6)


def usual(envelope: dict[str, Any], content: str, index: int = 0, spaced: bool = False) -> str:
    choice = {"index": index, "delta": {"content": content}, "logprobs": None,
              "finish_reason": None}
    return json.dumps({**envelope, "choices": [choice]}, ensure_ascii=False,
                      separators=(", ", ": ") if spaced else (",", ":"))


def event_json(raw: bytes) -> Any:
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n") and raw.count(b"\n") == 2
    return json.loads(raw[6:-2])


@settings(max_examples=300, deadline=None)
@given(ENVELOPES, TEXT, TEXT, st.integers(0, 2**32 - 1), st.booleans())
def test_the_splice_replaces_only_the_content(envelope: dict[str, Any], content: str,
                                              released: str, index: int, spaced: bool) -> None:
    data = usual(envelope, content, index, spaced)
    s = TextDeltaSplicer("chat")
    assert s.parse(data) == (index, content)
    expected = json.loads(data)
    expected["choices"][0]["delta"]["content"] = released
    assert event_json(s.emit(released)) == expected


EXTRA = st.sampled_from([
    ("choice", "content_filter_results", {}), ("choice", "logprobs", {"content": []}),
    ("choice", "finish_reason", "stop"), ("delta", "role", "assistant"),
    ("delta", "tool_calls", []), ("delta", "refusal", "no"), ("delta", "reasoning_content", "x"),
    ("top", "error", {"message": "x"}),
])


@settings(max_examples=100, deadline=None)
@given(ENVELOPES, TEXT, EXTRA)
def test_any_other_shape_is_refused(envelope: dict[str, Any], content: str,
                                    extra: tuple[str, str, Any]) -> None:
    where, key, value = extra
    obj = json.loads(usual(envelope, content))
    target = {"top": obj, "choice": obj["choices"][0], "delta": obj["choices"][0]["delta"]}
    target[where][key] = value
    s = TextDeltaSplicer("chat")
    assert s.parse(json.dumps(obj)) is None
    with pytest.raises(StateError):
        s.emit("anything")  # nothing recognised: no envelope to write


def test_a_multi_line_event_and_duplicate_keys_are_refused() -> None:
    s = TextDeltaSplicer("chat")
    assert s.parse('{"choices":[{"index":0,\n"delta":{"content":"a"}}]}') is None
    # json.loads keeps the last "content"; a splice of either one would forward the other.
    assert s.parse('{"choices":[{"index":0,"delta":{"content":"a","content":"b"}}]}') is None


APIS = ["chat", "completions", "messages", "responses"]
GUARD = Guard(load_policy_text(STOP_AND_REDACT.format(name="splice")))
# A short holdback, so that most chunks release text of their own while the stream runs.
SETTINGS = GuardrailsConfig(midstream=MidstreamConfig(holdback_size=2))
WORDS = ["the", "caf\u00e9", "\u65e5\u672c", "\U0001F642", "fruit", "forbidden", "ok", "\"q\"",
         "a\\b", "eve.adams@example.com", "tab\there"]


def _upstream_events(api: str, tokens: list[str], vendor_key: bool) -> list[bytes]:
    """One upstream event per token, in ``api``'s wire format; with ``vendor_key`` every text
    event carries one more (unjudged) key, which sends it down the general path (which drops
    that key)."""
    out = []
    if api == "responses":
        for raw in responses_stream(Recording.from_text("m", tokens), {"model": "m"}, "r"):
            (e,) = SSEParser().feed(raw)
            obj = json.loads(e.data)
            if obj["type"] == "response.output_text.delta":
                # OpenAI pads deltas with random "obfuscation"; the proxy drops it either way.
                obj["obfuscation"] = "q7Zp"
                if vendor_key:
                    obj["x_vendor"] = {"note": obj["delta"]}
            out.append(f"event: {e.event}\ndata: {json.dumps(obj)}\n\n".encode())
        return out
    if api == "completions":
        env = {"id": "c", "object": "text_completion", "created": 2**65, "model": "m"}
        for t in tokens:
            choice: dict[str, Any] = {"text": t, "index": 0, "logprobs": None,
                                      "finish_reason": None}
            if vendor_key:
                choice["x_vendor"] = {"note": t}
            out.append(b"data: " + json.dumps({**env, "choices": [choice]}).encode() + b"\n\n")
        end = {**env, "choices": [{"text": "", "index": 0, "logprobs": None,
                                   "finish_reason": "stop"}]}
        return [*out, b"data: " + json.dumps(end).encode() + b"\n\n", b"data: [DONE]\n\n"]
    if api == "chat":
        env = {"id": "c", "object": "chat.completion.chunk", "created": 2**65, "model": "m"}
        for t in tokens:
            obj = json.loads(usual(env, t))
            if vendor_key:
                obj["choices"][0]["x_vendor"] = {"note": t}
            out.append(b"data: " + json.dumps(obj).encode() + b"\n\n")
        end = {**env, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                   "finish_reason": "stop"}]}
        return [*out, b"data: " + json.dumps(end).encode() + b"\n\n", b"data: [DONE]\n\n"]

    def ev(kind: str, **payload: Any) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()

    out.append(ev("message_start", message={"id": "m1", "type": "message", "role": "assistant",
                                            "content": [], "model": "m",
                                            "usage": {"input_tokens": 1, "output_tokens": 0}}))
    out.append(ev("content_block_start", index=0, content_block={"type": "text", "text": ""}))
    for t in tokens:
        extra = {"x_vendor": t} if vendor_key else {}
        out.append(ev("content_block_delta", index=0, delta={"type": "text_delta", "text": t},
                      **extra))
    out.append(ev("content_block_stop", index=0))
    out.append(ev("message_delta", delta={"stop_reason": "end_turn"},
                  usage={"output_tokens": len(tokens)}))
    return [*out, ev("message_stop")]


def _client_events(api: str, tokens: list[str], vendor_key: bool) -> list[Any]:
    """What a guarded stream of ``api`` sends the client: (event name, JSON or raw data)."""

    async def run() -> bytes:
        session = GuardSession(GUARD, RequestContext("r", "default", api, "m", {}), SETTINGS)
        tr: StreamTranslator = ChatTranslator(session, 1) if api == "chat" \
            else CompletionsTranslator(session, 1) if api == "completions" \
            else ResponsesTranslator(session) if api == "responses" \
            else MessagesTranslator(session)
        parser = SSEParser()
        out: list[bytes] = []
        for raw in _upstream_events(api, tokens, vendor_key):
            for e in parser.feed(raw):
                out += await tr.on_event(e)
        assert tr.done
        return b"".join(out)

    events = []
    for e in SSEParser().feed(asyncio.run(run())):
        events.append((e.event, json.loads(e.data) if e.data.startswith("{") else e.data))
    return events


def _released(api: str, events: list[Any]) -> str:
    if api == "responses":
        return "".join(d["delta"] for _, d in events
                       if isinstance(d, dict) and d["type"] == "response.output_text.delta")
    if api == "completions":
        return "".join(d["choices"][0]["text"] for _, d in events
                       if isinstance(d, dict) and d.get("choices"))
    if api == "chat":
        return "".join(d["choices"][0]["delta"].get("content") or ""
                       for _, d in events if isinstance(d, dict) and d.get("choices"))
    return "".join(d["delta"].get("text") or "" for _, d in events
                   if isinstance(d, dict) and d["type"] == "content_block_delta")


@pytest.mark.parametrize("api", APIS)
@settings(max_examples=50, deadline=None)
@given(words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=30), data=st.data())
def test_a_guarded_stream_is_the_same_on_both_paths(api: str, words: list[str],
                                                    data: st.DataObject) -> None:
    text = " ".join(words)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=20))))
    tokens = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True) if b > a]
    spliced = _client_events(api, tokens, vendor_key=False)
    assert spliced == _client_events(api, tokens, vendor_key=True)
    released = _released(api, spliced)
    assert "forbidden fruit" not in released and "eve.adams@example.com" not in released
    if api in ("chat", "completions"):
        assert all(d["created"] == 2**65 for _, d in spliced if isinstance(d, dict))


@pytest.mark.parametrize("api", APIS)
def test_text_leaves_in_events_of_its_own_on_both_paths(api: str) -> None:
    tokens = ["the", " caf\u00e9", " ok", " \"q\"", " ok", " a\\b", " the", " ok", " done."]
    spliced = _client_events(api, tokens, vendor_key=False)
    assert spliced == _client_events(api, tokens, vendor_key=True)
    texts = [e for e in spliced if isinstance(e[1], dict)
             and ("content" in (e[1].get("choices") or [{}])[0].get("delta", {})
                  or (e[1].get("choices") or [{}])[0].get("text")
                  or e[1].get("type") in ("content_block_delta", "response.output_text.delta"))]
    assert len(texts) > 3 and _released(api, spliced) == "".join(tokens)
    if api in ("messages", "responses"):  # the event name line is written
        assert all(name == d["type"] for name, d in texts)
    if api == "responses":  # numbered in order, with no obfuscation padding left
        seqs = [d["sequence_number"] for _, d in spliced if isinstance(d, dict)]
        assert seqs == list(range(len(seqs)))
        assert not any("obfuscation" in d for _, d in texts)


def test_anthropic_thinking_deltas_are_spliced_too() -> None:
    s = TextDeltaSplicer("messages")
    data = json.dumps({"type": "content_block_delta", "index": 3,
                       "delta": {"type": "thinking_delta", "thinking": "hmm"}})
    assert s.parse(data) == (3, "hmm")
    raw = s.emit("ok \u00e9")
    assert raw.startswith(b"event: content_block_delta\ndata: ")
    (ev,) = SSEParser().feed(raw)
    assert json.loads(ev.data)["delta"] == {"type": "thinking_delta", "thinking": "ok \u00e9"}
    with pytest.raises(ValueError, match="unknown shape"):
        TextDeltaSplicer("responses")  # type: ignore[arg-type]


def test_null_extras_of_openai_compatible_servers_keep_the_splice() -> None:
    # vLLM's "stop_reason": null, DeepSeek's "reasoning_content": null: no text, same meaning.
    s = TextDeltaSplicer("chat")
    data = ('{"id":"x","choices":[{"index":0,"delta":{"content":"hi","reasoning_content":null},'
            '"logprobs":null,"finish_reason":null,"stop_reason":null}]}')
    assert s.parse(data) == (0, "hi")
    out = event_json(s.emit("ho"))
    assert out["choices"][0]["delta"] == {"content": "ho", "reasoning_content": None}
    assert s.parse(data.replace('"stop_reason":null', '"stop_reason":"x"')) is None
