"""The event stream the two choice-based OpenAI APIs share (``/v1/chat/completions`` and the
legacy ``/v1/completions``): JSON chunks that carry a ``choices`` list, an optional usage chunk
with no choices, ``data: [DONE]`` at the end, and errors as ``{"error": {...}}`` objects.

Only what a choice holds differs (a delta with content and tool calls, or a ``text``), so the
translators below fill in :meth:`ChoicesTranslator.on_choices` and
:meth:`ChoicesTranslator.finish_open`.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from checkstream._core import TextDeltaSplicer
from checkstream.proxy.codecs.base import (
    Json,
    StreamTranslator,
    UpstreamProtocolError,
    as_json_object,
    decision_comment,
)
from checkstream.proxy.guarding import GuardSession
from checkstream.proxy.sse import SSEEvent, encode_event

DONE = b"data: [DONE]\n\n"


def openai_stream_error(message: str, kind: str) -> bytes:
    return encode_event(
        {"error": {"message": message, "type": "server_error", "param": None, "code": kind}}
    )


def upstream_error_message(data: Json) -> str:
    err = data.get("error")
    if isinstance(err, dict):
        return f"upstream error: {err.get('message') or err.get('type') or 'unknown'}"
    return f"upstream error: {err!r}"[:300]


class ChoicesTranslator(StreamTranslator):
    chunk_name: ClassVar[str]
    """What the API calls one chunk, for protocol errors."""

    def __init__(self, session: GuardSession, n: int, splicer: TextDeltaSplicer | None) -> None:
        self.session = session
        self.n = max(1, n)
        # The usual chunk (one choice, one piece of text) is recognised and re-emitted in Rust,
        # in the upstream's own envelope; None: every chunk takes the general path (logprobs).
        self.splicer = splicer
        # The last chunk's fields but ``choices`` (id, model, ...), for the chunks we emit;
        # after a chunk that was re-emitted in its own envelope, only its JSON text, decoded
        # if another chunk needs the envelope.
        self._envelope: Json = {}
        self._envelope_data: str | None = None

    @property
    def envelope(self) -> Json:
        if self._envelope_data is not None:
            data = json.loads(self._envelope_data)
            self._envelope = {k: v for k, v in data.items() if k != "choices"}
            self._envelope_data = None
        return self._envelope

    async def on_event(self, ev: SSEEvent) -> list[bytes]:
        if self.done:
            return []
        splicer = self.splicer
        if splicer is not None:
            usual = splicer.parse(ev.data)
            if usual is not None:
                self.started = True
                self._envelope_data = ev.data
                return await self.on_text(splicer, *usual)
        if ev.data.strip() == "[DONE]":
            self.saw_terminator = True
            return await self._end()
        data = as_json_object(ev)
        if "error" in data:
            raise UpstreamProtocolError(upstream_error_message(data))
        choices = data.get("choices")
        if not isinstance(choices, list):
            raise UpstreamProtocolError(f"{self.chunk_name} without a 'choices' list")
        self.started = True
        self._envelope = {k: v for k, v in data.items() if k != "choices"}
        self._envelope_data = None
        if not choices:  # the usage chunk (stream_options.include_usage)
            return [encode_event(data)]
        return await self.on_choices(choices)

    async def on_choices(self, choices: list[Any]) -> list[bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def on_text(self, splicer: TextDeltaSplicer, index: int,
                      text: str) -> list[bytes]:  # pragma: no cover - abstract
        """The usual chunk (``splicer`` holds it): what ``on_choices`` gives for it, with the
        released text written by ``splicer.emit``."""
        raise NotImplementedError

    async def finish_open(self) -> list[bytes]:  # pragma: no cover - abstract
        """Finish the choices the upstream left open ([DONE] without a finish_reason)."""
        raise NotImplementedError

    async def _end(self) -> list[bytes]:
        out = await self.finish_open()
        self.done = True
        return [*out, decision_comment(self.session), DONE]

    def error_event(self, message: str, kind: str) -> bytes:
        return openai_stream_error(message, kind)
