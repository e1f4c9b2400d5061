"""Fleet-wide trends over the last hour, from the heartbeats' aggregate telemetry.

The hour is cut into equal buckets by the time each heartbeat was received. Per bucket:
requests (summed over nodes), the allow/redact/stop rates (summed decisions over summed
requests), and latency. Nodes report percentiles, not histograms, so percentiles cannot be merged
exactly; the dashboard shows what can be said honestly:

* ``latency_p50_ms``: the request-weighted mean of the nodes' interval p50s (a typical request);
* ``latency_p99_ms``: the highest interval p99 of any node (the worst node's tail, an upper
  bound of the fleet's p99; averaging p99s would hide a slow node).

A bucket without requests has ``None`` rates and latencies (a gap in the line), not zeros.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["BUCKET_S", "WINDOW_S", "fleet_trends"]

WINDOW_S = 3600
BUCKET_S = 300


def fleet_trends(
    rows: Iterable[dict[str, Any]], *, now: float, window_s: int = WINDOW_S,
    bucket_s: int = BUCKET_S, top: int = 10,
) -> dict[str, Any]:
    """``rows``: telemetry rows (``ControlStore.telemetry``) received within the window."""
    count = window_s // bucket_s
    start = now - count * bucket_s
    buckets = [_Bucket() for _ in range(count)]
    rules: Counter[str] = Counter()
    for r in rows:
        if r["received_at"] > now:
            continue
        index = min(int((r["received_at"] - start) // bucket_s), count - 1)  # now: the last
        if index >= 0:
            buckets[index].add(r)
            rules.update(json.loads(r["rules_triggered"]))
    total = _Bucket()
    for b in buckets:
        total.merge(b)
    return {
        "window_s": window_s,
        "bucket_s": bucket_s,
        "bucket_starts": [start + i * bucket_s for i in range(count)],
        "requests": [b.requests for b in buckets],
        "allow_rate": [b.rate(b.allow) for b in buckets],
        "redact_rate": [b.rate(b.redact) for b in buckets],
        "stop_rate": [b.rate(b.stop) for b in buckets],
        "latency_p50_ms": [b.p50() for b in buckets],
        "latency_p99_ms": [b.p99_max for b in buckets],
        "totals": {"requests": total.requests, "allow": total.allow, "redact": total.redact,
                   "stop": total.stop, "allow_rate": total.rate(total.allow),
                   "redact_rate": total.rate(total.redact), "stop_rate": total.rate(total.stop),
                   "latency_p50_ms": total.p50(), "latency_p99_ms": total.p99_max},
        "top_rules": [{"rule": rule, "count": n} for rule, n in rules.most_common(top) if n > 0],
    }


@dataclass
class _Bucket:
    requests: int = 0
    allow: int = 0
    redact: int = 0
    stop: int = 0
    p50_weighted: float = 0.0
    p50_requests: int = 0
    p99_max: float | None = None

    def add(self, row: dict[str, Any]) -> None:
        requests = int(row["requests"])
        self.requests += requests
        self.allow += int(row["allow"])
        self.redact += int(row["redact"])
        self.stop += int(row["stop"])
        if requests and row["latency_p50_ms"] is not None:
            self.p50_weighted += float(row["latency_p50_ms"]) * requests
            self.p50_requests += requests
        if requests and row["latency_p99_ms"] is not None:
            self.p99_max = max(self.p99_max or 0.0, float(row["latency_p99_ms"]))

    def merge(self, other: _Bucket) -> None:
        self.requests += other.requests
        self.allow += other.allow
        self.redact += other.redact
        self.stop += other.stop
        self.p50_weighted += other.p50_weighted
        self.p50_requests += other.p50_requests
        if other.p99_max is not None:
            self.p99_max = max(self.p99_max or 0.0, other.p99_max)

    def rate(self, count: int) -> float | None:
        return round(count / self.requests, 4) if self.requests else None

    def p50(self) -> float | None:
        return round(self.p50_weighted / self.p50_requests, 3) if self.p50_requests else None
