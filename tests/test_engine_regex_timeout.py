"""Pattern scans have a CPU budget: a catastrophically backtracking user regex cannot stall a
stream, and a scan that runs out of time resolves by the rule's fail mode, on the record.

Nothing here asserts a duration: each test asserts what the decision says (``timed_out`` hits,
``ScanTimeout`` records, the decision record's coverage), which only a scan that gave up in
time can produce. ``(a|aa)+$`` against a long run of ``a`` ending in ``b`` takes exponential
time in the ``regex`` module (``(a+)+$`` does not: the module optimises that one).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import regex

from checkstream.engine import ChatMessage, Guard, RequestContext, StreamGuard
from checkstream.engine.records import build_record
from checkstream.engine.scanners import SCAN_WINDOW, PatternStream, ScanBudget, scan_pattern
from checkstream.policy.loader import load_policy_set, load_policy_text
from checkstream.policy.policyset import PatternLeaf

PACKS = Path(__file__).resolve().parents[1] / "policies"
CTX = RequestContext("req-re", "acme", "/v1/chat/completions", "gpt-x")
EVIL = "(a|aa)+$"
# Long and adversarial: thousands of characters the pattern backtracks over, then the `b`
# that makes it fail, then ordinary text.
ATTACK = "Here you go: " + "a" * 3000 + "b and the rest of the answer."
BENIGN = "Nothing to see here, just an ordinary answer."


def guard(action: str, *, fail_mode: str | None = None, mode: str = "enforce") -> Guard:
    limit = f"    fail_mode: {fail_mode}\n" if fail_mode else ""
    text = (
        "name: t\nversion: '1'\nrules:\n"
        "  - name: evil\n"
        f"    mode: {mode}\n"
        f"{limit}"
        # max_length: a stream holds the whole run as a possible match rather than judging
        # a 512-character `a...a` at the end of the text so far as it is (it would match `$`).
        f"    trigger: {{pattern: {{regex: '{EVIL}', max_length: 8192}}}}\n"
        f"    actions: [{action}]\n"
    )
    return Guard(load_policy_text(text))


def chunks(text: str, size: int) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


def stream(g: Guard, text: str, size: int = 7) -> tuple[StreamGuard, str]:
    sg = g.stream(CTX, holdback=8, check_interval=4)
    out = ""
    for delta in chunks(text, size):
        step = sg.feed(delta)
        out += step.text
        if step.stopped:
            return sg, out
    return sg, out + sg.finish().text


async def astream(g: Guard, text: str, size: int = 7) -> tuple[StreamGuard, str]:
    sg = g.stream(CTX, holdback=8, check_interval=4)
    out = ""
    for delta in chunks(text, size):
        step = await sg.afeed(delta)
        out += step.text
        if step.stopped:
            return sg, out
    return sg, out + (await sg.afinish()).text


def record(sg: StreamGuard, out: str) -> dict[str, Any]:
    return build_record(
        CTX,
        ingress=None,
        streams=[sg],
        egress=None,
        latencies_ms={},
        input_text="",
        output_text=out,
    )


# --------------------------------------------------------------------------- midstream


def test_default_fail_mode_is_closed_and_stops_streamed_and_not() -> None:
    g = guard("stop")  # no fail_mode: enforce rules fail closed
    whole = g.check_output(ATTACK, CTX)
    sg, streamed = stream(g, ATTACK)
    for stopped, hits, timeouts, text in (
        (whole.stopped, whole.hits, whole.timeouts, whole.text),
        (sg.stopped, sg.hits, sg.timeouts, streamed),
    ):
        assert stopped
        assert [(h.rule, h.action, h.timed_out) for h in hits] == [("evil", "stop", True)]
        assert "timed out" in hits[0].detail and "fail mode closed" in hits[0].detail
        assert [(t.rule, t.phase, t.resolution) for t in timeouts] == [
            ("evil", "midstream", "fail_closed")
        ]
        assert "b and the rest" not in text  # nothing from the unjudged text on was released
    rec = record(sg, streamed)
    assert rec["decision"] == "stop"
    coverage = rec["coverage"]
    assert coverage["streams"][0]["pattern_timeouts"] == 1
    (entry,) = coverage["pattern_timeouts"]
    assert entry["rule"] == "evil" and entry["resolution"] == "fail_closed"
    assert entry["stream"] == 0 and entry["timeout_ms"] >= 5.0
    assert entry["start"] < entry["end"]
    (hit,) = rec["rules"]
    assert hit["timed_out"] is True


def test_closed_redact_redacts_the_unjudged_text() -> None:
    g = guard("redact", fail_mode="closed")
    whole = g.check_output(ATTACK, CTX)
    sg, streamed = stream(g, ATTACK)
    for text, hits, timeouts in (
        (whole.text, whole.hits, whole.timeouts),
        (streamed, sg.hits, sg.timeouts),
    ):
        assert "[REDACTED]" in text
        assert "ab" not in text  # the stall point is inside the redaction
        assert hits and all(h.timed_out for h in hits)
        assert [t.resolution for t in timeouts] == ["fail_closed"]
    assert record(sg, streamed)["decision"] == "redact"


def test_open_lets_the_text_through_and_records_it() -> None:
    g = guard("stop", fail_mode="open")
    whole = g.check_output(ATTACK, CTX)
    sg, streamed = stream(g, ATTACK)
    for stopped, text, hits, timeouts in (
        (whole.stopped, whole.text, whole.hits, whole.timeouts),
        (sg.stopped, streamed, sg.hits, sg.timeouts),
    ):
        assert not stopped and text == ATTACK and hits == []
        assert timeouts and {t.resolution for t in timeouts} == {"fail_open"}
    rec = record(sg, streamed)
    assert rec["decision"] == "allow"
    coverage = rec["coverage"]
    assert [e["resolution"] for e in coverage["pattern_timeouts"]] == ["fail_open"] * len(
        sg.timeouts
    )


def test_async_paths_resolve_the_same() -> None:
    g = guard("stop")
    whole = asyncio.run(g.acheck_output(ATTACK, CTX))
    sg, _ = asyncio.run(astream(g, ATTACK))
    assert whole.stopped and sg.stopped
    assert [h.timed_out for h in whole.hits] == [True] == [h.timed_out for h in sg.hits]
    opened = guard("stop", fail_mode="open")
    sg, out = asyncio.run(astream(opened, ATTACK))
    assert not sg.stopped and out == ATTACK and sg.timeouts


def test_shadow_rules_record_what_enforcing_would_do() -> None:
    g = guard("stop", mode="shadow")
    result = g.check_output(ATTACK, CTX)
    assert not result.stopped and result.text == ATTACK
    assert [(h.mode, h.timed_out) for h in result.hits] == [("shadow", True)]


def test_benign_text_never_times_out() -> None:
    for action in ("stop", "redact"):
        g = guard(action)
        result = g.check_output(BENIGN, CTX)
        sg, out = stream(g, BENIGN, 3)
        assert result.text == out == BENIGN
        assert result.timeouts == sg.timeouts == [] and result.hits == sg.hits == []


def test_every_step_carries_its_timeouts() -> None:
    g = guard("log", fail_mode="open")
    sg = g.stream(CTX, holdback=8, check_interval=4)
    seen = [t for delta in chunks(ATTACK, 11) for t in sg.feed(delta).timeouts]
    seen += sg.finish().timeouts
    assert seen == sg.timeouts and seen


# --------------------------------------------------------------------------- ingress, egress


def test_ingress_blocks_closed_and_passes_open() -> None:
    msgs = [ChatMessage("system", "Be helpful."), ChatMessage("user", ATTACK)]
    closed = guard("stop").ingress(msgs, CTX)
    assert closed.action == "block"
    assert [(h.message_index, h.timed_out) for h in closed.hits] == [(1, True)]
    assert [(t.phase, t.message_index, t.resolution) for t in closed.timeouts] == [
        ("ingress", 1, "fail_closed")
    ]
    redacted = guard("redact").ingress(msgs, CTX)
    assert redacted.action == "modify" and "[REDACTED]" in redacted.messages[1].content
    opened = asyncio.run(guard("stop", fail_mode="open").aingress(msgs, CTX))
    assert opened.action == "pass" and opened.hits == []
    assert [t.resolution for t in opened.timeouts] == ["fail_open"]
    rec = build_record(
        CTX,
        ingress=opened,
        streams=[],
        egress=None,
        latencies_ms={},
        input_text=ATTACK,
        output_text="",
    )
    assert [(e["phase"], e["message_index"]) for e in rec["coverage"]["pattern_timeouts"]] == [
        ("ingress", 1)
    ]


def test_fail_mode_under_not_still_means_fire_or_not() -> None:
    """``not: {pattern}``: closed must make the *rule* fire (its leaf counts as no match)."""

    def egress(fail_mode: str, text: str) -> tuple[str, list[bool]]:
        g = Guard(
            load_policy_text(
                "name: t\nversion: '1'\nrules:\n"
                "  - name: unsigned\n"
                f"    fail_mode: {fail_mode}\n"
                f"    trigger: {{not: {{pattern: '{EVIL}'}}}}\n"
                "    actions: [{inject_disclaimer: {text: Unverified.}}]\n"
            )
        )
        result = g.egress(text, CTX)
        assert len(result.timeouts) == (1 if text == ATTACK else 0)
        return result.append, [h.timed_out for h in result.hits]

    assert egress("closed", ATTACK) == ("\n\nUnverified.", [True])
    assert egress("open", ATTACK) == ("", [])
    assert egress("open", BENIGN) == ("\n\nUnverified.", [False])  # no timeout: judged as usual


# --------------------------------------------------------------------------- the budget's clock


def _leaf(source: str, timeout_ms: float) -> PatternLeaf:
    return PatternLeaf(0, source, regex.compile(source, regex.V1), 512, timeout_ms / 1000)


def test_whole_text_and_stream_scanners_report_the_unjudged_span() -> None:
    leaf = _leaf(EVIL, 5)
    events, timeout = scan_pattern(leaf, ATTACK, "egress")
    assert timeout is not None and (timeout.start, timeout.end) == (0, len(ATTACK))
    assert timeout.timeout_ms == 10.0  # 5 ms per 2048 characters read: two windows
    assert [(e.start, e.end, e.timed_out) for e in events] == [(0, len(ATTACK), True)]
    scanner = PatternStream(leaf)
    events = scanner.step(ATTACK, 0, final=True)
    assert scanner.timeout is not None and scanner.scan_from == len(ATTACK)
    assert [e.timed_out for e in events] == [True]
    assert scanner.step(ATTACK + " more", 0, final=True) == []  # goes on after the span
    assert scanner.timeout is None


def test_the_limit_grows_with_the_text_a_scan_reads() -> None:
    assert ScanBudget(0.005).limit == ScanBudget(0.005, SCAN_WINDOW).limit == 0.005
    assert ScanBudget(0.005, SCAN_WINDOW + 1).limit == 0.010


def test_a_long_benign_answer_is_not_cut_off_by_a_shipped_pattern() -> None:
    """A non-streamed answer is one scan of the whole text: a 100 KB answer must get the time
    100 KB of scanning takes, or a closed fail mode would stop it for being long."""
    g = Guard(load_policy_set(PACKS / "fca-consumer-duty"))
    answer = "Index funds hold shares in many firms, so one firm failing matters less. " * 1400
    result = g.check_output(answer, CTX)
    assert result.timeouts == [] and not result.stopped
    assert g.egress(answer, CTX).timeouts == []
    assert g.ingress([ChatMessage("user", answer)], CTX).timeouts == []


def test_other_threads_cpu_does_not_time_out_a_cheap_scan() -> None:
    """The regex module's timeout runs on the process's CPU clock; a thread burning CPU beside
    the scan (an ONNX classifier, say) must not turn a scan within budget into a fail-closed
    stop. The scan's own thread's clock decides."""
    text = ("a" * 16 + "b ") * 2  # about a millisecond of work: well within the budget
    stop = threading.Event()

    def burn() -> None:
        block = b"x" * 8_000_000
        while not stop.is_set():
            hashlib.sha256(block).digest()  # releases the GIL: runs beside the regex

    threads = [threading.Thread(target=burn, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        # On a machine with a spare core the regex module's own (process-clock) timeout fires
        # here spuriously; ours, measured on the scanning thread's clock, must never.
        ours = sum(scan_pattern(_leaf(EVIL, 4), text, "egress")[1] is not None
                   for _ in range(10))
        assert ours == 0
    finally:
        stop.set()
        for t in threads:
            t.join()
