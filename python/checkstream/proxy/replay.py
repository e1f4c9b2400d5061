"""The built-in replay upstream: recorded completions served in the providers' wire formats.

This is **a replay, not a model**: every answer is a recording shipped in
``checkstream/proxy/replay_data/*.json`` (or added with ``add_recording``), chosen by the
``x-replay-recording`` header, by the request's model name, or by the last user message
matching a recording's prompt; otherwise the benign ``weather`` recording. Responses carry
``x-checkstream-replay: 1`` and ids prefixed ``replay``.

It speaks OpenAI chat completions, legacy completions and Responses, and Anthropic messages,
streamed (byte-for-byte SSE framing as the providers send it, ``[DONE]`` and pings included)
and not. It is also the proxy's test fixture: the ``x-replay-faults`` header (JSON) or
``ReplayUpstream.default_faults`` turn on TCP splits, pings, delays, errors, stalls, abrupt
closes and 5xx/429 answers (see ``Faults``).

Asked for logprobs (chat ``logprobs: true`` + ``top_logprobs``, completions ``logprobs: k``,
Responses ``include: ["message.output_text.logprobs"]`` + ``top_logprobs``), it sends them in
each API's shape with fake, deterministic values (see ``token_logprobs``): a recorded token is
cut into words, and a word with a four-byte character is cut inside it, as byte-level BPE does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from quart import Quart, Response, request

from checkstream.proxy.sse import encode_event

REPLAY_HEADER = "x-checkstream-replay"
DEFAULT_RECORDING = "weather"
_CREATED = 1_764_201_600  # fixed, so that replays are byte-identical run to run


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments_tokens: tuple[str, ...]

    @property
    def arguments(self) -> str:
        return "".join(self.arguments_tokens)


@dataclass(frozen=True)
class RecordedChoice:
    tokens: tuple[str, ...]
    finish_reason: str = "stop"
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.tokens)


@dataclass(frozen=True)
class Recording:
    name: str
    choices: tuple[RecordedChoice, ...]
    prompt: str = ""
    model: str = "gpt-4o-mini"
    description: str = ""
    expect: str = "pass"
    prompt_tokens: int = 12

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Recording:
        try:
            choices = tuple(
                RecordedChoice(
                    tokens=tuple(c["tokens"]),
                    finish_reason=c.get("finish_reason", "stop"),
                    tool_calls=tuple(
                        ToolCall(t["id"], t["name"], tuple(t["arguments_tokens"]))
                        for t in c.get("tool_calls", ())
                    ),
                )
                for c in data["choices"]
            )
            return cls(
                name=data["name"],
                choices=choices,
                prompt=data.get("prompt", ""),
                model=data.get("model", "gpt-4o-mini"),
                description=data.get("description", ""),
                expect=data.get("expect", "pass"),
                prompt_tokens=int(data.get("usage", {}).get("prompt_tokens", 12)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed replay recording {data.get('name')!r}: {exc}") from exc

    @classmethod
    def from_text(cls, name: str, chunks: Sequence[str] | Sequence[Sequence[str]]) -> Recording:
        """A recording from text chunks (one list per choice, or one list for one choice)."""
        if chunks and all(isinstance(c, str) for c in chunks):
            per_choice: list[Sequence[str]] = [list(chunks)]  # type: ignore[arg-type]
        else:
            per_choice = [list(c) for c in chunks]
        return cls(
            name=name, choices=tuple(RecordedChoice(tokens=tuple(c)) for c in per_choice)
        )


def load_recordings(directory: Path | None = None) -> dict[str, Recording]:
    """The shipped recordings (or every ``*.json`` in ``directory``), by name."""
    out: dict[str, Recording] = {}
    if directory is None:
        root = resources.files("checkstream.proxy") / "replay_data"
        files: Iterable[Any] = sorted(
            (p for p in root.iterdir() if p.name.endswith(".json")), key=lambda p: p.name
        )
    else:
        files = sorted(directory.glob("*.json"))
    for f in files:
        rec = Recording.from_json(json.loads(f.read_text(encoding="utf-8")))
        out[rec.name] = rec
    return out


@dataclass(frozen=True)
class Faults:
    """Per-request misbehaviour; every field is optional. Counts are in SSE events."""

    status: int | None = None
    """Answer with this HTTP status (provider error JSON) instead of the completion."""
    times: int | None = None
    """Only the first N requests with the same ``key`` get the faults; later ones are clean."""
    key: str = ""
    retry_after: float | None = None
    split: str = "event"
    """``event`` (one write per event), ``random`` (random TCP splits), ``bytes`` (1 byte)."""
    seed: int = 0
    ping_every: int = 0
    delay_ms: float = 0.0
    first_delay_ms: float = 0.0
    close_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 30.0
    error_after: int | None = None
    malformed_after: int | None = None
    sequence: tuple[Mapping[str, Any], ...] = ()
    """Per-request faults in turn: the Nth request with the same ``key`` (N from 0) gets
    ``sequence[N % len]`` over these fields, e.g. ``[{"status": 503}, {"close_after": 0}]``."""

    @classmethod
    def from_header(cls, raw: str | None, base: Faults) -> Faults:
        if not raw:
            return base
        data = json.loads(raw)
        cls._check(data)
        steps = data.get("sequence") or ()
        for step in steps:
            cls._check(step)
            if "sequence" in step:
                raise ValueError("replay fault 'sequence' cannot nest")
        return replace(base, **{**data, "sequence": tuple(steps)})

    @classmethod
    def _check(cls, data: Any) -> None:
        if not isinstance(data, dict):
            raise ValueError("replay faults must be a JSON object")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown replay fault(s): {sorted(unknown)}")


@dataclass
class ReplayStats:
    requests: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_aborted: int = 0
    """Streams that ended because the client went away (the proxy cancelled upstream)."""
    by_endpoint: Counter[str] = field(default_factory=Counter)
    peers: set[tuple[str, int]] = field(default_factory=set)
    """Client (host, port) of every request: how many connections the callers opened."""


def _usage_openai(rec: Recording, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": rec.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": rec.prompt_tokens + completion_tokens,
    }


def _n_choices(rec: Recording, n: int) -> list[RecordedChoice]:
    return [rec.choices[i % len(rec.choices)] for i in range(max(1, n))]


def _interleave(choices: Sequence[RecordedChoice]) -> list[tuple[int, str]]:
    """(choice index, token) in round-robin order, as OpenAI interleaves ``n > 1`` choices."""
    out: list[tuple[int, str]] = []
    longest = max((len(c.tokens) for c in choices), default=0)
    for t in range(longest):
        for i, c in enumerate(choices):
            if t < len(c.tokens):
                out.append((i, c.tokens[t]))
    return out


# ---------------------------------------------------------------- logprobs (fake)
@dataclass(frozen=True)
class TokenLogprob:
    """One logprob token: its bytes, value, alternatives (the token first), and char offset."""

    piece: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...]
    offset: int


def _pieces(text: str) -> list[bytes]:
    out: list[bytes] = []
    for word in re.findall(r"\s*\S+|\s+", text):
        data = word.encode()
        wide = next((i for i, ch in enumerate(word) if len(ch.encode()) == 4), None)
        if wide is None:
            out.append(data)
        else:  # cut inside the character: two tokens that are not text on their own
            cut = len(word[:wide].encode()) + 2
            out += [data[:cut], data[cut:]]
    return out


def _fake_logprob(piece: bytes, rank: int) -> float:
    return -round(rank + int.from_bytes(hashlib.sha256(piece).digest()[:2], "big") / 65536, 6)


def token_logprobs(tokens: Sequence[str], top: int) -> list[list[TokenLogprob]]:
    """Per recorded token, its logprob tokens. The alternatives are the neighbouring tokens of
    the answer (next, previous, ...), so they can spell text held back or redacted nearby."""
    per_chunk = [_pieces(t) for t in tokens]
    flat = [p for ps in per_chunk for p in ps]
    out: list[list[TokenLogprob]] = []
    i = 0
    starts = 0  # chars that start before the current piece
    for ps in per_chunk:
        row = []
        for p in ps:
            alts = [p]
            for d in range(1, len(flat)):
                for j in (i + d, i - d):
                    if 0 <= j < len(flat) and flat[j] not in alts:
                        alts.append(flat[j])
            alts = alts[:top]
            inside = bool(p) and p[0] & 0xC0 == 0x80  # starts inside a character
            row.append(TokenLogprob(p, _fake_logprob(p, 0), tuple(
                (a, _fake_logprob(a, r)) for r, a in enumerate(alts)), starts - inside))
            starts += sum(1 for b in p if b & 0xC0 != 0x80)
            i += 1
        out.append(row)
    return out


def _token(piece: bytes, prefix: str = "") -> str:
    try:
        return piece.decode()
    except UnicodeDecodeError:
        return prefix + piece.decode(errors="backslashreplace")


def chat_entry(t: TokenLogprob) -> dict[str, Any]:
    return {"token": _token(t.piece), "logprob": t.logprob, "bytes": list(t.piece),
            "top_logprobs": [{"token": _token(a), "logprob": v, "bytes": list(a)}
                             for a, v in t.top]}


def responses_delta_entry(t: TokenLogprob) -> dict[str, Any]:
    return {"token": _token(t.piece), "logprob": t.logprob,
            "top_logprobs": [{"token": _token(a), "logprob": v} for a, v in t.top]}


def responses_part_entry(t: TokenLogprob) -> dict[str, Any]:
    return {"token": _token(t.piece), "bytes": list(t.piece), "logprob": t.logprob,
            "top_logprobs": [{"token": _token(a), "bytes": list(a), "logprob": v}
                             for a, v in t.top]}


def completions_logprobs(ts: Sequence[TokenLogprob], base: int) -> dict[str, Any]:
    return {"tokens": [_token(t.piece, "bytes:") for t in ts],
            "token_logprobs": [t.logprob for t in ts],
            "top_logprobs": [{_token(a, "bytes:"): v for a, v in t.top} for t in ts],
            "text_offset": [base + t.offset for t in ts]}


def _top(body: Mapping[str, Any]) -> int:
    return int(body.get("top_logprobs") or 0)


# ---------------------------------------------------------------- OpenAI chat completions
def chat_stream(rec: Recording, body: Mapping[str, Any], rid: str) -> list[bytes]:
    choices = _n_choices(rec, int(body.get("n") or 1))
    model = str(body.get("model") or rec.model)
    usage_on = bool((body.get("stream_options") or {}).get("include_usage"))
    lps = [token_logprobs(c.tokens, _top(body)) for c in choices] if body.get("logprobs") \
        else None
    base: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": model,
        "system_fingerprint": "fp_replay",
    }

    def chunk(idx: int, delta: dict[str, Any], finish: str | None = None,
              logprobs: dict[str, Any] | None = None) -> bytes:
        c = {
            **base,
            "choices": [
                {"index": idx, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            ],
        }
        if usage_on:
            c["usage"] = None
        return encode_event(c)

    out = [
        chunk(i, {"role": "assistant", "content": "", "refusal": None})
        for i in range(len(choices))
    ]
    seen = [0] * len(choices)
    for i, tok in _interleave(choices):
        logprobs = None
        if lps is not None:
            logprobs = {"content": [chat_entry(t) for t in lps[i][seen[i]]], "refusal": None}
        seen[i] += 1
        out.append(chunk(i, {"content": tok}, logprobs=logprobs))
    for i, c in enumerate(choices):
        for k, tc in enumerate(c.tool_calls):
            head = {"index": k, "id": tc.id, "type": "function"}
            out.append(
                chunk(i, {"tool_calls": [{**head, "function": {"name": tc.name, "arguments": ""}}]})
            )
            out += [
                chunk(i, {"tool_calls": [{"index": k, "function": {"arguments": a}}]})
                for a in tc.arguments_tokens
            ]
    out += [chunk(i, {}, c.finish_reason) for i, c in enumerate(choices)]
    if usage_on:
        total = sum(len(c.tokens) for c in choices)
        out.append(encode_event({**base, "choices": [], "usage": _usage_openai(rec, total)}))
    out.append(b"data: [DONE]\n\n")
    return out


def chat_json(rec: Recording, body: Mapping[str, Any], rid: str) -> dict[str, Any]:
    choices = _n_choices(rec, int(body.get("n") or 1))
    items = []
    for i, c in enumerate(choices):
        logprobs = None
        if body.get("logprobs"):
            logprobs = {"content": [chat_entry(t) for row in token_logprobs(c.tokens, _top(body))
                                    for t in row], "refusal": None}
        msg: dict[str, Any] = {"role": "assistant", "content": c.text or None, "refusal": None}
        if c.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": t.id,
                    "type": "function",
                    "function": {"name": t.name, "arguments": t.arguments},
                }
                for t in c.tool_calls
            ]
        items.append(
            {"index": i, "message": msg, "logprobs": logprobs, "finish_reason": c.finish_reason}
        )
    return {
        "id": rid,
        "object": "chat.completion",
        "created": _CREATED,
        "model": str(body.get("model") or rec.model),
        "system_fingerprint": "fp_replay",
        "choices": items,
        "usage": _usage_openai(rec, sum(len(c.tokens) for c in choices)),
    }


# ---------------------------------------------------------------- OpenAI legacy completions
def completions_stream(rec: Recording, body: Mapping[str, Any], rid: str) -> list[bytes]:
    choices = _n_choices(rec, int(body.get("n") or 1))
    base = {"id": rid, "object": "text_completion", "created": _CREATED,
            "model": str(body.get("model") or rec.model)}
    lps = _completions_lps(choices, body)

    def chunk(i: int, text: str, finish: str | None = None,
              logprobs: dict[str, Any] | None = None) -> bytes:
        return encode_event(
            {**base, "choices": [
                {"text": text, "index": i, "logprobs": logprobs, "finish_reason": finish}]}
        )

    out = []
    seen = [0] * len(choices)
    for i, tok in _interleave(choices):
        logprobs = None
        if lps is not None:
            logprobs = completions_logprobs(lps[i][seen[i]], _prompt_chars(body))
        seen[i] += 1
        out.append(chunk(i, tok, logprobs=logprobs))
    out += [chunk(i, "", c.finish_reason) for i, c in enumerate(choices)]
    out.append(b"data: [DONE]\n\n")
    return out


def _completions_lps(choices: Sequence[RecordedChoice],
                     body: Mapping[str, Any]) -> list[list[list[TokenLogprob]]] | None:
    if body.get("logprobs") is None:
        return None
    return [token_logprobs(c.tokens, int(body["logprobs"])) for c in choices]


def _prompt_chars(body: Mapping[str, Any]) -> int:
    """Legacy ``text_offset`` counts from the start of the prompt."""
    p = body.get("prompt")
    return len(p) if isinstance(p, str) else 0


def completions_json(rec: Recording, body: Mapping[str, Any], rid: str) -> dict[str, Any]:
    choices = _n_choices(rec, int(body.get("n") or 1))
    lps = _completions_lps(choices, body)
    return {
        "id": rid,
        "object": "text_completion",
        "created": _CREATED,
        "model": str(body.get("model") or rec.model),
        "choices": [
            {"text": c.text, "index": i,
             "logprobs": None if lps is None else completions_logprobs(
                 [t for row in lps[i] for t in row], _prompt_chars(body)),
             "finish_reason": c.finish_reason}
            for i, c in enumerate(choices)
        ],
        "usage": _usage_openai(rec, sum(len(c.tokens) for c in choices)),
    }


# ---------------------------------------------------------------- OpenAI Responses
def _response_obj(rec: Recording, body: Mapping[str, Any], rid: str, status: str,
                  output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": rid, "object": "response", "created_at": _CREATED, "status": status,
        "error": None, "incomplete_details": None, "instructions": None,
        "max_output_tokens": None, "model": str(body.get("model") or rec.model),
        "output": output, "parallel_tool_calls": True, "previous_response_id": None,
        "temperature": 1.0, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "truncation": "disabled", "usage": usage, "metadata": {},
    }


def _responses_lps(rec: Recording, body: Mapping[str, Any]) -> list[list[TokenLogprob]] | None:
    include = body.get("include")
    if not isinstance(include, list) or "message.output_text.logprobs" not in include:
        return None
    return token_logprobs(rec.choices[0].tokens, _top(body))


def _output_text(text: str, lps: list[list[TokenLogprob]] | None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    if lps is not None:
        part["logprobs"] = [responses_part_entry(t) for row in lps for t in row]
    return part


def _responses_items(rec: Recording, rid: str,
                     lps: list[list[TokenLogprob]] | None = None) -> list[dict[str, Any]]:
    c = rec.choices[0]
    items: list[dict[str, Any]] = []
    if c.tokens:
        items.append({
            "id": f"msg_{rid}", "type": "message", "status": "completed", "role": "assistant",
            "content": [_output_text(c.text, lps)],
        })
    for t in c.tool_calls:
        items.append({
            "id": f"fc_{t.id}", "type": "function_call", "status": "completed",
            "call_id": t.id, "name": t.name, "arguments": t.arguments,
        })
    return items


def _responses_usage(rec: Recording) -> dict[str, Any]:
    out_tokens = len(rec.choices[0].tokens)
    return {
        "input_tokens": rec.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out_tokens, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": rec.prompt_tokens + out_tokens,
    }


def responses_stream(rec: Recording, body: Mapping[str, Any], rid: str) -> list[bytes]:
    c = rec.choices[0]
    seq = 0
    out: list[bytes] = []

    def ev(kind: str, **payload: Any) -> None:
        nonlocal seq
        out.append(encode_event({"type": kind, "sequence_number": seq, **payload}, event=kind))
        seq += 1

    ev("response.created", response=_response_obj(rec, body, rid, "in_progress", [], None))
    ev("response.in_progress", response=_response_obj(rec, body, rid, "in_progress", [], None))
    lps = _responses_lps(rec, body)
    final_items = _responses_items(rec, rid, lps)
    oi = 0
    if c.tokens:
        mid = f"msg_{rid}"
        ev("response.output_item.added", output_index=oi, item={
            "id": mid, "type": "message", "status": "in_progress", "role": "assistant",
            "content": []})
        ev("response.content_part.added", item_id=mid, output_index=oi, content_index=0,
           part=_output_text("", None if lps is None else []))
        for n, tok in enumerate(c.tokens):
            ev("response.output_text.delta", item_id=mid, output_index=oi, content_index=0,
               delta=tok, logprobs=[] if lps is None
               else [responses_delta_entry(t) for t in lps[n]])
        ev("response.output_text.done", item_id=mid, output_index=oi, content_index=0,
           text=c.text, logprobs=[] if lps is None
           else [responses_delta_entry(t) for row in lps for t in row])
        ev("response.content_part.done", item_id=mid, output_index=oi, content_index=0,
           part=_output_text(c.text, lps))
        ev("response.output_item.done", output_index=oi, item=final_items[oi])
        oi += 1
    for t in c.tool_calls:
        fid = f"fc_{t.id}"
        ev("response.output_item.added", output_index=oi, item={
            "id": fid, "type": "function_call", "status": "in_progress", "call_id": t.id,
            "name": t.name, "arguments": ""})
        for a in t.arguments_tokens:
            ev("response.function_call_arguments.delta", item_id=fid, output_index=oi, delta=a)
        ev("response.function_call_arguments.done", item_id=fid, output_index=oi,
           arguments=t.arguments)
        ev("response.output_item.done", output_index=oi, item=final_items[oi])
        oi += 1
    ev("response.completed", response=_response_obj(
        rec, body, rid, "completed", final_items, _responses_usage(rec)))
    return out


def responses_json(rec: Recording, body: Mapping[str, Any], rid: str) -> dict[str, Any]:
    return _response_obj(rec, body, rid, "completed",
                         _responses_items(rec, rid, _responses_lps(rec, body)),
                         _responses_usage(rec))


# ---------------------------------------------------------------- Anthropic messages
_ANTHROPIC_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


def messages_stream(rec: Recording, body: Mapping[str, Any], rid: str,
                    ping_every: int = 0) -> list[bytes]:
    c = rec.choices[0]
    model = str(body.get("model") or rec.model)
    out: list[bytes] = []

    def ev(kind: str, **payload: Any) -> None:
        out.append(encode_event({"type": kind, **payload}, event=kind))

    ev("message_start", message={
        "id": rid, "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": rec.prompt_tokens, "output_tokens": 1}})
    idx = 0
    if c.tokens:
        ev("content_block_start", index=idx, content_block={"type": "text", "text": ""})
        ev("ping")
        for n, tok in enumerate(c.tokens, 1):
            ev("content_block_delta", index=idx, delta={"type": "text_delta", "text": tok})
            if ping_every and n % ping_every == 0:
                ev("ping")
        ev("content_block_stop", index=idx)
        idx += 1
    for t in c.tool_calls:
        ev("content_block_start", index=idx,
           content_block={"type": "tool_use", "id": t.id, "name": t.name, "input": {}})
        for a in t.arguments_tokens:
            ev("content_block_delta", index=idx,
               delta={"type": "input_json_delta", "partial_json": a})
        ev("content_block_stop", index=idx)
        idx += 1
    ev("message_delta",
       delta={"stop_reason": _ANTHROPIC_STOP.get(c.finish_reason, "end_turn"),
              "stop_sequence": None},
       usage={"output_tokens": len(c.tokens)})
    ev("message_stop")
    return out


def messages_json(rec: Recording, body: Mapping[str, Any], rid: str) -> dict[str, Any]:
    c = rec.choices[0]
    content: list[dict[str, Any]] = []
    if c.tokens:
        content.append({"type": "text", "text": c.text})
    for t in c.tool_calls:
        content.append(
            {"type": "tool_use", "id": t.id, "name": t.name, "input": json.loads(t.arguments)}
        )
    return {
        "id": rid, "type": "message", "role": "assistant",
        "model": str(body.get("model") or rec.model), "content": content,
        "stop_reason": _ANTHROPIC_STOP.get(c.finish_reason, "end_turn"), "stop_sequence": None,
        "usage": {"input_tokens": rec.prompt_tokens, "output_tokens": len(c.tokens)},
    }


# ---------------------------------------------------------------- the server
def _openai_error(status: int, message: str) -> dict[str, Any]:
    kind = "rate_limit_exceeded" if status == 429 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def _anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _last_user_text(body: Mapping[str, Any]) -> str:
    if isinstance(body.get("prompt"), str):
        return str(body["prompt"])
    msgs = body.get("messages")
    if msgs is None and "input" in body:
        msgs = body["input"] if isinstance(body["input"], list) else [
            {"role": "user", "content": body["input"]}]
    for m in reversed(msgs or []):
        if isinstance(m, Mapping) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(
                    str(p.get("text", "")) for p in content if isinstance(p, Mapping)
                )
    return ""


class ReplayUpstream:
    """The replay server's state and its Quart app (``.app``)."""

    def __init__(self, recordings: Mapping[str, Recording] | None = None,
                 *, default_faults: Faults | None = None, record_timings: bool = False) -> None:
        self.recordings: dict[str, Recording] = dict(
            load_recordings() if recordings is None else recordings
        )
        self.default_faults = default_faults or Faults()
        self.stats = ReplayStats()
        self._fault_counts: Counter[str] = Counter()
        self._sequence_counts: Counter[str] = Counter()
        self.last_request: dict[str, Any] = {}
        self.last_headers: dict[str, str] = {}
        self.last_query: dict[str, str] = {}
        self.record_timings = record_timings
        # Benchmarks: monotonic send time of every event, by the request's fault ``key``.
        self.timings: dict[str, list[float]] = {}
        self.app = self._build_app()

    def add_recording(self, rec: Recording) -> str:
        self.recordings[rec.name] = rec
        return rec.name

    def pick(self, body: Mapping[str, Any], header: str | None) -> Recording:
        if header:
            if header not in self.recordings:
                raise KeyError(header)
            return self.recordings[header]
        model = body.get("model")
        if isinstance(model, str) and model in self.recordings:
            return self.recordings[model]
        text = _last_user_text(body).strip()
        for rec in self.recordings.values():
            if rec.prompt and rec.prompt == text:
                return rec
        return self.recordings[DEFAULT_RECORDING]

    def _build_app(self) -> Quart:
        app = Quart("checkstream-replay")
        app.config["RESPONSE_TIMEOUT"] = None
        app.config["BODY_TIMEOUT"] = 60

        async def handle(endpoint: str) -> Response:
            anthropic = endpoint == "messages"
            err = _anthropic_error if anthropic else _openai_error
            self.stats.requests += 1
            self.stats.by_endpoint[endpoint] += 1
            client = request.scope.get("client")
            if client:
                self.stats.peers.add((str(client[0]), int(client[1])))
            self.last_headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                body = await request.get_json(force=True)
                faults = Faults.from_header(request.headers.get("x-replay-faults"),
                                            self.default_faults)
                rec = self.pick(body, request.headers.get("x-replay-recording"))
            except KeyError as exc:
                return _json_response(err(404, f"no replay recording named {exc}"), 404)
            except Exception as exc:
                return _json_response(err(400, f"replay: bad request: {exc}"), 400)
            self.last_request = body
            if faults.sequence:
                n = self._sequence_counts[faults.key]
                self._sequence_counts[faults.key] += 1
                faults = replace(faults, **faults.sequence[n % len(faults.sequence)])
            if faults.times is not None:
                self._fault_counts[faults.key] += 1
                if self._fault_counts[faults.key] > faults.times:
                    faults = Faults(key=faults.key, split=faults.split, seed=faults.seed,
                                    delay_ms=faults.delay_ms)
            if faults.status is not None:
                headers = {}
                if faults.retry_after is not None:
                    headers["retry-after"] = str(faults.retry_after)
                return _json_response(
                    err(faults.status, f"replay: injected HTTP {faults.status}"),
                    faults.status, headers,
                )
            rid = f"replay-{endpoint}-{self.stats.requests}"
            if anthropic:
                rid = f"msg_replay{self.stats.requests:06d}"
            elif endpoint == "responses":
                rid = f"resp_replay{self.stats.requests:06d}"
            if faults.first_delay_ms:
                await asyncio.sleep(faults.first_delay_ms / 1000)
            if not body.get("stream"):
                makers = {"chat": chat_json, "completions": completions_json,
                          "responses": responses_json, "messages": messages_json}
                return _json_response(makers[endpoint](rec, body, rid), 200)
            if anthropic:
                events = messages_stream(rec, body, rid, faults.ping_every)
            else:
                makers_s = {"chat": chat_stream, "completions": completions_stream,
                            "responses": responses_stream}
                events = makers_s[endpoint](rec, body, rid)
                if faults.ping_every:
                    events = _with_pings(events, faults.ping_every)
            resp = Response(self._send(events, faults, anthropic), status=200,
                            content_type="text/event-stream; charset=utf-8")
            resp.headers["cache-control"] = "no-cache"
            resp.headers[REPLAY_HEADER] = "1"
            resp.timeout = None
            return resp

        @app.post("/v1/chat/completions")
        async def chat() -> Response:
            return await handle("chat")

        @app.post("/openai/deployments/<deployment>/chat/completions")
        async def azure_chat(deployment: str) -> Response:
            # Azure OpenAI's deployment URL shape; the api-version query is recorded.
            self.last_query = dict(request.args)
            return await handle("chat")

        @app.post("/v1/completions")
        async def completions() -> Response:
            return await handle("completions")

        @app.post("/v1/responses")
        async def responses() -> Response:
            return await handle("responses")

        @app.post("/v1/messages")
        async def messages() -> Response:
            return await handle("messages")

        @app.get("/v1/models")
        async def models() -> Response:
            data = [{"id": n, "object": "model", "created": _CREATED, "owned_by": "replay"}
                    for n in self.recordings]
            return _json_response({"object": "list", "data": data}, 200)

        @app.get("/_replay/timings/<key>")
        async def timings(key: str) -> Response:
            return _json_response(self.timings.pop(key, []), 200)

        @app.post("/v1/embeddings")
        async def embeddings() -> Response:
            body = await request.get_json(force=True)
            self.last_request = body
            self.last_headers = {k.lower(): v for k, v in request.headers.items()}
            inputs = body.get("input")
            items = inputs if isinstance(inputs, list) else [inputs]
            data = [{"object": "embedding", "index": i,
                     "embedding": [round(((hash(str(x)) >> s) & 255) / 255, 4)
                                   for s in range(0, 64, 8)]}
                    for i, x in enumerate(items)]
            return _json_response({"object": "list", "data": data,
                                   "model": body.get("model", "replay-embed"),
                                   "usage": {"prompt_tokens": 1, "total_tokens": 1}}, 200)

        return app

    async def _send(self, events: list[bytes], faults: Faults,
                    anthropic: bool) -> AsyncIterator[bytes]:
        self.stats.streams_started += 1
        rng = random.Random(faults.seed)
        completed = False
        stamps = self.timings.setdefault(faults.key, []) \
            if self.record_timings and faults.key else None
        try:
            for n, ev in enumerate(events):
                if faults.close_after is not None and n == faults.close_after:
                    # An exception here makes Hypercorn drop the connection without the
                    # terminating chunk: the client sees a truncated body.
                    raise ConnectionAbortedError("replay: injected mid-stream close")
                if faults.stall_after is not None and n == faults.stall_after:
                    await asyncio.sleep(faults.stall_s)
                if faults.error_after is not None and n == faults.error_after:
                    yield _stream_error(anthropic)
                    completed = True
                    return
                if faults.malformed_after is not None and n == faults.malformed_after:
                    yield b'data: {"id": "broken", "choices": [\n\n'
                if faults.delay_ms and n:
                    await asyncio.sleep(faults.delay_ms / 1000)
                if stamps is not None:
                    stamps.append(time.monotonic())
                if faults.split == "event":
                    yield ev
                else:
                    pos = 0
                    while pos < len(ev):
                        size = 1 if faults.split == "bytes" else rng.randint(1, 24)
                        yield ev[pos : pos + size]
                        pos += size
                        await asyncio.sleep(0)
            completed = True
        finally:
            if completed:
                self.stats.streams_completed += 1
            else:
                self.stats.streams_aborted += 1


def _with_pings(events: list[bytes], every: int) -> list[bytes]:
    out: list[bytes] = []
    for n, ev in enumerate(events, 1):
        out.append(ev)
        if n % every == 0:
            out.append(b": ping\n\n")
    return out


def _stream_error(anthropic: bool) -> bytes:
    if anthropic:
        return encode_event(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            event="error",
        )
    return encode_event(
        {"error": {"message": "replay: injected stream error", "type": "server_error",
                   "param": None, "code": "server_error"}}
    )


def _json_response(body: Any, status: int, headers: Mapping[str, str] | None = None) -> Response:
    resp = Response(json.dumps(body, ensure_ascii=False), status=status,
                    content_type="application/json")
    resp.headers[REPLAY_HEADER] = "1"
    resp.headers["x-request-id"] = f"req_replay_{time.monotonic_ns()}"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp
