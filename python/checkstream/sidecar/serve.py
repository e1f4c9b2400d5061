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
``--vllm-socket`` / ``vllm.socket``   ``backend.url`` ``http://localhost/v1`` over the unix
                                    socket (an httpx2 ``uds`` transport; vLLM ``--uds PATH``)
``classifiers.embedding_mode``      nothing: vLLM exposes no hidden states to a plugin, so
                                    classifiers score the detokenised text (a start-up warning)
==================================  ===========================================================

The socket is how the spec's pod deploys the pair (a shared ``emptyDir`` volume, no port
between the containers). ``--vllm-url`` and ``--vllm-socket`` exclude each other; a socket
given on the command line wins over ``vllm.socket`` in the file, and so does a ``--vllm-url``
on the command line. The socket must exist when the sidecar starts (vLLM binds it before it loads
the model, so start vLLM first or let the sidecar's container restart).

The preventive and tool sections are the processor's (vLLM reads the same file through
``--additional-config``); nothing of them runs here. Of the environment only
``CHECKSTREAM_ADMIN_TOKEN`` is read: a managed ``OPENAI_API_KEY`` would replace the client's key
toward vLLM, which is not what a sidecar should do.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checkstream.proxy.config import ProxyConfig, config_from_mapping
from checkstream.sidecar.config import SidecarConfig, SidecarConfigError

if TYPE_CHECKING:
    import httpx2

DEFAULT_VLLM_URL = "http://127.0.0.1:8000/v1"
# The URL requests carry over the socket: vLLM routes on the path; the host is only a header.
SOCKET_URL = "http://localhost/v1"
DEFAULT_PORT = 8080
_ENV_KEPT = ("CHECKSTREAM_ADMIN_TOKEN",)


def resolve_backend(
    config: SidecarConfig, *, vllm_url: str | None, vllm_socket: str | None
) -> tuple[str, str | None]:
    """``(backend URL, unix socket or None)`` from the flags and ``vllm.socket``.

    Both flags at once is an error; a socket path that does not exist (or is not a socket) is
    an error naming it. Without flags, ``vllm.socket`` is used, else the default URL."""
    if vllm_url is not None and vllm_socket is not None:
        raise SidecarConfigError(
            "give --vllm-url or --vllm-socket, not both (one is how to reach vLLM: a TCP URL or "
            "the unix socket vLLM serves with --uds)"
        )
    if vllm_url is not None:
        return vllm_url, None
    path = vllm_socket if vllm_socket is not None else config.vllm.socket
    if path is None:
        return DEFAULT_VLLM_URL, None
    origin = "--vllm-socket" if vllm_socket is not None else "vllm.socket"
    check_socket(path, origin)
    return SOCKET_URL, path


def check_socket(path: str, origin: str = "--vllm-socket") -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise SidecarConfigError(
            f"{origin}: {path} does not exist; start vLLM's OpenAI server with --uds {path} "
            "first (it creates the socket before loading the model)"
        ) from None
    except OSError as err:
        raise SidecarConfigError(f"{origin}: cannot stat {path}: {err.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise SidecarConfigError(f"{origin}: {path} is not a unix socket")


def socket_transport(path: str) -> httpx2.AsyncHTTPTransport:
    """The proxy's upstream transport over vLLM's unix socket, with the connection limits the
    proxy's own client uses (a transport passed in replaces the client's pool)."""
    import httpx2

    return httpx2.AsyncHTTPTransport(
        uds=path, limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=200)
    )


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
