"""The control plane: signed policy bundles, the server that stores and serves them and collects
fleet telemetry, and the agent that keeps a node's PolicyStore on the latest bundle.

The control plane never sees LLM traffic: nodes send it only their policy version and aggregate
counts (requests, allow/redact/stop, latency percentiles, rule hits). See ``docs/control-plane.md``.
"""

from checkstream.control.bundle import (
    Bundle,
    BundleError,
    build_bundle,
    load_bundle,
    sign_bundle,
    verify_bundle,
)

__all__ = [
    "Bundle",
    "BundleError",
    "build_bundle",
    "load_bundle",
    "sign_bundle",
    "verify_bundle",
]
