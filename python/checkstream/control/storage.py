"""The control plane's data directory: signed bundles as immutable files, everything else in SQLite.

::

    DATA/bundles/<version>.json   signed bundle bytes, written once (temp file + rename)
    DATA/control.db               releases (channel history), nodes (last heartbeat), telemetry,
                                  evidence segments (see evidence_store)
    DATA/evidence/<node_id>/decisions.jsonl   each node's shipped decision log (append-only)

A version is stored once and never rewritten; releasing it on a channel (or rolling back)
appends to that channel's history (:mod:`checkstream.control.releases`), whose last entry is the
channel's latest. The history is what tells a node that is merely *outdated* (running an earlier
release) from one that has *drifted* (running a set this channel never released).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkstream.control.evidence_store import EvidenceStore
from checkstream.control.releases import Action, ReleaseEvent, release_stack
from checkstream.control.telemetry import Heartbeat, parse_interval

__all__ = ["ControlStore", "NodeRow", "Release", "RollbackError"]

# Columns added after the first release of the schema: (table, column, declaration).
_MIGRATIONS = (
    ("releases", "action", "TEXT NOT NULL DEFAULT 'publish'"),
    ("releases", "actor", "TEXT NOT NULL DEFAULT 'admin'"),
    ("releases", "source", "TEXT"),
    ("nodes", "evidence_error", "TEXT"),
)


class RollbackError(Exception):
    """Nothing to roll back to; the message says what the channel holds."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bundles (
    version TEXT PRIMARY KEY, content_sha256 TEXT NOT NULL, key_id TEXT NOT NULL,
    size INTEGER NOT NULL, stored_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL,
    version TEXT NOT NULL REFERENCES bundles(version), released_at REAL NOT NULL,
    action TEXT NOT NULL DEFAULT 'publish', actor TEXT NOT NULL DEFAULT 'admin', source TEXT);
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY, mode TEXT NOT NULL, software_version TEXT NOT NULL,
    policy_version TEXT, channel TEXT NOT NULL, policy_error TEXT,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, last_metrics TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS telemetry (
    id INTEGER PRIMARY KEY AUTOINCREMENT, node_id TEXT NOT NULL, received_at REAL NOT NULL,
    interval_start REAL, interval_end REAL, mode TEXT NOT NULL, policy_version TEXT,
    requests INTEGER NOT NULL, tokens_generated INTEGER, allow INTEGER NOT NULL,
    redact INTEGER NOT NULL, stop INTEGER NOT NULL, latency_p50_ms REAL, latency_p95_ms REAL,
    latency_p99_ms REAL, rules_triggered TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS telemetry_time ON telemetry(received_at);
"""


@dataclass(frozen=True, slots=True)
class Release:
    channel: str
    version: str
    released_at: float


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    mode: str
    software_version: str
    policy_version: str | None
    channel: str
    policy_error: str | None
    first_seen: float
    last_seen: float
    last_metrics: dict[str, Any]
    evidence_error: str | None = None


class ControlStore:
    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir)
        self.bundle_dir = self.root / "bundles"
        self.bundle_dir.mkdir(parents=True, exist_ok=True)
        # One connection, used from the server's event loop; the lock covers other threads.
        self._db = sqlite3.connect(self.root / "control.db", check_same_thread=False)
        self._db.executescript(_SCHEMA)
        for table, column, decl in _MIGRATIONS:
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        self._db.commit()
        self._lock = threading.Lock()
        self.evidence = EvidenceStore(self.root / "evidence", self._db, self._lock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- bundles and releases

    def bundle_path(self, version: str) -> Path:
        return self.bundle_dir / f"{version}.json"

    def has_bundle(self, version: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM bundles WHERE version = ?", (version,)).fetchone()
        return row is not None

    def put_bundle(self, version: str, data: bytes, *, content_sha256: str, key_id: str) -> bool:
        """Store a signed bundle; False (and nothing written) if the version is already held."""
        if self.has_bundle(version):
            return False
        fd, tmp = tempfile.mkstemp(dir=self.bundle_dir, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.bundle_path(version))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO bundles VALUES (?, ?, ?, ?, ?)",
                (version, content_sha256, key_id, len(data), time.time()),
            )
        return True

    def read_bundle(self, version: str) -> bytes | None:
        if not self.has_bundle(version):
            return None
        return self.bundle_path(version).read_bytes()

    def resolve_version(self, text: str) -> list[str]:
        """Stored versions equal to ``text`` or starting with it (a short version from the
        fleet page); the caller decides what none or several mean."""
        with self._lock:
            rows = self._db.execute(
                "SELECT version FROM bundles WHERE version = ? OR substr(version, 1, ?) = ? "
                "ORDER BY version LIMIT 10",
                (text, len(text), text),
            ).fetchall()
        return [r[0] for r in rows]

    def release(
        self, channel: str, version: str, *, actor: str = "admin", action: Action = "publish",
        source: str | None = None,
    ) -> bool:
        """Make ``version`` the channel's latest; False (nothing recorded) if it already is."""
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT version FROM releases WHERE channel = ? ORDER BY id DESC LIMIT 1",
                (channel,),
            ).fetchone()
            if row is not None and row[0] == version:
                return False
            self._db.execute(
                "INSERT INTO releases (channel, version, released_at, action, actor, source) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (channel, version, time.time(), action, actor, source),
            )
        return True

    def rollback(self, channel: str, *, actor: str = "admin") -> ReleaseEvent:
        """Go back to the release before the current one on ``channel`` (the history replayed
        as a stack); raise :class:`RollbackError` when there is none."""
        with self._lock, self._db:  # one transaction: two rollbacks at once pop twice, not once
            stack = release_stack(self._events(channel))
            if not stack:
                raise RollbackError(f"nothing has been released on channel {channel!r}")
            if len(stack) == 1:
                raise RollbackError(
                    f"channel {channel!r} has no earlier release to roll back to (it serves "
                    f"{stack[0][:12]}, its only release left)")
            target = stack[-2]
            self._db.execute(
                "INSERT INTO releases (channel, version, released_at, action, actor, source) "
                "VALUES (?, ?, ?, 'rollback', ?, ?)",
                (channel, target, time.time(), actor, stack[-1]),
            )
            return self._events(channel)[-1]

    def _events(self, channel: str) -> list[ReleaseEvent]:
        rows = self._db.execute(
            "SELECT id, channel, version, released_at, action, actor, source FROM releases "
            "WHERE channel = ? ORDER BY id",
            (channel,),
        ).fetchall()
        return [ReleaseEvent(*r) for r in rows]

    def history(self, channel: str) -> list[ReleaseEvent]:
        """Every release event of ``channel``, oldest first."""
        with self._lock:
            return self._events(channel)

    def latest(self, channel: str) -> Release | None:
        with self._lock:
            row = self._db.execute(
                "SELECT channel, version, released_at FROM releases WHERE channel = ? "
                "ORDER BY id DESC LIMIT 1",
                (channel,),
            ).fetchone()
        return Release(*row) if row else None

    def channels(self) -> dict[str, Release]:
        with self._lock:
            rows = self._db.execute(
                "SELECT channel, version, released_at FROM releases WHERE id IN "
                "(SELECT MAX(id) FROM releases GROUP BY channel) ORDER BY channel"
            ).fetchall()
        return {r[0]: Release(*r) for r in rows}

    # ---- nodes and telemetry

    def record_heartbeat(self, node_id: str, beat: Heartbeat, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        m = beat.metrics
        start = end = None
        if beat.interval is not None:
            s, e = parse_interval(beat.interval)
            start, end = s.timestamp(), e.timestamp()
        metrics_json = json.dumps(m.model_dump(mode="json"), sort_keys=True)
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO nodes (node_id, mode, software_version, policy_version, channel, "
                "policy_error, first_seen, last_seen, last_metrics, evidence_error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(node_id) DO "
                "UPDATE SET mode=excluded.mode, software_version=excluded.software_version, "
                "policy_version=excluded.policy_version, channel=excluded.channel, "
                "policy_error=excluded.policy_error, last_seen=excluded.last_seen, "
                "last_metrics=excluded.last_metrics, evidence_error=excluded.evidence_error",
                (node_id, beat.mode, beat.software_version, beat.policy_version, beat.channel,
                 beat.policy_error, now, now, metrics_json, beat.evidence_error),
            )
            self._db.execute(
                "INSERT INTO telemetry (node_id, received_at, interval_start, interval_end, mode, "
                "policy_version, requests, tokens_generated, allow, redact, stop, latency_p50_ms, "
                "latency_p95_ms, latency_p99_ms, rules_triggered) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (node_id, now, start, end, beat.mode, beat.policy_version, m.requests,
                 m.tokens_generated, m.decisions.allow, m.decisions.redact, m.decisions.stop,
                 m.latency_p50_ms, m.latency_p95_ms, m.latency_p99_ms,
                 json.dumps(m.rules_triggered, sort_keys=True)),
            )

    def nodes(self) -> list[NodeRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT node_id, mode, software_version, policy_version, channel, policy_error, "
                "first_seen, last_seen, last_metrics, evidence_error FROM nodes ORDER BY node_id"
            ).fetchall()
        return [
            NodeRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]), r[9])
            for r in rows
        ]

    def totals_since(self, since: float) -> dict[str, tuple[int, int, int, int]]:
        """Per node: (requests, allow, redact, stop) summed over heartbeats received since."""
        with self._lock:
            rows = self._db.execute(
                "SELECT node_id, SUM(requests), SUM(allow), SUM(redact), SUM(stop) FROM telemetry "
                "WHERE received_at >= ? GROUP BY node_id",
                (since,),
            ).fetchall()
        return {r[0]: (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}

    def telemetry(
        self, *, since: float | None = None, until: float | None = None, node_id: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Telemetry rows in the order received (``since`` inclusive, ``until`` exclusive)."""
        query = "SELECT * FROM telemetry WHERE 1=1"
        params: list[Any] = []
        for cond, value in (("received_at >= ?", since), ("received_at < ?", until),
                            ("node_id = ?", node_id)):
            if value is not None:
                query += f" AND {cond}"
                params.append(value)
        with self._lock:
            cursor = self._db.execute(query + " ORDER BY id", params)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        for row in rows:
            yield dict(zip(names, row, strict=True))
