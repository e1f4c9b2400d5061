"""Prometheus metrics, one registry per app (so that tests and tenants never share state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "checkstream_requests", "Requests served, by endpoint, tenant, mode and status.",
            ["endpoint", "tenant", "stream", "status"], registry=r)
        self.errors = Counter(
            "checkstream_errors", "Errors by kind (upstream_closed, malformed_json, ...).",
            ["endpoint", "kind"], registry=r)
        self.decisions = Counter(
            "checkstream_decisions", "Final decision per request.",
            ["endpoint", "tenant", "action"], registry=r)
        self.rule_hits = Counter(
            "checkstream_rule_hits", "Rules fired.", ["policy", "rule", "phase", "action", "mode"],
            registry=r)
        self.retries = Counter(
            "checkstream_upstream_retries", "Upstream attempts retried, by reason.", ["reason"],
            registry=r)
        self.client_disconnects = Counter(
            "checkstream_client_disconnects", "Streams the client abandoned (upstream cancelled).",
            ["endpoint"], registry=r)
        self.active_streams = Gauge(
            "checkstream_active_streams", "Streams in flight.", registry=r)
        self.guard_seconds = Histogram(
            "checkstream_guard_seconds_per_chunk", "Policy time per upstream chunk.",
            buckets=(1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2),
            registry=r)
        self.request_seconds = Histogram(
            "checkstream_request_seconds", "Wall time per request.", ["endpoint"], registry=r)
        self.policy_reloads = Counter(
            "checkstream_policy_reloads", "Policy reloads by outcome.", ["tenant", "outcome"],
            registry=r)
