"""The operator page and its JSON twin over real HTTP: fleet-wide trends from heartbeats (rates,
latency, top rules), channels with their release history, inline SVG only (no script, no external
asset), and every untrusted string escaped."""

from __future__ import annotations

import re
import time

from checkstream.control.dashboard import sparkline
from checkstream.control.fleet import fleet_view
from checkstream.control.telemetry import Heartbeat
from test_control_server import ADMIN, FLEET, NODE1, NODE2, Control, control, pack

__all__ = ["control"]


def beat(c: Control, token: str, node: str, **metrics: object) -> None:
    body = {"mode": "proxy", "software_version": "0.1.0", "metrics": metrics}
    with c.client(token) as client:
        resp = client.post(f"/v1/nodes/{node}/heartbeat", json=body)
    assert resp.status_code == 200, resp.text


def test_trends_channels_and_page(control: Control) -> None:
    v1 = control.upload(pack(control.tmp, "v1")).json()["version"]
    v2 = control.upload(pack(control.tmp, "v2")).json()["version"]
    with control.client(ADMIN) as admin:
        assert admin.post("/v1/channels/stable/rollback").status_code == 200
    beat(control, NODE1, "node-1", requests=100, decisions={"allow": 90, "redact": 8, "stop": 2},
         latency_p50_ms=2.0, latency_p99_ms=9.0,
         rules_triggered={"no-secrets": 8, "PRIN-2A-001": 2})
    beat(control, NODE2, "node-2", requests=300, decisions={"allow": 297, "redact": 3},
         latency_p50_ms=4.0, latency_p99_ms=30.0, rules_triggered={"no-secrets": 3})
    beat(control, NODE2, "node-2")  # an idle interval adds nothing

    with control.client(ADMIN) as admin:
        view = admin.get("/v1/fleet").json()
        page = admin.get("/fleet")
    t = view["trends"]
    assert t["totals"]["requests"] == 400 and sum(t["requests"]) == 400
    assert (t["totals"]["allow_rate"], t["totals"]["redact_rate"], t["totals"]["stop_rate"]) == (
        0.9675, 0.0275, 0.005)
    assert t["totals"]["latency_p50_ms"] == 3.5  # (2.0 x 100 + 4.0 x 300) / 400
    assert t["totals"]["latency_p99_ms"] == 30.0  # the worst node's tail, not an average
    assert t["requests"][-1] == 400 and t["stop_rate"][0] is None  # empty buckets are gaps
    assert len(t["requests"]) == t["window_s"] // t["bucket_s"] == 12
    assert t["top_rules"] == [{"rule": "no-secrets", "count": 11},
                              {"rule": "PRIN-2A-001", "count": 2}]
    stable = view["channels"]["stable"]
    assert stable["version"] == v1
    assert [(e["action"], e["version"]) for e in stable["history"]] == [
        ("rollback", v1), ("publish", v2), ("publish", v1)]

    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    text = page.text
    assert text.count("<svg") == 6
    # Requests are a line (an empty bucket is 0 requests); rates and latencies have one bucket
    # with data, drawn as a dot between gaps.
    assert text.count("<polyline") == 1 and text.count("<circle") == 5
    assert "no-secrets" in text and "PRIN-2A-001" in text
    assert v1[:12] in text and "rollback" in text and "from " + v2[:12] in text
    assert "3.5 ms" in text and "30 ms" in text and "96.8%" in text
    # Nothing to fetch and nothing to run: no script, no src/href, no URL.
    assert "<script" not in text.lower()
    assert not re.search(r"\b(src|href)\s*=", text, re.I) and "://" not in text


def test_untrusted_strings_are_escaped(control: Control) -> None:
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
    with control.client(FLEET) as c:
        body = {"mode": "proxy", "software_version": evil[:64], "policy_error": evil}
        assert c.post("/v1/nodes/node-7/heartbeat", json=body).status_code == 200
        # A node id is checked before anything else: markup never gets into the store this way.
        refused = c.post("/v1/nodes/%3Cscript%3E/heartbeat", json=body)
        assert refused.status_code == 400 and refused.json()["error"]["reason"] == "bad_node_id"
    # A store written by something else (an older version, a restored backup) may hold anything.
    control.store.record_heartbeat("<script>alert('id')</script>", Heartbeat.model_validate(
        {"mode": "sidecar", "software_version": "1"}))
    with control.client(ADMIN) as admin:
        page = admin.get("/fleet").text
        view = admin.get("/v1/fleet").json()
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#x27;id&#x27;)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img" in page
    # The JSON twin carries the values as they are (JSON is not markup).
    assert {n["node_id"] for n in view["nodes"]} == {"node-7", "<script>alert('id')</script>"}


def test_sparkline() -> None:
    svg = sparkline([None, 1.0, 2.0, None, 3.0], width=40, height=22, label="a<b")
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 1
    points = re.search(r'points="([^"]+)"', svg)
    assert points is not None and points.group(1) == "10.0,14.0 20.0,8.0"
    assert '<circle cx="40.0" cy="2.0"' in svg  # the maximum, 3, at the top
    assert "a&lt;b" in svg and "a<b" not in svg
    assert "no data" in sparkline([None, None]) and "no data" in sparkline([])
    assert "<polyline" in sparkline([0.0, 0.0, 0.0])  # all zero: a flat line, not a division


def test_heartbeats_outside_the_hour_are_not_counted(control: Control) -> None:
    beat(control, NODE1, "node-1", requests=50, decisions={"allow": 50})
    with control.client(ADMIN) as admin:
        now = admin.get("/v1/fleet").json()["trends"]["totals"]["requests"]
    assert now == 50
    # Two hours later, the same store shows an empty hour.
    later = fleet_view(control.store, down_after=90, now=time.time() + 7200)
    assert later["trends"]["totals"]["requests"] == 0
    assert later["trends"]["latency_p99_ms"] == [None] * 12
