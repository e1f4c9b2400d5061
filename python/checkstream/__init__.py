"""checkstream: streaming guardrails for LLM applications.

The hot path lives in Rust (``checkstream._core``); this package orchestrates it: policies,
classifiers, the HTTP proxy, the vLLM sidecar, telemetry and the control plane.
"""

from checkstream._core import __version__

__all__ = ["__version__"]
