"""config.yaml (the spec's sample runs as written), environment overrides, clear field-named
errors, the CLI, and the deployment files (each parses and names only env vars we read)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import yaml

from checkstream.cli import main as cli_main
from checkstream.policy import load_policy_text
from checkstream.proxy.app import create_app
from checkstream.proxy.config import (
    ENV_VARS,
    ConfigError,
    config_from_mapping,
    load_config,
    parse_duration,
)
from checkstream.proxy.replay import ReplayUpstream
from checkstream.proxy.server import BackgroundServer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PACK = ROOT / "policies" / "default"

# The deployment spec's config.yaml, verbatim but for the policy folder.
SPEC_CONFIG = """
server:
  port: 8080
  timeout: 300s

backend:
  url: https://api.openai.com/v1
  timeout: 120s
  retry:
    max_attempts: 3
    backoff: exponential

guardrails:
  ingress:
    enabled: true
    classifiers:
      - prompt_injection
      - pii_detector
    timeout_ms: 8

  midstream:
    enabled: true
    holdback_size: 16
    check_interval: 8
    classifiers:
      - toxicity
      - regulatory_finance
    timeout_ms: 6

  egress:
    enabled: true
    inject_disclaimers: true

policies:
  path: /etc/checkstream/policies
  hot_reload: true
  reload_interval: 30s

telemetry:
  mode: aggregate  # or 'full_evidence'
  export:
    enabled: false
    endpoint: https://control.checkstream.ai/ingest
"""


def test_spec_config_runs_as_written(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(SPEC_CONFIG.replace("/etc/checkstream/policies", str(DEFAULT_PACK)))
    replay = ReplayUpstream()
    with BackgroundServer(replay.app) as upstream:
        cfg = load_config(path, env={"BACKEND_URL": upstream.url + "/v1",
                                     "OPENAI_API_KEY": "sk-managed"})
        assert cfg.server.timeout == 300 and cfg.backend.timeout == 120
        assert cfg.policies.reload_interval == 30 and cfg.policies.hot_reload
        assert cfg.backend.url == upstream.url + "/v1"
        with BackgroundServer(create_app(cfg)) as proxy:
            assert httpx.get(proxy.url + "/health/ready").status_code == 200
            r = httpx.post(proxy.url + "/v1/chat/completions", timeout=60, json={
                "model": "weather", "messages": [{"role": "user", "content": "hello"}]})
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["finish_reason"] == "stop"
            assert replay.last_headers["authorization"] == "Bearer sk-managed"


@pytest.mark.parametrize("raw,seconds", [("300s", 300), ("500ms", 0.5), ("2m", 120), ("1h", 3600),
                                         (15, 15), ("1.5s", 1.5)])
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("mapping,field", [
    ({"backend": {"retry": {"max_attempts": 0}}}, "backend.retry.max_attempts"),
    ({"server": {"timeout": "5 parsecs"}}, "server.timeout"),
    ({"guardrails": {"midstream": {"holdback": 16}}}, "guardrails.midstream.holdback"),
    ({"backend": {"url": "api.openai.com"}}, "backend.url"),
    ({"telemetry": {"mode": "everything"}}, "telemetry.mode"),
    ({"tenants": [{"name": "a"}]}, "tenants[0]"),
])
def test_errors_name_the_field(mapping: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(mapping, source="test.yaml", env={})
    assert field in str(exc.value) and "test.yaml" in str(exc.value)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server:\n  port: 8080\n backend: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})


def test_phase_timeouts_apply_to_listed_classifiers() -> None:
    cfg = config_from_mapping({"policies": {"path": str(DEFAULT_PACK)}, "guardrails": {
        "ingress": {"classifiers": ["prompt_injection", "toxicity"], "timeout_ms": 8},
        "midstream": {"classifiers": ["toxicity"], "timeout_ms": 6}}}, env={})
    registry = create_app(cfg).extensions["checkstream"].registry
    assert registry.get("prompt_injection").timeout_ms == 8
    assert registry.get("toxicity").timeout_ms == 6


def test_unknown_classifier_is_a_startup_error() -> None:
    cfg = config_from_mapping({"policies": {"path": str(DEFAULT_PACK)}, "guardrails": {
        "midstream": {"classifiers": ["toxicity", "no_such_model"]}}}, env={})
    with pytest.raises(ConfigError, match=r"guardrails\.midstream\.classifiers: unknown "
                                          r"classifier 'no_such_model'"):
        create_app(cfg)


def test_every_env_var_has_an_effect(tmp_path: Path) -> None:
    base = config_from_mapping({}, env={})
    assert config_from_mapping({}, env={"BACKEND_URL": "http://x:1/v1"}).backend.url == \
        "http://x:1/v1"
    assert config_from_mapping({}, env={"OPENAI_API_KEY": "k1"}).backend.api_key == "k1"
    assert config_from_mapping({}, env={"ANTHROPIC_API_KEY": "k2"}).backend.api_key is None
    anth = config_from_mapping({}, env={"BACKEND_URL": "https://api.anthropic.com/v1",
                                        "ANTHROPIC_API_KEY": "k2"})
    assert anth.backend.api_key == "k2" and anth.backend.kind == "anthropic"
    assert config_from_mapping({}, env={"PORT": "9000"}).server.port == 9000
    path = tmp_path / "c.yaml"
    path.write_text("server: {port: 7001}\n")
    assert load_config(None, env={"CHECKSTREAM_CONFIG": str(path)}).server.port == 7001
    assert base.server.port == 8080
    with pytest.raises(ConfigError, match="BACKEND_URL"):
        config_from_mapping({}, env={"BACKEND_URL": "not a url"})
    token = "t" * 16
    assert config_from_mapping({}, env={"CHECKSTREAM_ADMIN_TOKEN": token}).server.admin_token \
        == token
    assert {"BACKEND_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
            "CHECKSTREAM_CONFIG", "CHECKSTREAM_ADMIN_TOKEN", "PORT"} == ENV_VARS


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(f"policies: {{path: {DEFAULT_PACK}}}\n")
    assert cli_main(["proxy", "--config", str(good), "--check"]) == 0
    assert "tenant default" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend: {retry: {backoff: sometimes}}\n")
    assert cli_main(["proxy", "--config", str(bad), "--check"]) == 2
    assert "backend.retry.backoff" in capsys.readouterr().err


# ---------------------------------------------------------------- deployment files
def _docker_stages(text: str) -> list[list[str]]:
    lines = re.sub(r"\\\n", " ", text).splitlines()
    stages: list[list[str]] = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_dockerfile_is_multistage_and_non_root() -> None:
    stages = _docker_stages((ROOT / "Dockerfile").read_text())
    assert len(stages) >= 2
    assert any("maturin build" in ln for ln in stages[0])
    final = stages[-1]
    assert any(ln.startswith("COPY --from=build") for ln in final)
    users = [ln.split()[1] for ln in final if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    env_names = {ln.split()[1].split("=")[0] for ln in final if ln.startswith("ENV ")}
    assert env_names <= ENV_VARS
    assert json.loads(final[-1].split(" ", 1)[1]) == ["checkstream", "proxy"]
    for ln in final:
        if ln.startswith("COPY ") and "--from" not in ln:
            assert (ROOT / ln.split()[1]).exists(), ln


def test_kubernetes_manifests(tmp_path: Path) -> None:
    docs = [d for f in sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert {"Deployment", "Service", "ConfigMap"} <= set(kinds)
    dep = kinds["Deployment"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert {e["name"] for e in container["env"]} <= ENV_VARS
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    svc = kinds["Service"]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    mounted = {v["configMap"]["name"] for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert mounted <= set(maps)
    cfg = config_from_mapping(yaml.safe_load(maps["checkstream-config"]["data"]["config.yaml"]),
                              env={})
    assert cfg.policies.path == (Path("/etc/checkstream/policies"),)
    for name, text in maps["checkstream-policies"]["data"].items():
        assert load_policy_text(text, file=name).rules


def test_ecs_task_definition() -> None:
    task = json.loads((ROOT / "deploy" / "ecs-task.json").read_text())
    (c,) = task["containerDefinitions"]
    names = {e["name"] for e in c.get("environment", [])}
    names |= {s["name"] for s in c.get("secrets", [])}
    assert names <= ENV_VARS
    assert c["portMappings"][0]["containerPort"] == 8080
    assert c["user"] != "root"


def test_example_config_loads(tmp_path: Path) -> None:
    text = (ROOT / "config.example.yaml").read_text()
    cfg = config_from_mapping(yaml.safe_load(text), env={})
    assert cfg.guardrails.midstream.holdback_size == 16
    local = tmp_path / "c.yaml"
    local.write_text(text.replace("/etc/checkstream/policies", str(DEFAULT_PACK)))
    create_app(load_config(local, env={}))
