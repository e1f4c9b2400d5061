"""OpenAI ``/v1/chat/completions``: messages in, ``chat.completion(.chunk)`` out.

Each choice's content is one channel; each tool call's argument string is another (arguments
are model output too and can carry the same data). Logprobs (``logprobs: true``) of content and
refusals go out only with released text, by the rules in ``codecs.logprobs``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from checkstream._core import TextDeltaSplicer
from checkstream.engine import ChatMessage
from checkstream.proxy.codecs import logprobs as lp
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
        self.tracks: dict[str, lp.LogprobTrack] = {}  # "content" / "refusal"
        self.finished = False

    def track(self, field: str, channel: Channel) -> lp.LogprobTrack:
        t = self.tracks.get(field)
        if t is None:
            t = self.tracks[field] = lp.LogprobTrack(channel)
        return t


class ChatTranslator(ChoicesTranslator):
    chunk_name = "chat.completion.chunk"

    def __init__(self, session: GuardSession, n: int, logprobs: bool = False) -> None:
        super().__init__(session, n, None if logprobs else TextDeltaSplicer("chat"))
        self.choices: dict[int, _Choice] = {}
        self.logprobs = logprobs

    async def on_text(self, splicer: TextDeltaSplicer, index: int, text: str) -> list[bytes]:
        st = self._choice(index)
        if st.finished:
            return []
        out = await self._content(st, text, splicer.emit)
        return await self._after_choices(out) if st.text.stopped else out

    async def _content(self, st: _Choice, text: str, emit: Callable[[str], bytes]) -> list[bytes]:
        """A chunk that holds only answer text: fed to the choice's channel; what it releases
        goes out as ``emit(released)``, a stop as the refusal and the finish."""
        released = await st.text.feed(text)
        if st.text.stopped:
            return self._stop(st, {"content": released} if released else {}, {})
        return [emit(released)] if released else []

    def _choice(self, index: int) -> _Choice:
        ch = self.choices.get(index)
        if ch is None:
            ch = self.choices[index] = _Choice(self.session, index)
        return ch

    def _chunk(self, index: int, delta: Json, finish: str | None = None,
               entries: dict[str, list[Json]] | None = None) -> bytes:
        return encode_event({**self.envelope, "choices": [
            {"index": index, "delta": delta, "logprobs": self._logprobs(delta, entries or {}),
             "finish_reason": finish}]})

    def _logprobs(self, delta: Json, entries: dict[str, list[Json]]) -> Json | None:
        """A text chunk's logprobs when the client asked for them (a list per text field)."""
        if not self.logprobs or not any(delta.get(f) or entries.get(f)
                                        for f in ("content", "refusal")):
            return None
        return {f: entries.get(f, []) if delta.get(f) or entries.get(f) else None
                for f in ("content", "refusal")}

    async def _feed(self, st: _Choice, field: str, channel: Channel, text: str, upstream: Any,
                    entries: dict[str, list[Json]]) -> str:
        if not self.logprobs:
            return await channel.feed(text)
        given = upstream.get(field) if isinstance(upstream, dict) else None
        released, out = await st.track(field, channel).feed(text, given or [])
        if out:
            entries[field] = out
        return released

    async def _finish(self, st: _Choice, field: str, channel: Channel, *, egress: bool,
                      entries: dict[str, list[Json]]) -> str:
        if not self.logprobs:
            return await channel.finish(egress=egress)
        released, out = await st.track(field, channel).finish(egress=egress)
        if out:
            entries[field] = out
        return released

    async def on_choices(self, choices: list[Any]) -> list[bytes]:
        out: list[bytes] = []
        for c in choices:
            out += await self._on_choice(c)
        return await self._after_choices(out)

    async def _after_choices(self, out: list[bytes]) -> list[bytes]:
        if not self.choices or not any(ch.finished for ch in self.choices.values()):
            return out  # the usual chunk: nothing ended
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
        delta = c.get("delta") or {}
        content = delta.get("content")
        if (len(delta) == 1 and type(content) is str and content and not self.logprobs
                and c.get("finish_reason") is None):
            # The usual chunk, one piece of answer text, in a shape the splice leaves to this
            # path (e.g. with Azure's content_filter_results): the general path below, minus
            # the fields it does not have.
            return await self._content(
                st, content, lambda released: self._chunk(st.index, {"content": released}))
        out: list[bytes] = []
        upstream_lp = c.get("logprobs")
        entries: dict[str, list[Json]] = {}
        new: Json = {k: v for k, v in delta.items()
                     if k not in ("content", "tool_calls") and k not in _EXTRA_TEXT}
        for field in _EXTRA_TEXT:
            # Model text outside ``content`` (refusals, reasoning) is guarded the same way.
            value = delta.get(field)
            if isinstance(value, str) and value:
                extra = self.session.channel(("choice", st.index, field))
                st.extras[field] = extra
                released = await (self._feed(st, field, extra, value, upstream_lp, entries)
                                  if field == "refusal" else extra.feed(value))
                if extra.stopped:
                    st.text.stopped = True
                    st.text.stop_message = extra.stop_message
                    return self._stop(st, new, entries)
                if released:
                    new[field] = released
            elif field in delta:
                new[field] = value
        if isinstance(content, str) and content:
            released = await self._feed(st, "content", st.text, content, upstream_lp, entries)
            if released:
                new["content"] = released
        elif "content" in delta:
            new["content"] = content
        if st.text.stopped:
            return self._stop(st, new, entries)
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
                return self._stop(st, new, entries)
            if released or fn or tc.get("id"):
                fn["arguments"] = released
                tool_deltas.append({**tc, "function": fn})
        if tool_deltas:
            new["tool_calls"] = tool_deltas
        finish = c.get("finish_reason")
        if new:
            out.append(self._chunk(st.index, new, entries=entries))
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
            entries: dict[str, list[Json]] = {}
            rest = await (self._finish(st, field, extra, egress=False, entries=entries)
                          if field == "refusal" else extra.finish(egress=False))
            if extra.stopped:
                st.text.stopped = True
                st.text.stop_message = extra.stop_message
                return out + self._stop(st, {field: rest} if rest else {}, entries)
            if rest:
                out.append(self._chunk(st.index, {field: rest}, entries=entries))
        entries = {}
        rest = await self._finish(st, "content", st.text, egress=not st.tools, entries=entries)
        if st.text.stopped:
            return out + self._stop(st, {"content": rest} if rest else {}, entries)
        if rest:
            out.append(self._chunk(st.index, {"content": rest}, entries=entries))
        st.finished = True
        out.append(self._chunk(st.index, {}, finish))
        return out

    def _stop(self, st: _Choice, pending: Json,
              entries: dict[str, list[Json]] | None = None) -> list[bytes]:
        """What was released with the stop (and its entries), the refusal, the finish."""
        st.finished = True
        delta = dict(pending)
        delta["content"] = (delta.get("content") or "") + st.text.refusal
        return [self._chunk(st.index, delta, entries=entries),
                self._chunk(st.index, {}, "content_filter")]

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
        return ChatTranslator(session, int(body.get("n") or 1), bool(body.get("logprobs")))

    async def guard_response(self, session: GuardSession, data: Json) -> Json:
        data = copy.deepcopy(data)
        for c in data.get("choices") or []:
            msg = c.get("message") or {}
            idx = c.get("index", 0)
            stopped: Channel | None = None
            given = c.get("logprobs") if isinstance(c.get("logprobs"), dict) else None
            # The same tracks as the stream's: entries only for text released unchanged.
            kept: Json = {f: None if given is None or given.get(f) is None else []
                          for f in ("content", "refusal")}
            for k, tc in enumerate(msg.get("tool_calls") or []):
                fn = tc.get("function") or {}
                if isinstance(fn.get("arguments"), str):
                    ch = await session.guard_text(("tool", idx, k), fn["arguments"], egress=False)
                    fn["arguments"] = ch.released
                    if ch.stopped:
                        stopped = ch
            for field in _EXTRA_TEXT:
                if isinstance(msg.get(field), str) and msg[field]:
                    if given is not None and field == "refusal":
                        extra, kept[field] = await lp.guard_text(
                            session, ("choice", idx, field), msg[field], given.get(field) or [])
                    else:
                        extra = await session.guard_text(("choice", idx, field), msg[field])
                    msg[field] = extra.released
                    if extra.stopped:
                        stopped = extra
            content = msg.get("content")
            if isinstance(content, str):
                text_ch: Channel | None = None
                if stopped is None and given is not None:
                    text_ch, kept["content"] = await lp.guard_text(
                        session, ("choice", idx), content, given.get("content") or [])
                elif stopped is None:
                    text_ch = await session.guard_text(("choice", idx), content)
                if text_ch is not None:
                    msg["content"] = text_ch.released + text_ch.refusal
                    if text_ch.stopped:
                        stopped = text_ch
            if stopped is not None:
                msg["content"] = (msg.get("content") or "") if content is None else msg["content"]
                if stopped.key != ("choice", idx):
                    # A tool call or a refusal / reasoning field stopped: the content was never
                    # judged (as in the stream, where it comes after them), so only the
                    # refusal is returned.
                    msg["content"] = stopped.refusal.lstrip()
                msg.pop("tool_calls", None)
                c["finish_reason"] = "content_filter"
            c["logprobs"] = kept if given is not None else None
        return data
