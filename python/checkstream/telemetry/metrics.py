"""The Prometheus metrics every part of checkstream shares, defined once.

:class:`Metrics` creates the whole set in one registry. The process-wide set lives in
``prometheus_client``'s default registry (:data:`DEFAULT`, with module-level aliases such as
:data:`RULE_HITS`); an app that wants its own registry (tests, one registry per proxy app) builds
``Metrics(CollectorRegistry())`` and hands that object to the parts it wires together, e.g.
``DecisionLog(..., metrics=m)``. Nobody defines checkstream metrics elsewhere.

Label values must stay bounded: ``rule`` and ``policy`` come from the loaded policy set, never
from request data; ``endpoint`` is the route (``/v1/chat/completions``), not the URL; ``tenant``
is a configured tenant name.

===========================================  =========  ===========================================
metric                                       type       labels
===========================================  =========  ===========================================
checkstream_requests_total                   counter    endpoint, tenant, stream, status
checkstream_errors_total                     counter    endpoint, kind (malformed_json, ...)
checkstream_decisions_total                  counter    endpoint, tenant, action
checkstream_rule_hits_total                  counter    policy, rule, phase, action, mode
checkstream_upstream_retries_total           counter    reason
checkstream_client_disconnects_total         counter    endpoint
checkstream_active_streams                   gauge      (none)
checkstream_guard_seconds_per_chunk          histogram  (none)
checkstream_request_seconds                  histogram  endpoint
checkstream_stage_latency_seconds            histogram  stage (ingress, midstream, egress, ...)
checkstream_classifier_info                  gauge = 1  classifier, provider, version
checkstream_classifier_calls_total           counter    classifier, outcome (ok, timeout, failed)
checkstream_pattern_timeouts_total           counter    policy, rule, phase, resolution (fail_...)
checkstream_policy_info                      gauge = 1  tenant, version (the set serving now)
checkstream_policy_reloads_total             counter    tenant, outcome (ok, error)
checkstream_policy_reload_errors_total       counter    tenant
checkstream_audit_queue_depth                gauge      (none): records accepted, not yet written
checkstream_audit_records_written_total      counter    kind (decision, recovery)
checkstream_audit_write_errors_total         counter    (none): failed writes (retried)
checkstream_audit_batch_seconds              histogram  (none): write + sync of one batch
===========================================  =========  ===========================================
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = [
    "AUDIT_BATCH_SECONDS",
    "AUDIT_QUEUE_DEPTH",
    "AUDIT_RECORDS_WRITTEN",
    "AUDIT_WRITE_ERRORS",
    "CLASSIFIER_CALLS",
    "CLASSIFIER_INFO",
    "DECISIONS",
    "DEFAULT",
    "LATENCY_BUCKETS",
    "PATTERN_TIMEOUTS",
    "POLICY_INFO",
    "POLICY_RELOADS",
    "POLICY_RELOAD_ERRORS",
    "REQUESTS",
    "RULE_HITS",
    "STAGE_LATENCY",
    "Metrics",
    "render_latest",
]

# From 10 µs (a midstream check) to 10 s (a slow upstream).
LATENCY_BUCKETS = (
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
CHUNK_BUCKETS = (1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2)


class Metrics:
    """Every checkstream metric, registered in ``registry`` (a new one if not given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        # Proxy
        self.requests = Counter(
            "checkstream_requests", "Requests served, by endpoint, tenant, mode and status.",
            ["endpoint", "tenant", "stream", "status"], registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "checkstream_errors", "Errors by kind (upstream_closed, malformed_json, ...).",
            ["endpoint", "kind"], registry=r,
        )  # fmt: skip
        self.decisions = Counter(
            "checkstream_decisions", "Final decision per request.",
            ["endpoint", "tenant", "action"], registry=r,
        )  # fmt: skip
        self.rule_hits = Counter(
            "checkstream_rule_hits", "Rules fired (shadow-mode hits included).",
            ["policy", "rule", "phase", "action", "mode"], registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "checkstream_upstream_retries", "Upstream attempts retried, by reason.", ["reason"],
            registry=r,
        )  # fmt: skip
        self.client_disconnects = Counter(
            "checkstream_client_disconnects", "Streams the client abandoned (upstream cancelled).",
            ["endpoint"], registry=r,
        )  # fmt: skip
        self.active_streams = Gauge("checkstream_active_streams", "Streams in flight.", registry=r)
        self.guard_seconds = Histogram(
            "checkstream_guard_seconds_per_chunk", "Policy time per upstream chunk.",
            buckets=CHUNK_BUCKETS, registry=r,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "checkstream_request_seconds", "Wall time per request.", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.stage_latency = Histogram(
            "checkstream_stage_latency_seconds", "Time spent per stage.", ["stage"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        # Classifiers
        self.classifier_info = Gauge(
            "checkstream_classifier_info", "Loaded classifiers (value 1) and what runs them.",
            ["classifier", "provider", "version"], registry=r,
        )  # fmt: skip
        self.classifier_calls = Counter(
            "checkstream_classifier_calls", "Classifier calls by outcome.",
            ["classifier", "outcome"], registry=r,
        )  # fmt: skip
        # Pattern scans (policy regexes) that ran out of CPU time, and how each resolved
        # (fail_closed: the rule acted as if it matched; fail_open: as if it did not).
        self.pattern_timeouts = Counter(
            "checkstream_pattern_timeouts", "Pattern scans that ran out of time, by resolution.",
            ["policy", "rule", "phase", "resolution"], registry=r,
        )  # fmt: skip
        # Policies
        self.policy_info = Gauge(
            "checkstream_policy_info", "The policy set version serving now (value 1).",
            ["tenant", "version"], registry=r,
        )  # fmt: skip
        self.policy_reloads = Counter(
            "checkstream_policy_reloads", "Policy reloads by outcome.", ["tenant", "outcome"],
            registry=r,
        )  # fmt: skip
        self.policy_reload_errors = Counter(
            "checkstream_policy_reload_errors", "Policy reloads rejected (the old set serves on).",
            ["tenant"], registry=r,
        )  # fmt: skip
        # Decision log
        self.audit_queue_depth = Gauge(
            "checkstream_audit_queue_depth", "Decision records accepted but not yet written.",
            registry=r,
        )  # fmt: skip
        self.audit_records_written = Counter(
            "checkstream_audit_records_written", "Entries written to the decision log.", ["kind"],
            registry=r,
        )  # fmt: skip
        self.audit_write_errors = Counter(
            "checkstream_audit_write_errors", "Failed writes to the decision log (retried).",
            registry=r,
        )  # fmt: skip
        self.audit_batch_seconds = Histogram(
            "checkstream_audit_batch_seconds", "Writing and syncing one batch of records.",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip

    def set_policy_version(self, tenant: str, version: str) -> None:
        """Mark ``version`` as the set serving ``tenant`` (and drop the tenant's previous one)."""
        for metric in list(self.policy_info.collect()):
            for sample in metric.samples:
                if sample.labels.get("tenant") == tenant:
                    self.policy_info.remove(tenant, sample.labels["version"])
        self.policy_info.labels(tenant=tenant, version=version).set(1)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for a ``/metrics`` route."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


DEFAULT = Metrics(REGISTRY)
"""The process-wide set, in ``prometheus_client``'s default registry."""

REQUESTS = DEFAULT.requests
DECISIONS = DEFAULT.decisions
RULE_HITS = DEFAULT.rule_hits
STAGE_LATENCY = DEFAULT.stage_latency
CLASSIFIER_INFO = DEFAULT.classifier_info
CLASSIFIER_CALLS = DEFAULT.classifier_calls
PATTERN_TIMEOUTS = DEFAULT.pattern_timeouts
POLICY_INFO = DEFAULT.policy_info
POLICY_RELOADS = DEFAULT.policy_reloads
POLICY_RELOAD_ERRORS = DEFAULT.policy_reload_errors
AUDIT_QUEUE_DEPTH = DEFAULT.audit_queue_depth
AUDIT_RECORDS_WRITTEN = DEFAULT.audit_records_written
AUDIT_WRITE_ERRORS = DEFAULT.audit_write_errors
AUDIT_BATCH_SECONDS = DEFAULT.audit_batch_seconds


def render_latest(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The exposition text of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
