"""The spec's pod layout: vLLM's OpenAI server on a unix socket only (``--uds``), and
``checkstream sidecar serve`` reaching it through that socket (``vllm.socket`` in its
sidecar-config.yaml), the client on the sidecar's TCP port with the official ``openai`` SDK.

vLLM has no TCP port here at all, so every byte the client gets came over the socket; a regex
picked from the model's greedy output is redacted before the client sees it, as over TCP in
test_serve.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
from test_serve import EXTRA, MAX_TOKENS, REDACT_PROMPT, REPLACEMENT, greedy, pick, stream_text
from tinymodel import TinyModel

from conftest import free_port, stop_process, wait_healthy

POLICY = """
name: sidecar-socket-test
version: "1"
rules:
  - name: code-word
    phases: [midstream]
    trigger:
      pattern: {{regex: '{regex}'}}
    actions:
      - redact: {{replacement: "{replacement}"}}
"""


@dataclass
class Pair:
    socket: str
    url: str
    model: str
    expected: str
    regex: str
    summary: dict[str, object]

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def pair(tiny: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("uds")
    sock = str(root / "vllm.sock")  # well under the 108-byte sun_path limit
    model = str(tiny.path)
    vllm_log = root / "vllm.log"
    vllm_cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "256",
        "--uds",
        sock,
        "--additional-config",
        json.dumps({"checkstream": {"requests": "opt_in"}}),
    ]
    with vllm_log.open("w") as out:
        vllm = subprocess.Popen(vllm_cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(vllm, "http://localhost/health", vllm_log, 180, uds=sock)
        # The greedy output, straight from vLLM over the socket (the openai SDK on an httpx
        # client with the socket transport), picks the text the sidecar must redact.
        direct = openai.OpenAI(
            base_url="http://localhost/v1",
            api_key="unused",
            max_retries=0,
            http_client=httpx.Client(transport=httpx.HTTPTransport(uds=sock)),
        )
        raw = greedy(direct, model, REDACT_PROMPT)
        m = pick(raw)
        regex = rf"\b{re.escape(m.group(1))}\s+{re.escape(m.group(2))}\b"
        expected = re.sub(regex, REPLACEMENT, raw.text)
        assert expected != raw.text
        (root / "policies").mkdir()
        (root / "policies" / "policy.yaml").write_text(
            POLICY.format(regex=regex, replacement=REPLACEMENT)
        )
        config = root / "sidecar-config.yaml"
        config.write_text(
            f"vllm:\n  socket: {sock}\n"
            "guardrails:\n  reactive: {enabled: true, holdback_size: 8, check_interval: 10}\n"
            "policies:\n  path: policies\n"
        )
        port = free_port()
        car_log = root / "sidecar.log"
        car_cmd = [
            sys.executable,
            "-m",
            "checkstream.cli",
            "sidecar",
            "serve",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        with car_log.open("w") as out:
            car = subprocess.Popen(car_cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(car, url + "/health/ready", car_log, 60)
            summary = next(
                json.loads(line)
                for line in car_log.read_text().splitlines()
                if line.startswith('{"listen"')
            )
            yield Pair(sock, url, model, expected, regex, summary)
        finally:
            stop_process(car)
    finally:
        stop_process(vllm)


def test_sidecar_reaches_vllm_over_the_unix_socket_and_still_redacts(pair: Pair) -> None:
    assert pair.summary["vllm"] == f"unix:{pair.socket}"
    client = pair.client()
    streamed, finish, events = stream_text(client, pair.model, REDACT_PROMPT)
    assert streamed == pair.expected
    assert not re.search(pair.regex, streamed)
    assert finish == "length" and events > 1
    whole = client.completions.with_raw_response.create(
        model=pair.model,
        prompt=REDACT_PROMPT,
        max_tokens=MAX_TOKENS,
        temperature=0,
        extra_body=EXTRA,
    )
    assert whole.parse().choices[0].text == pair.expected
    assert whole.headers["x-checkstream-decision"] == "modify"
    models = client.models.list()
    assert [m.id for m in models.data] == [pair.model]
