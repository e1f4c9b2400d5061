"""Incremental Server-Sent Events parsing and encoding.

Upstream bytes arrive in arbitrary TCP-sized pieces: an event, a line, even a UTF-8 code point
can be cut anywhere. ``SSEParser`` reassembles complete events before anything looks at them,
so nothing is ever judged (or forwarded) half-parsed. The rules follow the WHATWG
``text/event-stream`` grammar: lines end with CRLF, LF or CR; a blank line dispatches; lines
starting with ``:`` are comments (keep-alive pings); ``field: value`` strips one leading space.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

_NEWLINE = re.compile(r"\r\n|\r|\n")
# For what orjson refuses (integers beyond 64 bits, lone surrogates, non-string keys): escaped
# ASCII keeps the event valid UTF-8 whatever the upstream put in a string.
_FALLBACK_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))

MAX_EVENT_BYTES = 8 * 1024 * 1024
"""A single event larger than this is treated as a broken upstream, not buffered forever."""


class SSEError(ValueError):
    """The upstream sent bytes that are not a valid event stream."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The event's data as JSON; ``SSEError`` if it is not."""
        try:
            return json.loads(self.data)
        except json.JSONDecodeError as exc:
            raise SSEError(
                f"event data is not JSON ({exc.msg} at {exc.pos}): {self.data[:80]!r}"
            ) from None


class SSEParser:
    """Feed bytes, get whole events. Comments and empty dispatches are dropped."""

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._line = ""
        self._pending_cr = False
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._size = 0
        self._max = max_event_bytes
        self._first = True

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        try:
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise SSEError(f"upstream stream is not valid UTF-8: {exc.reason}") from exc
        return self._feed_text(text)

    def finish(self) -> list[SSEEvent]:
        """End of stream: a final line without terminator is processed, an unterminated event
        is discarded (the spec says so; a truncated event must not be acted on)."""
        try:
            text = self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise SSEError(f"upstream stream ends inside a UTF-8 sequence: {exc.reason}") from exc
        events = self._feed_text(text)
        self._line = ""
        self._data = []
        self._event = None
        return events

    @property
    def has_partial(self) -> bool:
        """True while part of an event has been received but not dispatched."""
        return bool(self._line or self._data or self._event is not None)

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if self._first and text:
            self._first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._pending_cr:
            # The previous piece ended with CR; a LF starting this one belongs to it (CRLF).
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]
        if not text:
            return []
        if (
            not self._line
            and not self._data
            and self._event is None
            and text.endswith("\n\n")
            and "\r" not in text
        ):
            return self._whole_events(text)
        buf = self._line + text
        # Splitting in C (str.split / re.split) rather than a per-character loop: this runs for
        # every upstream read of every stream.
        lines = buf.split("\n") if "\r" not in buf else _NEWLINE.split(buf)
        self._line = lines.pop()
        if buf.endswith("\r"):
            self._pending_cr = True
        if len(self._line) > self._max:
            raise SSEError(f"an SSE line exceeds {self._max} characters")
        return self._feed_lines(lines)

    def _whole_events(self, text: str) -> list[SSEEvent]:
        """The common case, one upstream read = whole events (LF line ends, nothing pending):
        each ``data: ...`` block becomes an event without the line-by-line walk; any other
        block (several lines, comments, other fields, an oversized line) takes that walk."""
        events: list[SSEEvent] = []
        for block in text[:-2].split("\n\n"):
            if block.startswith("data: ") and "\n" not in block and len(block) - 6 <= self._max:
                events.append(SSEEvent(block[6:], None, self._id, self._retry))
                self._retry = None
            else:
                events += self._feed_lines([*block.split("\n"), ""])
        return events

    def _feed_lines(self, lines: list[str]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for line in lines:
            ev = self._process_line(line)
            if ev is not None:
                events.append(ev)
        return events

    def _process_line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data and self._event is None:
                return None
            ev = SSEEvent(
                data="\n".join(self._data), event=self._event, id=self._id, retry=self._retry
            )
            self._data = []
            self._event = None
            self._retry = None
            self._size = 0
            # An event with a type but no data is still dispatched: Anthropic never sends one,
            # but dropping it silently would hide a broken upstream.
            return ev
        if line.startswith(":"):
            return None
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        self._size += len(value)
        if self._size > self._max:
            raise SSEError(f"an SSE event exceeds {self._max} characters")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry" and value.isdigit():
            self._retry = int(value)
        # Unknown fields are ignored, as the spec requires.
        return None


def encode_event(data: str | Any, event: str | None = None) -> bytes:
    """One SSE event; ``data`` that is not a string is serialised as compact JSON.

    Every emitted chunk passes through here, so JSON goes through orjson (about a tenth of the
    standard encoder's time on a chat chunk); its output is the same compact UTF-8 JSON.
    """
    head = f"event: {event}\n".encode() if event else b""
    if isinstance(data, str):
        body = "".join(f"data: {line}\n" for line in data.split("\n"))
        return head + body.encode() + b"\n"
    try:
        payload = orjson.dumps(data)
    except TypeError:  # orjson.JSONEncodeError
        payload = _FALLBACK_ENCODER.encode(data).encode()
    # Compact JSON holds no raw newline (they are escaped inside strings): one data line.
    return head + b"data: " + payload + b"\n\n"


def encode_comment(text: str) -> bytes:
    """An SSE comment (ignored by every SDK): one ``:`` line per line of text."""
    return "".join(f": {line}\n" for line in text.split("\n")).encode() + b"\n"
