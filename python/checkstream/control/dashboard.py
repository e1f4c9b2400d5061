"""The operator page (``GET /fleet``): server-rendered HTML from the fleet view, nothing else.

No script, no external asset, no web font: the page must work on an operations network that
reaches nothing but the control plane, and its Content-Security-Policy forbids everything but
the inline style. Trends are inline SVG sparklines drawn here from the view's numbers.

Node ids, rule names, versions, labels and error messages come from nodes and admins: every one
of them is untrusted and goes through :func:`html.escape` (``_e``) on its way into the page,
including attribute values. Numbers placed into SVG coordinates are formatted floats.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

__all__ = ["fleet_html", "sparkline"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1f23;background:#fafbfc}
h1{margin:0 0 .2rem}h2{margin:1.6rem 0 .5rem;font-size:1.15rem}
.muted{color:#586069}.cards{display:flex;flex-wrap:wrap;gap:.8rem}
.card{background:#fff;border:1px solid #d1d5da;border-radius:6px;padding:.6rem .8rem;
min-width:13rem}
.card .v{font-size:1.3rem;font-weight:600}.card svg{display:block;margin-top:.3rem}
table{border-collapse:collapse;background:#fff}td,th{padding:3px 9px;text-align:left;
border-bottom:1px solid #e1e4e8;font-size:.9rem}th{background:#f6f8fa}
code{font-size:.85rem}.badge{display:inline-block;padding:1px 7px;border-radius:9px;
font-size:.8rem;margin-right:.3rem;background:#e1e4e8}
.up{background:#dcffe4}.degraded{background:#fff5b1}.down{background:#ffdce0}
.current{background:#dcffe4}.outdated,.drift,.withdrawn{background:#fff5b1}
tr.down td{color:#86181d}.bar{background:#0366d6;height:.7rem;display:inline-block}
.cols{display:flex;flex-wrap:wrap;gap:2rem;align-items:flex-start}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _short(version: str | None) -> str:
    return (version or "")[:12]


def sparkline(values: Sequence[float | None], *, width: int = 200, height: int = 36,
              label: str = "") -> str:
    """An inline SVG line of ``values`` (None: a gap); the y axis spans 0..max."""
    points = [v for v in values if v is not None]
    top = max(points) if points else 0.0
    scale = (height - 4) / top if top > 0 else 0.0
    step = width / max(len(values) - 1, 1)
    runs: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(f"{i * step:.1f},{height - 2 - v * scale:.1f}")
    lines = []
    for run in runs:
        if len(run) == 1:  # a lone point between gaps: draw it as a dot
            x, y = run[0].split(",")
            lines.append(f'<circle cx="{x}" cy="{y}" r="1.8" fill="#0366d6"/>')
        elif run:
            lines.append(f'<polyline fill="none" stroke="#0366d6" stroke-width="1.5" '
                         f'points="{" ".join(run)}"/>')
    if not lines:
        lines.append(f'<text x="4" y="{height / 2 + 4:.0f}" font-size="11" fill="#959da5">'
                     "no data</text>")
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{_e(label)}"><title>{_e(label)}</title>'
            f'<line x1="0" y1="{height - 1}" x2="{width}" y2="{height - 1}" stroke="#e1e4e8"/>'
            + "".join(lines) + "</svg>")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"


def _last(values: Sequence[float | None]) -> float | None:
    return next((v for v in reversed(values) if v is not None), None)


def _card(title: str, shown: str, note: str, values: Sequence[float | None]) -> str:
    return (f'<div class="card"><div class="muted">{_e(title)}</div><div class="v">{_e(shown)}'
            f'</div><div class="muted">{_e(note)}</div>{sparkline(values, label=title)}</div>')


def _trend_cards(t: dict[str, Any]) -> str:
    tot = t["totals"]
    minutes = t["bucket_s"] // 60
    per = f"per {minutes} min, last {t['window_s'] // 60} min"
    cards = [
        _card("requests", f"{tot['requests']:,}", per, t["requests"]),
        _card("allow rate", _pct(tot["allow_rate"]),
              f"latest bucket {_pct(_last(t['allow_rate']))}", t["allow_rate"]),
        _card("redact rate", _pct(tot["redact_rate"]),
              f"latest bucket {_pct(_last(t['redact_rate']))}", t["redact_rate"]),
        _card("stop rate", _pct(tot["stop_rate"]), f"latest bucket {_pct(_last(t['stop_rate']))}",
              t["stop_rate"]),
        _card("latency p50", _ms(tot["latency_p50_ms"]), "request-weighted mean of nodes' p50",
              t["latency_p50_ms"]),
        _card("latency p99", _ms(tot["latency_p99_ms"]), "worst node's p99 per bucket",
              t["latency_p99_ms"]),
    ]
    return '<div class="cards">' + "".join(cards) + "</div>"


def _top_rules(rules: list[dict[str, Any]]) -> str:
    if not rules:
        return '<p class="muted">No rule fired in the last hour.</p>'
    most = max(r["count"] for r in rules)
    rows = "".join(
        f'<tr><td><code>{_e(r["rule"])}</code></td><td>{r["count"]:,}</td><td>'
        f'<span class="bar" style="width:{100 * r["count"] / most:.0f}px"></span></td></tr>'
        for r in rules)
    return ("<table><thead><tr><th>rule</th><th>hits</th><th></th></tr></thead><tbody>"
            + rows + "</tbody></table>")


def _channels(channels: dict[str, Any]) -> str:
    if not channels:
        return '<p class="muted">Nothing released yet.</p>'
    parts = []
    for name, ch in channels.items():
        rows = "".join(
            f'<tr><td>{_e(ev["at"])}</td><td>{_e(ev["action"])}</td>'
            f'<td><code title="{_e(ev["version"])}">{_e(_short(ev["version"]))}</code></td>'
            f'<td>{_e(ev["by"])}</td><td>{_e(_event_note(ev))}</td></tr>'
            for ev in ch["history"])
        parts.append(
            f'<div><h3>{_e(name)}: <code title="{_e(ch["version"])}">{_e(_short(ch["version"]))}'
            f'</code></h3><p class="muted">released {_e(ch["released_at"])}</p>'
            "<table><thead><tr><th>when</th><th>action</th><th>version</th><th>by</th><th></th>"
            "</tr></thead><tbody>" + rows + "</tbody></table></div>")
    return '<div class="cols">' + "".join(parts) + "</div>"


def _event_note(ev: dict[str, Any]) -> str:
    if "from_channel" in ev:
        return f"from {ev['from_channel']}"
    if "rolled_back" in ev:
        return f"from {_short(ev['rolled_back'])}"
    return ""


def _evidence_cell(ev: dict[str, Any] | None) -> str:
    if ev is None:
        return "-"
    text = f"{ev['records']:,} records"
    if ev["refusals"]:
        text += f", {ev['refusals']} refused"
    problem = ev["node_error"] or ev["last_refusal"]
    return f'<span title="{_e(problem)}">{_e(text)}</span>' if problem else _e(text)


def _nodes(nodes: list[dict[str, Any]]) -> str:
    if not nodes:
        return '<p class="muted">No node has sent a heartbeat yet.</p>'
    heads = ["node", "mode", "software", "health", "last seen", "channel", "policy", "status",
             "latency p50/p95/p99 ms", "allow/redact/stop (15 min)", "evidence"]
    rows = []
    for n in nodes:
        lat, rates = n["latency_ms"], n["rates"]
        problem = n["policy_error"] or (n["evidence"] or {}).get("node_error")
        cells = [
            f"<code>{_e(n['node_id'])}</code>", _e(n["mode"]), _e(n["software_version"]),
            f'<span class="badge {_e(n["health"])}" title="{_e(problem)}">{_e(n["health"])}'
            "</span>",
            _e(f"{n['last_seen_age_s']:.0f} s ago"), _e(n["channel"]),
            f'<code title="{_e(n["policy_version"])}">{_e(_short(n["policy_version"]))}</code>',
            f'<span class="badge {_e(n["policy_status"])}">{_e(n["policy_status"])}</span>',
            _e(" / ".join("-" if lat[q] is None else f"{lat[q]:g}" for q in ("p50", "p95", "p99"))),
            _e(" / ".join(_pct(rates[k]) for k in ("allow", "redact", "stop"))),
            _evidence_cell(n["evidence"]),
        ]
        rows.append(f'<tr class="{_e(n["health"])}">' + "".join(f"<td>{c}</td>" for c in cells)
                    + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in heads)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def fleet_html(view: dict[str, Any]) -> str:
    s = view["summary"]
    badges = "".join(
        f'<span class="badge {cls}">{s[key]} {_e(key)}</span>'
        for key, cls in (("up", "up"), ("degraded", "degraded"), ("down", "down"),
                         ("current", "current"), ("outdated", "outdated"),
                         ("withdrawn", "withdrawn"), ("drift", "drift")))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="30"><title>checkstream fleet</title>'
        f"<style>{_STYLE}</style></head><body>"
        f'<h1>checkstream fleet</h1><p class="muted">{s["nodes"]} node(s) · generated '
        f'{_e(view["generated_at"])} · refreshes every 30 s · JSON: <code>/v1/fleet</code></p>'
        f"<p>{badges}</p>"
        "<h2>Last hour, fleet-wide</h2>" + _trend_cards(view["trends"])
        + "<h2>Top rules fired (last hour)</h2>" + _top_rules(view["trends"]["top_rules"])
        + "<h2>Channels</h2>" + _channels(view["channels"])
        + "<h2>Nodes</h2>" + _nodes(view["nodes"])
        + "</body></html>"
    )
