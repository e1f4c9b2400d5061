"""``checkstream sidecar serve`` without vLLM: sidecar-config.yaml -> the proxy's configuration,
the CLI, and the mapped app guarding a stream (the replay upstream stands in for vLLM's OpenAI
server; tests/sidecar/test_serve.py runs it against the real one)."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from checkstream.cli import main
from checkstream.proxy.app import create_app
from checkstream.proxy.config import ConfigError
from checkstream.proxy.replay import ReplayUpstream
from checkstream.proxy.server import BackgroundServer
from checkstream.sidecar.config import load_sidecar_config, parse_sidecar_config
from checkstream.sidecar.serve import DEFAULT_VLLM_URL, proxy_config

SPEC_FILE = """
vllm:
  socket: /shared/checkstream.sock
guardrails:
  preventive:
    logit_masking: {enabled: true}
  reactive: {enabled: true, holdback_size: 8, check_interval: 10}
classifiers:
  embedding_mode: true
  models: [toxicity_detector, pii_detector]
policies:
  path: policies
  hot_reload: true
"""

PII_POLICY = """
name: sidecar-pii
version: "1"
rules:
  - name: email-out
    phases: [midstream]
    trigger:
      pii: [EMAIL]
    actions: [redact]
"""


def write_config(tmp_path: Path, text: str = SPEC_FILE, policy: str = PII_POLICY) -> Path:
    (tmp_path / "policies").mkdir(exist_ok=True)
    (tmp_path / "policies" / "policy.yaml").write_text(policy)
    path = tmp_path / "sidecar-config.yaml"
    path.write_text(text)
    return path


def test_the_specs_file_maps_onto_the_proxy(tmp_path: Path) -> None:
    sidecar = load_sidecar_config(write_config(tmp_path))
    cfg = proxy_config(sidecar, env={})
    mid = cfg.guardrails.midstream
    assert (mid.enabled, mid.holdback_size, mid.check_interval) == (True, 8, 10)
    assert mid.classifiers == ("toxicity_detector", "pii_detector")
    assert cfg.policies.path == (tmp_path / "policies",)
    assert cfg.policies.hot_reload
    assert (cfg.backend.url, cfg.backend.kind) == (DEFAULT_VLLM_URL, "openai")
    assert (cfg.server.host, cfg.server.port) == ("0.0.0.0", 8080)
    assert cfg.telemetry.decision_log is None and cfg.telemetry.mode == "aggregate"
    assert cfg.guardrails.ingress.enabled and cfg.guardrails.egress.enabled


def test_options_and_defaults(tmp_path: Path) -> None:
    off = parse_sidecar_config({"guardrails": {"reactive": {"enabled": False}}})
    cfg = proxy_config(
        off,
        vllm_url="http://vllm:8000/v1/",
        host="127.0.0.1",
        port=9000,
        decision_log=tmp_path / "d.log",
        full_evidence=True,
        env={},
    )
    assert not cfg.guardrails.midstream.enabled
    assert cfg.policies.path == ()  # the proxy's default: the shipped pack
    assert cfg.backend.url == "http://vllm:8000/v1"
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 9000)
    assert cfg.telemetry.decision_log == tmp_path / "d.log"
    assert cfg.telemetry.mode == "full_evidence"


def test_only_the_admin_token_is_taken_from_the_environment() -> None:
    env = {
        "BACKEND_URL": "https://api.openai.com/v1",
        "OPENAI_API_KEY": "sk-managed",
        "PORT": "1234",
        "CHECKSTREAM_ADMIN_TOKEN": "a" * 20,
    }
    cfg = proxy_config(parse_sidecar_config({}), env=env)
    assert cfg.backend.url == DEFAULT_VLLM_URL and cfg.backend.api_key is None
    assert cfg.server.port == 8080
    assert cfg.server.admin_token == "a" * 20


def test_a_bad_vllm_url_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"backend\.url"):
        proxy_config(parse_sidecar_config({}), vllm_url="vllm:8000", env={})


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path)
    args = ["sidecar", "serve", "-c", str(path), "--port", "0", "--check"]
    assert main([*args, "--decision-log", str(tmp_path / "d.log")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["holdback_size"] == 8 and summary["check_interval"] == 10
    assert summary["vllm"] == DEFAULT_VLLM_URL and summary["listen"] == "0.0.0.0:0"
    assert summary["decision_log"] == str(tmp_path / "d.log")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("guardrails: {reactive: {holdback_size: -1}}\n", "guardrails.reactive.holdback_size"),
        ("classifiers: {models: [no_such_model]}\n", "unknown classifier 'no_such_model'"),
        ("policies: {path: missing}\n", "does not exist"),
    ],
)
def test_cli_errors_name_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = write_config(tmp_path, text)
    assert main(["sidecar", "serve", "-c", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("checkstream sidecar serve:") and message in err


def test_the_mapped_app_redacts_across_the_stream(tmp_path: Path) -> None:
    """An e-mail split over several upstream events: no token ban exists for it, the sidecar's
    holdback (8) still keeps it from the client, streamed and not."""
    text = "guardrails: {reactive: {holdback_size: 8}}\npolicies: {path: policies}\n"
    sidecar = load_sidecar_config(write_config(tmp_path, text))
    with BackgroundServer(ReplayUpstream().app, name="vllm") as upstream:
        cfg = proxy_config(sidecar, vllm_url=upstream.url + "/v1", env={})
        with BackgroundServer(create_app(cfg), name="sidecar") as front:
            client = openai.OpenAI(base_url=front.url + "/v1", api_key="k", max_retries=0)
            streamed = "".join(
                c.choices[0].text
                for c in client.completions.create(
                    model="customer-record", prompt="order 4471", stream=True
                )
                if c.choices
            )
            whole = client.completions.create(model="customer-record", prompt="order 4471")
    assert "jane.doe@example.com" not in streamed and "[EMAIL]" in streamed
    assert whole.choices[0].text == streamed
