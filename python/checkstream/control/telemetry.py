"""What a node tells the control plane: its heartbeat, with the aggregate telemetry of one interval.

The shape is the deployment spec's aggregate mode (counts, latency percentiles, rule hits; never
text). Unknown fields are refused, and fields that would carry text (``prompt``, ``content``, ...)
are refused by name, so a node cannot leak LLM traffic to the control plane by mistake.
:class:`MetricsSampler` turns a node's Prometheus :class:`~checkstream.telemetry.metrics.Metrics`
into one interval's aggregate by differencing counters and histogram buckets between calls.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from checkstream.telemetry.metrics import Metrics

__all__ = [
    "RAW_TEXT_FIELDS",
    "AggregateMetrics",
    "Decisions",
    "Heartbeat",
    "MetricsSampler",
    "parse_interval",
]

RAW_TEXT_FIELDS = frozenset(
    {"text", "prompt", "prompts", "content", "contents", "messages", "message", "completion",
     "completions", "input", "output", "raw", "request_body", "response_body", "choices"}
)  # fmt: skip
_RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:/ -]{0,127}$"  # rule names (policy/models.RULE_NAME) and
# regulation ids such as "PRIN-2A-001"; no room for a sentence of user text.
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def _no_raw_text(data: Any, where: str) -> None:
    if isinstance(data, Mapping):
        for key in data:
            if isinstance(key, str) and key.lower() in RAW_TEXT_FIELDS:
                raise ValueError(
                    f"{where}{key}: raw text is never sent to the control plane "
                    "(aggregate telemetry only)"
                )


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Decisions(_Model):
    allow: int = Field(default=0, ge=0)
    redact: int = Field(default=0, ge=0)
    stop: int = Field(default=0, ge=0)


class AggregateMetrics(_Model):
    requests: int = Field(default=0, ge=0)
    tokens_generated: int | None = Field(default=None, ge=0)
    decisions: Decisions = Decisions()
    latency_p50_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    latency_p95_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    latency_p99_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    rules_triggered: dict[str, int] = Field(default_factory=dict, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _refuse_text(cls, data: Any) -> Any:
        _no_raw_text(data, "metrics.")
        return data

    @field_validator("rules_triggered")
    @classmethod
    def _rule_ids(cls, v: dict[str, int]) -> dict[str, int]:
        for key, count in v.items():
            if not re.match(_RULE_ID, key):
                raise ValueError(f"{key[:40]!r} is not a rule id")
            if count < 0:
                raise ValueError(f"{key}: count must be >= 0")
        return v


class Heartbeat(_Model):
    """``POST /v1/nodes/{node_id}/heartbeat``'s body."""

    node_id: str | None = None  # optional; must equal the path's when given
    mode: Literal["proxy", "sidecar"]
    software_version: str = Field(min_length=1, max_length=64)
    policy_version: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    channel: str = Field(default="stable", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    interval: str | None = None
    """``<start>/<ISO 8601 duration>`` (``2024-01-15T10:00:00Z/PT1M``) or ``<start>/<end>``."""
    policy_error: str | None = Field(default=None, max_length=2000)
    """Why the node's last bundle was refused (it serves its previous set)."""
    evidence_error: str | None = Field(default=None, max_length=2000)
    """Why the node's last full-evidence upload failed (only nodes that ship evidence)."""
    metrics: AggregateMetrics = AggregateMetrics()

    @model_validator(mode="before")
    @classmethod
    def _refuse_text(cls, data: Any) -> Any:
        _no_raw_text(data, "")
        return data

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str | None) -> str | None:
        if v is not None:
            parse_interval(v)
        return v


def parse_interval(text: str) -> tuple[datetime, datetime]:
    """``start/PT1M`` or ``start/end`` -> (start, end), both timezone-aware."""
    start_text, sep, rest = text.partition("/")
    if not sep:
        raise ValueError(f"interval {text!r} must be '<start>/<duration>' or '<start>/<end>'")
    start = _time(start_text)
    if rest.startswith("P"):
        m = _DURATION.match(rest)
        if not m or rest in ("P", "PT"):
            raise ValueError(f"interval duration {rest!r} is not an ISO 8601 duration like PT1M")
        d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        end = start + timedelta(days=d, hours=h, minutes=mi, seconds=s)
    else:
        end = _time(rest)
    if end < start:
        raise ValueError(f"interval {text!r} ends before it starts")
    return start, end


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def format_interval(start: datetime, end: datetime) -> str:
    seconds = max(0, round((end - start).total_seconds()))
    return f"{start.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}/PT{seconds}S"


# --------------------------------------------------------------------------- sampling a node


# The proxy's final decisions are pass/modify/block (engine/types.py); the spec's words for them.
_ACTION_NAMES = {"pass": "allow", "allow": "allow", "modify": "redact", "redact": "redact",
                 "block": "stop", "stop": "stop"}  # fmt: skip


class MetricsSampler:
    """One interval's :class:`AggregateMetrics` from a node's Prometheus metrics.

    Counters and histogram buckets are read cumulatively and differenced against the previous
    call, so each heartbeat reports only its own interval. Percentiles are interpolated inside the
    request-latency histogram's buckets (what Prometheus' ``histogram_quantile`` does).
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._last: dict[str, float] = {}
        self._started = datetime.now(UTC)

    def _read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for family in self.metrics.registry.collect():
            for s in family.samples:
                key: str | None = None
                if s.name == "checkstream_decisions_total":
                    key = f"decision:{_ACTION_NAMES.get(s.labels.get('action', ''), 'other')}"
                elif s.name == "checkstream_requests_total":
                    key = "requests"
                elif s.name == "checkstream_rule_hits_total" and s.labels.get("mode") != "shadow":
                    key = f"rule:{s.labels.get('rule', '')}"
                elif s.name == "checkstream_request_seconds_bucket":
                    key = f"le:{s.labels['le']}"
                if key is not None:
                    out[key] = out.get(key, 0.0) + s.value
        return out

    def sample(self) -> tuple[str, AggregateMetrics]:
        """(interval, metrics) since the previous call (or since the sampler was made)."""
        now = datetime.now(UTC)
        current = self._read()
        delta = {k: v - self._last.get(k, 0.0) for k, v in current.items()}
        self._last = current
        interval = format_interval(self._started, now)
        self._started = now
        buckets = sorted(
            ((float(k[3:]), v) for k, v in delta.items() if k.startswith("le:")),
            key=lambda b: b[0],
        )
        p50, p95, p99 = (_quantile(q, buckets) for q in (0.5, 0.95, 0.99))
        return interval, AggregateMetrics(
            requests=int(delta.get("requests", 0)),
            decisions=Decisions(
                allow=int(delta.get("decision:allow", 0)),
                redact=int(delta.get("decision:redact", 0)),
                stop=int(delta.get("decision:stop", 0)),
            ),
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            latency_p99_ms=p99,
            rules_triggered={
                k[5:]: int(v) for k, v in sorted(delta.items())
                if k.startswith("rule:") and v > 0 and re.match(_RULE_ID, k[5:])
            },
        )


def _quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Linear interpolation in cumulative buckets (upper bound, count), in milliseconds."""
    items = list(buckets)
    total = items[-1][1] if items else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in items:
        if count >= rank:
            if math.isinf(upper):
                return round(lower * 1000, 3)  # past the last finite bound: report that bound
            inside = count - below
            frac = (rank - below) / inside if inside > 0 else 1.0
            return round((lower + (upper - lower) * frac) * 1000, 3)
        lower, below = upper, count
    return round(lower * 1000, 3)
