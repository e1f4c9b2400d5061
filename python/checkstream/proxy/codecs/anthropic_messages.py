"""Anthropic ``/v1/messages``: typed events (``message_start`` ... ``message_stop``).

Each content block is a channel: text and thinking deltas, and a tool_use block's
``partial_json``; each citation's ``cited_text`` (quoted source text the client is shown with
the answer) is judged on its own channel, redacted in place or stopping the response. A stop
appends the refusal to the open text block (or opens a text block after a stopped tool call),
then ``message_delta`` with ``stop_reason: "refusal"`` and ``message_stop``. Errors after the
first byte are ``event: error``, as Anthropic sends them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from checkstream._core import TextDeltaSplicer
from checkstream.engine import ChatMessage
from checkstream.proxy.codecs.base import (
    Codec,
    Json,
    PromptSlot,
    StreamTranslator,
    UpstreamProtocolError,
    as_json_object,
    decision_comment,
    text_of_parts,
    write_parts,
)
from checkstream.proxy.guarding import Channel, GuardSession
from checkstream.proxy.sse import SSEEvent, encode_event

STOP_REASON = "refusal"
_DELTA_FIELD = {"text_delta": "text", "thinking_delta": "thinking",
                "input_json_delta": "partial_json"}


def anthropic_stream_error(message: str, kind: str) -> bytes:
    err_type = {"upstream_timeout": "timeout_error", "overloaded": "overloaded_error"}.get(
        kind, "api_error")
    return encode_event({"type": "error", "error": {"type": err_type, "message": message}},
                        event="error")


class MessagesTranslator(StreamTranslator):
    def __init__(self, session: GuardSession) -> None:
        self.session = session
        self.blocks: dict[int, Json] = {}
        self.open_block: int | None = None
        self.output_tokens = 0
        self.citations: dict[int, int] = {}  # citations seen per block, for channel keys
        self._splicer = TextDeltaSplicer("messages")

    @staticmethod
    def _ev(kind: str, **payload: Any) -> bytes:
        return encode_event({"type": kind, **payload}, event=kind)

    def _ch(self, index: int) -> Channel:
        return self.session.channel(("block", index))

    async def on_event(self, ev: SSEEvent) -> list[bytes]:
        if self.done:
            return []
        usual = self._splicer.parse(ev.data)
        if usual is not None:
            # The usual text delta, re-emitted in its own envelope by Rust: what the general
            # path below does for it, without decoding and encoding the event.
            self.started = True
            return await self._delta(usual[0], usual[1], self._splicer.emit)
        data = as_json_object(ev)
        kind = data.get("type") or ev.event
        if kind == "error":
            err = data.get("error") or {}
            raise UpstreamProtocolError(
                f"upstream error: {err.get('message') if isinstance(err, dict) else err}")
        self.started = True
        if kind == "message_start":
            msg = dict(data.get("message") or {})
            if msg.get("content"):
                raise UpstreamProtocolError("message_start with non-empty content")
            usage = msg.get("usage") or {}
            self.output_tokens = int(usage.get("output_tokens") or 0)
            return [encode_event(data, event="message_start")]
        if kind == "content_block_start":
            idx = int(data.get("index") or 0)
            block = dict(data.get("content_block") or {})
            self.blocks[idx] = block
            self.open_block = idx
            out: list[bytes] = []
            initial = ""
            if block.get("type") in ("text", "thinking"):
                field = block["type"]
                initial = str(block.get(field) or "")
                block[field] = ""
            out.append(self._ev("content_block_start", index=idx, content_block=block))
            if initial:
                out += await self._delta(idx, initial, self._delta_event(
                    idx, "text_delta" if block["type"] == "text" else "thinking_delta"))
            return out
        if kind == "content_block_delta":
            idx = int(data.get("index") or 0)
            delta = data.get("delta") or {}
            dtype = delta.get("type")
            if dtype in _DELTA_FIELD:
                return await self._delta(idx, str(delta.get(_DELTA_FIELD[dtype]) or ""),
                                         self._delta_event(idx, str(dtype)))
            if dtype == "citations_delta":
                return await self._citation(idx, delta)
            if dtype == "signature_delta":
                return [encode_event(data, event="content_block_delta")]
            raise UpstreamProtocolError(f"unguardable content_block_delta type {dtype!r}")
        if kind == "content_block_stop":
            idx = int(data.get("index") or 0)
            return await self._close_block(idx)
        if kind == "ping":
            return [self._ev("ping")]
        if kind == "message_delta":
            usage = data.get("usage") or {}
            if isinstance(usage.get("output_tokens"), int):
                self.output_tokens = usage["output_tokens"]
            out = []
            for idx in list(self.blocks):
                out += await self._close_block(idx)
            if self.done:
                return out
            return [*out, encode_event(data, event="message_delta")]
        if kind == "message_stop":
            self.saw_terminator = True
            self.done = True
            return [decision_comment(self.session), self._ev("message_stop")]
        raise UpstreamProtocolError(f"unknown Anthropic event type {kind!r}")

    def _delta_event(self, idx: int, dtype: str) -> Callable[[str], bytes]:
        return lambda released: self._ev("content_block_delta", index=idx,
                                         delta={"type": dtype, _DELTA_FIELD[dtype]: released})

    async def _delta(self, idx: int, text: str, event: Callable[[str], bytes]) -> list[bytes]:
        """``text`` into block ``idx``'s channel; what it releases goes out as ``event(...)``."""
        ch = self._ch(idx)
        if ch.finished:
            return []
        released = await ch.feed(text)
        if ch.stopped:
            return self._stop(idx, released)
        if not released:
            return []
        return [event(released)]

    async def _citation(self, idx: int, delta: Json) -> list[bytes]:
        """A citation's ``cited_text`` reaches the client as part of the answer, so it is
        judged like the answer: redacted in place, and a stop in it stops the response (with
        the refusal closing the block it belongs to)."""
        n = self.citations.get(idx, 0)
        self.citations[idx] = n + 1
        citation, stopper = await guard_citation(self.session, idx, n, delta.get("citation"))
        if stopper is not None:
            ch = self._ch(idx)
            ch.stopped, ch.stop_message = True, stopper.stop_message
            return self._stop(idx, "")
        return [self._ev("content_block_delta", index=idx,
                         delta={**delta, "citation": citation})]

    async def _close_block(self, idx: int) -> list[bytes]:
        block = self.blocks.pop(idx, None)
        if block is None:
            return []
        ch = self._ch(idx)
        rest = await ch.finish(egress=block.get("type") == "text")
        if ch.stopped:
            return self._stop(idx, rest, block)
        out = []
        if rest:
            dtype = {"text": "text_delta", "thinking": "thinking_delta"}.get(
                str(block.get("type")), "input_json_delta")
            out.append(self._ev("content_block_delta", index=idx,
                                delta={"type": dtype, _DELTA_FIELD[dtype]: rest}))
        self.open_block = None
        return [*out, self._ev("content_block_stop", index=idx)]

    def _stop(self, idx: int, pending: str, block: Json | None = None) -> list[bytes]:
        block = block or self.blocks.get(idx) or {"type": "text"}
        ch = self._ch(idx)
        out: list[bytes] = []
        if block.get("type") == "text":
            out.append(self._ev("content_block_delta", index=idx, delta={
                "type": "text_delta", "text": pending + ch.refusal}))
            out.append(self._ev("content_block_stop", index=idx))
        else:
            # Thinking or tool_use cannot carry the refusal: close it, add a text block.
            if pending and block.get("type") == "thinking":
                out.append(self._ev("content_block_delta", index=idx,
                                    delta={"type": "thinking_delta", "thinking": pending}))
            out.append(self._ev("content_block_stop", index=idx))
            out.append(self._ev("content_block_start", index=idx + 1,
                                content_block={"type": "text", "text": ""}))
            out.append(self._ev("content_block_delta", index=idx + 1, delta={
                "type": "text_delta", "text": ch.refusal.lstrip()}))
            out.append(self._ev("content_block_stop", index=idx + 1))
        self.blocks.clear()
        out.append(self._ev("message_delta",
                            delta={"stop_reason": STOP_REASON, "stop_sequence": None},
                            usage={"output_tokens": self.output_tokens}))
        out.append(decision_comment(self.session))
        out.append(self._ev("message_stop"))
        self.done = True
        return out

    def error_event(self, message: str, kind: str) -> bytes:
        return anthropic_stream_error(message, kind)


class AnthropicMessagesCodec(Codec):
    endpoint = "messages"
    path = "/messages"
    provider = "anthropic"

    def validate(self, body: Json) -> str | None:
        if not isinstance(body.get("messages"), list):
            return "messages: Field required (a list of messages)"
        return None

    def prompt_slots(self, body: Json) -> list[PromptSlot]:
        slots: list[PromptSlot] = []
        system = body.get("system")
        text = text_of_parts(system)
        if text is not None:
            slots.append(PromptSlot(ChatMessage("system", text), write_parts(body, "system",
                                                                               ("text",))))
        for m in body.get("messages") or []:
            if not isinstance(m, dict):
                continue
            role = str(m.get("role") or "user")
            content = m.get("content")
            text = text_of_parts(content)
            if text is not None:
                slots.append(PromptSlot(ChatMessage(role, text),
                                        write_parts(m, "content", ("text",))))
            for block in content if isinstance(content, list) else []:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "tool_result":
                    inner = text_of_parts(block.get("content"))
                    if inner is not None:
                        slots.append(PromptSlot(ChatMessage("tool", inner),
                                                write_parts(block, "content", ("text",))))
                elif block.get("type") == "tool_use":
                    slots.append(PromptSlot(
                        ChatMessage("assistant", json.dumps(block.get("input"),
                                                            ensure_ascii=False)),
                        _json_setter(block, "input")))
        return slots

    def add_system(self, body: Json, texts: list[str]) -> None:
        system = body.get("system")
        if isinstance(system, list):
            body["system"] = [*system, *({"type": "text", "text": t} for t in texts)]
        else:
            parts = [system] if isinstance(system, str) and system else []
            body["system"] = "\n\n".join(parts + texts)

    def translator(self, session: GuardSession, body: Json) -> StreamTranslator:
        return MessagesTranslator(session)

    async def guard_response(self, session: GuardSession, data: Json) -> Json:
        data = copy.deepcopy(data)
        content = []
        for idx, block in enumerate(data.get("content") or []):
            kind = block.get("type")
            ch: Channel | None = None
            if kind in ("text", "thinking") and isinstance(block.get(kind), str):
                ch = await session.guard_text(("block", idx), block[kind], egress=kind == "text")
                block[kind] = ch.released + (ch.refusal if kind == "text" else "")
                if not ch.stopped and isinstance(block.get("citations"), list):
                    kept = []
                    for n, raw in enumerate(block["citations"]):
                        citation, stopper = await guard_citation(session, idx, n, raw)
                        if stopper is not None:
                            # As streamed: the block ends with the refusal after its text.
                            ch.stopped, ch.stop_message = True, stopper.stop_message
                            block[kind] = ch.released + ch.refusal
                            break
                        kept.append(citation)
                    block["citations"] = kept
            elif kind == "tool_use":
                ch = await session.guard_text(
                    ("block", idx), json.dumps(block.get("input"), ensure_ascii=False),
                    egress=False)
                if not ch.stopped:
                    try:
                        block["input"] = json.loads(ch.released)
                    except json.JSONDecodeError:
                        block["input"] = {}
            content.append(block)
            if ch is not None and ch.stopped:
                if kind != "text":
                    content.append({"type": "text", "text": ch.refusal.lstrip()})
                data["stop_reason"] = STOP_REASON
                data["stop_sequence"] = None
                break
        data["content"] = content
        return data


async def guard_citation(session: GuardSession, block: int, n: int,
                         citation: Any) -> tuple[Any, Channel | None]:
    """The citation with its ``cited_text`` as the policies release it, or the channel that
    stopped on it."""
    if not isinstance(citation, dict) or not isinstance(citation.get("cited_text"), str):
        return citation, None
    ch = await session.guard_text(("citation", block, n), citation["cited_text"], egress=False)
    if ch.stopped:
        return None, ch
    return {**citation, "cited_text": ch.released}, None


def _json_setter(holder: dict[str, Any], key: str) -> Any:
    def write(new: str) -> None:
        try:
            holder[key] = json.loads(new)
        except json.JSONDecodeError:
            holder[key] = {"redacted": new}
    return write
