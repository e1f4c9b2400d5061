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

Transport: ``https://`` URLs verify the control plane against ``ca`` (else the system's trust
store); ``cert``/``key`` present the node's client certificate for mutual TLS, where the
certificate's node id must be the one this agent posts as.

Full evidence (opt-in, ``evidence_log=``): the agent ships the decision log's
new records (:mod:`checkstream.control.evidence_shipper`) before each heartbeat, which reports
a failure as ``evidence_error``.

``Agent(store, ...)`` with ``await agent.poll_once()`` / ``await agent.heartbeat()`` /
``await agent.ship_evidence()`` / ``await agent.run()`` is the library API a proxy or sidecar
runs in its own event loop; ``checkstream agent`` runs the same loop as a process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import ssl
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
from checkstream.control.evidence_shipper import EvidenceShipper, ShipError
from checkstream.control.telemetry import AggregateMetrics, Heartbeat
from checkstream.control.tls import client_context
from checkstream.policy import PolicyStore
from checkstream.policy.loader import RegistryLike

__all__ = ["Agent", "PollResult", "ShipResult", "bootstrap", "current_path"]

log = logging.getLogger("checkstream.control.agent")

KEEP_VERSIONS = 3
MAX_SEGMENTS_PER_ROUND = 64  # bounds one round's upload (64 x 1 MiB); the rest goes next round
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


@dataclass(frozen=True, slots=True)
class ShipResult:
    records: int  # records the control plane stored in this round
    segments: int
    error: str | None = None
    last_seq: int | None = None  # the last record shipped so far (this round or before)


class Agent:
    def __init__(
        self,
        store: PolicyStore | None,
        *,
        control_url: str,
        node_id: str,
        token: str | None,
        public_key: VerifyKeyLike,
        policies_dir: str | os.PathLike[str],
        channel: str = "stable",
        mode: Literal["proxy", "sidecar"] = "proxy",
        interval: float = 30.0,
        registry: RegistryLike | None = None,
        telemetry: TelemetrySource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        software_version: str = checkstream.__version__,
        ca: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        evidence_log: str | os.PathLike[str] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """``store`` must read :func:`current_path` of ``policies_dir``; None: the agent opens
        one there itself (now if a bundle is installed, else after the first install).
        ``token``: None under mutual TLS when the control plane takes the certificate alone.
        ``ca``/``cert``/``key``: PEM files (trust; this node's client certificate and key).
        ``evidence_log``: ship this decision log (opt-in); ``state_dir`` (default
        ``policies_dir``) keeps what has been shipped."""
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
        self.evidence_error: str | None = None
        self.shipper = (EvidenceShipper(evidence_log, state_dir or self.policies_dir)
                        if evidence_log is not None else None)
        self._tls = control_url.startswith("https://")
        self._client_cert = cert is not None
        verify: ssl.SSLContext | bool = True  # https:// with the system's trust store
        if ca is not None or cert is not None or key is not None:
            verify = client_context(_path(ca), _path(cert), _path(key))
        self._client = httpx.AsyncClient(
            base_url=control_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=httpx.Timeout(10.0),
            transport=transport,
            verify=verify,
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
            return self._failed(f"control plane unreachable: {exc!r}{self._hint(exc)}")
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

    def _hint(self, exc: httpx.HTTPError) -> str:
        if self._tls and self._client_cert and isinstance(
                exc, httpx.RemoteProtocolError | httpx.ReadError):
            # TLS 1.3 verifies the client certificate after the client's side of the handshake,
            # so a refused certificate shows up as a connection closed without an answer.
            return (" (closed during the TLS handshake: was this node's client certificate "
                    "refused? check --cert/--key against the control plane's --client-ca)")
        return ""

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
            evidence_error=self.evidence_error[:2000] if self.evidence_error else None,
        )
        try:
            resp = await self._client.post(
                f"/v1/nodes/{self.node_id}/heartbeat",
                content=beat.model_dump_json(exclude_none=True),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            log.warning("heartbeat failed: %r%s", exc, self._hint(exc))
            return None
        if resp.status_code != 200:
            log.warning("heartbeat refused: HTTP %s %s", resp.status_code, resp.text[:200])
            return None
        reply: dict[str, object] = resp.json()
        return reply

    # ---- full evidence

    async def ship_evidence(self) -> ShipResult:
        """Ship the decision log's records the control plane does not hold yet. A 409 that
        carries the control plane's stored head (a replayed or gapped segment: this node's
        state and the server's disagree, e.g. state lost or a server restored from backup)
        realigns once on that head, so nothing is sent twice and nothing is skipped."""
        if self.shipper is None:
            return ShipResult(0, 0)
        records = segments = 0
        realigned = False
        error: str | None = None
        for _ in range(MAX_SEGMENTS_PER_ROUND):
            try:
                segment = await asyncio.to_thread(self.shipper.next_segment)
            except (ShipError, OSError) as exc:
                error = f"cannot read the decision log: {exc}"
                break
            if segment is None:
                break
            try:
                resp = await self._client.post(
                    f"/v1/nodes/{self.node_id}/evidence", content=segment.data,
                    headers={"Content-Type": "application/x-ndjson"})
            except httpx.HTTPError as exc:
                error = f"evidence upload failed: {exc!r}{self._hint(exc)}"
                break
            if resp.status_code == 201:
                self.shipper.commit(segment)
                records, segments = records + segment.records, segments + 1
                continue
            reason, message, head = _error_of(resp)
            if (resp.status_code == 409 and not realigned
                    and reason in ("replayed_segment", "chain_gap", "chain_start")):
                realigned = True
                try:
                    seq, hash_ = (head or {}).get("seq"), (head or {}).get("hash")
                    self.shipper.realign(seq, hash_)
                    log.warning("evidence: %s; realigned on the control plane's stored seq %s",
                                reason, seq)
                    continue
                except (ShipError, OSError) as exc:
                    error = f"evidence refused ({reason}: {message}); cannot realign: {exc}"
                    break
            error = f"evidence refused: HTTP {resp.status_code} {reason}: {message}"
            break
        if error is not None:
            log.error("%s", error)
        elif records:
            log.info("evidence: shipped %d record(s) in %d segment(s)", records, segments)
        self.evidence_error = error
        position = self.shipper.position
        return ShipResult(records, segments, error, position.seq if position else None)

    # ---- the loop

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll and heartbeat every ``interval`` seconds until ``stop`` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.poll_once()
                await self.ship_evidence()  # first, so the heartbeat reports how it went
                await self.heartbeat()
            except Exception:  # the loop must outlive any one bad round
                log.exception("control agent round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def aclose(self) -> None:
        await self._client.aclose()


def _path(value: str | os.PathLike[str] | None) -> Path | None:
    return Path(value) if value is not None else None


def _error_of(resp: httpx.Response) -> tuple[str, str, dict[str, Any] | None]:
    """(reason, message, stored head) of a control plane error answer."""
    try:
        body = resp.json()
        return (str(body["error"]["reason"]), str(body["error"]["message"]), body.get("head"))
    except (ValueError, KeyError, TypeError):
        return "http_error", resp.text[:200], None


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
