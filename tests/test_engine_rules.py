"""Every trigger and action, composition, priority, shadow mode and classifier fail modes."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from checkstream.classifiers.base import Classifier
from checkstream.classifiers.registry import ClassifierRegistry
from checkstream.classifiers.rules import PatternClassifier
from checkstream.engine import ChatMessage, Guard, RequestContext
from checkstream.engine.records import build_record
from checkstream.engine.types import CheckRecord, EgressResult, OutputResult, RuleHit
from checkstream.policy.loader import load_policy_text

CTX = RequestContext("req-9", "acme", "/v1/chat/completions", "gpt-x", {"segment": "retail"})


@dataclass
class Broken(Classifier):
    """A classifier whose model fails on every call."""

    kind: str = "test-broken"

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        raise RuntimeError("model crashed")


@dataclass
class Slow(Classifier):
    """A classifier slower than its timeout."""

    kind: str = "test-slow"

    @property
    def offload(self) -> bool:  # runs on a worker thread, like an ONNX model
        return True

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        time.sleep(0.2)
        return [dict.fromkeys(self.labels, 0.0) for _ in texts]


def registry() -> ClassifierRegistry:
    tox = PatternClassifier(
        name="toxicity",
        labels=("toxic",),
        version="p1",
        threshold=0.5,
        patterns={"toxic": ("idiot", "moron")},
    )
    broken_closed = Broken(name="broken_closed", labels=("bad",), version="b1", fail_mode="closed")
    broken_open = Broken(name="broken_open", labels=("bad",), version="b2", fail_mode="open")
    slow = Slow(
        name="slow_closed", labels=("bad",), version="s1", fail_mode="closed", timeout_ms=20
    )
    slow_open = Slow(
        name="slow_open", labels=("bad",), version="s2", fail_mode="open", timeout_ms=20
    )
    classifiers = (tox, broken_closed, broken_open, slow, slow_open)
    return ClassifierRegistry({c.name: c for c in classifiers}, {})


def guard(rules: str, *, leet: bool = False) -> Guard:
    text = f"name: t\nversion: '1'\ndefaults: {{leetspeak: {str(leet).lower()}}}\nrules:\n{rules}"
    reg = registry()
    return Guard(load_policy_text(text, registry=reg), reg)


def out(g: Guard, text: str, ctx: RequestContext = CTX) -> tuple[str, bool, list[str]]:
    result = g.check_output(text, ctx)
    return result.text, result.stopped, [f"{h.rule}:{h.mode}" for h in result.hits]


# --------------------------------------------------------------------------- triggers


def test_phrases_whole_word_and_substring() -> None:
    g = guard("""
  - {name: ww, trigger: {phrases: [kill]}, actions: [redact]}
  - {name: sub, trigger: {phrases: {terms: [foo], whole_word: false}}, actions: [redact]}
""")
    assert out(g, "skills kill")[0] == "skills [REDACTED]"
    assert out(g, "seafood football")[0] == "sea[REDACTED]d [REDACTED]tball"


def test_pattern_trigger() -> None:
    g = guard(
        "  - {name: p, trigger: {pattern: {regex: 'order\\s+#\\d+', ignore_case: true}}, "
        "actions: [{redact: {replacement: '<order>'}}]}\n"
    )
    assert out(g, "see ORDER  #1234 and order #9.")[0] == "see <order> and <order>."


def test_pii_trigger_uses_entity_placeholders() -> None:
    g = guard("  - {name: pii, trigger: {pii: [EMAIL, PHONE]}, actions: [redact]}\n")
    text, _, hits = out(g, "mail a.b@example.org, call 020 7946 0958, card 4111 1111 1111 1111")
    assert text == "mail [EMAIL], call [PHONE], card 4111 1111 1111 1111"
    assert hits == ["pii:enforce", "pii:enforce"]


def test_classifier_trigger_with_threshold_and_score() -> None:
    g = guard(
        "  - {name: tox, trigger: {classifier: {name: toxicity, label: toxic}}, actions: [stop]}\n"
    )
    result = g.check_output("you idiot", CTX)
    assert result.stopped and result.hits[0].score == 1.0
    assert result.checks[0].classifier == "toxicity" and result.checks[0].scores == {"toxic": 1.0}
    assert not g.check_output("you genius", CTX).stopped


def test_context_trigger_globs_and_metadata() -> None:
    g = guard("""
  - name: ctx
    trigger:
      all:
        - context: {tenant: [ac*], model: gpt-*, metadata: {segment: retail}}
        - phrases: [secret]
    actions: [redact]
""")
    assert out(g, "a secret")[0] == "a [REDACTED]"
    other = RequestContext("r", "acme", "/v1", "gpt-x", {"segment": "pro"})
    assert out(g, "a secret", other)[0] == "a secret"
    missing = RequestContext("r", "acme", "/v1", "gpt-x", {})
    assert out(g, "a secret", missing)[0] == "a secret"


def test_context_only_rule_fires_once_at_stream_start() -> None:
    g = guard(
        "  - {name: c, phases: [midstream], trigger: {context: {tenant: acme}}, "
        "actions: [{adapt_decoding: {temperature: 0.2, top_p: 0.5}}]}\n"
    )
    sg = g.stream(CTX)
    first = sg.feed("hello")
    assert first.decoding is not None and first.decoding.temperature == 0.2
    assert [h.rule for h in first.hits] == ["c"]
    assert sg.feed(" world").hits == []


def test_composition_all_any_not() -> None:
    g = guard("""
  - name: combo
    trigger:
      all:
        - any: [{phrases: [alpha]}, {pattern: 'beta\\d'}]
        - not: {phrases: [safeword]}
    actions: [redact]
""")
    assert out(g, "alpha and beta7")[0] == "[REDACTED] and [REDACTED]"
    assert out(g, "safeword then alpha")[0] == "safeword then alpha"
    assert out(g, "gamma")[0] == "gamma"


def test_not_alone_is_judged_at_end_of_text() -> None:
    g = guard(
        "  - {name: missing-sig, phases: [midstream], trigger: {not: {phrases: [regards]}}, "
        "actions: [{audit: {category: style}}]}\n"
    )
    assert out(g, "hello there") == ("hello there", False, ["missing-sig:enforce"])
    assert out(g, "kind regards") == ("kind regards", False, [])


# --------------------------------------------------------------------------- actions


def test_ingress_actions_block_modify_system_prompt_and_roles() -> None:
    g = guard("""
  - name: block
    phases: [ingress]
    roles: [user]
    trigger: {phrases: [forbidden]}
    actions: [{stop: {message: no way, status: 403}}]
  - name: hint
    phases: [ingress]
    trigger: {phrases: [pension]}
    actions: [{add_system_prompt: {text: be careful}}]
  - name: scrub
    phases: [ingress]
    trigger: {pii: [EMAIL]}
    actions: [redact]
""")
    ok = g.ingress(
        [
            ChatMessage("system", "forbidden words are fine here"),
            ChatMessage("user", "my pension, x@y.com"),
        ],
        CTX,
    )
    assert ok.action == "modify" and ok.system_additions == ["be careful"]
    assert ok.messages[1].content == "my pension, [EMAIL]"
    assert ok.messages[0].content == "forbidden words are fine here"  # roles: [user] only
    blocked = g.ingress([ChatMessage("user", "something forbidden")], CTX)
    assert (blocked.action, blocked.block_status, blocked.block_message) == ("block", 403, "no way")
    assert g.ingress([ChatMessage("user", "hello")], CTX).action == "pass"


def test_egress_disclaimers_prepend_and_append_once() -> None:
    g = guard("""
  - {name: a, trigger: {phrases: [invest]}, actions: [{inject_disclaimer: {text: Risk.}}]}
  - name: p
    trigger: {phrases: [crypto]}
    actions: [{inject_disclaimer: {text: Warning., position: prepend}}]
""")
    res = g.egress("invest invest in crypto", CTX)
    assert (res.prepend, res.append) == ("Warning.\n\n", "\n\nRisk.")
    assert [h.rule for h in res.hits] == ["a", "a", "p"]
    assert g.egress("nothing", CTX).append == ""


def test_log_and_audit_actions(caplog: pytest.LogCaptureFixture) -> None:
    g = guard(
        "  - {name: l, trigger: {phrases: [beep]}, actions: [{log: {level: error}}, "
        "{audit: {category: c, severity: high}}]}\n"
    )
    with caplog.at_level(logging.INFO, logger="checkstream.engine"):
        text, stopped, hits = out(g, "beep")
    assert (text, stopped, hits) == ("beep", False, ["l:enforce"])
    assert any(r.levelno == logging.ERROR and "t/l fired" in r.getMessage() for r in caplog.records)
    hit = g.check_output("beep", CTX).hits[0]
    assert (hit.action, hit.category, hit.severity) == ("audit", "c", "high")


def test_adapt_decoding_takes_the_most_conservative() -> None:
    g = guard("""
  - name: a
    trigger: {phrases: [risky]}
    actions: [{adapt_decoding: {temperature: 0.5}}]
  - name: b
    trigger: {phrases: [risky]}
    actions: [{adapt_decoding: {temperature: 0.3, top_p: 0.8}}]
""")
    sg = g.stream(CTX, holdback=0)
    step = sg.feed("this is risky ")
    assert step.decoding is not None
    assert (step.decoding.temperature, step.decoding.top_p) == (0.3, 0.8)


# --------------------------------------------------------------------------- determinism


def test_priority_decides_overlapping_redactions_and_stop_messages() -> None:
    g = guard("""
  - name: low
    priority: 1
    trigger: {phrases: [credit card number]}
    actions: [{redact: {replacement: '<low>'}}]
  - name: high
    priority: 9
    trigger: {phrases: [card]}
    actions: [{redact: {replacement: '<high>'}}]
""")
    assert out(g, "my credit card number")[0] == "my <low><high><low>"
    g = guard("""
  - {name: s1, priority: 1, trigger: {phrases: [x]}, actions: [{stop: {message: one}}]}
  - {name: s2, priority: 5, trigger: {phrases: [x]}, actions: [{stop: {message: two}}]}
  - {name: r, priority: 99, trigger: {phrases: [x]}, actions: [redact]}
""")
    result = g.check_output("a x b", CTX)
    assert result.stopped and result.stop_message == "two"  # a stop wins, highest stop's message
    assert [h.rule for h in result.hits] == ["r", "s2", "s1"]  # every fired rule, priority order


def test_shadow_rules_are_recorded_never_acted_on() -> None:
    g = guard("""
  - {name: s, mode: shadow, trigger: {phrases: [bomb]}, actions: [stop]}
  - {name: r, mode: shadow, trigger: {phrases: [card]}, actions: [redact]}
""")
    result = g.check_output("bomb card", CTX)
    assert (result.text, result.stopped) == ("bomb card", False)
    assert [(h.rule, h.mode, h.start, h.end) for h in result.hits] == [
        ("s", "shadow", 0, 4),
        ("r", "shadow", 5, 9),
    ]
    ing = g.ingress([ChatMessage("user", "bomb")], CTX)
    assert ing.action == "pass" and ing.hits[0].mode == "shadow"


def test_file_defaults_apply_mode() -> None:
    text = (
        "name: t\nversion: '1'\ndefaults: {mode: shadow}\nrules:\n"
        "  - {name: r, trigger: {phrases: [x]}, actions: [stop]}\n"
        "  - {name: e, mode: enforce, trigger: {phrases: [y]}, actions: [stop]}\n"
    )
    g = Guard(load_policy_text(text))
    assert not g.check_output("x", CTX).stopped
    assert g.check_output("y", CTX).stopped


# --------------------------------------------------------------------------- fail modes


def test_classifier_errors_resolve_by_fail_mode_sync() -> None:
    g = guard("""
  - name: c
    phases: [midstream]
    trigger: {classifier: {name: broken_closed, label: bad}}
    actions: [stop]
  - name: o
    phases: [midstream]
    trigger: {classifier: {name: broken_open, label: bad}}
    actions: [stop]
""")
    result = g.check_output("anything", CTX)
    assert result.stopped and [h.rule for h in result.hits] == ["c"]
    assert "fail mode closed" in result.hits[0].detail and result.hits[0].score is None
    by_name = {c.classifier: c for c in result.checks}
    assert by_name["broken_closed"].resolution == "fail_closed" and by_name["broken_closed"].failed
    assert by_name["broken_open"].resolution == "fail_open"
    assert by_name["broken_open"].error == "RuntimeError: model crashed"


def test_classifier_timeout_resolves_by_fail_mode_async() -> None:
    g = guard(
        "  - {name: t, phases: [midstream], trigger: {classifier: {name: slow_closed, "
        "label: bad}}, actions: [stop]}\n"
    )

    async def run() -> tuple[bool, list[str], bool]:
        sg = g.stream(CTX, check_interval=2, window=4)
        for delta in ["a", "b"]:
            step = await sg.afeed(delta)
        return step.stopped, [c.resolution for c in step.checks], step.checks[0].timed_out

    assert asyncio.run(run()) == (True, ["fail_closed"], True)


# Every place a failed check can sit in a trigger. `alpha` is in the text, `zeta` is not and the
# tenant is acme, so each trigger is true exactly when the failed check resolves so that the rule
# fires.
COMPOSITIONS = {
    "leaf": "{classifier: {name: C, label: bad}}",
    "not": "{not: {classifier: {name: C, label: bad}}}",
    "not-not": "{not: {not: {classifier: {name: C, label: bad}}}}",
    "all": "{all: [{phrases: [alpha]}, {classifier: {name: C, label: bad}}]}",
    # (A context leaf, not a phrase: over a stream, a phrase would fire the rule as it arrives,
    # before any classifier verdict on its text; that is text order, not the fail mode.)
    "all-not": "{all: [{context: {tenant: [acme]}}, {not: {classifier: {name: C, label: bad}}}]}",
    "any": "{any: [{phrases: [zeta]}, {classifier: {name: C, label: bad}}]}",
    "any-not": "{any: [{phrases: [zeta]}, {not: {classifier: {name: C, label: bad}}}]}",
    "not-any": "{not: {any: [{phrases: [zeta]}, {classifier: {name: C, label: bad}}]}}",
    "not-all": "{not: {all: [{phrases: [alpha]}, {classifier: {name: C, label: bad}}]}}",
}
NEGATED = {"not", "all-not", "any-not", "not-any", "not-all"}
FAIL_TEXT = "alpha beta gamma delta epsilon, and then some more words to stream along."


def failing_guard(classifier: str, composition: str) -> Guard:
    trigger = COMPOSITIONS[composition].replace("C", classifier)
    return guard(f"  - {{name: r, trigger: {trigger}, actions: [log]}}\n")


def _fail_verdict(
    hits: Sequence[RuleHit], checks: Sequence[CheckRecord], mode: str, composition: str
) -> None:
    """Closed: the rule fired and says why; open: it did not. Either way every check is on the
    record with its resolution."""
    assert checks and {c.resolution for c in checks} == {f"fail_{mode}"}
    if mode == "open":
        assert hits == []
        return
    assert {h.rule for h in hits} == {"r"} and all(h.score is None for h in hits)
    if composition in NEGATED:
        assert all("counted as not found under `not`" in h.detail for h in hits)
    else:
        assert any("fail mode closed" in h.detail for h in hits)


@pytest.mark.parametrize("composition", sorted(COMPOSITIONS))
@pytest.mark.parametrize("mode", ["closed", "open"])
def test_failed_classifier_fires_the_rule_iff_closed_in_every_composition(
    composition: str, mode: str
) -> None:
    """A check that errors resolves so that the *rule* fires when closed, wherever the check sits
    (under a `not` it counts as not found), and does not when open: non-streamed, streamed in
    small chunks (sync and async), at ingress and egress."""
    g = failing_guard(f"broken_{mode}", composition)
    result = g.check_output(FAIL_TEXT, CTX)
    _fail_verdict(result.hits, result.checks, mode, composition)
    sg = g.stream(CTX, holdback=4, check_interval=2, window=4)
    streamed = "".join(sg.feed(FAIL_TEXT[i : i + 5]).text for i in range(0, len(FAIL_TEXT), 5))
    streamed += sg.finish().text
    assert streamed == FAIL_TEXT
    _fail_verdict(sg.hits, sg.checks, mode, composition)
    ingress = g.ingress([ChatMessage("user", FAIL_TEXT)], CTX)
    _fail_verdict(ingress.hits, ingress.checks, mode, composition)
    egress = g.egress(FAIL_TEXT, CTX)
    _fail_verdict(egress.hits, egress.checks, mode, composition)

    async def run() -> None:
        sg = g.stream(CTX, holdback=4, check_interval=2, window=4, classifier_lag=2)
        for i in range(0, len(FAIL_TEXT), 5):
            await sg.afeed(FAIL_TEXT[i : i + 5])
        await sg.afinish()
        _fail_verdict(sg.hits, sg.checks, mode, composition)
        ingress = await g.aingress([ChatMessage("user", FAIL_TEXT)], CTX)
        _fail_verdict(ingress.hits, ingress.checks, mode, composition)

    asyncio.run(run())


@pytest.mark.parametrize("composition", ["not", "all-not", "not-any", "any"])
@pytest.mark.parametrize("mode", ["closed", "open"])
def test_timed_out_classifier_resolves_the_same_way(composition: str, mode: str) -> None:
    g = failing_guard(f"slow_{mode}", composition)

    async def run() -> tuple[OutputResult, EgressResult]:
        return await g.acheck_output(FAIL_TEXT, CTX), await g.aegress(FAIL_TEXT, CTX)

    result, egress = asyncio.run(run())
    for hits, checks in ((result.hits, result.checks), (egress.hits, egress.checks)):
        _fail_verdict(hits, checks, mode, composition)
        assert all(c.timed_out for c in checks)
    if mode == "closed" and composition != "any":
        assert "classifier slow_closed timed out" in result.hits[0].detail


def test_a_negated_classifier_failing_closed_stops_and_is_in_the_record() -> None:
    g = guard("""
  - name: unreviewed
    phases: [midstream]
    trigger:
      all:
        - {phrases: [guaranteed]}
        - {not: {classifier: {name: broken_closed, label: bad}}}
    actions: [stop]
""")
    result = g.check_output("returns are guaranteed", CTX)
    assert result.stopped and [h.rule for h in result.hits] == ["unreviewed"]
    record = build_record(
        CTX,
        ingress=None,
        streams=[result],
        egress=None,
        latencies_ms={},
        input_text="",
        output_text=result.text,
    )
    assert record["decision"] == "stop"
    assert record["coverage"]["classifier_failures"] == 1
    assert [s["resolution"] for s in record["scores"]] == ["fail_closed"]
    assert "broken_closed failed" in record["rules"][0]["detail"]


def test_classifier_windows_cover_every_delta_before_release() -> None:
    g = guard(
        "  - {name: tox, trigger: {classifier: {name: toxicity, label: toxic}}, actions: [stop]}\n"
    )
    # check_interval larger than holdback: the guard must still hold unchecked text back.
    sg = g.stream(CTX, holdback=1, check_interval=4, window=8)
    released = ""
    for delta in ["you ", "are ", "an ", "idiot ", "really"]:
        step = sg.feed(delta)
        released += step.text
        if step.stopped:
            break
    assert sg.stopped and "idiot" not in released
    assert [(c.start, c.end) for c in sg.checks] == [(0, 17)]


def test_context_only_ingress_rule_fires_once_per_request() -> None:
    g = guard(
        "  - {name: tenant-note, phases: [ingress], trigger: {context: {tenant: acme}}, "
        "actions: [{add_system_prompt: {text: acme house style}}]}\n"
    )
    result = g.ingress([ChatMessage("system", "s"), ChatMessage("user", "u")], CTX)
    assert result.action == "modify" and result.system_additions == ["acme house style"]
    assert [(h.rule, h.message_index) for h in result.hits] == [("tenant-note", None)]
    other = RequestContext("r", "globex", "/v1", "m", {})
    assert g.ingress([ChatMessage("user", "u")], other).action == "pass"


def test_async_paths_match_sync() -> None:
    g = guard(
        "  - {name: tox, trigger: {classifier: {name: toxicity, label: toxic}}, actions: [stop]}\n"
        "  - {name: d, trigger: {phrases: [fund]}, actions: [{inject_disclaimer: {text: Risk.}}]}\n"
    )

    async def run() -> tuple[str, str, bool, str]:
        ing = await g.aingress([ChatMessage("user", "you moron")], CTX)
        out = await g.acheck_output("a fund", CTX)
        eg = await g.aegress("a fund", CTX)
        return ing.action, out.text, out.stopped, eg.append

    assert asyncio.run(run()) == ("block", "a fund", False, "\n\nRisk.")


def test_long_non_streamed_text_is_scored_in_windows_covering_all_of_it() -> None:
    g = guard(
        "  - {name: tox, trigger: {classifier: {name: toxicity, label: toxic}}, actions: [stop]}\n"
    )
    text = "fine words here. " * 300 + "you idiot"
    result = g.check_output(text, CTX)
    assert result.stopped and result.hits[0].start is not None
    spans = [(c.start, c.end) for c in result.checks]
    assert all(end - start <= 1024 for start, end in spans)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(b[0] < a[1] for a, b in itertools.pairwise(spans))  # overlapping: no gaps
    assert result.hits[0].start >= spans[-1][0]


def test_long_prompt_is_classified_to_its_end() -> None:
    g = guard(
        "  - {name: tox, phases: [ingress], trigger: {classifier: {name: toxicity, label: toxic}},"
        " actions: [stop]}\n"
    )
    long_doc = "a calm paragraph. " * 200 + "you moron"
    result = g.ingress([ChatMessage("tool", long_doc)], CTX)
    assert result.action == "block"
    spans = [(c.start, c.end) for c in result.checks]
    assert len(spans) > 1 and spans[-1][1] == len(long_doc)
    assert all(end - start <= 1024 for start, end in spans)
    assert result.hits[0].start is not None and result.hits[0].start > 1024
