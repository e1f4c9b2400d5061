"""The fleet view (``/v1/fleet``, the JSON twin of the ``/fleet`` page) and the telemetry CSV.

Health is the age of a node's last heartbeat: ``up`` within ``down_after`` seconds, ``down``
after; ``degraded`` when it is up but reports that it refused a bundle or failed to ship evidence.
Policy status compares the version a node runs with its channel: ``current`` (the latest),
``outdated`` (an earlier release of the channel), ``withdrawn`` (a release the channel rolled
back from) or ``drift`` (a set the channel never released, e.g. edited by hand).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from checkstream.control.evidence_store import NodeEvidence
from checkstream.control.releases import withdrawn_versions
from checkstream.control.storage import ControlStore
from checkstream.control.trends import WINDOW_S, fleet_trends

__all__ = ["TELEMETRY_COLUMNS", "fleet_view", "telemetry_csv"]

RATE_WINDOW_S = 15 * 60
HISTORY_SHOWN = 10  # release events per channel in the view (all: .../history)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def fleet_view(
    store: ControlStore, *, down_after: float, now: float | None = None
) -> dict[str, Any]:
    now = time.time() if now is None else now
    channels = store.channels()
    events = {ch: store.history(ch) for ch in channels}
    released = {ch: {e.version for e in ev if e.action != "rollback"} for ch, ev in events.items()}
    withdrawn = {ch: withdrawn_versions(ev) for ch, ev in events.items()}
    totals = store.totals_since(now - RATE_WINDOW_S)
    evidence = store.evidence.summary()
    nodes: list[dict[str, Any]] = []
    for n in store.nodes():
        age = max(0.0, now - n.last_seen)
        troubled = n.policy_error or n.evidence_error
        health = "down" if age > down_after else ("degraded" if troubled else "up")
        latest = channels.get(n.channel)
        latest_version = latest.version if latest else None
        if latest_version is None or n.policy_version == latest_version:
            status = "current" if latest_version is not None else "no_release"
        elif n.policy_version in withdrawn.get(n.channel, set()):
            status = "withdrawn"
        elif n.policy_version in released.get(n.channel, set()):
            status = "outdated"
        else:
            status = "drift"
        requests, allow, redact, stop = totals.get(n.node_id, (0, 0, 0, 0))
        m = n.last_metrics
        held = evidence.get(n.node_id)
        nodes.append({
            "node_id": n.node_id,
            "mode": n.mode,
            "software_version": n.software_version,
            "health": health,
            "last_seen": _iso(n.last_seen),
            "last_seen_age_s": round(age, 1),
            "channel": n.channel,
            "policy_version": n.policy_version,
            "latest_version": latest_version,
            "drift": latest_version is not None and n.policy_version != latest_version,
            "policy_status": status,
            "policy_error": n.policy_error,
            "latency_ms": {q: m.get(f"latency_{q}_ms") for q in ("p50", "p95", "p99")},
            "window_s": RATE_WINDOW_S,
            "requests": requests,
            "rates": {
                name: (round(count / requests, 4) if requests else None)
                for name, count in (("allow", allow), ("redact", redact), ("stop", stop))
            },
            "evidence": _evidence_json(held, n.evidence_error),
        })
    summary: dict[str, int] = {"nodes": len(nodes)}
    for key in ("up", "down", "degraded"):
        summary[key] = sum(1 for n in nodes if n["health"] == key)
    for key in ("current", "outdated", "withdrawn", "drift"):
        summary[key] = sum(1 for n in nodes if n["policy_status"] == key)
    return {
        "generated_at": _iso(now),
        "down_after_s": down_after,
        "channels": {
            ch: {"version": r.version, "released_at": _iso(r.released_at),
                 "history": [e.to_json() for e in reversed(events[ch][-HISTORY_SHOWN:])]}
            for ch, r in channels.items()
        },
        "summary": summary,
        "trends": fleet_trends(store.telemetry(since=now - WINDOW_S), now=now),
        "nodes": nodes,
    }


def _evidence_json(held: NodeEvidence | None, error: str | None) -> dict[str, Any] | None:
    if held is None and error is None:
        return None  # this node does not ship evidence
    return {
        "records": held.records if held else 0,
        "last_seq": held.last_seq if held else None,
        "last_ts": held.last_ts if held else None,
        "last_received": _iso(held.last_received) if held else None,
        "refusals": held.refusals if held else 0,
        "last_refusal": held.last_refusal if held else None,
        "node_error": error,
    }


TELEMETRY_COLUMNS = (
    "received_at", "node_id", "mode", "interval_start", "interval_end", "policy_version",
    "requests", "tokens_generated", "allow", "redact", "stop", "allow_rate", "redact_rate",
    "stop_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "rules_triggered",
)  # fmt: skip


def telemetry_csv(rows: Iterable[dict[str, Any]]) -> str:
    """The aggregate telemetry, one row per heartbeat (rules as canonical JSON)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TELEMETRY_COLUMNS)
    for r in rows:
        requests = r["requests"]
        rates = [f"{r[k] / requests:.4f}" if requests else "" for k in ("allow", "redact", "stop")]
        writer.writerow([
            _iso(r["received_at"]), r["node_id"], r["mode"], _iso(r["interval_start"]) or "",
            _iso(r["interval_end"]) or "", r["policy_version"] or "", requests,
            "" if r["tokens_generated"] is None else r["tokens_generated"],
            r["allow"], r["redact"], r["stop"], *rates,
            *("" if r[k] is None else r[k]
              for k in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")),
            json.dumps(json.loads(r["rules_triggered"]), sort_keys=True, separators=(",", ":")),
        ])
    return out.getvalue()
