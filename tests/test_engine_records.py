"""The decision record: hashes, hits, scores, latencies, coverage; raw text only opt-in."""

from __future__ import annotations

import hashlib
import json

from checkstream.classifiers.registry import ClassifierRegistry
from checkstream.classifiers.rules import PatternClassifier
from checkstream.engine import ChatMessage, Guard, RequestContext
from checkstream.engine.records import build_record
from checkstream.policy.loader import load_policy_text

CTX = RequestContext("req-42", "acme", "/v1/chat/completions", "gpt-x", {"segment": "retail"})
POLICY = """
name: rec
version: "1"
regulation: FCA PRIN 2A
rules:
  - name: advice
    citation: COBS 9A.2.1R
    phases: [midstream]
    trigger: {phrases: [you should invest]}
    actions: [stop]
  - name: email
    trigger: {pii: [EMAIL]}
    actions: [redact]
  - name: tox
    mode: shadow
    phases: [midstream]
    trigger: {classifier: {name: toxicity, label: toxic}}
    actions: [stop]
  - name: warn
    trigger: {phrases: [fund]}
    actions: [{inject_disclaimer: {text: Capital at risk.}}]
"""


def guard() -> Guard:
    tox = PatternClassifier(
        name="toxicity", labels=("toxic",), version="tox-v1", patterns={"toxic": ("idiot",)}
    )
    reg = ClassifierRegistry({"toxicity": tox}, {})
    return Guard(load_policy_text(POLICY, registry=reg), reg)


def test_record_for_a_redacted_request() -> None:
    g = guard()
    prompt = "my email is a@b.com, which fund?"
    ing = g.ingress([ChatMessage("user", prompt)], CTX)
    sg = g.stream(CTX, holdback=4, check_interval=2)
    output = "A global index fund is common; write to c@d.org"
    released = "".join(sg.feed(w).text for w in output.split(" ")) + sg.finish().text
    eg = g.egress(output, CTX)
    record = build_record(
        CTX,
        ingress=ing,
        streams=[sg],
        egress=eg,
        latencies_ms={"ingress": 0.5, "stream": 2.0},
        input_text=prompt,
        output_text=released,
    )
    json.dumps(record)  # serialisable as is
    assert record["request_id"] == "req-42" and record["tenant"] == "acme"
    assert record["policy_version"] == g.policy_version
    assert record["decision"] == "redact"
    assert record["input_sha256"] == hashlib.sha256(prompt.encode()).hexdigest()
    assert record["output_sha256"] == hashlib.sha256(released.encode()).hexdigest()
    fired = [(r["rule"], r["phase"], r["action"], r["start"], r["end"]) for r in record["rules"]]
    assert ("email", "ingress", "redact", 12, 19) in fired
    assert ("warn", "egress", "inject_disclaimer", 15, 19) in fired
    assert any(r[:3] == ("email", "midstream", "redact") for r in fired)
    assert record["regulations"] == ["FCA PRIN 2A"]
    assert record["scores"] and all(s["classifier"] == "toxicity" for s in record["scores"])
    assert record["scores"][0]["model_version"] == "tox-v1"
    assert record["latencies_ms"] == {"ingress": 0.5, "stream": 2.0}
    coverage = record["coverage"]["streams"][0]
    assert coverage["tokens"] == len(output.split(" ")) and coverage["holdback"] == 4
    assert coverage["classifier_checks"] == len(record["scores"])
    assert "input" not in record and "output" not in record
    assert "a@b.com" not in json.dumps(record) and "c@d.org" not in json.dumps(record)


def test_record_for_a_stop_with_shadow_scores_and_full_evidence() -> None:
    g = guard()
    rude = g.check_output("you idiot", CTX)  # choice 0: shadow classifier hit only
    out = g.check_output("you should invest now", CTX)  # choice 1: stopped
    record = build_record(
        CTX,
        ingress=None,
        streams=[rude, out],
        egress=None,
        latencies_ms={},
        input_text="q",
        output_text=out.text,
        full_evidence=True,
        policy_version=g.policy_version,
    )
    assert record["decision"] == "stop"
    rules = {(r["rule"], r["mode"]) for r in record["rules"]}
    assert rules == {("advice", "enforce"), ("tox", "shadow")}
    assert [r["stream"] for r in record["rules"]] == [0, 1]
    assert record["scores"][0]["scores"] == {"toxic": 1.0}
    advice = next(r for r in record["rules"] if r["rule"] == "advice")
    assert advice["citation"] == "COBS 9A.2.1R" and advice["regulation"] == "FCA PRIN 2A"
    assert record["input"] == "q" and record["full_evidence"] is True


def test_allowed_requests_get_records_too() -> None:
    g = guard()
    out = g.check_output("hello", CTX)
    record = build_record(
        CTX,
        ingress=g.ingress([ChatMessage("user", "hi")], CTX),
        streams=[out],
        egress=g.egress("hello", CTX),
        latencies_ms={"total": 1},
        input_text="hi",
        output_text="hello",
    )
    assert record["decision"] == "allow" and record["rules"] == []
