"""The engine's public value types: requests in, decisions out. Provider- and HTTP-agnostic."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Phase = Literal["ingress", "midstream", "egress"]


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is asking and through what: the facts context triggers and decision records read."""

    request_id: str
    tenant: str
    endpoint: str
    model: str
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One rule that fired, where, and what it did (``mode="shadow"``: recorded, not acted on)."""

    rule: str
    policy: str
    phase: str
    action: str  # the rule's main action (stop > redact > ... > log)
    mode: Literal["enforce", "shadow"]
    start: int | None
    end: int | None
    score: float | None
    regulation: str | None
    citation: str | None
    detail: str
    actions: tuple[str, ...] = ()  # every action of the rule
    message_index: int | None = None  # ingress: the message the span is in
    category: str | None = None  # from the rule's `audit` action, if any
    severity: str | None = None
    timed_out: bool = False  # fired by a pattern scan that ran out of time (fail mode closed)


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One classifier run: the evidence of what was scanned, with every score (also fail modes)."""

    classifier: str
    phase: str
    start: int
    end: int
    scores: Mapping[str, float]
    model_version: str | None
    latency_ms: float
    timed_out: bool = False
    failed: bool = False
    resolution: Literal["scored", "fail_open", "fail_closed"] = "scored"
    message_index: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ScanTimeout:
    """A pattern scan that ran out of time: the text it left unjudged and how that resolved.

    ``fail_closed``: the rule was taken to match ``[start, end)`` (its hit says ``timed_out``);
    ``fail_open``: it was taken not to. Recorded either way, so nothing fails open silently.
    """

    rule: str
    policy: str
    phase: str
    pattern: str
    start: int
    end: int
    timeout_ms: float  # the scan's limit: the rule's timeout_ms per 2048 characters read
    resolution: Literal["fail_open", "fail_closed"]
    message_index: int | None = None


@dataclass(frozen=True, slots=True)
class DecodingParams:
    """Sampling limits requested by ``adapt_decoding`` rules (the most conservative wins)."""

    temperature: float | None = None
    top_p: float | None = None

    def tighten(self, temperature: float | None, top_p: float | None) -> DecodingParams:
        def low(a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else min(a, b)

        return DecodingParams(low(self.temperature, temperature), low(self.top_p, top_p))


@dataclass(frozen=True, slots=True)
class IngressResult:
    action: Literal["pass", "block", "modify"]
    messages: list[ChatMessage]
    system_additions: list[str]
    block_message: str | None
    block_status: int
    hits: list[RuleHit]
    checks: list[CheckRecord] = field(default_factory=list)
    latency_ms: float = 0.0
    timeouts: list[ScanTimeout] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StreamStep:
    text: str  # what may be released to the client now
    stopped: bool
    stop_message: str | None
    hits: list[RuleHit]
    checks: list[CheckRecord] = field(default_factory=list)
    decoding: DecodingParams | None = None  # set when a rule asked for tighter sampling
    timeouts: list[ScanTimeout] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EgressResult:
    prepend: str
    append: str
    hits: list[RuleHit]
    checks: list[CheckRecord] = field(default_factory=list)
    latency_ms: float = 0.0
    timeouts: list[ScanTimeout] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OutputResult:
    text: str
    stopped: bool
    stop_message: str | None
    hits: list[RuleHit]
    checks: list[CheckRecord] = field(default_factory=list)
    timeouts: list[ScanTimeout] = field(default_factory=list)
