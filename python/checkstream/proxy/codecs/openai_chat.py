"""OpenAI ``/v1/chat/completions``: messages in, ``chat.completion(.chunk)`` out.

Each choice's content is one channel; each tool call's argument string is another (arguments
are model output too and can carry the same data). Logprobs are dropped while guarding: they
spell out the raw tokens, held-back ones included.
"""

from __future__ import annotations

import copy
from typing import Any

from checkstream.engine import ChatMessage
from checkstream.proxy.codecs.base import (
    Codec,
    Json,
    PromptSlot,
    StreamTranslator,
    UpstreamProtocolError,
    set_key,
    text_of_parts,
    write_parts,
)
from checkstream.proxy.codecs.openai_choices import ChoicesTranslator
from checkstream.proxy.guarding import Channel, GuardSession
from checkstream.proxy.sse import encode_event

_TEXT_PARTS = ("text",)
_EXTRA_TEXT = ("refusal", "reasoning_content", "reasoning")


class _Choice:
    def __init__(self, session: GuardSession, index: int) -> None:
        self.index = index
        self.text = session.channel(("choice", index))
        self.tools: dict[int, Channel] = {}
        self.extras: dict[str, Channel] = {}
        self.finished = False


class ChatTranslator(ChoicesTranslator):
    chunk_name = "chat.completion.chunk"

    def __init__(self, session: GuardSession, n: int) -> None:
        super().__init__(session, n)
        self.choices: dict[int, _Choice] = {}

    def _choice(self, index: int) -> _Choice:
        ch = self.choices.get(index)
        if ch is None:
            ch = self.choices[index] = _Choice(self.session, index)
        return ch

    def _chunk(self, index: int, delta: Json, finish: str | None = None) -> bytes:
        return encode_event({**self.envelope, "choices": [
            {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    async def on_choices(self, choices: list[Any]) -> list[bytes]:
        out: list[bytes] = []
        for c in choices:
            out += await self._on_choice(c)
        if all(ch.finished for ch in self.choices.values()) and len(self.choices) >= self.n \
                and all(ch.text.stopped for ch in self.choices.values()):
            # Every choice was stopped: nothing more will be released, end now.
            out += await self._end()
        return out

    async def _on_choice(self, c: Any) -> list[bytes]:
        if not isinstance(c, dict) or not isinstance(c.get("index"), int):
            raise UpstreamProtocolError("a chunk choice without an integer 'index'")
        st = self._choice(c["index"])
        if st.finished:
            return []
        out: list[bytes] = []
        delta = c.get("delta") or {}
        new: Json = {k: v for k, v in delta.items()
                     if k not in ("content", "tool_calls") and k not in _EXTRA_TEXT}
        for field in _EXTRA_TEXT:
            # Model text outside ``content`` (refusals, reasoning) is guarded the same way.
            value = delta.get(field)
            if isinstance(value, str) and value:
                extra = self.session.channel(("choice", st.index, field))
                st.extras[field] = extra
                released = await extra.feed(value)
                if extra.stopped:
                    st.text.stopped = True
                    st.text.stop_message = extra.stop_message
                    return self._stop(st, new)
                if released:
                    new[field] = released
            elif field in delta:
                new[field] = value
        content = delta.get("content")
        if isinstance(content, str) and content:
            released = await st.text.feed(content)
            if released:
                new["content"] = released
        elif "content" in delta:
            new["content"] = content
        if st.text.stopped:
            return self._stop(st, new)
        tool_deltas = []
        for tc in delta.get("tool_calls") or []:
            if not isinstance(tc, dict) or not isinstance(tc.get("index"), int):
                raise UpstreamProtocolError("a tool_calls delta without an integer 'index'")
            ch = st.tools.get(tc["index"])
            if ch is None:
                ch = st.tools[tc["index"]] = self.session.channel(
                    ("tool", st.index, tc["index"]))
            fn = dict(tc.get("function") or {})
            args = fn.pop("arguments", None)
            released = await ch.feed(args) if isinstance(args, str) else ""
            if ch.stopped:
                st.text.stopped = True
                st.text.stop_message = ch.stop_message
                return self._stop(st, new)
            if released or fn or tc.get("id"):
                fn["arguments"] = released
                tool_deltas.append({**tc, "function": fn})
        if tool_deltas:
            new["tool_calls"] = tool_deltas
        finish = c.get("finish_reason")
        if new:
            out.append(self._chunk(st.index, new))
        if finish is not None:
            out += await self._finish_choice(st, finish)
        return out

    async def _finish_choice(self, st: _Choice, finish: str) -> list[bytes]:
        out: list[bytes] = []
        for k, ch in st.tools.items():
            rest = await ch.finish(egress=False)
            if ch.stopped:
                st.text.stopped = True
                st.text.stop_message = ch.stop_message
                return self._stop(st, {})
            if rest:
                out.append(self._chunk(st.index, {"tool_calls": [
                    {"index": k, "function": {"arguments": rest}}]}))
        for field, extra in st.extras.items():
            rest = await extra.finish(egress=False)
            if extra.stopped:
                st.text.stopped = True
                st.text.stop_message = extra.stop_message
                return out + self._stop(st, {})
            if rest:
                out.append(self._chunk(st.index, {field: rest}))
        rest = await st.text.finish(egress=not st.tools)
        if st.text.stopped:
            return out + self._stop(st, {"content": rest} if rest else {})
        if rest:
            out.append(self._chunk(st.index, {"content": rest}))
        st.finished = True
        out.append(self._chunk(st.index, {}, finish))
        return out

    def _stop(self, st: _Choice, pending: Json) -> list[bytes]:
        st.finished = True
        delta = dict(pending)
        delta["content"] = (delta.get("content") or "") + st.text.refusal
        return [self._chunk(st.index, delta), self._chunk(st.index, {}, "content_filter")]

    async def finish_open(self) -> list[bytes]:
        out: list[bytes] = []
        for st in self.choices.values():
            if not st.finished:  # upstream sent [DONE] without a finish_reason
                out += await self._finish_choice(st, "stop")
        return out


class OpenAIChatCodec(Codec):
    endpoint = "chat.completions"
    path = "/chat/completions"
    provider = "openai"

    def validate(self, body: Json) -> str | None:
        if not isinstance(body.get("messages"), list):
            return "'messages' must be a list of messages"
        return None

    def prompt_slots(self, body: Json) -> list[PromptSlot]:
        slots = []
        for m in body.get("messages") or []:
            if not isinstance(m, dict):
                continue
            role = str(m.get("role") or "user")
            text = text_of_parts(m.get("content"), _TEXT_PARTS)
            if text is not None:
                slots.append(PromptSlot(ChatMessage(role, text, m.get("name")),
                                        write_parts(m, "content", _TEXT_PARTS)))
            for tc in m.get("tool_calls") or []:
                fn = tc.get("function") if isinstance(tc, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    slots.append(PromptSlot(ChatMessage(role, fn["arguments"], fn.get("name")),
                                            set_key(fn, "arguments")))
        return slots

    def add_system(self, body: Json, texts: list[str]) -> None:
        body["messages"] = [{"role": "system", "content": t} for t in texts] + list(
            body.get("messages") or [])

    def translator(self, session: GuardSession, body: Json) -> StreamTranslator:
        return ChatTranslator(session, int(body.get("n") or 1))

    async def guard_response(self, session: GuardSession, data: Json) -> Json:
        data = copy.deepcopy(data)
        for c in data.get("choices") or []:
            msg = c.get("message") or {}
            idx = c.get("index", 0)
            stopped: Channel | None = None
            for k, tc in enumerate(msg.get("tool_calls") or []):
                fn = tc.get("function") or {}
                if isinstance(fn.get("arguments"), str):
                    ch = await session.guard_text(("tool", idx, k), fn["arguments"], egress=False)
                    fn["arguments"] = ch.released
                    if ch.stopped:
                        stopped = ch
            for field in _EXTRA_TEXT:
                if isinstance(msg.get(field), str) and msg[field]:
                    extra = await session.guard_text(("choice", idx, field), msg[field])
                    msg[field] = extra.released
                    if extra.stopped:
                        stopped = extra
            content = msg.get("content")
            if isinstance(content, str):
                text_ch = await session.guard_text(("choice", idx), content) \
                    if not stopped else None
                if text_ch is not None:
                    msg["content"] = text_ch.released + text_ch.refusal
                    if text_ch.stopped:
                        stopped = text_ch
            if stopped is not None:
                msg["content"] = (msg.get("content") or "") if content is None else msg["content"]
                if stopped.key[0] == "tool":
                    msg["content"] = stopped.refusal.lstrip()
                msg.pop("tool_calls", None)
                c["finish_reason"] = "content_filter"
            c["logprobs"] = None
        return data
