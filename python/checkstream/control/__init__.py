"""The control plane: signed policy bundles, the server that stores and serves them and collects
fleet telemetry, and the agent that keeps a node's PolicyStore on the latest bundle.

The control plane never sees LLM traffic: nodes send it only their policy version and aggregate
counts (requests, allow/redact/stop, latency percentiles, rule hits). See ``docs/control-plane.md``.
"""

from checkstream.control.agent import Agent, PollResult, current_path
from checkstream.control.bundle import (
    Bundle,
    BundleError,
    build_bundle,
    load_bundle,
    sign_bundle,
    verify_bundle,
)
from checkstream.control.server import create_app
from checkstream.control.storage import ControlStore
from checkstream.control.telemetry import AggregateMetrics, Heartbeat, MetricsSampler

__all__ = [
    "Agent",
    "AggregateMetrics",
    "Bundle",
    "BundleError",
    "ControlStore",
    "Heartbeat",
    "MetricsSampler",
    "PollResult",
    "build_bundle",
    "create_app",
    "current_path",
    "load_bundle",
    "sign_bundle",
    "verify_bundle",
]
