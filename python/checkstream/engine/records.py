"""The per-request decision record: the evidence a regulator reads, and the audit log chains.

Hashes, offsets, scores and rule references only; raw text is included only when the operator
opted into full evidence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from checkstream.engine.stream import StreamGuard
from checkstream.engine.types import (
    CheckRecord,
    EgressResult,
    IngressResult,
    OutputResult,
    RequestContext,
    RuleHit,
    ScanTimeout,
)

SCHEMA = "checkstream.decision/1"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def build_record(
    ctx: RequestContext,
    *,
    ingress: IngressResult | None,
    streams: Sequence[StreamGuard | OutputResult],
    egress: EgressResult | None,
    latencies_ms: Mapping[str, float],
    input_text: str,
    output_text: str,
    full_evidence: bool = False,
    policy_version: str | None = None,
) -> dict[str, Any]:
    """One JSON-serialisable record for one request, allowed or not.

    ``streams`` are the request's StreamGuards (one per choice / content block) or, for the
    non-streaming path, ``check_output`` results. ``policy_version`` defaults to the version the
    streams ran under.
    """
    rules: list[dict[str, Any]] = []
    scores: list[dict[str, Any]] = []
    timeouts: list[dict[str, Any]] = []
    if ingress is not None:
        rules += [_hit(h, None) for h in ingress.hits]
        scores += [_check(c, None) for c in ingress.checks]
        timeouts += [_timeout(t, None) for t in ingress.timeouts]
    coverage_streams: list[dict[str, Any]] = []
    stopped = False
    for index, stream in enumerate(streams):
        rules += [_hit(h, index) for h in stream.hits]
        scores += [_check(c, index) for c in stream.checks]
        timeouts += [_timeout(t, index) for t in stream.timeouts]
        stopped = stopped or stream.stopped
        entry: dict[str, Any] = {
            "index": index,
            "stopped": stream.stopped,
            "classifier_checks": len(stream.checks),
            "pattern_timeouts": len(stream.timeouts),
        }
        if isinstance(stream, StreamGuard):
            policy_version = policy_version or stream.policy_version
            entry.update(
                tokens=stream.tokens,
                released_chars=stream.released_chars,
                holdback=stream.holdback,
                check_interval=stream.check_interval,
                window=stream.window,
            )
        coverage_streams.append(entry)
    if egress is not None:
        rules += [_hit(h, None) for h in egress.hits]
        scores += [_check(c, None) for c in egress.checks]
        timeouts += [_timeout(t, None) for t in egress.timeouts]
    enforced = [r for r in rules if r["mode"] == "enforce"]
    if ingress is not None and ingress.action == "block":
        decision = "block"
    elif stopped:
        decision = "stop"
    elif any("redact" in r["actions"] for r in enforced):
        decision = "redact"
    elif (ingress is not None and ingress.action == "modify") or (
        egress is not None and (egress.prepend or egress.append)
    ):
        decision = "modify"
    else:
        decision = "allow"
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "request_id": ctx.request_id,
        "tenant": ctx.tenant,
        "endpoint": ctx.endpoint,
        "model": ctx.model,
        "metadata": dict(ctx.metadata),
        "policy_version": policy_version,
        "decision": decision,
        "input_sha256": sha256_text(input_text),
        "output_sha256": sha256_text(output_text),
        "rules": rules,
        "scores": scores,
        "regulations": sorted({r["regulation"] for r in rules if r["regulation"]}),
        "latencies_ms": {k: round(float(v), 3) for k, v in latencies_ms.items()},
        "coverage": {
            "ingress_checks": len(ingress.checks) if ingress is not None else 0,
            "streams": coverage_streams,
            "egress_checks": len(egress.checks) if egress is not None else 0,
            "classifier_timeouts": sum(1 for s in scores if s["timed_out"]),
            "classifier_failures": sum(1 for s in scores if s["failed"]),
            # Pattern scans that ran out of time: what each left unjudged and how it resolved.
            "pattern_timeouts": timeouts,
        },
        "full_evidence": full_evidence,
    }
    if full_evidence:
        record["input"] = input_text
        record["output"] = output_text
    return record


def _hit(hit: RuleHit, stream: int | None) -> dict[str, Any]:
    out = asdict(hit)
    out["actions"] = list(hit.actions)
    out["stream"] = stream
    return out


def _timeout(timeout: ScanTimeout, stream: int | None) -> dict[str, Any]:
    out = asdict(timeout)
    out["stream"] = stream
    return out


def _check(check: CheckRecord, stream: int | None) -> dict[str, Any]:
    out = asdict(check)
    out["scores"] = dict(check.scores)
    out["latency_ms"] = round(check.latency_ms, 3)
    out["stream"] = stream
    return out
