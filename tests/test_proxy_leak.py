"""Zero leak and streaming parity, property-tested on every endpoint.

For random texts (multi-byte characters included), random token boundaries (SSE events) and
random TCP splits of the upstream bytes, with a banned phrase or an e-mail address somewhere:
no banned byte reaches the client, and the streamed text equals the non-streamed answer.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator

import anthropic
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkstream.proxy.loopback import LoopbackStack
from checkstream.proxy.replay import RecordedChoice, Recording, ToolCall
from proxy_helpers import STOP_AND_REDACT, write_policy

POLICY = STOP_AND_REDACT.format(name="leak-test")
BANNED = "forbidden fruit"
EMAIL = "eve.adams@example.com"
WORDS = ["the", "caf\u00e9", "na\u00efve", "\u65e5\u672c\u8a9e", "\U0001F642", "fruit", "forbidden",
         "ok", "z\u00fcrich", "\u00a3100", "apple", "\u0434\u0430"]
ENDPOINTS = ("chat", "completions", "responses", "messages")
_names = itertools.count()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackStack]:
    with LoopbackStack(policies=write_policy(tmp_path_factory.mktemp("leak"), POLICY)) as s:
        yield s


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[str], str, int]:
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=25))
    inject = draw(st.sampled_from(["banned", "email", "both", "none"]))
    if inject in ("banned", "both"):
        words.insert(draw(st.integers(0, len(words))), BANNED)
    if inject in ("email", "both"):
        words.insert(draw(st.integers(0, len(words))), EMAIL)
    text = " ".join(words)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=30))))
    tokens = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True) if b > a]
    split = draw(st.sampled_from(["event", "random", "random", "bytes"]))
    seed = draw(st.integers(0, 2**16))
    return tokens, split, seed


def _stream(stack: LoopbackStack, endpoint: str, name: str, faults: str) -> tuple[str, str]:
    headers = {"x-replay-faults": faults}
    if endpoint == "messages":
        ac = anthropic.Anthropic(base_url=stack.url, api_key="k", max_retries=0,
                                 default_headers=headers)
        with ac.messages.stream(model=name, max_tokens=100,
                                messages=[{"role": "user", "content": "x"}]) as s:
            text = "".join(s.text_stream)
            return text, str(s.get_final_message().stop_reason)
    oc = openai.OpenAI(base_url=stack.url + "/v1", api_key="k", max_retries=0,
                       default_headers=headers)
    if endpoint == "chat":
        text, end = "", ""
        for ch in oc.chat.completions.create(model=name, stream=True,
                                             messages=[{"role": "user", "content": "x"}]):
            for c in ch.choices:
                text += c.delta.content or ""
                end = c.finish_reason or end
        return text, end
    if endpoint == "completions":
        text, end = "", ""
        for cc in oc.completions.create(model=name, prompt="x", stream=True):
            for c in cc.choices:
                text += c.text
                end = c.finish_reason or end
        return text, end
    events = list(oc.responses.create(model=name, input="x", stream=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == text  # the final object's copy is the released text too
    return text, str(final.status)


def _plain(stack: LoopbackStack, endpoint: str, name: str) -> tuple[str, str]:
    if endpoint == "messages":
        ac = anthropic.Anthropic(base_url=stack.url, api_key="k", max_retries=0)
        m = ac.messages.create(model=name, max_tokens=100,
                               messages=[{"role": "user", "content": "x"}])
        return "".join(b.text for b in m.content if b.type == "text"), str(m.stop_reason)
    oc = openai.OpenAI(base_url=stack.url + "/v1", api_key="k", max_retries=0)
    if endpoint == "chat":
        r = oc.chat.completions.create(model=name, messages=[{"role": "user", "content": "x"}])
        return r.choices[0].message.content or "", r.choices[0].finish_reason
    if endpoint == "completions":
        c = oc.completions.create(model=name, prompt="x")
        return c.choices[0].text, c.choices[0].finish_reason
    resp = oc.responses.create(model=name, input="x")
    return resp.output_text, str(resp.status)


STOPPED = {"chat": "content_filter", "completions": "content_filter",
           "responses": "incomplete", "messages": "refusal"}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_no_leak_and_parity(stack: LoopbackStack, endpoint: str,
                            scenario: tuple[list[str], str, int]) -> None:
    tokens, split, seed = scenario
    name = f"prop-{next(_names)}"
    stack.replay.add_recording(Recording.from_text(name, tokens))
    original = "".join(tokens)
    faults = f'{{"split": "{split}", "seed": {seed}}}'
    streamed, end = _stream(stack, endpoint, name, faults)
    plain, plain_end = _plain(stack, endpoint, name)

    assert BANNED not in streamed and EMAIL not in streamed
    assert "eve.adams@" not in streamed  # not even the start of the address
    assert end == plain_end
    if re.search(r"\bforbidden fruit\b", original):
        assert end == STOPPED[endpoint]
        # Same decision and refusal both ways. What was released before the stop is a prefix
        # of the original cut before the phrase; a stream may have released more of that safe
        # prefix than the one-shot answer (it cannot be taken back), never anything after it.
        cut = original.index(BANNED)
        for answer in (streamed, plain):
            assert answer.endswith("Stopped by policy.")
            kept = answer[: -len("Stopped by policy.")].rstrip("\n").replace("[EMAIL]", EMAIL)
            assert original.startswith(kept) and len(kept) <= cut
    else:
        assert streamed == plain
        assert end != STOPPED[endpoint]
        assert streamed == original.replace(EMAIL, "[EMAIL]")


@st.composite
def two_choice_scenarios(draw: st.DrawFn) -> tuple[list[str], list[str], str, int]:
    tokens, split, seed = draw(scenarios())
    note = " ".join(draw(st.lists(st.sampled_from(WORDS), max_size=8)))
    args = json.dumps({"to": EMAIL, "note": note}, ensure_ascii=False)
    cuts = sorted(set(draw(st.lists(st.integers(1, len(args) - 1), max_size=20))))
    arg_tokens = [args[a:b] for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True)]
    return tokens, arg_tokens, split, seed


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=two_choice_scenarios())
def test_no_leak_two_choices_and_tool_arguments(
        stack: LoopbackStack, scenario: tuple[list[str], list[str], str, int]) -> None:
    """n=2 on chat completions: choice 0 streams text, choice 1 a tool call whose arguments
    carry an e-mail address; each is guarded on its own and matches the one-shot answer."""
    tokens, arg_tokens, split, seed = scenario
    name = f"prop2-{next(_names)}"
    call = ToolCall("call_p", "send_mail", tuple(arg_tokens))
    stack.replay.add_recording(Recording(name=name, choices=(
        RecordedChoice(tokens=tuple(tokens)),
        RecordedChoice(tokens=(), tool_calls=(call,), finish_reason="tool_calls"))))
    oc = openai.OpenAI(base_url=stack.url + "/v1", api_key="k", max_retries=0,
                       default_headers={"x-replay-faults":
                                        json.dumps({"split": split, "seed": seed})})
    texts: dict[int, str] = {}
    args: dict[int, str] = {}
    finish: dict[int, str] = {}
    for ch in oc.chat.completions.create(model=name, n=2, stream=True,
                                         messages=[{"role": "user", "content": "x"}]):
        for c in ch.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            for t in c.delta.tool_calls or []:
                if t.function and t.function.arguments:
                    args[c.index] = args.get(c.index, "") + t.function.arguments
            finish[c.index] = c.finish_reason or finish.get(c.index, "")
    plain = oc.chat.completions.create(model=name, n=2,
                                       messages=[{"role": "user", "content": "x"}])
    original = "".join(tokens)
    assert BANNED not in texts[0] and EMAIL not in texts[0]
    assert EMAIL not in args.get(1, "") and "eve.adams@" not in args.get(1, "")
    if re.search(r"\bforbidden fruit\b", "".join(arg_tokens)):
        # The note drew the banned phrase: the tool call is stopped like any text.
        assert BANNED not in args.get(1, "")
        assert finish[1] == "content_filter" == plain.choices[1].finish_reason
    else:
        assert json.loads(args[1])["to"] == "[EMAIL]"
        tool = plain.choices[1].message.tool_calls[0]  # type: ignore[index]
        assert tool.function.arguments == args[1]  # type: ignore[union-attr]
        assert finish[1] == "tool_calls"
    if re.search(r"\bforbidden fruit\b", original):
        assert finish[0] == "content_filter" == plain.choices[0].finish_reason
    else:
        assert texts[0] == plain.choices[0].message.content == original.replace(EMAIL, "[EMAIL]")
