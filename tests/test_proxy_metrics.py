"""``/metrics`` over real HTTP: one metric set (telemetry.metrics.Metrics) for the proxy, its
policies, its classifiers and its decision log."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from checkstream.proxy.loopback import LoopbackStack
from checkstream.proxy.replay import Recording
from proxy_helpers import BODY, chat, metric, write_policy

ROOT = Path(__file__).resolve().parents[1]


def test_one_metric_set_with_audit_classifier_and_policy_figures(tmp_path: Path) -> None:
    log_path = tmp_path / "decisions.log"
    with LoopbackStack(policies=ROOT / "policies" / "default",
                       config={"telemetry": {"decision_log": str(log_path)}}) as s:
        assert chat(s).status_code == 200
        with httpx.stream("POST", s.url + "/v1/chat/completions",
                          json={**BODY, "stream": True}, timeout=30) as r:
            r.read()
        deadline = time.monotonic() + 10
        while (metric(s, "checkstream_audit_records_written_total", kind="decision") or 0) < 2:
            assert time.monotonic() < deadline, "decision records never counted on /metrics"
            time.sleep(0.05)
        text = httpx.get(s.url + "/metrics").text
        # The classifier the default pack uses, and what really runs it.
        info = re.search(r'checkstream_classifier_info\{classifier="toxicity",provider="([^"]+)"',
                         text)
        assert info is not None and info.group(1)
        assert (metric(s, "checkstream_classifier_calls_total", classifier="toxicity",
                       outcome="ok") or 0) >= 2
        assert metric(s, "checkstream_requests_total", endpoint="chat.completions",
                      stream="True", status="200") == 1
        assert metric(s, "checkstream_stage_latency_seconds_count", stage="midstream") == 2
        assert metric(s, "checkstream_audit_queue_depth") is not None
        version = s.state.runtimes["default"].store.current.version
        assert metric(s, "checkstream_policy_info", tenant="default", version=version) == 1


def test_policy_reload_errors_show_on_metrics(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(
        "name: m\nversion: '1'\nrules:\n  - {name: e, trigger: {pii: [EMAIL]}, "
        "actions: [redact]}\n")
    with LoopbackStack(policies=tmp_path) as s:
        store = s.state.runtimes["default"].store
        assert metric(s, "checkstream_policy_reload_errors_total", tenant="default") is None
        (tmp_path / "policy.yaml").write_text("name: broken\nrules: [\n")
        assert not store.reload().ok
        assert metric(s, "checkstream_policy_reload_errors_total", tenant="default") == 1
        assert metric(s, "checkstream_policy_reloads_total", tenant="default",
                      outcome="error") == 1
        # The old set still serves, and is the one /metrics names.
        assert metric(s, "checkstream_policy_info", tenant="default",
                      version=store.current.version) == 1


# `(a|aa)+$` backtracks catastrophically on ATTACK: at ingress (the prompt) a trial rule fails
# open, at egress (the answer) a disclaimer rule fails closed.
POLICY_TIMEOUTS = """
name: timeouts
version: "1"
rules:
  - name: prompt-check
    phases: [ingress]
    fail_mode: open
    trigger: {pattern: '(a|aa)+$'}
    actions: [stop]
  - name: answer-check
    phases: [egress]
    fail_mode: closed
    trigger: {pattern: '(a|aa)+$'}
    actions: [{inject_disclaimer: {text: "Unverified."}}]
"""
ATTACK = "Here you go: " + "a" * 3000 + "b and the rest."


def test_pattern_timeouts_are_counted_on_metrics(tmp_path: Path) -> None:
    with LoopbackStack(policies=write_policy(tmp_path / "p", POLICY_TIMEOUTS)) as s:
        s.replay.add_recording(Recording.from_text("attack", [ATTACK[:1500], ATTACK[1500:]]))
        body = {"model": "attack", "messages": [{"role": "user", "content": ATTACK}]}
        r = httpx.post(s.url + "/v1/chat/completions", json=body, timeout=30)
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"].endswith("Unverified.")
        with httpx.stream("POST", s.url + "/v1/chat/completions",
                          json={**body, "stream": True}, timeout=30) as streamed:
            streamed.read()
        answer = {"policy": "timeouts", "rule": "answer-check", "phase": "egress",
                  "resolution": "fail_closed"}
        deadline = time.monotonic() + 10
        while (metric(s, "checkstream_pattern_timeouts_total", **answer) or 0) < 2:
            assert time.monotonic() < deadline, "egress pattern timeouts never counted"
            time.sleep(0.05)
        assert metric(s, "checkstream_pattern_timeouts_total", **answer) == 2
        assert metric(s, "checkstream_pattern_timeouts_total", policy="timeouts",
                      rule="prompt-check", phase="ingress", resolution="fail_open") == 2
        assert metric(s, "checkstream_pattern_timeouts_total", phase="midstream") is None


def test_guard_time_per_chunk_is_observed_only_where_policies_run_on_output() -> None:
    name = "checkstream_guard_seconds_per_chunk_count"
    for midstream, observed in ((True, True), (False, False)):
        with LoopbackStack(policies=ROOT / "policies" / "default",
                           config={"guardrails": {"midstream": {"enabled": midstream}}}) as s:
            with httpx.stream("POST", s.url + "/v1/chat/completions",
                              json={**BODY, "stream": True}, timeout=30) as r:
                r.read()
            count = metric(s, name) or 0
            assert (count > 0) is observed, (midstream, count)
