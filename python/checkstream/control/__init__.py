"""The control plane: signed policy bundles and their release history, the server that stores and
serves them (over HTTP, TLS or mutual TLS) and collects fleet telemetry and, opt-in, full
evidence, and the agent that keeps a node's PolicyStore on its channel's latest bundle.

The control plane never sees LLM traffic: nodes send it only their policy version and aggregate
counts (requests, allow/redact/stop, latency percentiles, rule hits); decision logs only when
both ends opt in. See ``docs/control-plane.md``.
"""

from checkstream.control.agent import Agent, PollResult, ShipResult, current_path
from checkstream.control.bundle import (
    Bundle,
    BundleError,
    build_bundle,
    load_bundle,
    sign_bundle,
    verify_bundle,
)
from checkstream.control.evidence_chain import SegmentRefused, check_segment
from checkstream.control.evidence_shipper import EvidenceShipper
from checkstream.control.server import create_app
from checkstream.control.serving import ControlServer
from checkstream.control.storage import ControlStore
from checkstream.control.telemetry import AggregateMetrics, Heartbeat, MetricsSampler
from checkstream.control.tls import ServerTLS, client_context

__all__ = [
    "Agent",
    "AggregateMetrics",
    "Bundle",
    "BundleError",
    "ControlServer",
    "ControlStore",
    "EvidenceShipper",
    "Heartbeat",
    "MetricsSampler",
    "PollResult",
    "SegmentRefused",
    "ServerTLS",
    "ShipResult",
    "build_bundle",
    "check_segment",
    "client_context",
    "create_app",
    "current_path",
    "load_bundle",
    "sign_bundle",
    "verify_bundle",
]
