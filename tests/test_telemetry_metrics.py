"""The shared metric set: one definition, usable in the default or in a private registry."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry

from checkstream.telemetry import metrics
from checkstream.telemetry.metrics import Metrics


def test_each_registry_gets_the_whole_set_under_checkstream_names() -> None:
    first, second = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    first.rule_hits.labels("pii", "email", "midstream", "redact", "enforce").inc()
    assert second.registry.get_sample_value(
        "checkstream_rule_hits_total",
        {"policy": "pii", "rule": "email", "phase": "midstream", "action": "redact",
         "mode": "enforce"},
    ) is None  # fmt: skip
    names = {m.name for m in first.registry.collect()}
    assert names and all(name.startswith("checkstream_") for name in names)
    assert {"checkstream_requests", "checkstream_audit_queue_depth"} <= names


def test_module_aliases_are_the_default_registry_set() -> None:
    assert metrics.RULE_HITS is metrics.DEFAULT.rule_hits
    assert metrics.PATTERN_TIMEOUTS is metrics.DEFAULT.pattern_timeouts
    assert metrics.DEFAULT.registry is REGISTRY


def test_policy_version_keeps_one_series_per_tenant() -> None:
    m = Metrics(CollectorRegistry())
    m.set_policy_version("acme", "v1")
    m.set_policy_version("other", "x1")
    m.set_policy_version("acme", "v2")
    samples = {
        (s.labels["tenant"], s.labels["version"])
        for family in m.registry.collect()
        if family.name == "checkstream_policy_info"
        for s in family.samples
    }
    assert samples == {("acme", "v2"), ("other", "x1")}
