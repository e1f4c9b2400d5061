"""Logprobs through the proxy, with the official openai SDK, in front of the replay upstream.

Clean text: the upstream's entries come through (streamed and not, chat, legacy completions and
Responses), with ``top_logprobs`` cut to the alternatives that spell a prefix of the chosen token.
Guarded text, property-tested over random chunkings and TCP splits: every emitted entry spells
released text, in order; none spells a banned phrase, an e-mail address or anything after a stop;
streamed and non-streamed entries agree. With midstream guarding off, entries are untouched.
"""

from __future__ import annotations

import codecs
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings

from checkstream.proxy.loopback import LoopbackStack
from checkstream.proxy.replay import Recording
from proxy_helpers import write_policy
from test_proxy_leak import BANNED, EMAIL, POLICY, scenarios

Json = dict[str, Any]
MSG = [{"role": "user", "content": "x"}]
RESPONSES_LOGPROBS = ["message.output_text.logprobs"]
TOP = 4
_names = itertools.count()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackStack]:
    # A short holdback: text (and entries) leave in many small steps, not all at the end.
    with LoopbackStack(policies=write_policy(tmp_path_factory.mktemp("lp"), POLICY),
                       config={"guardrails": {"midstream": {"holdback_size": 3}}}) as s:
        yield s


@pytest.fixture(scope="module")
def unguarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackStack]:
    with LoopbackStack(policies=write_policy(tmp_path_factory.mktemp("lp-off"), POLICY),
                       config={"guardrails": {"midstream": {"enabled": False}}}) as s:
        yield s


def _client(url: str, faults: str | None = None) -> openai.OpenAI:
    headers = {"x-replay-faults": faults} if faults else None
    return openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0,
                         default_headers=headers)


# ---------------------------------------------------------------- reading the answers
def chat_stream(c: openai.OpenAI, name: str) -> tuple[str, list[Json], str]:
    text, entries, finish = "", [], ""
    for chunk in c.chat.completions.create(model=name, messages=MSG, stream=True,  # type: ignore[arg-type]
                                           logprobs=True, top_logprobs=TOP):
        for ch in chunk.choices:
            text += ch.delta.content or ""
            if ch.logprobs is not None:
                entries += [e.model_dump() for e in ch.logprobs.content or []]
            finish = ch.finish_reason or finish
    return text, entries, finish


def chat_plain(c: openai.OpenAI, name: str) -> tuple[str, list[Json], str]:
    r = c.chat.completions.create(model=name, messages=MSG, logprobs=True,  # type: ignore[arg-type]
                                  top_logprobs=TOP)
    ch = r.choices[0]
    assert ch.logprobs is not None
    return (ch.message.content or "", [e.model_dump() for e in ch.logprobs.content or []],
            ch.finish_reason)


def _rows(lp: Any) -> list[Json]:
    if lp is None or lp.tokens is None:
        return []
    return [{"token": t, "logprob": lp.token_logprobs[i], "top_logprobs": lp.top_logprobs[i],
             "text_offset": lp.text_offset[i]} for i, t in enumerate(lp.tokens)]


def completions_stream(c: openai.OpenAI, name: str) -> tuple[str, list[Json], str]:
    text, entries, finish = "", [], ""
    for chunk in c.completions.create(model=name, prompt="x", stream=True, logprobs=TOP):
        for ch in chunk.choices:
            text += ch.text
            entries += _rows(ch.logprobs)
            finish = ch.finish_reason or finish
    return text, entries, finish


def completions_plain(c: openai.OpenAI, name: str) -> tuple[str, list[Json], str]:
    ch = c.completions.create(model=name, prompt="x", logprobs=TOP).choices[0]
    return ch.text, _rows(ch.logprobs), ch.finish_reason


def responses_stream(c: openai.OpenAI, name: str) -> tuple[str, list[Json], str]:
    """The deltas' entries; the done event and every final part must repeat them."""
    events = list(c.responses.create(model=name, input="x", stream=True,  # type: ignore[arg-type]
                                     include=RESPONSES_LOGPROBS, top_logprobs=TOP))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    entries = [x.model_dump() for e in events if e.type == "response.output_text.delta"
               for x in e.logprobs]
    done = [e for e in events if e.type == "response.output_text.done"]
    assert [x.model_dump() for x in done[0].logprobs] == entries
    final = events[-1].response  # type: ignore[union-attr]
    parts = [e.part for e in events if e.type == "response.content_part.done"]
    parts += [p for item in final.output for p in getattr(item, "content", None) or []]
    for part in parts:
        assert [_delta_shape(x.model_dump()) for x in part.logprobs] == entries
        assert all(spelled(x.token) == bytes(x.bytes) for x in part.logprobs)
    return text, entries, str(final.status)


def responses_plain(c: openai.OpenAI, name: str) -> tuple[str, list[Json], str]:
    r = c.responses.create(model=name, input="x", include=RESPONSES_LOGPROBS,  # type: ignore[arg-type]
                           top_logprobs=TOP)
    entries = [_delta_shape(x.model_dump()) for item in r.output
               for p in getattr(item, "content", None) or [] for x in p.logprobs or []]
    return r.output_text, entries, str(r.status)


def _delta_shape(e: Json) -> Json:
    """An output part's entry as a delta's (no bytes), to compare the two."""
    return {"token": e["token"], "logprob": e["logprob"],
            "top_logprobs": [{"token": a["token"], "logprob": a["logprob"]}
                             for a in e["top_logprobs"]]}


READERS = {
    "chat": (chat_stream, chat_plain),
    "completions": (completions_stream, completions_plain),
    "responses": (responses_stream, responses_plain),
}
STOPPED = {"chat": "content_filter", "completions": "content_filter", "responses": "incomplete"}


# ---------------------------------------------------------------- what an entry spells
def spelled(token: str, raw: list[int] | None = None) -> bytes:
    if raw is not None:
        return bytes(raw)
    if "\\x" in token:
        return codecs.escape_decode(token.removeprefix("bytes:").encode())[0]
    return token.encode()


def alternatives(e: Json) -> list[tuple[str, list[int] | None]]:
    top = e.get("top_logprobs") or []
    if isinstance(top, dict):
        return [(t, None) for t in top]
    return [(a["token"], a.get("bytes")) for a in top]


def top_kept(e: Json) -> Json:
    """The proxy's rule: only alternatives that spell a prefix of the chosen token."""
    chosen = spelled(e["token"], e.get("bytes"))
    top = e.get("top_logprobs")
    if isinstance(top, dict):
        return {**e, "top_logprobs": {t: v for t, v in top.items()
                                      if chosen.startswith(spelled(t))}}
    return {**e, "top_logprobs": [a for a in top or []
                                  if chosen.startswith(spelled(a["token"], a.get("bytes")))]}


def assert_spells_released(entries: list[Json], released: str) -> None:
    """Each entry spells the released text, in order (gaps where text was redacted), and its
    alternatives only a prefix of it."""
    data = released.encode()
    at = 0
    for e in entries:
        chosen = spelled(e["token"], e.get("bytes"))
        assert spelled(e["token"]) == chosen  # the token's text and its bytes agree
        found = data.find(chosen, at)
        assert found >= 0, (e["token"], released)
        at = found + len(chosen)
        for token, raw in alternatives(e):
            assert chosen.startswith(spelled(token, raw)), (token, e["token"])
    dump = json.dumps(entries, ensure_ascii=False)
    assert "@" not in dump and "eve.adams" not in dump
    assert BANNED.encode() not in b"".join(spelled(e["token"], e.get("bytes")) for e in entries)


# ---------------------------------------------------------------- clean text
@pytest.mark.parametrize("endpoint", list(READERS))
def test_clean_text_keeps_the_upstreams_entries(stack: LoopbackStack, endpoint: str) -> None:
    name = f"clean-{endpoint}"
    stack.replay.add_recording(Recording.from_text(
        name, ["The", " caf\u00e9 \U0001F642 is", " open", " until", " six", " today."]))
    stream, plain = READERS[endpoint]
    upstream_text, upstream, _ = plain(_client(stack.upstream.url), name)
    assert len(upstream) >= 7 and any(len(alternatives(e)) == TOP for e in upstream)
    expected = [top_kept(e) for e in upstream]
    proxy = _client(stack.url)
    for read in (stream, plain):
        text, entries, _ = read(proxy, name)
        assert text == upstream_text
        assert entries == expected
    # The alternatives that spell other text are gone; each chosen token stays.
    assert all(e["token"] in {t for t, _ in alternatives(e)} for e in expected)
    assert sum(len(alternatives(e)) for e in expected) < sum(len(alternatives(e)) for e in upstream)


def test_chat_usage_and_finish_chunks_keep_their_shape(stack: LoopbackStack) -> None:
    chunks = list(_client(stack.url).chat.completions.create(
        model="weather", messages=MSG, stream=True, logprobs=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    finish = [c for ch in chunks for c in ch.choices if c.finish_reason]
    assert [c.finish_reason for c in finish] == ["stop"] and finish[0].logprobs is None
    assert all(c.logprobs is not None for ch in chunks for c in ch.choices if c.delta.content)


def test_no_logprobs_unless_asked(stack: LoopbackStack) -> None:
    c = _client(stack.url)
    r = c.chat.completions.create(model="weather", messages=MSG)  # type: ignore[arg-type]
    assert r.choices[0].logprobs is None
    assert all(ch.logprobs is None for chunk in c.chat.completions.create(
        model="weather", messages=MSG, stream=True) for ch in chunk.choices)  # type: ignore[arg-type]
    assert c.completions.create(model="weather", prompt="x").choices[0].logprobs is None
    events = list(c.responses.create(model="weather", input="x", stream=True))
    assert all(e.logprobs == [] for e in events if e.type == "response.output_text.delta")


# ---------------------------------------------------------------- redaction and stop
def test_redacted_tokens_are_dropped_streamed_and_plain(stack: LoopbackStack) -> None:
    """customer-record's e-mail address is redacted: its tokens never go out, the tokens
    around it do (chat, Responses); legacy completions end at the redaction."""
    proxy = _client(stack.url)
    upstream = [e["token"] for e in chat_plain(_client(stack.upstream.url),
                                               "customer-record")[1]]
    for endpoint, (stream, plain) in READERS.items():
        got = [read(proxy, "customer-record") for read in (stream, plain)]
        assert got[0] == got[1]
        text, entries, _ = got[0]
        assert "[EMAIL]" in text
        assert_spells_released(entries, text)
        tokens = [e["token"] for e in entries]
        at = upstream.index(" jane.")
        assert tokens[:at] == upstream[:at]
        if endpoint == "completions":
            assert tokens == upstream[:at]
        else:
            assert tokens == upstream[:at] + upstream[at + 4:]  # " jane." ... "com"


def test_stop_emits_nothing_after_it(stack: LoopbackStack) -> None:
    stack.replay.add_recording(Recording.from_text("lp-stop", [
        "Eat", " the", " apple", " and", " a", " pear,", " not", " the", " forbidden",
        " fruit", " or", " its", " seeds."]))
    proxy = _client(stack.url)
    for endpoint, (stream, plain) in READERS.items():
        text, entries, end = stream(proxy, "lp-stop")
        assert end == STOPPED[endpoint]
        released = text[: text.rindex("Stopped by policy.")]
        assert released.startswith("Eat the apple")
        assert entries and [e["token"] for e in entries] == re.findall(r"\s*\S+", released)
        assert_spells_released(entries, released)
        _, p_entries, p_end = plain(proxy, "lp-stop")
        assert p_end == STOPPED[endpoint] and entries[: len(p_entries)] == p_entries


@pytest.mark.parametrize("endpoint", list(READERS))
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_no_leak_through_logprobs_and_parity(stack: LoopbackStack, endpoint: str,
                                             scenario: tuple[list[str], str, int]) -> None:
    tokens, split, seed = scenario
    name = f"lp-prop-{next(_names)}"
    stack.replay.add_recording(Recording.from_text(name, tokens))
    stream, plain = READERS[endpoint]
    faults = json.dumps({"split": split, "seed": seed})
    text, entries, end = stream(_client(stack.url, faults), name)
    p_text, p_entries, p_end = plain(_client(stack.url), name)
    assert end == p_end
    original = "".join(tokens)
    if end == STOPPED[endpoint]:
        released = text[: text.rindex("Stopped by policy.")]
        assert_spells_released(entries, released)
        assert_spells_released(p_entries, p_text)
        # The one-shot answer releases less before a stop, never more.
        assert entries[: len(p_entries)] == p_entries
    else:
        assert_spells_released(entries, text)
        assert (entries, text) == (p_entries, p_text)
        if EMAIL not in original:
            upstream = plain(_client(stack.upstream.url), name)[1]
            assert entries == [top_kept(e) for e in upstream]


# ---------------------------------------------------------------- guarding off
@pytest.mark.parametrize("endpoint", list(READERS))
def test_unguarded_passes_logprobs_untouched(unguarded: LoopbackStack, endpoint: str) -> None:
    name = "unguarded-" + endpoint
    unguarded.replay.add_recording(Recording.from_text(
        name, ["Write", " to ", EMAIL, " about", " the", " forbidden fruit", " \U0001F642."]))
    stream, plain = READERS[endpoint]
    upstream = plain(_client(unguarded.upstream.url), name)
    assert sum(len(alternatives(e)) for e in upstream[1]) > len(upstream[1])
    proxy = _client(unguarded.url)
    assert stream(proxy, name)[:2] == upstream[:2]
    assert plain(proxy, name)[:2] == upstream[:2]
