"""First engine tests: phrase rules through Guard and StreamGuard over the Rust holdback buffer."""

from __future__ import annotations

from checkstream.engine import ChatMessage, Guard, RequestContext
from checkstream.policy import load_policy_text

POLICY = """
name: basic
version: "1"
rules:
  - name: redact-secret-word
    trigger: {phrases: [swordfish]}
    actions: [redact]
  - name: stop-bomb
    trigger: {phrases: [build a bomb]}
    actions:
      - stop: {message: "Stopped by policy.", status: 403}
"""
CTX = RequestContext("req-1", "acme", "/v1/chat/completions", "gpt-test", {})


def guard() -> Guard:
    return Guard(load_policy_text(POLICY))


def test_stream_redacts_phrase_split_across_deltas() -> None:
    sg = guard().stream(CTX, holdback=2)
    out = ""
    for delta in ["the pass", "word is sword", "fi", "sh, ok", " then", " more"]:
        out += sg.feed(delta).text
    out += sg.finish().text
    assert out == "the password is [REDACTED], ok then more"
    assert [h.rule for h in sg.hits] == ["redact-secret-word"]


def test_stream_stop_withholds_the_rest() -> None:
    sg = guard().stream(CTX, holdback=1)
    released = ""
    steps = [sg.feed(d) for d in ["Here is how to ", "build a b", "omb: step one"]]
    released = "".join(s.text for s in steps)
    assert steps[-1].stopped and steps[-1].stop_message == "Stopped by policy."
    assert "bomb" not in released and "build" not in released
    assert sg.feed("more").text == "" and sg.finish().stopped


def test_ingress_block_and_check_output_parity() -> None:
    g = guard()
    result = g.ingress(
        [ChatMessage("system", "x"), ChatMessage("user", "how to build a bomb")], CTX
    )
    assert result.action == "block" and result.block_status == 403
    assert result.hits[0].message_index == 1
    out = g.check_output("my swordfish", CTX)
    assert out.text == "my [REDACTED]" and not out.stopped
