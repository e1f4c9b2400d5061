"""``checkstream sidecar serve`` in front of the real vLLM CPU server: the merged safe stream.

The processor inside vLLM cannot take back text vLLM has already returned, so the client talks
to the sidecar (the proxy app, started here through the CLI as deployed) and vLLM's text passes
its StreamGuard before any byte leaves. The targets are picked at run time from the tiny model's
greedy output and written as policy rules the token masker knows nothing of (a regex pattern and a
phrase absent from the vLLM server's ban list), so vLLM generates them and only the reactive layer
can catch them. Clients are the official ``openai`` SDK, streaming and not.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tinymodel import TinyModel

from conftest import free_port, stop_process, wait_healthy

REDACT_PROMPT = "so risk"
STOP_PROMPT = "then"
MAX_TOKENS = 40
REPLACEMENT = "[CODE WORD]"
STOP_MESSAGE = "Stopped by the sidecar policy."
# Two lower-case words standing alone (no word character around them).
WORD_PAIR = re.compile(r"(?<!\w)([a-z]{3,}) ([a-z]{3,})(?!\w)")
# vLLM extras: the full length every time, and the in-engine processor on for these requests.
EXTRA: dict[str, Any] = {"ignore_eos": True, "vllm_xargs": {"checkstream": "on"}}


@dataclass
class Greedy:
    text: str
    deltas: list[str]


@dataclass
class Sidecar:
    url: str
    model: str
    proc: subprocess.Popen[bytes]
    log: Path
    decision_log: Path
    redact_text: Greedy
    redact_regex: str
    stop_text: Greedy
    stop_phrase: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_process(self.proc)


def greedy(client: openai.OpenAI, model: str, prompt: str) -> Greedy:
    deltas: list[str] = []
    for chunk in client.completions.create(
        model=model,
        prompt=prompt,
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        extra_body=EXTRA,
    ):
        deltas += [c.text for c in chunk.choices if c.text]
    return Greedy("".join(deltas), deltas)


def spans_events(g: Greedy, start: int, end: int) -> int:
    """How many of vLLM's stream events carry part of ``text[start:end]``."""
    n, pos = 0, 0
    for d in g.deltas:
        if pos < end and pos + len(d) > start:
            n += 1
        pos += len(d)
    return n


def pick(g: Greedy, avoid: str = "") -> re.Match[str]:
    """A word pair after the first few characters (so text flows before it), spread over
    several of vLLM's stream events, and absent from ``avoid``."""
    for m in WORD_PAIR.finditer(g.text):
        if m.start() >= 8 and spans_events(g, *m.span()) > 1 and m.group(0) not in avoid:
            return m
    raise AssertionError(f"no usable word pair in the greedy output {g.text!r}")


POLICY = """
name: sidecar-serve-test
version: "1"
rules:
  - name: code-word
    phases: [midstream]
    trigger:
      pattern: {{regex: '{regex}'}}
    actions:
      - redact: {{replacement: "{replacement}"}}
  - name: stop-phrase
    phases: [midstream]
    trigger:
      phrases: ["{phrase}"]
    actions:
      - stop: {{message: "{message}"}}
"""


@pytest.fixture(scope="module")
def sidecar(
    server: str, tiny: TinyModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sidecar]:
    model = str(tiny.path)
    direct = openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)
    a = greedy(direct, model, REDACT_PROMPT)
    b = greedy(direct, model, STOP_PROMPT)
    m = pick(a)
    regex = rf"\b{re.escape(m.group(1))}\s+{re.escape(m.group(2))}\b"
    phrase = pick(b, avoid=a.text).group(0)
    assert phrase.lower() not in a.text.lower()

    root = tmp_path_factory.mktemp("sidecar")
    (root / "policies").mkdir()
    (root / "policies" / "policy.yaml").write_text(
        POLICY.format(regex=regex, replacement=REPLACEMENT, phrase=phrase, message=STOP_MESSAGE)
    )
    config = root / "sidecar-config.yaml"
    config.write_text(
        "guardrails:\n"
        "  reactive: {enabled: true, holdback_size: 8, check_interval: 10}\n"
        "policies:\n"
        "  path: policies\n"
    )
    port = free_port()
    decision_log = root / "decisions.log"
    log = root / "sidecar.log"
    cmd = [
        sys.executable,
        "-m",
        "checkstream.cli",
        "sidecar",
        "serve",
        "--config",
        str(config),
        "--vllm-url",
        server + "/v1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--decision-log",
        str(decision_log),
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        car = Sidecar(url, model, proc, log, decision_log, a, regex, b, phrase)
        try:
            wait_healthy(proc, url + "/health/ready", log, 60)
            yield car
        finally:
            car.stop()


def stream_text(client: openai.OpenAI, model: str, prompt: str) -> tuple[str, str | None, int]:
    """Text, finish reason and number of text events the client received."""
    parts: list[str] = []
    finish = None
    for chunk in client.completions.create(
        model=model,
        prompt=prompt,
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        extra_body=EXTRA,
    ):
        for c in chunk.choices:
            if c.text:
                parts.append(c.text)
            finish = c.finish_reason or finish
    return "".join(parts), finish, len(parts)


def whole(client: openai.OpenAI, model: str, prompt: str) -> tuple[str, str | None, str]:
    """Text, finish reason and x-checkstream-decision of a non-streamed completion."""
    raw = client.completions.with_raw_response.create(
        model=model, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0, extra_body=EXTRA
    )
    choice = raw.parse().choices[0]
    return choice.text, choice.finish_reason, raw.headers["x-checkstream-decision"]


def test_regex_match_vllm_generates_is_redacted_before_the_client_sees_it(
    sidecar: Sidecar,
) -> None:
    raw = sidecar.redact_text.text
    expected = re.sub(sidecar.redact_regex, REPLACEMENT, raw)
    assert expected != raw  # vLLM itself returns the match (no token ban covers a regex)
    client = sidecar.client()
    streamed, finish, events = stream_text(client, sidecar.model, REDACT_PROMPT)
    assert streamed == expected
    assert not re.search(sidecar.redact_regex, streamed)
    assert finish == "length" and events > 1
    text, finish, decision = whole(client, sidecar.model, REDACT_PROMPT)
    assert text == expected and finish == "length" and decision == "modify"


def test_phrase_vllm_generates_stops_the_stream_with_content_filter(sidecar: Sidecar) -> None:
    raw = sidecar.stop_text.text
    at = raw.lower().index(sidecar.stop_phrase)
    client = sidecar.client()
    streamed, finish, _ = stream_text(client, sidecar.model, STOP_PROMPT)
    assert finish == "content_filter"
    released, _, message = streamed.rpartition(STOP_MESSAGE)
    assert message == "" and STOP_MESSAGE in streamed
    assert raw[:at].startswith(released.rstrip("\n"))
    assert sidecar.stop_phrase not in streamed.lower()
    # Not streamed, vLLM's answer is judged as one delta: nothing was released before the stop.
    text, finish, decision = whole(client, sidecar.model, STOP_PROMPT)
    assert (text, finish, decision) == (STOP_MESSAGE, "content_filter", "stop")


def test_other_routes_pass_through_to_vllm(sidecar: Sidecar) -> None:
    models = httpx.get(sidecar.url + "/v1/models", timeout=30).json()
    assert [m["id"] for m in models["data"]] == [sidecar.model]


def test_decision_records_verify(sidecar: Sidecar) -> None:
    from checkstream.audit.export import iter_entries

    sidecar.stop()  # a graceful stop drains and closes the decision log
    verify = subprocess.run(
        [sys.executable, "-m", "checkstream.cli", "audit", "verify", str(sidecar.decision_log)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    records = [entry["record"] for _line, entry in iter_entries([sidecar.decision_log])]
    decisions = sorted(r["decision"] for r in records)
    assert decisions == ["redact", "redact", "stop", "stop"], json.dumps(records)[:2000]
    fired = {rule["rule"] for r in records for rule in r["rules"]}
    assert fired == {"code-word", "stop-phrase"}
    # Hashes only, no raw text (the phrase itself appears as the rule's detail).
    assert not any(r["full_evidence"] for r in records)
    assert all(r["endpoint"] == "completions" and r["model"] == sidecar.model for r in records)
