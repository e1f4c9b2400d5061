"""One request's view of the engine: ingress, one guarded channel per text stream, the record.

The codecs speak provider wire formats; this module is the only place that calls
``checkstream.engine``. A ``Channel`` wraps one ``StreamGuard`` (one choice, content block,
output item or tool-call argument string) and keeps what it has released, so that "done"
events and non-streaming answers can be rebuilt from released text only. Non-streaming
answers go through the very same channel (feed everything, finish): that is the streaming
parity guarantee, by construction. ``held_chars`` and ``redacted_spans`` tell
``codecs.logprobs`` which fed characters have left the holdback and which were replaced.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from checkstream.engine import (
    ChatMessage,
    CheckRecord,
    EgressResult,
    Guard,
    RequestContext,
    RuleHit,
    ScanTimeout,
    StreamGuard,
)
from checkstream.proxy.config import GuardrailsConfig

ChannelKey = tuple[Any, ...]
"""(kind, ...) e.g. ("choice", 0), ("tool", 0, 1), ("block", 2), ("text", item_id, 0)."""

DEFAULT_STOP_MESSAGE = "[This response was stopped by the content policy.]"

_CHECK_OFFSETS = itertools.count()
"""One per guarded channel, in the order they open (see ``GuardSession.channel``)."""


@dataclass
class Channel:
    """One guarded text stream. ``feed``/``finish`` return the text that may be released."""

    session: GuardSession
    key: ChannelKey
    stream: StreamGuard | None
    released: str = ""
    stopped: bool = False
    stop_message: str | None = None
    finished: bool = False
    fed_chars: int = 0
    tokens: int = 0
    hits: list[RuleHit] = field(default_factory=list)
    egress_applied: bool = False

    async def feed(self, delta: str) -> str:
        if self.stopped or self.finished or not delta:
            return ""
        self.fed_chars += len(delta)
        self.tokens += 1
        if self.stream is None:
            self.released += delta
            return delta
        t0 = time.perf_counter()
        step = await self.stream.afeed(delta)
        self.session.guard_seconds += time.perf_counter() - t0
        return self._take(step.text, step.stopped, step.stop_message, step.hits)

    async def finish(self, *, egress: bool = True) -> str:
        """End of this stream: the rest of the held text, then any egress disclaimer."""
        if self.stopped or self.finished:
            return ""
        self.finished = True
        out = ""
        if self.stream is not None:
            t0 = time.perf_counter()
            step = await self.stream.afinish()
            self.session.guard_seconds += time.perf_counter() - t0
            out = self._take(step.text, step.stopped, step.stop_message, step.hits)
        if egress and not self.stopped:
            out += await self.session.egress_for(self)
        return out

    def _take(self, text: str, stopped: bool, message: str | None, hits: Sequence[RuleHit]) -> str:
        self.released += text
        self.hits.extend(hits)
        self.session.hits.extend(hits)
        if stopped and not self.stopped:
            self.stopped = True
            self.finished = True
            self.stop_message = message or DEFAULT_STOP_MESSAGE
            self.session.stopped = True
        return text

    @property
    def held_chars(self) -> int:
        """Fed characters still in the holdback: not yet released, redacted or dropped."""
        if self.stream is None or self.stopped or self.finished:
            return 0
        return len(self.stream.held_text)

    @property
    def redacted_spans(self) -> list[tuple[int, int]]:
        """Spans of the fed text (``fed_chars`` coordinates) that an enforced rule with a
        ``redact`` action hit: every character the engine replaced is inside one of them."""
        return [(h.start, h.end) for h in self.hits
                if h.mode == "enforce" and "redact" in h.actions
                and h.start is not None and h.end is not None]

    @property
    def refusal(self) -> str:
        """What a client sees after a stop: the released text is kept, then this message."""
        if not self.stop_message:
            return ""
        return ("\n\n" if self.released else "") + self.stop_message


class GuardSession:
    """Per-request state: the Guard it started with (hot reloads don't change it mid-stream)."""

    def __init__(
        self,
        guard: Guard | None,
        ctx: RequestContext,
        settings: GuardrailsConfig,
        *,
        full_evidence: bool = False,
    ) -> None:
        self.guard = guard
        self.ctx = ctx
        self.settings = settings
        self.full_evidence = full_evidence
        self.channels: dict[ChannelKey, Channel] = {}
        self.hits: list[RuleHit] = []
        self.ingress_result: Any = None
        self.input_text = ""
        self.stopped = False
        self.blocked = False
        self.guard_seconds = 0.0
        self.started = time.perf_counter()
        self.egress_results: list[EgressResult] = []

    @property
    def policy_version(self) -> str:
        return self.guard.policy_version if self.guard is not None else "disabled"

    # ------------------------------------------------------------------ ingress
    async def ingress(self, messages: Sequence[ChatMessage]) -> Any:
        """Run the ingress checks; returns the engine's ``IngressResult`` or None if disabled."""
        self.input_text = "\n".join(f"{m.role}: {m.content}" for m in messages)
        if self.guard is None or not self.settings.ingress.enabled or not messages:
            return None
        t0 = time.perf_counter()
        result = await self.guard.aingress(list(messages), self.ctx)
        self.ingress_seconds = time.perf_counter() - t0
        self.ingress_result = result
        self.hits.extend(result.hits)
        if result.action == "block":
            self.blocked = True
        return result

    # ------------------------------------------------------------------ output
    def channel(self, key: ChannelKey) -> Channel:
        ch = self.channels.get(key)
        if ch is None:
            stream: StreamGuard | None = None
            if self.guard is not None and self.settings.midstream.enabled:
                mid = self.settings.midstream
                # Classifier verdicts land just before the text they judge would be released:
                # the model runs in the background (batched across streams) instead of
                # stalling this stream every `check_interval` tokens.
                stream = self.guard.stream(
                    self.ctx,
                    holdback=mid.holdback_size,
                    check_interval=mid.check_interval,
                    classifier_lag=max(0, mid.holdback_size - mid.check_interval),
                    # Streams whose tokens arrive together (a batch decoded in lockstep, or
                    # requests sent at once) would otherwise all launch their classifier
                    # windows on the same delta: one model run holding up every stream's next
                    # chunk. Round-robin offsets spread the windows over the interval.
                    check_offset=next(_CHECK_OFFSETS) % mid.check_interval,
                )
            ch = Channel(self, key, stream)
            self.channels[key] = ch
        return ch

    async def guard_text(self, key: ChannelKey, text: str, *, egress: bool = True) -> Channel:
        """A whole (non-streamed) text through a channel, exactly as if it had streamed."""
        ch = self.channel(key)
        await ch.feed(text)
        await ch.finish(egress=egress)
        return ch

    async def egress_for(self, ch: Channel) -> str:
        eg = self.settings.egress
        if self.guard is None or not (eg.enabled and eg.inject_disclaimers):
            return ""
        result = await self.guard.aegress(ch.released, self.ctx)
        self.egress_results.append(result)
        self.hits.extend(result.hits)
        ch.egress_applied = True
        # A prefix cannot be placed before text that has already streamed out; to keep the
        # streamed and the non-streamed answers identical, both get the prefix's text at the end.
        extra = "".join(s for s in (result.prepend, result.append) if s)
        ch.released += extra
        return extra

    # ------------------------------------------------------------------ decision
    @property
    def action(self) -> str:
        if self.blocked:
            return "block"
        if self.stopped:
            return "stop"
        enforced = [h for h in self.hits if h.mode == "enforce"]
        if any(h.action in {"redact", "modify", "mask"} for h in enforced):
            return "modify"
        if self.ingress_result is not None and self.ingress_result.action == "modify":
            return "modify"
        return "pass"

    def summary(self) -> dict[str, Any]:
        """The short decision sent to the client as a trailing SSE comment / header."""
        rules = sorted({f"{h.policy}/{h.rule}:{h.action}" for h in self.hits})
        return {
            "request_id": self.ctx.request_id,
            "policy_version": self.policy_version,
            "action": self.action,
            "rules": rules,
        }

    def checks(self) -> list[CheckRecord]:
        """Every classifier run of the request (ingress, each channel, egress)."""
        out: list[CheckRecord] = []
        if self.ingress_result is not None:
            out += self.ingress_result.checks
        for ch in self.channels.values():
            if ch.stream is not None:
                out += ch.stream.checks
        for eg in self.egress_results:
            out += eg.checks
        return out

    def timeouts(self) -> list[ScanTimeout]:
        """Every pattern scan of the request that ran out of time (ingress, channels, egress)."""
        out: list[ScanTimeout] = []
        if self.ingress_result is not None:
            out += self.ingress_result.timeouts
        for ch in self.channels.values():
            if ch.stream is not None:
                out += ch.stream.timeouts
        for eg in self.egress_results:
            out += eg.timeouts
        return out

    def stage_seconds(self) -> dict[str, float]:
        """Time per guard stage, for ``checkstream_stage_latency_seconds``."""
        out: dict[str, float] = {}
        if self.ingress_result is not None:
            out["ingress"] = getattr(self, "ingress_seconds", 0.0)
        if self.channels:
            out["midstream"] = self.guard_seconds
        if self.egress_results:
            out["egress"] = sum(r.latency_ms for r in self.egress_results) / 1000
        return out

    def output_text(self) -> str:
        parts = []
        for ch in self.channels.values():
            parts.append(ch.released + (ch.refusal if ch.stopped else ""))
        return "\n".join(parts)

    def _egress_merged(self) -> EgressResult | None:
        """One EgressResult for the record (each channel ran its own egress check)."""
        if not self.egress_results:
            return None
        rs = self.egress_results
        return EgressResult(
            prepend="".join(r.prepend for r in rs),
            append="".join(r.append for r in rs),
            hits=[h for r in rs for h in r.hits],
            checks=[c for r in rs for c in r.checks],
            latency_ms=sum(r.latency_ms for r in rs),
            timeouts=[t for r in rs for t in r.timeouts],
        )

    def end(self) -> None:
        """The request is over and recorded: drop the channels. Each one points back at this
        session, and left in place the cycle (with its stream state) would wait for a full
        collection, a pause every stream in flight pays for."""
        self.channels.clear()

    def record(self) -> dict[str, Any]:
        """The decision record for the audit log."""
        total_ms = (time.perf_counter() - self.started) * 1000
        latencies = {
            "ingress": getattr(self, "ingress_seconds", 0.0) * 1000,
            "midstream": self.guard_seconds * 1000,
            "total": total_ms,
        }
        try:
            from checkstream.engine.records import build_record

            return build_record(
                self.ctx,
                ingress=self.ingress_result,
                streams=[ch.stream for ch in self.channels.values() if ch.stream is not None],
                egress=self._egress_merged(),
                latencies_ms=latencies,
                input_text=self.input_text,
                output_text=self.output_text(),
                full_evidence=self.full_evidence,
                policy_version=self.policy_version if self.guard is not None else None,
            )
        except ImportError:  # pragma: no cover - engine without records
            out = self.output_text()
            return {
                "request_id": self.ctx.request_id,
                "tenant": self.ctx.tenant,
                "endpoint": self.ctx.endpoint,
                "policy_version": self.policy_version,
                "input_sha256": hashlib.sha256(self.input_text.encode()).hexdigest(),
                "output_sha256": hashlib.sha256(out.encode()).hexdigest(),
                "action": self.action,
                "latencies_ms": latencies,
            }
