"""OpenAI legacy ``/v1/completions``: a prompt in, ``text_completion`` objects out.

Logprobs (``logprobs: k``) go out only with released text, by the rules in ``codecs.logprobs``;
a choice's entries end at its first redaction, since ``text_offset`` must index the text the
client gets.
"""

from __future__ import annotations

import copy
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
)
from checkstream.proxy.codecs.openai_choices import ChoicesTranslator
from checkstream.proxy.guarding import Channel, GuardSession
from checkstream.proxy.sse import encode_event


class CompletionsTranslator(ChoicesTranslator):
    chunk_name = "text_completion chunk"

    def __init__(self, session: GuardSession, n: int, logprobs: bool = False) -> None:
        super().__init__(session, n, None if logprobs else TextDeltaSplicer("completions"))
        self.channels: dict[int, Channel] = {}
        self.tracks: dict[int, lp.LogprobTrack] = {}
        self.logprobs = logprobs

    def _chunk(self, index: int, text: str, finish: str | None = None,
               entries: list[Json] | None = None) -> bytes:
        logprobs = lp.columns(entries or []) if self.logprobs and (text or entries) else None
        return encode_event({**self.envelope, "choices": [
            {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}]})

    def _track(self, index: int, ch: Channel) -> lp.LogprobTrack:
        t = self.tracks.get(index)
        if t is None:
            t = self.tracks[index] = lp.LogprobTrack(ch, cut_at_first_redaction=True)
        return t

    def _ch(self, index: int) -> Channel:
        ch = self.channels.get(index)
        if ch is None:
            ch = self.channels[index] = self.session.channel(("choice", index))
        return ch

    async def on_text(self, splicer: TextDeltaSplicer, index: int, text: str) -> list[bytes]:
        ch = self._ch(index)
        if ch.finished:
            return []
        released = await ch.feed(text)
        if ch.stopped:
            return self._stop(index, ch, released) + await self._end_if_all_stopped()
        return [splicer.emit(released)] if released else []

    async def _end_if_all_stopped(self) -> list[bytes]:
        if len(self.channels) >= self.n and all(ch.stopped for ch in self.channels.values()):
            return await self._end()
        return []

    async def on_choices(self, choices: list[Any]) -> list[bytes]:
        out: list[bytes] = []
        for c in choices:
            if not isinstance(c, dict) or not isinstance(c.get("index"), int):
                raise UpstreamProtocolError("a completion choice without an integer 'index'")
            ch = self._ch(c["index"])
            if ch.finished:
                continue
            text = c.get("text")
            text = text if isinstance(text, str) else ""
            entries: list[Json] = []
            if self.logprobs:
                released, entries = await self._track(c["index"], ch).feed(
                    text, lp.rows(c.get("logprobs")))
            else:
                released = await ch.feed(text)
            if ch.stopped:
                out += self._stop(c["index"], ch, released, entries)
                continue
            if released:
                out.append(self._chunk(c["index"], released, entries=entries))
            if c.get("finish_reason") is not None:
                out += await self._finish(c["index"], ch, c["finish_reason"])
        return out + await self._end_if_all_stopped()

    async def _finish(self, index: int, ch: Channel, finish: str) -> list[bytes]:
        entries: list[Json] = []
        if self.logprobs:
            rest, entries = await self._track(index, ch).finish()
        else:
            rest = await ch.finish()
        if ch.stopped:
            return self._stop(index, ch, rest, entries)
        out = [self._chunk(index, rest, entries=entries)] if rest else []
        return [*out, self._chunk(index, "", finish)]

    def _stop(self, index: int, ch: Channel, pending: str,
              entries: list[Json] | None = None) -> list[bytes]:
        return [self._chunk(index, pending + ch.refusal, entries=entries),
                self._chunk(index, "", "content_filter")]

    async def finish_open(self) -> list[bytes]:
        out: list[bytes] = []
        for index, ch in self.channels.items():
            if not ch.finished:
                out += await self._finish(index, ch, "stop")
        return out


class OpenAICompletionsCodec(Codec):
    endpoint = "completions"
    path = "/completions"
    provider = "openai"

    def validate(self, body: Json) -> str | None:
        p = body.get("prompt")
        if isinstance(p, str) or (isinstance(p, list) and all(isinstance(x, str) for x in p)):
            return None
        return "'prompt' must be a string or a list of strings (token arrays cannot be checked)"

    def prompt_slots(self, body: Json) -> list[PromptSlot]:
        p = body.get("prompt")
        if isinstance(p, str):
            return [PromptSlot(ChatMessage("user", p), _set_prompt(body, None))]
        if isinstance(p, list):
            return [PromptSlot(ChatMessage("user", x), _set_prompt(body, i))
                    for i, x in enumerate(p) if isinstance(x, str)]
        return []

    def add_system(self, body: Json, texts: list[str]) -> None:
        prefix = "\n\n".join(texts) + "\n\n"
        p = body.get("prompt")
        body["prompt"] = [prefix + x for x in p] if isinstance(p, list) else prefix + str(p)

    def translator(self, session: GuardSession, body: Json) -> StreamTranslator:
        n = int(body.get("n") or 1)
        p = body.get("prompt")
        if isinstance(p, list):
            n *= max(1, len(p))
        return CompletionsTranslator(session, n, body.get("logprobs") is not None)

    async def guard_response(self, session: GuardSession, data: Json) -> Json:
        data = copy.deepcopy(data)
        for c in data.get("choices") or []:
            given = c.get("logprobs")
            c["logprobs"] = None
            if isinstance(c.get("text"), str):
                key = ("choice", c.get("index", 0))
                if isinstance(given, dict):
                    ch, kept = await lp.guard_text(session, key, c["text"], lp.rows(given),
                                                   cut_at_first_redaction=True)
                    c["logprobs"] = lp.columns(kept)
                else:
                    ch = await session.guard_text(key, c["text"])
                c["text"] = ch.released + ch.refusal
                if ch.stopped:
                    c["finish_reason"] = "content_filter"
        return data


def _set_prompt(body: Json, index: int | None) -> Any:
    def write(new: str) -> None:
        if index is None:
            body["prompt"] = new
        else:
            body["prompt"][index] = new
    return write
