"""Per-tenant serving state: the policy store (hot reload), a Guard per policy version, the
backend client."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx2

import checkstream
from checkstream.engine import Guard
from checkstream.policy import PolicySet, PolicyStore
from checkstream.policy.errors import PolicyError
from checkstream.proxy.config import ConfigError, ControlConfig, PoliciesConfig
from checkstream.proxy.tenants import Tenant
from checkstream.proxy.upstream import Upstream
from checkstream.telemetry.metrics import Metrics

log = logging.getLogger("checkstream.proxy")


def default_policy_paths() -> tuple[Path, ...]:
    """The shipped default pack: package data in a wheel, ``policies/default`` in a checkout."""
    pkg = Path(checkstream.__file__).resolve().parent
    for candidate in (pkg / "policies" / "default", pkg.parents[1] / "policies" / "default"):
        if candidate.is_dir():
            return (candidate,)
    raise ConfigError(
        "policies.path is not set and the shipped default policy pack was not found "
        f"(looked in {pkg / 'policies' / 'default'} and {pkg.parents[1] / 'policies/default'})"
    )


def shipped_policy_packs() -> tuple[Path, ...]:
    """Every shipped pack, default first (default, fca-consumer-duty, pii-strict, ...)."""
    default = default_policy_paths()[0]
    others = sorted(p for p in default.parent.iterdir()
                    if p.is_dir() and p != default and (p / "policy.yaml").exists())
    return (default, *others)


def policy_paths(cfg: PoliciesConfig) -> tuple[Path, ...]:
    return cfg.path or default_policy_paths()


class TenantRuntime:
    def __init__(self, tenant: Tenant, *, registry: Any | None, metrics: Metrics,
                 transport: httpx2.AsyncBaseTransport | None = None,
                 control: ControlConfig | None = None,
                 evidence_log: Path | None = None) -> None:
        self.tenant = tenant
        self.evidence_log = evidence_log  # the decision log an agent ships (opt-in)
        self.registry = registry
        self.metrics = metrics
        self.control = control
        self._agent: Any = None  # checkstream.control.Agent, started with the server
        self._agent_task: asyncio.Task[None] | None = None
        self._agent_stop = asyncio.Event()
        paths = self._control_paths(control) if control else policy_paths(tenant.policies)
        for p in paths:
            if not p.exists():
                raise ConfigError(f"policies.path: {p} does not exist (tenant {tenant.name!r})")
        self.store = PolicyStore(list(paths), registry=registry,
                                 on_error=self._on_reload_error, on_swap=self._on_swap)
        self._guards: dict[str, Guard] = {}
        self.upstream = Upstream(tenant.backend, transport=transport, metrics=metrics)
        metrics.set_policy_version(tenant.name, self.store.current.version)

    def _on_reload_error(self, exc: PolicyError) -> None:
        # The store has logged it; the old set serves on (and /health/ready shows the error).
        self.metrics.policy_reloads.labels(tenant=self.tenant.name, outcome="error").inc()
        self.metrics.policy_reload_errors.labels(tenant=self.tenant.name).inc()

    def _on_swap(self, fresh: PolicySet) -> None:
        self.metrics.policy_reloads.labels(tenant=self.tenant.name, outcome="ok").inc()
        self.metrics.set_policy_version(self.tenant.name, fresh.version)

    def _agent_args(self, c: ControlConfig) -> dict[str, Any]:
        token = None
        if c.token_file is not None:
            try:
                token = c.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"control.token_file: cannot read {c.token_file}: {exc}") from None
        return {"control_url": c.url, "node_id": c.node_id, "token": token,
                "public_key": c.public_key, "policies_dir": c.policies_dir,
                "channel": c.channel, "interval": c.interval, "registry": self.registry,
                "ca": c.ca, "cert": c.cert, "key": c.key,
                "evidence_log": self.evidence_log if c.ship_evidence else None}

    def _control_paths(self, c: ControlConfig) -> tuple[Path, ...]:
        """``policies_dir/current``; a node with nothing installed yet fetches a bundle first."""
        from checkstream.control.agent import bootstrap, current_path

        current = current_path(c.policies_dir)
        if not current.exists():
            result = bootstrap(**self._agent_args(c))
            if not current.exists():
                raise ConfigError(f"control: no policy bundle installed in {c.policies_dir} and "
                                  f"none fetched from {c.url} ({result.outcome}: {result.error})")
        return (current,)

    def start(self) -> None:
        self.guard()  # load the set's classifiers now, not on the first request
        p = self.tenant.policies
        if p.hot_reload:
            self.store.start(interval_s=p.reload_interval, watch=True)
        if self.control is not None:
            from checkstream.control.agent import Agent
            from checkstream.control.telemetry import MetricsSampler

            self._agent = Agent(self.store, telemetry=MetricsSampler(self.metrics).sample,
                                **self._agent_args(self.control))
            self._agent_task = asyncio.get_running_loop().create_task(
                self._agent.run(self._agent_stop))

    def guard(self) -> Guard:
        """The Guard for the set serving now; a request keeps it for its whole life."""
        current = self.store.current
        g = self._guards.get(current.version)
        if g is None:
            g = Guard(current, self.registry)
            self._guards = {current.version: g}  # older Guards live on in their requests
            self._note_classifiers(g)
        return g

    def _note_classifiers(self, g: Guard) -> None:
        """``checkstream_classifier_info``: each classifier the set uses and the execution
        provider really running it (e.g. CPUExecutionProvider when CUDA was asked for)."""
        if g.registry is None:
            return
        for name in sorted(g.policy_set.classifier_names):
            c = g.registry.get(name)
            self.metrics.classifier_info.labels(
                classifier=name, provider=str(c.provider), version=str(c.version)).set(1)

    async def aclose(self) -> None:
        if self._agent_task is not None:
            self._agent_stop.set()
            await self._agent_task
            await self._agent.aclose()
        self.store.stop()
        await self.upstream.aclose()
