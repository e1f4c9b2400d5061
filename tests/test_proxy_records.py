"""Decision records reach the hash-chained log (verifiable, no raw text), and policy hot reload
swaps the set for new requests while a broken edit keeps the old set serving."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai

from checkstream.audit import verify_log
from checkstream.audit.export import iter_entries
from checkstream.proxy.app import HEADER_POLICY_VERSION
from checkstream.proxy.loopback import LoopbackStack
from checkstream.proxy.replay import Recording
from proxy_helpers import write_policy

POLICY_V1 = """
name: reload-test
version: "1"
rules:
  - name: email
    phases: [midstream]
    trigger:
      pii: [EMAIL]
    actions: [redact]
"""
POLICY_V2 = POLICY_V1 + """
  - name: no-umbrellas
    phases: [midstream]
    trigger:
      phrases: [umbrella]
    actions:
      - stop: {message: "No umbrellas."}
"""
MSG = [{"role": "user", "content": "mail carol@example.com please"}]


def test_decision_records_are_logged_and_verifiable(tmp_path: Path) -> None:
    log_path = tmp_path / "decisions.log"
    with LoopbackStack(policies=write_policy(tmp_path / "p", POLICY_V1),
                       config={"telemetry": {"decision_log": str(log_path)}}) as s:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
        r = client.chat.completions.with_raw_response.create(model="customer-record",
                                                             messages=MSG)  # type: ignore[arg-type]
        rid = r.headers["x-checkstream-request-id"]
        for _ in client.chat.completions.create(model="weather", messages=MSG,  # type: ignore[arg-type]
                                                stream=True):
            pass
    # Stopping the proxy closed (drained) the log.
    result = verify_log(log_path)
    assert result.ok and result.records == 2
    raw = log_path.read_bytes()
    assert b"carol@example.com" not in raw and b"jane.doe@example.com" not in raw
    records = [entry for _line, entry in iter_entries([log_path])]
    assert rid in raw.decode()
    assert len(records) == 2


def test_hot_reload_swaps_for_new_requests(tmp_path: Path) -> None:
    folder = write_policy(tmp_path / "p", POLICY_V1)
    with LoopbackStack(policies=folder) as s:
        store = s.state.runtimes["default"].store
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
        first = client.chat.completions.with_raw_response.create(model="weather", messages=MSG)  # type: ignore[arg-type]
        v1 = first.headers[HEADER_POLICY_VERSION]
        assert first.parse().choices[0].finish_reason == "stop"

        (folder / "policy.yaml").write_text(POLICY_V2)
        assert store.reload().changed
        second = client.chat.completions.with_raw_response.create(model="weather", messages=MSG)  # type: ignore[arg-type]
        assert second.headers[HEADER_POLICY_VERSION] != v1
        assert second.parse().choices[0].finish_reason == "content_filter"

        (folder / "policy.yaml").write_text("name: broken\nrules: [\n")
        assert not store.reload().ok
        ready = httpx.get(s.url + "/health/ready").json()
        assert ready["policy_errors"] and ready["status"] == "ready"
        third = client.chat.completions.with_raw_response.create(model="weather", messages=MSG)  # type: ignore[arg-type]
        assert third.headers[HEADER_POLICY_VERSION] == second.headers[HEADER_POLICY_VERSION]
        reloads = s.state.metrics.registry.get_sample_value(
            "checkstream_policy_reloads_total", {"tenant": "default", "outcome": "error"})
        assert reloads == 1


# An egress rule whose pattern backtracks catastrophically on the answer below: its scan runs
# out of time, resolves closed (the disclaimer is added) and must be in the decision record.
POLICY_EGRESS_TIMEOUT = """
name: egress-timeout
version: "1"
rules:
  - name: unverified
    phases: [egress]
    fail_mode: closed
    trigger: {pattern: '(a|aa)+$'}
    actions: [{inject_disclaimer: {text: "Unverified."}}]
"""
ATTACK = "Here you go: " + "a" * 3000 + "b and the rest of the answer."


def test_egress_pattern_timeouts_reach_the_decision_record(tmp_path: Path) -> None:
    log_path = tmp_path / "decisions.log"
    with LoopbackStack(policies=write_policy(tmp_path / "p", POLICY_EGRESS_TIMEOUT),
                       config={"telemetry": {"decision_log": str(log_path)}}) as s:
        s.replay.add_recording(Recording.from_text(
            "attack", [ATTACK[i : i + 50] for i in range(0, len(ATTACK), 50)]))
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
        plain = client.chat.completions.create(model="attack", messages=MSG)  # type: ignore[arg-type]
        assert (plain.choices[0].message.content or "").endswith("Unverified.")
        streamed = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(model="attack", messages=MSG,  # type: ignore[arg-type]
                                                        stream=True)
            if chunk.choices
        )
        assert streamed.endswith("Unverified.")
    assert verify_log(log_path).ok
    records = [entry for _line, entry in iter_entries([log_path])]
    decisions = [e["record"] for e in records if e["kind"] == "decision"]
    assert len(decisions) == 2
    for record in decisions:
        (timeout,) = record["coverage"]["pattern_timeouts"]
        assert timeout["phase"] == "egress" and timeout["stream"] is None
        assert timeout["rule"] == "unverified" and timeout["policy"] == "egress-timeout"
        assert timeout["resolution"] == "fail_closed" and timeout["end"] == len(ATTACK)
        assert [(r["rule"], r["timed_out"]) for r in record["rules"]] == [("unverified", True)]
