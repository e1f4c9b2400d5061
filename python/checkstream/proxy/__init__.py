"""Proxy mode: an OpenAI- and Anthropic-compatible streaming guardrail proxy.

``create_app(config)`` builds the Quart app; ``load_config(path)`` reads ``config.yaml``;
``ReplayUpstream`` is the built-in replay backend (demo and test fixture); ``BackgroundServer``
runs an app on a loopback port.
"""

from checkstream.proxy.config import ConfigError, ProxyConfig, config_from_mapping, load_config

__all__ = ["ConfigError", "ProxyConfig", "config_from_mapping", "create_app", "load_config"]


def __getattr__(name: str) -> object:
    # The app pulls in Quart, httpx and the engine: import it only when asked for.
    if name == "create_app":
        from checkstream.proxy.app import create_app

        return create_app
    raise AttributeError(name)
