"""The usual chat chunk re-emitted in its own envelope (``checkstream._core.ChatChunkSplicer``).

The splice must mean exactly what the general path (decode, judge, encode) means: the same
envelope and choice, only the content replaced by the released text. Properties: the splice
round-trips random envelopes and texts; any shape beyond the usual one is refused; and a chat
stream through the guard gives the client the same events whether its chunks take the splice
or the general path.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkstream._core import ChatChunkSplicer, StateError
from checkstream.engine import Guard, RequestContext
from checkstream.policy.loader import load_policy_text
from checkstream.proxy.codecs.openai_chat import ChatTranslator
from checkstream.proxy.config import GuardrailsConfig, MidstreamConfig
from checkstream.proxy.guarding import GuardSession
from checkstream.proxy.sse import SSEParser
from proxy_helpers import STOP_AND_REDACT

TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
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
    s = ChatChunkSplicer()
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
    s = ChatChunkSplicer()
    assert s.parse(json.dumps(obj)) is None
    with pytest.raises(StateError):
        s.emit("anything")  # nothing recognised: no envelope to write


def test_a_multi_line_event_and_duplicate_keys_are_refused() -> None:
    s = ChatChunkSplicer()
    assert s.parse('{"choices":[{"index":0,\n"delta":{"content":"a"}}]}') is None
    # json.loads keeps the last "content"; a splice of either one would forward the other.
    assert s.parse('{"choices":[{"index":0,"delta":{"content":"a","content":"b"}}]}') is None


GUARD = Guard(load_policy_text(STOP_AND_REDACT.format(name="splice")))
# A short holdback, so that most chunks release text of their own while the stream runs.
SETTINGS = GuardrailsConfig(midstream=MidstreamConfig(holdback_size=2))
WORDS = ["the", "caf\u00e9", "\u65e5\u672c", "\U0001F642", "fruit", "forbidden", "ok", "\"q\"",
         "a\\b", "eve.adams@example.com", "tab\there"]


def _client_events(tokens: list[str], vendor_key: bool) -> list[Any]:
    """What a guarded chat stream sends the client for ``tokens`` (one chunk each); with
    ``vendor_key`` every chunk's choice carries one more (unjudged) key, which sends it down
    the general path (which drops that key)."""

    async def run() -> list[bytes]:
        session = GuardSession(GUARD, RequestContext("r", "default", "chat.completions", "m", {}),
                               SETTINGS)
        tr = ChatTranslator(session, 1)
        parser = SSEParser()
        out: list[bytes] = []
        chunks = []
        for t in tokens:
            obj = json.loads(usual({"id": "c", "object": "chat.completion.chunk",
                                    "created": 2**65, "model": "m"}, t))
            if vendor_key:
                obj["choices"][0]["x_vendor"] = {"note": t}
            chunks.append(obj)
        chunks.append({"id": "c", "object": "chat.completion.chunk", "created": 2**65,
                       "model": "m", "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                                  "finish_reason": "stop"}]})
        for obj in chunks:
            for ev in parser.feed(b"data: " + json.dumps(obj).encode() + b"\n\n"):
                out += await tr.on_event(ev)
        for ev in parser.feed(b"data: [DONE]\n\n"):
            out += await tr.on_event(ev)
        return out

    events = []
    for raw in asyncio.run(run()):
        if raw.startswith(b"data: {"):
            events.append(event_json(raw))
        elif raw.startswith(b"data: "):
            events.append(raw.decode())
    return events


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=30), st.data())
def test_a_guarded_stream_is_the_same_on_both_paths(words: list[str], data: st.DataObject) -> None:
    text = " ".join(words)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=20))))
    tokens = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True) if b > a]
    spliced = _client_events(tokens, vendor_key=False)
    general = _client_events(tokens, vendor_key=True)
    assert spliced == general
    released = "".join(e["choices"][0]["delta"].get("content") or "" for e in spliced
                       if isinstance(e, dict))
    assert "forbidden fruit" not in released and "eve.adams@example.com" not in released
    assert all(e["created"] == 2**65 for e in spliced if isinstance(e, dict))


def test_text_leaves_in_chunks_of_its_own_on_both_paths() -> None:
    tokens = ["the", " caf\u00e9", " ok", " \"q\"", " ok", " a\\b", " the", " ok", " done."]
    spliced = _client_events(tokens, vendor_key=False)
    assert spliced == _client_events(tokens, vendor_key=True)
    pieces = [e["choices"][0]["delta"]["content"] for e in spliced
              if isinstance(e, dict) and "content" in e["choices"][0]["delta"]]
    assert len(pieces) > 3 and "".join(pieces) == "".join(tokens)
