"""The fleet view (JSON and a small HTML table) and the evidence export (CSV), from the store.

Health is the age of a node's last heartbeat: ``up`` within ``down_after`` seconds, ``down``
after; ``degraded`` when it is up but reports that it refused a bundle. Policy status compares the
version a node runs with its channel: ``current`` (the latest), ``outdated`` (an earlier release
of the channel) or ``drift`` (a set the channel never released, e.g. edited by hand).
"""

from __future__ import annotations

import csv
import html
import io
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from checkstream.control.storage import ControlStore

__all__ = ["EVIDENCE_COLUMNS", "evidence_csv", "fleet_html", "fleet_view"]

RATE_WINDOW_S = 15 * 60


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def fleet_view(
    store: ControlStore, *, down_after: float, now: float | None = None
) -> dict[str, Any]:
    now = time.time() if now is None else now
    channels = store.channels()
    history = {ch: store.released_versions(ch) for ch in channels}
    totals = store.totals_since(now - RATE_WINDOW_S)
    nodes: list[dict[str, Any]] = []
    for n in store.nodes():
        age = max(0.0, now - n.last_seen)
        health = "down" if age > down_after else ("degraded" if n.policy_error else "up")
        latest = channels.get(n.channel)
        latest_version = latest.version if latest else None
        if latest_version is None or n.policy_version == latest_version:
            status = "current" if latest_version is not None else "no_release"
        elif n.policy_version in history.get(n.channel, set()):
            status = "outdated"
        else:
            status = "drift"
        requests, allow, redact, stop = totals.get(n.node_id, (0, 0, 0, 0))
        m = n.last_metrics
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
        })
    summary: dict[str, int] = {"nodes": len(nodes)}
    for key in ("up", "down", "degraded"):
        summary[key] = sum(1 for n in nodes if n["health"] == key)
    for key in ("current", "outdated", "drift"):
        summary[key] = sum(1 for n in nodes if n["policy_status"] == key)
    return {
        "generated_at": _iso(now),
        "down_after_s": down_after,
        "channels": {ch: {"version": r.version, "released_at": _iso(r.released_at)}
                     for ch, r in channels.items()},
        "summary": summary,
        "nodes": nodes,
    }


def fleet_html(view: dict[str, Any]) -> str:
    """A small page: one row per node (every value escaped)."""
    e = html.escape
    marks = {"current": "✓", "outdated": "⚠ outdated", "drift": "⚠ drift", "no_release": "-"}
    rows = []
    for n in view["nodes"]:
        lat = n["latency_ms"]
        rates = n["rates"]
        cells = [
            n["node_id"], n["mode"], n["software_version"], n["health"],
            f"{n['last_seen_age_s']:.0f} s", n["channel"], (n["policy_version"] or "")[:12],
            marks[n["policy_status"]],
            " / ".join("-" if lat[q] is None else f"{lat[q]:g}" for q in ("p50", "p95", "p99")),
            " / ".join("-" if rates[k] is None else f"{rates[k]:.1%}"
                       for k in ("allow", "redact", "stop")),
        ]
        row = "".join(f"<td>{e(str(c))}</td>" for c in cells)
        rows.append(f'<tr class="{e(n["health"])} {e(n["policy_status"])}">{row}</tr>')
    heads = ["node", "mode", "software", "health", "last seen", "channel", "policy",
             "status", "latency p50/p95/p99 ms", "allow/redact/stop"]
    channels = ", ".join(f"{e(ch)}: {e(r['version'][:12])}" for ch, r in view["channels"].items())
    s = view["summary"]
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>checkstream fleet</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
        ".down{color:#a00}.drift,.outdated{background:#fff3cd}</style></head><body>"
        f"<h1>checkstream fleet</h1><p>{s['nodes']} node(s): {s['up']} up, {s['degraded']} "
        f"degraded, {s['down']} down; {s['outdated']} outdated, {s['drift']} drift. "
        f"Latest: {channels or 'no release yet'}. Generated {e(view['generated_at'])}.</p>"
        "<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in heads) + "</tr></thead>"
        "<tbody>" + "".join(rows) + "</tbody></table></body></html>"
    )


EVIDENCE_COLUMNS = (
    "received_at", "node_id", "mode", "interval_start", "interval_end", "policy_version",
    "requests", "tokens_generated", "allow", "redact", "stop", "allow_rate", "redact_rate",
    "stop_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "rules_triggered",
)  # fmt: skip


def evidence_csv(rows: Iterable[dict[str, Any]]) -> str:
    """The aggregate telemetry, one row per heartbeat (rules as canonical JSON)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EVIDENCE_COLUMNS)
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
