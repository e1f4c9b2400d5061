"""``checkstream sidecar serve``: the merged safe stream in front of the co-located vLLM server.

Inside vLLM the logits processor masks, adapts decoding and controls tool calls, but whatever vLLM
has already returned cannot be taken back: a phrase spelled by a tokenisation the masker does not
cover, an e-mail address or a regex match would reach the client before the in-engine reactive
layer saw it. So the client talks to this sidecar instead: it is the proxy app itself (same
codecs, StreamGuard holdback, ingress/egress and decision log) with vLLM's OpenAI-compatible
server as its backend and the guardrails derived from ``sidecar-config.yaml``:

==================================  ===========================================================
sidecar-config.yaml                 proxy
==================================  ===========================================================
``guardrails.reactive.*``           ``guardrails.midstream`` (enabled, holdback_size,
                                    check_interval)
``classifiers.models``              ``guardrails.midstream.classifiers`` (checked at start-up)
``policies.path`` / ``hot_reload``  ``policies.path`` / ``hot_reload`` (unset: the shipped pack)
``--vllm-url``                      ``backend.url`` (provider ``openai``)
==================================  ===========================================================

The preventive and tool sections are the processor's (vLLM reads the same file through
``--additional-config``); nothing of them runs here. Of the environment only
``CHECKSTREAM_ADMIN_TOKEN`` is read: a managed ``OPENAI_API_KEY`` would replace the client's key
toward vLLM, which is not what a sidecar should do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from checkstream.proxy.config import ProxyConfig, config_from_mapping
from checkstream.sidecar.config import SidecarConfig

DEFAULT_VLLM_URL = "http://127.0.0.1:8000/v1"
DEFAULT_PORT = 8080
_ENV_KEPT = ("CHECKSTREAM_ADMIN_TOKEN",)


def proxy_mapping(
    config: SidecarConfig,
    *,
    vllm_url: str = DEFAULT_VLLM_URL,
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    decision_log: str | Path | None = None,
    full_evidence: bool = False,
) -> dict[str, Any]:
    """The proxy ``config.yaml`` (as a mapping) that serves ``config`` in front of vLLM."""
    reactive = config.guardrails.reactive
    mapping: dict[str, Any] = {
        "server": {"host": host, "port": port},
        "backend": {"url": vllm_url, "provider": "openai"},
        "guardrails": {
            "midstream": {
                "enabled": reactive.enabled,
                "holdback_size": reactive.holdback_size,
                "check_interval": reactive.check_interval,
                "classifiers": list(config.classifiers.models),
            }
        },
        "policies": {
            "path": [config.policies.path] if config.policies.path else [],
            "hot_reload": config.policies.hot_reload,
        },
        "telemetry": {"mode": "full_evidence" if full_evidence else "aggregate"},
    }
    if decision_log is not None:
        mapping["telemetry"]["decision_log"] = str(decision_log)
    return mapping


def proxy_config(
    config: SidecarConfig,
    *,
    vllm_url: str = DEFAULT_VLLM_URL,
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    decision_log: str | Path | None = None,
    full_evidence: bool = False,
    env: Mapping[str, str] | None = None,
    source: str = "sidecar config",
) -> ProxyConfig:
    """Validated proxy configuration; a bad URL or port is a ``ConfigError`` naming the field."""
    env = os.environ if env is None else env
    mapping = proxy_mapping(
        config,
        vllm_url=vllm_url,
        host=host,
        port=port,
        decision_log=decision_log,
        full_evidence=full_evidence,
    )
    kept = {k: env[k] for k in _ENV_KEPT if env.get(k)}
    return config_from_mapping(mapping, source=source, env=kept)
