"""The Prometheus metrics every part of checkstream shares.

Defined once here, in the default ``prometheus_client`` registry, so the proxy, the engine, the
classifiers and the decision log all count into the same series; nobody defines their own.
Label values must stay bounded: ``rule`` and ``policy`` come from the loaded policy set, never
from request data; ``endpoint`` is the route template (``/v1/chat/completions``), not the URL.

=================================================  =========  =====================================
metric                                             type       labels
=================================================  =========  =====================================
checkstream_requests_total                         counter    endpoint, stream ("true"/"false"),
                                                              outcome (pass/block/modify/stop/error)
checkstream_decisions_total                        counter    phase (ingress/midstream/egress),
                                                              action (pass/block/modify/redact/stop/
                                                              inject_disclaimer/...)
checkstream_rule_hits_total                        counter    policy, rule, action, mode
checkstream_stage_latency_seconds                  histogram  stage (ingress/midstream/egress/
                                                              classifier/upstream_first_byte/...)
checkstream_classifier_info                        gauge (1)  classifier, provider, version
checkstream_classifier_calls_total                 counter    classifier, outcome
                                                              (ok/timeout/failed)
checkstream_policy_info                            gauge (1)  version (only the current one is 1)
checkstream_policy_reloads_total                   counter    outcome (ok/error)
checkstream_policy_reload_errors_total             counter    (none)
checkstream_audit_queue_depth                      gauge      (none)
checkstream_audit_records_written_total            counter    kind (decision/recovery)
checkstream_audit_write_errors_total               counter    (none)
checkstream_audit_batch_seconds                    histogram  (none): one write+sync of a batch
=================================================  =========  =====================================
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
    "LATENCY_BUCKETS",
    "POLICY_INFO",
    "POLICY_RELOADS",
    "POLICY_RELOAD_ERRORS",
    "REQUESTS",
    "RULE_HITS",
    "STAGE_LATENCY",
    "render_latest",
    "set_policy_version",
]

# From 50 µs (a midstream check) to 10 s (a slow upstream), roughly x2.5 per step.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

REQUESTS = Counter("checkstream_requests", "Requests handled.", ["endpoint", "stream", "outcome"])
DECISIONS = Counter(
    "checkstream_decisions", "Decisions taken, by phase and action.", ["phase", "action"]
)
RULE_HITS = Counter(
    "checkstream_rule_hits", "Rules fired (shadow-mode hits included).",
    ["policy", "rule", "action", "mode"],
)  # fmt: skip
STAGE_LATENCY = Histogram(
    "checkstream_stage_latency_seconds", "Time spent per stage.", ["stage"],
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
CLASSIFIER_INFO = Gauge(
    "checkstream_classifier_info", "Loaded classifiers (value 1): which provider runs them.",
    ["classifier", "provider", "version"],
)  # fmt: skip
CLASSIFIER_CALLS = Counter(
    "checkstream_classifier_calls", "Classifier calls by outcome.", ["classifier", "outcome"]
)
POLICY_INFO = Gauge(
    "checkstream_policy_info", "The policy set version serving now (value 1).", ["version"]
)
POLICY_RELOADS = Counter("checkstream_policy_reloads", "Policy reload attempts.", ["outcome"])
POLICY_RELOAD_ERRORS = Counter(
    "checkstream_policy_reload_errors", "Policy reloads rejected (the old set kept serving)."
)
AUDIT_QUEUE_DEPTH = Gauge(
    "checkstream_audit_queue_depth", "Decision records accepted but not yet written."
)
AUDIT_RECORDS_WRITTEN = Counter(
    "checkstream_audit_records_written", "Entries written to the decision log.", ["kind"]
)
AUDIT_WRITE_ERRORS = Counter(
    "checkstream_audit_write_errors", "Failed writes to the decision log (retried)."
)
AUDIT_BATCH_SECONDS = Histogram(
    "checkstream_audit_batch_seconds", "Writing and syncing one batch of decision records.",
    buckets=LATENCY_BUCKETS,
)  # fmt: skip


def set_policy_version(version: str) -> None:
    """Mark ``version`` as the serving policy set (and no other)."""
    POLICY_INFO.clear()
    POLICY_INFO.labels(version=version).set(1)


def render_latest(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """Return the exposition text and its content type, for a ``/metrics`` route."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
