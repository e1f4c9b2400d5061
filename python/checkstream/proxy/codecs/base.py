"""What every provider codec provides, and the pieces they share.

A codec knows one API's wire format and nothing about policy: it finds the texts of a request
(``prompt_slots``) so that ingress can check and rewrite them, turns upstream SSE events into
channel feeds and re-emits released text as well-formed events of the same API
(``StreamTranslator``), guards non-streamed answers through the same channels, and shapes errors
(HTTP JSON before the first byte, in-stream events after it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from checkstream.engine import ChatMessage
from checkstream.proxy.guarding import GuardSession
from checkstream.proxy.sse import SSEEvent, encode_comment

Json = dict[str, Any]


class UpstreamProtocolError(ValueError):
    """The upstream's events do not follow the API's wire format."""


@dataclass
class PromptSlot:
    """A text in the request, and how to write a rewritten (e.g. redacted) version back."""

    message: ChatMessage
    write: Callable[[str], None]


def text_of_parts(content: Any, kinds: tuple[str, ...] = ("text",)) -> str | None:
    """Plain text of a content value that is a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") in kinds and isinstance(p.get("text"), str)
        ]
        return "".join(texts) if texts else None
    return None


def set_key(holder: MutableMapping[str, Any], key: str) -> Callable[[str], None]:
    """A writer for ``holder[key]`` that holds a plain string."""

    def write(new: str) -> None:
        holder[key] = new

    return write


def write_parts(holder: MutableMapping[str, Any], key: str, kinds: tuple[str, ...]) -> Callable[
    [str], None
]:
    """A writer for ``holder[key]``: a string is replaced; typed parts collapse into the first
    text part (the checked text is their concatenation, so it is written back whole)."""

    def write(new: str) -> None:
        content = holder.get(key)
        if isinstance(content, list):
            first = True
            kept = []
            for p in content:
                if isinstance(p, dict) and p.get("type") in kinds:
                    if first:
                        kept.append({**p, "text": new})
                        first = False
                    continue
                kept.append(p)
            holder[key] = kept
        else:
            holder[key] = new

    return write


def decision_comment(session: GuardSession) -> bytes:
    """The final decision as an SSE comment: every SDK ignores comments, curl users see it."""
    return encode_comment("checkstream-decision " + json.dumps(session.summary(), sort_keys=True))


class StreamTranslator:
    """Turns one upstream event stream into the client's event stream."""

    done: bool = False
    """True once the client's terminator has been produced (normal end or stop)."""
    saw_terminator: bool = False
    """True once the upstream sent its own terminator ([DONE], message_stop, ...)."""
    started: bool = False
    """True once the upstream sent its first event (the response has a shape to complete)."""

    async def on_event(self, ev: SSEEvent) -> list[bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def on_upstream_end(self) -> list[bytes]:
        """The upstream ended after its terminator; anything still owed to the client."""
        return []

    def error_event(self, message: str, kind: str) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError


class Codec:
    """Base for the four APIs; subclasses fill in the provider specifics."""

    endpoint: ClassVar[str]
    path: ClassVar[str]
    provider: ClassVar[Literal["openai", "anthropic"]]

    def prompt_slots(self, body: Json) -> list[PromptSlot]:  # pragma: no cover - abstract
        raise NotImplementedError

    def add_system(self, body: Json, texts: list[str]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def validate(self, body: Json) -> str | None:
        """A client error message for a request this proxy cannot guard, else None."""
        return None

    def translator(self, session: GuardSession, body: Json) -> StreamTranslator:
        raise NotImplementedError  # pragma: no cover - abstract

    async def guard_response(self, session: GuardSession, data: Json) -> Json:
        raise NotImplementedError  # pragma: no cover - abstract

    # -------------------------------------------------------------- errors
    def error_body(self, status: int, message: str, kind: str | None = None) -> Json:
        if self.provider == "anthropic":
            return {"type": "error", "error": {"type": anthropic_error_type(status, kind),
                                               "message": message}}
        return {"error": {"message": message, "type": openai_error_type(status, kind),
                          "param": None, "code": kind}}


def openai_error_type(status: int, kind: str | None) -> str:
    if status == 429:
        return "rate_limit_exceeded" if kind != "insufficient_quota" else "insufficient_quota"
    if status in (401, 403):
        return "authentication_error" if status == 401 else "permission_error"
    if status == 404:
        return "not_found_error"
    if 400 <= status < 500:
        return "invalid_request_error"
    return "server_error"


def anthropic_error_type(status: int, kind: str | None) -> str:
    return {
        400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
        404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
        529: "overloaded_error", 504: "timeout_error",
    }.get(status, "invalid_request_error" if 400 <= status < 500 else "api_error")


def as_json_object(ev: SSEEvent) -> Json:
    data = ev.json()
    if not isinstance(data, dict):
        raise UpstreamProtocolError(f"event data is not a JSON object: {ev.data[:80]!r}")
    return data
