"""Logprobs through a guarded channel: an entry goes out only after the text it spells.

A logprob entry spells its token, and its ``top_logprobs`` spell tokens the model did not pick,
so entries are released text's shadow and must never run ahead of it. A ``LogprobTrack`` sits on
one ``Channel``: each fed delta's entries are placed on the delta's span of the *original* text
(fed-character offsets, the engine's own coordinates), and after each step the entries whose
span has left the holdback go out, in order, with (or after) the released text that holds them.
Streamed and non-streamed answers run through the same track (``guard_text``), so both give the
same entries.

The rules:

* **Released unchanged, or never.** An entry still held does not go out. An entry whose span
  overlaps a span an enforced ``redact`` rule hit is dropped: the original token is never sent
  and nothing takes its place (a replacement has no logprob). After a stop no entry goes out;
  entries of text released in the stopping step only if no redaction was pending there.
* **Legacy completions end at the first redaction** (``cut_at_first_redaction``): their
  ``text_offset`` indexes the released text, and the engine does not report how long a
  replacement is, so offsets past one cannot be given.
* **top_logprobs keep only the alternatives that spell a prefix of the chosen token** (the token
  itself, as a rule). Any other alternative is text the model did not emit and the policy never
  judged (" fruit" right after a released "forbidden"), so while guarding the lists shrink,
  usually to one item. Checking alternatives against the policy would need the whole policy
  (patterns, PII, classifiers) run per alternative and in context; no such cheap check exists.
* **Placement by bytes**: an entry's ``bytes``, else its token's UTF-8, else the ``\\xNN``
  escapes of a token that ends inside a character. Entries that do not spell their delta's text
  are placed on the rest of the delta and keep no alternatives; in an empty delta, dropped.
* With midstream guarding off (``Channel.stream is None``) entries pass through untouched.
"""

from __future__ import annotations

import codecs
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from checkstream.proxy.guarding import Channel, ChannelKey, GuardSession

Json = dict[str, Any]
_COLUMNS = ("token_logprobs", "top_logprobs", "text_offset")


@dataclass(slots=True)
class _Placed:
    start: int
    end: int
    entry: Json
    chosen: bytes | None  # the bytes it spells; None when it could not be placed exactly


class LogprobTrack:
    """The logprob entries of one channel; ``feed``/``finish`` wrap the channel's own."""

    def __init__(self, channel: Channel, *, cut_at_first_redaction: bool = False) -> None:
        self.channel = channel
        self.cut = cut_at_first_redaction
        self.queue: deque[_Placed] = deque()
        self.out_to = channel.fed_chars - channel.held_chars  # fed chars out of the holdback
        self.emitted: list[Json] = []

    async def feed(self, delta: str, entries: Sequence[Any]) -> tuple[str, list[Json]]:
        """The channel's ``feed``, and the entries that may go out with (or after) its text."""
        ch = self.channel
        if ch.stream is None:
            text = await ch.feed(delta)
            out = [e for e in entries if isinstance(e, dict)]
            self.emitted += out
            return text, out
        if delta and not (ch.stopped or ch.finished):
            self.queue.extend(place(delta, ch.fed_chars, entries))
        text = await ch.feed(delta)
        return text, self._ready(text)

    async def finish(self, *, egress: bool = True) -> tuple[str, list[Json]]:
        ch = self.channel
        if ch.stream is None:
            return await ch.finish(egress=egress), []
        done = ch.finished
        text = await ch.finish(egress=egress)
        return text, [] if done else self._ready(text)

    def _ready(self, released: str) -> list[Json]:
        ch = self.channel
        spans = ch.redacted_spans
        if ch.stopped:
            # The holdback is gone; what this step released is unchanged text only if no
            # redaction was pending in it.
            if not any(end > self.out_to for _, end in spans):
                self.out_to += len(released)
        else:
            self.out_to = ch.fed_chars - ch.held_chars
        cut = min((start for start, _ in spans), default=None) if self.cut else None
        out: list[Json] = []
        while self.queue and self.queue[0].end <= self.out_to:
            p = self.queue.popleft()
            if cut is not None and cut < p.end:
                continue
            if any(p.start < end and start < p.end for start, end in spans):
                continue
            out.append(_alternatives_kept(p.entry, p.chosen))
        if ch.stopped:
            self.queue.clear()
        self.emitted += out
        return out


async def guard_text(session: GuardSession, key: ChannelKey, text: str, entries: Sequence[Any],
                     *, egress: bool = True, cut_at_first_redaction: bool = False,
                     ) -> tuple[Channel, list[Json]]:
    """``GuardSession.guard_text`` with logprobs: a whole answer as one streamed delta."""
    track = LogprobTrack(session.channel(key), cut_at_first_redaction=cut_at_first_redaction)
    _, first = await track.feed(text, entries)
    _, rest = await track.finish(egress=egress)
    return track.channel, first + rest


def place(delta: str, origin: int, entries: Sequence[Any]) -> list[_Placed]:
    """Each entry's span of ``delta`` (offset by ``origin``), in order; see the module doc."""
    data = delta.encode()
    out: list[_Placed] = []
    at = 0  # byte offset in data
    lead = 0  # chars that start before `at`
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            continue
        b = next((s for s in spellings(e) if data.startswith(s, at)), None)
        if b is None:
            start = lead - (0 if _boundary(data, at) else 1)
            if start < len(delta):
                out += [_Placed(origin + start, origin + len(delta), x, None)
                        for x in entries[i:] if isinstance(x, dict)]
            break
        start = lead - (0 if _boundary(data, at) else 1)
        lead += sum(1 for x in data[at:at + len(b)] if x & 0xC0 != 0x80)
        at += len(b)
        out.append(_Placed(origin + start, origin + lead, e, b))
    return out


def _boundary(data: bytes, at: int) -> bool:
    return at >= len(data) or data[at] & 0xC0 != 0x80


def spellings(e: Json) -> list[bytes]:
    """The bytes a logprob entry's token can stand for (its text, or its ``\\xNN`` escapes),
    only those agreeing with its ``bytes`` where it has them."""
    tok = e.get("token")
    if not isinstance(tok, str):
        return []
    out = [tok.encode()]
    if "\\x" in tok:
        with contextlib.suppress(ValueError):
            out.append(codecs.escape_decode(tok.removeprefix("bytes:").encode())[0])
    raw = e.get("bytes")
    if isinstance(raw, list):
        try:
            exact = bytes(raw)
        except (TypeError, ValueError):
            return []
        return [s for s in out if s == exact]
    return out


def _alternatives_kept(entry: Json, chosen: bytes | None) -> Json:
    top = entry.get("top_logprobs")
    if isinstance(top, list):
        kept: Any = [a for a in top if isinstance(a, dict) and _within(a, chosen)]
    elif isinstance(top, dict):  # legacy completions: {token: logprob}
        kept = {t: v for t, v in top.items() if _within({"token": t}, chosen)}
    else:
        return entry
    return {**entry, "top_logprobs": kept}


def _within(alternative: Json, chosen: bytes | None) -> bool:
    return chosen is not None and any(chosen.startswith(s) for s in spellings(alternative))


# ---------------------------------------------------------------- legacy completions' columns
def rows(lp: Any) -> list[Json]:
    """``{tokens: [...], token_logprobs: [...], ...}`` as one entry per token."""
    if not isinstance(lp, dict) or not isinstance(lp.get("tokens"), list):
        return []
    cols: dict[str, list[Any]] = {
        k: v if isinstance(v := lp.get(k), list) else [] for k in _COLUMNS}
    return [{"token": t, **{k: v[i] if i < len(v) else None for k, v in cols.items()}}
            for i, t in enumerate(lp["tokens"])]


def columns(entries: Sequence[Json]) -> Json:
    """The inverse of ``rows`` (a column that is None for every token is None)."""
    out: Json = {"tokens": [e.get("token") for e in entries]}
    for k in _COLUMNS:
        col = [e.get(k) for e in entries]
        out[k] = None if col and all(v is None for v in col) else col
    return out


def part_entry(e: Json) -> Json:
    """A Responses delta entry (no ``bytes``) in the shape of an ``output_text`` part's; a token
    with ``\\xNN`` escapes is taken to stand for those bytes."""
    def with_bytes(x: Json) -> Json:
        if isinstance(x.get("bytes"), list):
            return x
        s = spellings(x)
        return {**x, "bytes": list(s[-1] if s else b"")}

    out = with_bytes(e)
    out["top_logprobs"] = [with_bytes(a) for a in e.get("top_logprobs") or []
                           if isinstance(a, dict)]
    return out
