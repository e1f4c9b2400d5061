"""The node agent: keep a node's PolicyStore on the control plane's latest signed bundle.

Each poll asks for the channel's latest with ``If-None-Match`` (the version running, and the last
version refused, so a bad bundle is not fetched again and again): unchanged is a 304. A new
bundle is verified against the *pinned* public key, its file hashes and a full policy load while
it is unpacked aside; only then does it go live::

    POLICIES_DIR/versions/<version>/   one directory per installed bundle (never edited)
    POLICIES_DIR/current -> versions/<version>   swapped by an atomic rename of a symlink

and the node's :class:`~checkstream.policy.PolicyStore`, which reads ``POLICIES_DIR/current``, is
reloaded: it builds the new set aside and swaps its reference, so streams in flight finish on the
set they started with. Anything that fails keeps the old set serving and is reported in the next
heartbeat. After a restart the node serves ``current`` (the last verified bundle) even while the
control plane is unreachable.

``Agent(store, ...)`` with ``await agent.poll_once()`` / ``await agent.heartbeat()`` /
``await agent.run()`` is the library API a proxy or sidecar runs in its own event loop;
``checkstream agent`` runs the same loop as a process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

import checkstream
from checkstream.audit.keys import VerifyKeyLike, load_public_key
from checkstream.control.bundle import BundleError, verify_bundle
from checkstream.control.telemetry import AggregateMetrics, Heartbeat
from checkstream.policy import PolicyStore
from checkstream.policy.loader import RegistryLike

__all__ = ["Agent", "PollResult", "bootstrap", "current_path"]

log = logging.getLogger("checkstream.control.agent")

KEEP_VERSIONS = 3
TelemetrySource = Callable[[], tuple[str, AggregateMetrics]]


def current_path(policies_dir: str | os.PathLike[str]) -> Path:
    """The path a node's PolicyStore reads: a symlink to the installed bundle serving now."""
    return Path(policies_dir) / "current"


@dataclass(frozen=True, slots=True)
class PollResult:
    outcome: Literal["unchanged", "installed", "rejected", "error", "none_released"]
    version: str | None  # the version serving after the poll
    error: str | None = None
    offered: str | None = None  # the version the control plane offered, if one was fetched


class Agent:
    def __init__(
        self,
        store: PolicyStore | None,
        *,
        control_url: str,
        node_id: str,
        token: str,
        public_key: VerifyKeyLike,
        policies_dir: str | os.PathLike[str],
        channel: str = "stable",
        mode: Literal["proxy", "sidecar"] = "proxy",
        interval: float = 30.0,
        registry: RegistryLike | None = None,
        telemetry: TelemetrySource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        software_version: str = checkstream.__version__,
    ) -> None:
        """``store`` must read :func:`current_path` of ``policies_dir``; None: the agent opens
        one there itself (now if a bundle is installed, else after the first install)."""
        self.policies_dir = Path(policies_dir)
        self.versions_dir = self.policies_dir / "versions"
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self.current = current_path(self.policies_dir)
        self.public_key = load_public_key(public_key)  # fails now, not at the first bundle
        self.registry = registry
        if store is None and self.current.exists():
            store = PolicyStore(self.current, registry=registry)
        self.store = store
        self.node_id = node_id
        self.channel = channel
        self.mode: Literal["proxy", "sidecar"] = mode
        self.interval = interval
        self.telemetry = telemetry
        self.software_version = software_version
        self.last_error: str | None = None
        self.rejected: str | None = None  # the last version refused (not fetched again)
        self.installs = 0
        self._client = httpx.AsyncClient(
            base_url=control_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10.0),
            transport=transport,
        )

    @property
    def version(self) -> str | None:
        """The policy set version this node serves now."""
        return self.store.current.version if self.store is not None else None

    # ---- polling

    async def poll_once(self) -> PollResult:
        known = [v for v in (self.version, self.rejected) if v]
        headers = {"If-None-Match": ", ".join(f'"{v}"' for v in known)} if known else {}
        try:
            resp = await self._client.get(
                "/v1/bundles/latest", params={"channel": self.channel}, headers=headers)
        except httpx.HTTPError as exc:
            return self._failed(f"control plane unreachable: {exc!r}")
        if resp.status_code == 304:
            return PollResult("unchanged", self.version, self.last_error)
        if resp.status_code == 404:
            return PollResult("none_released", self.version, self.last_error)
        if resp.status_code != 200:
            return self._failed(f"GET latest bundle: HTTP {resp.status_code}: {resp.text[:200]}")
        offered = resp.headers.get("X-Checkstream-Bundle-Version")
        try:
            version = await asyncio.to_thread(self._install, resp.content)
        except (BundleError, OSError) as exc:
            self.rejected = offered
            reason = exc.reason if isinstance(exc, BundleError) else "install_failed"
            message = f"bundle {(offered or '?')[:12]} rejected ({reason}): {exc}"
            log.error("%s; still serving %s", message, (self.version or "nothing")[:12])
            self.last_error = message
            return PollResult("rejected", self.version, message, offered)
        self.last_error = None
        self.rejected = None
        self.installs += 1
        log.info("policy bundle %s installed and serving", version[:12])
        return PollResult("installed", version, None, offered)

    def _failed(self, message: str) -> PollResult:
        # A network error says nothing about a bundle: it does not replace ``last_error``.
        log.warning("%s; still serving %s", message, (self.version or "nothing")[:12])
        return PollResult("error", self.version, message)

    def _install(self, data: bytes) -> str:
        """Verify aside, then swap the link and reload the store; raise BundleError on failure."""
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.versions_dir))
        try:
            bundle, _ = verify_bundle(data, self.public_key, dest=staging / "p",
                                      registry=self.registry)
            target = self.versions_dir / bundle.version
            if target.exists():  # installed before (e.g. rolled back to): the same verified files
                shutil.rmtree(staging)
            else:
                os.replace(staging / "p", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        previous = os.readlink(self.current) if self.current.is_symlink() else None
        self._point_current(Path("versions") / bundle.version)
        if self.store is None:
            try:
                self.store = PolicyStore(self.current, registry=self.registry)
            except Exception as exc:
                self._restore(previous)
                raise BundleError("invalid_policy", f"cannot serve the bundle: {exc}") from None
        else:
            result = self.store.reload()
            if not result.ok or result.version != bundle.version:
                self._restore(previous)
                self.store.reload()
                why = result.error or (
                    f"the PolicyStore serves {result.version[:12]} after the reload; is it "
                    f"reading {self.current}?")
                raise BundleError("invalid_policy", f"swap failed: {why}")
        self._prune(keep={bundle.version, Path(previous).name if previous else ""})
        return bundle.version

    def _point_current(self, target: Path) -> None:
        tmp = self.policies_dir / f".current-{os.getpid()}-{time.monotonic_ns()}"
        os.symlink(target, tmp, target_is_directory=True)
        os.replace(tmp, self.current)  # atomic: readers see the old link or the new one

    def _restore(self, previous: str | None) -> None:
        if previous is not None:
            self._point_current(Path(previous))
        else:
            with contextlib.suppress(FileNotFoundError):
                self.current.unlink()

    def _prune(self, keep: set[str]) -> None:
        dirs = sorted((p for p in self.versions_dir.iterdir()
                       if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: p.stat().st_mtime, reverse=True)
        for old in dirs[KEEP_VERSIONS:]:
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)

    # ---- heartbeat

    async def heartbeat(self) -> dict[str, object] | None:
        """Send status and the interval's aggregate telemetry; the reply, or None if it failed."""
        interval, metrics = self.telemetry() if self.telemetry else (None, AggregateMetrics())
        beat = Heartbeat(
            node_id=self.node_id, mode=self.mode, software_version=self.software_version,
            policy_version=self.version, channel=self.channel, interval=interval,
            policy_error=self.last_error[:2000] if self.last_error else None, metrics=metrics,
        )
        try:
            resp = await self._client.post(
                f"/v1/nodes/{self.node_id}/heartbeat",
                content=beat.model_dump_json(exclude_none=True),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            log.warning("heartbeat failed: %r", exc)
            return None
        if resp.status_code != 200:
            log.warning("heartbeat refused: HTTP %s %s", resp.status_code, resp.text[:200])
            return None
        reply: dict[str, object] = resp.json()
        return reply

    # ---- the loop

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll and heartbeat every ``interval`` seconds until ``stop`` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.poll_once()
                await self.heartbeat()
            except Exception:  # the loop must outlive any one bad round
                log.exception("control agent round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def aclose(self) -> None:
        await self._client.aclose()


def bootstrap(**agent_args: Any) -> PollResult:
    """One poll from synchronous code (a node starting with nothing installed yet), on a private
    event loop in a worker thread, so it works whether or not the caller runs a loop."""

    async def once() -> PollResult:
        agent = Agent(None, **agent_args)
        try:
            return await agent.poll_once()
        finally:
            await agent.aclose()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="checkstream-agent") as pool:
        return pool.submit(asyncio.run, once()).result()
