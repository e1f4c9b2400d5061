"""Per-event cost of the proxy's stream codecs: the text-delta splice vs the general path.

One streamed answer (the harness's token mix, one upstream event per token, in the replay's
wire format of each API) goes through the SSE parser and the API's translator, in process, with
no policies (plumbing) and with the shipped default pack. Two event streams per API, identical
but for one key:

* ``splice``: the usual text event, which ``checkstream._core.TextDeltaSplicer`` recognises and
  re-emits in its own envelope with the released text (Responses: ``OutputTextDeltaWriter``
  writes it again with the proxy's sequence number);
* ``general``: every text event carries one more non-null key the codec does not know
  (``x_vendor``), which sends it down the general path (decode, judge, build, encode); that key
  is dropped on the way, so both streams give the client the same events. (It also makes each
  general event ~15 bytes longer to decode: a small bias against the general path.)

    .venv/bin/python benches/bench_proxy_codec.py            # ~20 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import bench_proxy as bp
from checkstream.engine import Guard, RequestContext
from checkstream.policy import load_policy_set
from checkstream.proxy.codecs.anthropic_messages import MessagesTranslator
from checkstream.proxy.codecs.base import StreamTranslator
from checkstream.proxy.codecs.openai_chat import ChatTranslator
from checkstream.proxy.codecs.openai_completions import CompletionsTranslator
from checkstream.proxy.codecs.openai_responses import ResponsesTranslator
from checkstream.proxy.config import GuardrailsConfig
from checkstream.proxy.guarding import GuardSession
from checkstream.proxy.replay import (
    Recording,
    chat_stream,
    completions_stream,
    messages_stream,
    responses_stream,
)
from checkstream.proxy.sse import SSEParser

ROOT = Path(__file__).resolve().parents[1]


STREAMS = {"chat": chat_stream, "completions": completions_stream,
           "messages": messages_stream, "responses": responses_stream}
TEXT_EVENTS = ("chat.completion.chunk", "text_completion", "content_block_delta",
               "response.output_text.delta")


def events(api: str, tokens: list[str], general: bool) -> list[bytes]:
    """The replay's wire events for ``tokens``; ``general``: each text event gets one more
    key the codecs do not know (on the choice, or on the event for Anthropic and Responses)."""
    out = STREAMS[api](Recording.from_text("bench", tokens), {"model": "bench"}, "bench-1")
    if not general:
        return out
    marked = []
    for raw in out:
        (e,) = SSEParser().feed(raw)
        obj = json.loads(e.data) if e.data.startswith("{") else None
        if obj is not None and (obj.get("object") or obj.get("type")) in TEXT_EVENTS:
            choices = obj.get("choices")
            (choices[0] if choices else obj)["x_vendor"] = {"n": 1}
            head = f"event: {e.event}\n" if e.event else ""
            raw = f"{head}data: {json.dumps(obj)}\n\n".encode()
        marked.append(raw)
    return marked


async def one_stream(api: str, guard: Guard | None, stream: list[bytes]) -> None:
    session = GuardSession(guard, RequestContext("r", "default", api, "bench", {}),
                           GuardrailsConfig())
    tr: StreamTranslator = ChatTranslator(session, 1) if api == "chat" \
        else CompletionsTranslator(session, 1) if api == "completions" \
        else ResponsesTranslator(session) if api == "responses" \
        else MessagesTranslator(session)
    parser = SSEParser()
    for raw in stream:
        for e in parser.feed(raw):
            await tr.on_event(e)
    assert tr.done


def per_event_us(api: str, guard: Guard | None, stream: list[bytes], reps: int) -> float:
    async def run() -> float:
        t0 = time.perf_counter()
        for _ in range(reps):
            await one_stream(api, guard, stream)
        return (time.perf_counter() - t0) / (reps * len(stream)) * 1e6

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=256, help="text events per stream")
    ap.add_argument("--reps", type=int, default=40, help="streams per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="measurements per row (median)")
    args = ap.parse_args(argv)
    tokens = (bp.TOKENS * (args.tokens // len(bp.TOKENS) + 1))[:args.tokens]
    default = Guard(load_policy_set([ROOT / "policies" / "default"]))
    print(f"µs per upstream event, in process, median of {args.rounds} rounds of {args.reps} "
          f"streams x {args.tokens} text events; Python {sys.version.split()[0]}")
    print("| API | policies | splice µs | general µs | general / splice |")
    print("|---|---|---|---|---|")
    for api in STREAMS:
        for name, guard in (("none (plumbing)", None), ("default pack", default)):
            spliced, general = [], []
            for _ in range(args.rounds):  # interleaved, so drift hits both alike
                spliced.append(per_event_us(api, guard, events(api, tokens, False), args.reps))
                general.append(per_event_us(api, guard, events(api, tokens, True), args.reps))
            s, g = statistics.median(spliced), statistics.median(general)
            print(f"| {api} | {name} | {s:.2f} | {g:.2f} | {g / s:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
