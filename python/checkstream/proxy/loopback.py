"""The replay upstream and the proxy together on loopback: for the demo, tests and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from checkstream.proxy.config import ProxyConfig, config_from_mapping
from checkstream.proxy.replay import ReplayUpstream
from checkstream.proxy.server import BackgroundServer


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) \
            else v
    return out


class LoopbackStack:
    """``replay`` (+ its server ``upstream``) and ``proxy`` in front of it.

    ``config`` is merged over ``backend.url`` (pointing at the replay) and ``policies.path``.
    """

    def __init__(self, *, policies: str | Path | None = None,
                 config: Mapping[str, Any] | None = None,
                 replay: ReplayUpstream | None = None, decision_log: Any | None = None) -> None:
        self.replay = replay or ReplayUpstream()
        self.upstream = BackgroundServer(self.replay.app, name="replay")
        self._policies = policies
        self._extra = dict(config or {})
        self._decision_log = decision_log
        self.proxy: BackgroundServer | None = None
        self.config: ProxyConfig | None = None
        self.app: Any = None

    def start(self) -> LoopbackStack:
        from checkstream.proxy.app import create_app

        self.upstream.start()
        mapping: dict[str, Any] = {"backend": {"url": self.upstream.url + "/v1"}}
        if self._policies is not None:
            mapping["policies"] = {"path": str(self._policies)}
        mapping = _merge(mapping, self._extra)
        try:
            self.config = config_from_mapping(mapping, source="loopback", env={})
            self.app = create_app(self.config, decision_log=self._decision_log)
            self.proxy = BackgroundServer(self.app, name="proxy").start()
        except BaseException:
            self.upstream.stop()
            raise
        return self

    @property
    def state(self) -> Any:
        return self.app.extensions["checkstream"]

    @property
    def url(self) -> str:
        assert self.proxy is not None
        return self.proxy.url

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.upstream.stop()

    def __enter__(self) -> LoopbackStack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
