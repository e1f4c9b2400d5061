"""OpenAI ``/v1/responses``: typed events, each with a ``sequence_number``.

Text arrives in ``*.delta`` events and is repeated whole in the ``*.done`` events, the finished
output items and the final ``response.completed``: every one of those copies is rebuilt from the
released text, never forwarded from upstream. Sequence numbers are renumbered, since the proxy
drops (held-back) and adds (refusal, closing) events. A stop closes the open item and ends with
``response.incomplete`` and ``incomplete_details.reason = "content_filter"``.

Output text logprobs (``include: ["message.output_text.logprobs"]``) go out with released text
only, by the rules in ``codecs.logprobs``; the ``*.done`` events and the output parts carry the
entries the deltas carried, never the upstream's copies.
"""

from __future__ import annotations

import copy
from typing import Any

from checkstream._core import OutputTextDeltaWriter
from checkstream.engine import ChatMessage
from checkstream.proxy.codecs import logprobs as lp
from checkstream.proxy.codecs.base import (
    Codec,
    Json,
    PromptSlot,
    StreamTranslator,
    UpstreamProtocolError,
    as_json_object,
    decision_comment,
    set_key,
    text_of_parts,
    write_parts,
)
from checkstream.proxy.guarding import Channel, ChannelKey, GuardSession
from checkstream.proxy.sse import SSEEvent, encode_event

_TEXT_DELTAS = {
    "response.output_text.delta": "response.output_text.done",
    "response.refusal.delta": "response.refusal.done",
    "response.reasoning_text.delta": "response.reasoning_text.done",
    "response.reasoning_summary_text.delta": "response.reasoning_summary_text.done",
}
_DONE_FIELD = {
    "response.output_text.done": "text",
    "response.refusal.done": "refusal",
    "response.reasoning_text.done": "text",
    "response.reasoning_summary_text.done": "text",
}
_FINAL = ("response.completed", "response.incomplete", "response.failed")
# Tool calls whose input the model writes, and the field that holds it: each one's input is a
# guarded channel, streamed as `<prefix>.delta` / `<prefix>.done` events.
_CALL_FIELD = {"function_call": "arguments", "custom_tool_call": "input", "mcp_call": "arguments",
               "code_interpreter_call": "code"}
_CALL_EVENTS = {"response.function_call_arguments": "arguments",
                "response.custom_tool_call_input": "input",
                "response.mcp_call_arguments": "arguments",
                "response.code_interpreter_call_code": "code"}
# Events that carry a whole part (its text so far): rebuilt from released text only.
_PART_EVENTS = ("response.content_part.added", "response.content_part.done",
                "response.reasoning_summary_part.added", "response.reasoning_summary_part.done")
_INPUT_PARTS = ("input_text", "text", "output_text")
LOGPROBS_INCLUDE = "message.output_text.logprobs"


def _ids(d: Json) -> Json:
    """Only the addressing fields of a text event: its other fields may carry raw text
    (``text``, ``arguments``) or raw tokens (``logprobs``)."""
    return {k: d[k] for k in ("item_id", "output_index", "content_index", "summary_index")
            if k in d}


def _text_key(d: Json) -> tuple[str, str, int]:
    """The channel of a text event: a reasoning item's summary parts and its content parts are
    numbered separately, so they are separate channels."""
    if "summary_index" in d and "content_index" not in d:
        return ("summary", str(d.get("item_id")), int(d.get("summary_index") or 0))
    return ("text", str(d.get("item_id")), int(d.get("content_index") or 0))


class ResponsesTranslator(StreamTranslator):
    def __init__(self, session: GuardSession, logprobs: bool = False) -> None:
        self.session = session
        self.seq = 0
        self.response: Json = {}
        self.items: dict[int, Json] = {}
        self.open_item: int | None = None
        self.logprobs = logprobs
        self.tracks: dict[ChannelKey, lp.LogprobTrack] = {}
        # The usual output_text delta is recognised and written in Rust (with logprobs, every
        # event takes the general path).
        self._writer = None if logprobs else OutputTextDeltaWriter()

    def _track(self, ch: Channel) -> lp.LogprobTrack:
        t = self.tracks.get(ch.key)
        if t is None:
            t = self.tracks[ch.key] = lp.LogprobTrack(ch)
        return t

    def _part_logprobs(self, key: ChannelKey) -> list[Json]:
        """An output_text part's logprobs: the entries its deltas carried, in the part shape."""
        t = self.tracks.get(key)
        return [lp.part_entry(e) for e in t.emitted] if t is not None else []

    def _ev(self, kind: str, **payload: Any) -> bytes:
        data = {"type": kind, **payload, "sequence_number": self.seq}
        self.seq += 1
        return encode_event(data, event=kind)

    def _forward(self, data: Json) -> bytes:
        kind = str(data["type"])
        payload = {k: v for k, v in data.items() if k not in ("type", "sequence_number")}
        return self._ev(kind, **payload)

    async def on_event(self, ev: SSEEvent) -> list[bytes]:
        if self.done:
            return []
        writer = self._writer
        if writer is not None:
            usual = writer.parse(ev.data)
            if usual is not None:
                self.started = True
                return await self._output_text(writer, *usual)
        data = as_json_object(ev)
        kind = data.get("type")
        if not isinstance(kind, str):
            raise UpstreamProtocolError("a Responses event without a 'type'")
        if kind == "error":
            raise UpstreamProtocolError(f"upstream error: {data.get('message') or data}")
        self.started = True
        if kind in ("response.created", "response.in_progress"):
            self.response = dict(data.get("response") or {})
            self.response["output"] = [self._guarded_item(dict(i))
                                       for i in self.response.get("output") or []]
            return [self._forward({**data, "response": self.response})]
        if kind == "response.output_item.added":
            # Copies of model text are only ever rebuilt from released text (none yet here).
            item = self._guarded_item(dict(data.get("item") or {}))
            self.items[int(data.get("output_index") or 0)] = item
            self.open_item = int(data.get("output_index") or 0)
            return [self._forward({**data, "item": item})]
        if kind in _TEXT_DELTAS:
            ch = self.session.channel(_text_key(data))
            if ch.finished:
                return []
            entries: list[Json] = []
            if self.logprobs and kind == "response.output_text.delta":
                released, entries = await self._track(ch).feed(str(data.get("delta") or ""),
                                                                data.get("logprobs") or [])
            else:
                released = await ch.feed(str(data.get("delta") or ""))
            if ch.stopped:
                return await self._stop(data, ch, released, entries)
            return [self._forward({**_ids(data), "type": kind, "delta": released,
                                   "logprobs": entries})] if released else []
        if kind in _DONE_FIELD:
            ch = self.session.channel(_text_key(data))
            if ch.finished and not ch.stopped:
                return []
            output_text = kind == "response.output_text.done"
            entries = []
            if self.logprobs and output_text:
                rest, entries = await self._track(ch).finish()
            else:
                rest = await ch.finish(egress=output_text)
            if ch.stopped:
                return await self._stop(data, ch, rest, entries)
            out = []
            if rest:
                delta_kind = kind.replace(".done", ".delta")
                out.append(self._forward({**_ids(data), "type": delta_kind, "delta": rest,
                                          "logprobs": entries}))
            t = self.tracks.get(ch.key)
            out.append(self._forward({**_ids(data), "type": kind, _DONE_FIELD[kind]: ch.released,
                                      "logprobs": list(t.emitted) if t is not None else []}))
            return out
        prefix, _, suffix = kind.rpartition(".")
        if prefix in _CALL_EVENTS and suffix in ("delta", "done"):
            ch = self.session.channel(("args", str(data.get("item_id"))))
            if suffix == "delta":
                released = await ch.feed(str(data.get("delta") or ""))
                if ch.stopped:
                    return await self._stop(data, ch, "")
                return [self._forward({**_ids(data), "type": kind, "delta": released})] \
                    if released else []
            rest = await ch.finish(egress=False)
            if ch.stopped:
                return await self._stop(data, ch, "")
            out = [self._forward({**_ids(data), "type": prefix + ".delta", "delta": rest})] \
                if rest else []
            return [*out, self._forward({**_ids(data), "type": kind,
                                         _CALL_EVENTS[prefix]: ch.released})]
        if kind in _PART_EVENTS:
            part = dict(data.get("part") or {})
            part_ch = self.session.channels.get(_text_key(data))
            field = "refusal" if part.get("type") == "refusal" else "text"
            if field in part:
                part[field] = part_ch.released if part_ch is not None else ""
            if "logprobs" in part:
                part["logprobs"] = self._part_logprobs(_text_key(data))
            return [self._forward({**data, "part": part})]
        if kind == "response.output_item.done":
            item = self._guarded_item(dict(data.get("item") or {}))
            self.items[int(data.get("output_index") or 0)] = item
            self.open_item = None
            return [self._forward({**data, "item": item})]
        if kind in _FINAL:
            self.saw_terminator = True
            resp = dict(data.get("response") or {})
            resp["output"] = [self._guarded_item(dict(i)) for i in resp.get("output") or []]
            self.done = True
            return [decision_comment(self.session), self._forward({**data, "response": resp})]
        # Structural events (annotations, web search progress, ...) carry no model text.
        if "delta" in data and isinstance(data["delta"], str):
            raise UpstreamProtocolError(f"unguardable text event {kind!r}")
        return [self._forward(data)]

    def _guarded_item(self, item: Json) -> Json:
        iid = str(item.get("id"))
        call_field = _CALL_FIELD.get(str(item.get("type")))
        if call_field is not None:
            if isinstance(item.get(call_field), str):
                ch = self.session.channels.get(("args", iid))
                item[call_field] = ch.released if ch is not None else ""
            return item
        content = []
        for ci, part in enumerate(item.get("content") or []):
            part = dict(part)
            ch = self.session.channels.get(("text", iid, ci))
            field = "refusal" if part.get("type") == "refusal" else "text"
            if field in part:
                part[field] = (ch.released + ch.refusal) if ch is not None else ""
            if "logprobs" in part:
                part["logprobs"] = self._part_logprobs(("text", iid, ci))
            content.append(part)
        if "content" in item:
            item["content"] = content
        for si, s in enumerate(item.get("summary") or []):
            ch = self.session.channels.get(("summary", iid, si))
            if isinstance(s, dict) and "text" in s:
                item["summary"][si] = {**s, "text": ch.released if ch else ""}
        return item

    async def _output_text(self, writer: OutputTextDeltaWriter, item_id: str, output_index: int,
                           content_index: int, text: str) -> list[bytes]:
        """The usual text delta: what the general path gives for it, without decoding the
        event or encoding a new one."""
        ch = self.session.channel(("text", item_id, content_index))
        if ch.finished:
            return []
        released = await ch.feed(text)
        if ch.stopped:
            return await self._stop({"item_id": item_id, "output_index": output_index,
                                     "content_index": content_index}, ch, released, [])
        if not released:
            return []
        self.seq += 1
        return [writer.emit(released, self.seq - 1)]

    async def _stop(self, data: Json, ch: Channel, pending: str,
                    entries: list[Json] | None = None) -> list[bytes]:
        """Closes the item with the refusal; ``entries`` go with ``pending`` (released text)."""
        out: list[bytes] = []
        iid = str(data.get("item_id"))
        oi = int(data.get("output_index") or 0)
        ci = int(data.get("content_index") or 0)
        refusal = pending + ch.refusal
        item = dict(self.items.get(oi) or {"id": iid, "type": "message", "role": "assistant"})
        if ch.key[0] in ("text", "summary"):
            out.append(self._ev("response.output_text.delta", item_id=iid, output_index=oi,
                                content_index=ci, delta=refusal, logprobs=entries or []))
            text = ch.released + ch.refusal
            t = self.tracks.get(ch.key)
            out.append(self._ev("response.output_text.done", item_id=iid, output_index=oi,
                                content_index=ci, text=text,
                                logprobs=list(t.emitted) if t is not None else []))
            part: Json = {"type": "output_text", "text": text, "annotations": []}
            if self.logprobs:
                part["logprobs"] = self._part_logprobs(ch.key)
            out.append(self._ev("response.content_part.done", item_id=iid, output_index=oi,
                                content_index=ci, part=part))
            item.update(status="incomplete", content=[part])
        else:
            # A stopped tool call is not executable: it is replaced by a refusal message.
            text = ch.refusal.lstrip()
            item = {"id": iid, "type": "message", "status": "incomplete", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
        self.items[oi] = item
        out.append(self._ev("response.output_item.done", output_index=oi, item=item))
        resp = {**self.response, "status": "incomplete",
                "incomplete_details": {"reason": "content_filter"},
                "output": [self.items[k] for k in sorted(self.items) if k <= oi]}
        self.done = True
        out.append(decision_comment(self.session))
        out.append(self._ev("response.incomplete", response=resp))
        return out

    def error_event(self, message: str, kind: str) -> bytes:
        return self._ev("error", code=kind, message=message, param=None)


class OpenAIResponsesCodec(Codec):
    endpoint = "responses"
    path = "/responses"
    provider = "openai"

    def validate(self, body: Json) -> str | None:
        if not isinstance(body.get("input"), str | list):
            return "'input' must be a string or a list of input items"
        return None

    def prompt_slots(self, body: Json) -> list[PromptSlot]:
        slots: list[PromptSlot] = []
        if isinstance(body.get("instructions"), str):
            slots.append(PromptSlot(ChatMessage("system", body["instructions"]),
                                    set_key(body, "instructions")))
        inp = body.get("input")
        if isinstance(inp, str):
            slots.append(PromptSlot(ChatMessage("user", inp), set_key(body, "input")))
            return slots
        for item in inp or []:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "function_call_output" and isinstance(item.get("output"), str):
                slots.append(PromptSlot(ChatMessage("tool", item["output"]),
                                        set_key(item, "output")))
            elif item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
                slots.append(PromptSlot(ChatMessage("assistant", item["arguments"]),
                                        set_key(item, "arguments")))
            elif "role" in item:
                text = text_of_parts(item.get("content"), _INPUT_PARTS)
                if text is not None:
                    slots.append(PromptSlot(ChatMessage(str(item["role"]), text),
                                            write_parts(item, "content", _INPUT_PARTS)))
        return slots

    def add_system(self, body: Json, texts: list[str]) -> None:
        parts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
        body["instructions"] = "\n\n".join(parts + texts)

    def translator(self, session: GuardSession, body: Json) -> StreamTranslator:
        include = body.get("include")
        return ResponsesTranslator(session, isinstance(include, list)
                                   and LOGPROBS_INCLUDE in include)

    async def guard_response(self, session: GuardSession, data: Json) -> Json:
        data = copy.deepcopy(data)
        output = []
        for item in data.get("output") or []:
            iid = str(item.get("id"))
            stopped: Channel | None = None
            call_field = _CALL_FIELD.get(str(item.get("type")), "")
            if isinstance(item.get(call_field), str):
                ch = await session.guard_text(("args", iid), item[call_field], egress=False)
                item[call_field] = ch.released
                if ch.stopped:
                    stopped = ch
                    item = {"id": iid, "type": "message", "status": "incomplete",
                            "role": "assistant", "content": [
                                {"type": "output_text", "text": ch.refusal.lstrip(),
                                 "annotations": []}]}
            else:
                for si, summ in enumerate(item.get("summary") or []):
                    if isinstance(summ, dict) and isinstance(summ.get("text"), str):
                        ch = await session.guard_text(("summary", iid, si), summ["text"],
                                                      egress=False)
                        summ["text"] = ch.released
                        if ch.stopped:
                            # Nothing after the stop was judged: later summary parts and the
                            # item's content go; the refusal closes the part that stopped.
                            stopped = ch
                            summ["text"] = ch.released + ch.refusal
                            item["summary"] = item["summary"][: si + 1]
                            if "content" in item:
                                item["content"] = []
                            item["status"] = "incomplete"
                            break
                for ci, part in enumerate(item.get("content") or []):
                    if stopped is not None:
                        break
                    field = "refusal" if part.get("type") == "refusal" else "text"
                    if isinstance(part.get(field), str):
                        key, egress = ("text", iid, ci), part.get("type") == "output_text"
                        if isinstance(part.get("logprobs"), list):
                            ch, part["logprobs"] = await lp.guard_text(
                                session, key, part[field], part["logprobs"], egress=egress)
                        else:
                            ch = await session.guard_text(key, part[field], egress=egress)
                        part[field] = ch.released + ch.refusal
                        if ch.stopped:
                            stopped = ch
                            item["status"] = "incomplete"
                            item["content"] = item["content"][: ci + 1]
                            break
            output.append(item)
            if stopped is not None:
                data["status"] = "incomplete"
                data["incomplete_details"] = {"reason": "content_filter"}
                break
        data["output"] = output
        return data
