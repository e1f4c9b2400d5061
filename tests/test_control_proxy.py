"""A proxy with a ``control:`` section: it fetches its first bundle at start-up, serves new releases
without a restart (the policy version header moves), and heartbeats its aggregate telemetry."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from checkstream.control.telemetry import MetricsSampler, parse_interval
from checkstream.proxy.config import ConfigError, config_from_mapping
from checkstream.proxy.loopback import LoopbackStack
from checkstream.telemetry.metrics import Metrics
from proxy_helpers import chat
from test_control_server import ADMIN, NODE1, Control, control, pack
from test_control_tls import TLSControl, mtls, pki

__all__ = ["control", "mtls", "pki"]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def control_section(c: Control, tmp: Path) -> dict[str, object]:
    (tmp / "node.token").write_text(NODE1 + "\n", encoding="utf-8")
    (tmp / "control.pub").write_bytes(c.public)
    return {"url": c.url, "node_id": "node-1", "token_file": str(tmp / "node.token"),
            "public_key": str(tmp / "control.pub"), "policies_dir": str(tmp / "node"),
            "interval": "200ms"}


def test_proxy_follows_the_control_plane(control: Control, tmp_path: Path) -> None:
    v1 = control.upload(pack(control.tmp, "v1")).json()["version"]
    with LoopbackStack(config={"control": control_section(control, tmp_path)}) as stack:
        first = chat(stack)
        assert first.status_code == 200
        assert first.headers["x-checkstream-policy-version"] == v1
        v2 = control.upload(pack(control.tmp, "v2")).json()["version"]
        assert wait_for(lambda: chat(stack).headers["x-checkstream-policy-version"] == v2)

        def reported() -> bool:
            with control.client(ADMIN) as admin:
                nodes = admin.get("/v1/fleet").json()["nodes"]
                rows = list(csv.DictReader(io.StringIO(
                    admin.get("/v1/telemetry/export").text)))
            return (bool(nodes) and nodes[0]["policy_version"] == v2
                    and sum(int(r["requests"]) for r in rows) >= 2)

        assert wait_for(reported)
    with control.client(ADMIN) as admin:
        rows = list(csv.DictReader(io.StringIO(admin.get("/v1/telemetry/export").text)))
    busy = [r for r in rows if int(r["requests"])]
    assert busy and all(r["mode"] == "proxy" and r["latency_p50_ms"] for r in busy)
    assert sum(int(r["allow"]) + int(r["redact"]) + int(r["stop"]) for r in rows) == sum(
        int(r["requests"]) for r in rows)


def test_proxy_without_any_bundle_refuses_to_start(control: Control, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no policy bundle installed"):
        LoopbackStack(config={"control": control_section(control, tmp_path)}).start()


def test_control_config_is_checked(tmp_path: Path) -> None:
    section = {"url": "ftp://x", "node_id": "n", "token_file": "t", "public_key": "k",
               "policies_dir": "p"}
    with pytest.raises(ConfigError, match=r"control\.url"):
        config_from_mapping({"control": section}, env={})
    section["url"] = "https://control.example"
    with pytest.raises(ConfigError, match=r"policies\.path: leave it out"):
        config_from_mapping({"control": section, "policies": {"path": "x"}}, env={})
    cfg = config_from_mapping({"control": section}, env={}, base_dir=tmp_path)
    assert cfg.control is not None and cfg.control.policies_dir == tmp_path / "p"
    assert cfg.control.interval == 30.0


def test_metrics_sampler_differences_each_interval() -> None:
    m = Metrics()
    sampler = MetricsSampler(m)
    for action, seconds in (("pass", 0.002), ("pass", 0.004), ("modify", 0.02), ("block", 0.3)):
        m.requests.labels(endpoint="/v1/chat/completions", tenant="default", stream="false",
                          status="200").inc()
        m.decisions.labels(endpoint="/v1/chat/completions", tenant="default", action=action).inc()
        m.request_seconds.labels("/v1/chat/completions").observe(seconds)
    m.rule_hits.labels(policy="p", rule="no-secrets", phase="egress", action="redact",
                       mode="enforce").inc()
    m.rule_hits.labels(policy="p", rule="trial", phase="egress", action="stop",
                       mode="shadow").inc()
    interval, agg = sampler.sample()
    start, end = parse_interval(interval)
    assert start <= end
    assert agg.requests == 4
    assert (agg.decisions.allow, agg.decisions.redact, agg.decisions.stop) == (2, 1, 1)
    assert agg.rules_triggered == {"no-secrets": 1}  # shadow hits took no action
    assert agg.latency_p50_ms is not None and 2.5 <= agg.latency_p50_ms <= 5.0
    assert agg.latency_p99_ms is not None and 250 <= agg.latency_p99_ms <= 500
    _, quiet = sampler.sample()
    assert quiet.requests == 0 and quiet.latency_p95_ms is None and quiet.rules_triggered == {}



def test_proxy_over_mutual_tls_ships_its_decision_log(mtls: TLSControl, tmp_path: Path) -> None:
    """The proxy's own agent: mutual TLS with no token (the certificate names node-1), and the
    decision log shipped when the config opts in."""
    v1 = mtls.upload("v1")
    (tmp_path / "control.pub").write_bytes(mtls.public)
    d = mtls.pki.dir
    section = {"url": mtls.url, "node_id": "node-1", "public_key": str(tmp_path / "control.pub"),
               "policies_dir": str(tmp_path / "node"), "interval": "200ms",
               "ca": str(d / "ca.pem"), "cert": str(d / "node-1.pem"), "key": str(d / "node-1.key"),
               "ship_evidence": True}
    log = tmp_path / "decisions.log"
    config = {"control": section, "telemetry": {"decision_log": str(log)}}
    with LoopbackStack(config=config) as stack:
        first = chat(stack)
        assert first.status_code == 200
        assert first.headers["x-checkstream-policy-version"] == v1

        def shipped() -> list[str]:
            with mtls.client("admin", ADMIN) as admin:
                resp = admin.get("/v1/evidence/export",
                                 params={"node": "node-1", "format": "jsonl"})
            return resp.text.splitlines() if resp.status_code == 200 else []

        assert wait_for(lambda: any(first.headers["x-checkstream-request-id"] in line
                                    for line in shipped()))


def test_control_tls_settings_are_checked(tmp_path: Path) -> None:
    base = {"url": "https://control.example", "node_id": "n", "public_key": "k",
            "policies_dir": "p"}
    with pytest.raises(ConfigError, match="token_file, or cert and key"):
        config_from_mapping({"control": base}, env={})
    with pytest.raises(ConfigError, match=r"cert and control\.key go together"):
        config_from_mapping({"control": {**base, "cert": "c.pem"}}, env={})
    with pytest.raises(ConfigError, match="need an https:// url"):
        config_from_mapping({"control": {**base, "url": "http://cp", "cert": "c", "key": "k"}},
                            env={})
    with pytest.raises(ConfigError, match=r"ship_evidence: needs telemetry\.decision_log"):
        config_from_mapping({"control": {**base, "token_file": "t", "ship_evidence": True}},
                            env={})
    cfg = config_from_mapping({"control": {**base, "cert": "c.pem", "key": "c.key", "ca": "ca"}},
                              env={}, base_dir=tmp_path)
    assert cfg.control is not None
    assert (cfg.control.cert, cfg.control.ca, cfg.control.token_file) == (
        tmp_path / "c.pem", tmp_path / "ca", None)
