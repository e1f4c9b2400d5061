"""``checkstream sidecar serve`` without vLLM: sidecar-config.yaml -> the proxy's configuration,
the CLI, and the mapped app guarding a stream (the replay upstream stands in for vLLM's OpenAI
server; tests/sidecar/test_serve.py runs it against the real one)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from checkstream.cli import main
from checkstream.proxy.app import create_app
from checkstream.proxy.config import ConfigError
from checkstream.proxy.replay import ReplayUpstream
from checkstream.proxy.server import BackgroundServer
from checkstream.sidecar.config import load_sidecar_config, parse_sidecar_config
from checkstream.sidecar.serve import (
    DEFAULT_VLLM_URL,
    SOCKET_URL,
    proxy_config,
    resolve_backend,
    socket_transport,
)

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


def test_cli_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(tmp_path)
    args = ["sidecar", "serve", "-c", str(path), "--port", "0", "--check"]
    url = "http://127.0.0.1:8000/v1"  # wins over the file's vllm.socket
    with caplog.at_level(logging.WARNING, logger="checkstream.sidecar"):
        assert main([*args, "--vllm-url", url, "--decision-log", str(tmp_path / "d.log")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["holdback_size"] == 8 and summary["check_interval"] == 10
    assert summary["vllm"] == url and summary["listen"] == "0.0.0.0:0"
    assert summary["decision_log"] == str(tmp_path / "d.log")
    # The spec's embedding_mode: true is accepted, and said to be ignored, not swallowed.
    (warning,) = summary["warnings"]
    assert warning.startswith("classifiers.embedding_mode: true is not supported")
    assert "classifiers score the detokenised text instead" in warning
    logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in logged] == [f"{path}: {warning}"]


def test_no_warning_without_embedding_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(tmp_path, "policies: {path: policies}\n")
    with caplog.at_level(logging.WARNING, logger="checkstream.sidecar"):
        assert main(["sidecar", "serve", "-c", str(path), "--check"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["warnings"] == [] and summary["vllm"] == DEFAULT_VLLM_URL
    assert not [r for r in caplog.records if r.name == "checkstream.sidecar"]


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[str]:
    """A listening unix socket (its path), as vLLM's ``--uds`` leaves one."""
    path = str(tmp_path / "vllm.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)
        s.listen(1)
        yield path


def test_cli_vllm_socket_from_the_flag_or_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sock_path: str
) -> None:
    spec = write_config(tmp_path)  # vllm.socket: /shared/checkstream.sock (absent here)
    assert main(["sidecar", "serve", "-c", str(spec), "--vllm-socket", sock_path, "--check"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["vllm"] == f"unix:{sock_path}"
    own = write_config(tmp_path, SPEC_FILE.replace("/shared/checkstream.sock", sock_path))
    assert main(["sidecar", "serve", "-c", str(own), "--check"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["vllm"] == (
        f"unix:{sock_path}"
    )
    sidecar = load_sidecar_config(own)
    assert resolve_backend(sidecar, vllm_url=None, vllm_socket=None) == (SOCKET_URL, sock_path)
    assert resolve_backend(sidecar, vllm_url="http://h:1/v1", vllm_socket=None) == (
        "http://h:1/v1",
        None,
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--vllm-url", "http://127.0.0.1:8000/v1", "--vllm-socket", "SOCK"], "not both"),
        ([], "vllm.socket: /shared/checkstream.sock does not exist"),
        (["--vllm-socket", "MISSING"], "--vllm-socket: MISSING does not exist; start vLLM"),
        (["--vllm-socket", "FILE"], "--vllm-socket: FILE is not a unix socket"),
    ],
)
def test_cli_vllm_socket_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    sock_path: str,
    flags: list[str],
    message: str,
) -> None:
    spec = write_config(tmp_path)
    (tmp_path / "file").write_text("not a socket")
    names = {
        "SOCK": sock_path,
        "MISSING": str(tmp_path / "missing.sock"),
        "FILE": str(tmp_path / "file"),
    }
    flags = [names.get(f, f) for f in flags]
    message = next((message.replace(k, v) for k, v in names.items() if k in message), message)
    assert main(["sidecar", "serve", "-c", str(spec), *flags, "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("checkstream sidecar serve:") and message in err


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


class UnixServer:
    """An ASGI app served by hypercorn on a unix socket in a thread (vLLM's ``--uds`` stand-in)."""

    def __init__(self, app: Any, path: str) -> None:
        self.app, self.path = app, path
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        asyncio.set_event_loop(self._loop)
        cfg = Config()
        cfg.bind = [f"unix:{self.path}"]

        async def main() -> None:
            self._stop = asyncio.Event()
            self._loop.call_soon(self._ready.set)
            await serve(self.app, cfg, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        self._loop.run_until_complete(main())

    def __enter__(self) -> UnixServer:
        self._thread.start()
        assert self._ready.wait(30)
        for _ in range(300):
            if Path(self.path).exists():
                return self
            threading.Event().wait(0.01)
        raise AssertionError(f"{self.path} was not created")

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_the_mapped_app_reaches_vllm_over_a_unix_socket(tmp_path: Path) -> None:
    """The same redaction with the upstream on a unix socket (the transport the CLI builds for
    --vllm-socket / vllm.socket); no TCP port on the upstream side at all."""
    text = "guardrails: {reactive: {holdback_size: 8}}\npolicies: {path: policies}\n"
    sidecar = load_sidecar_config(write_config(tmp_path, text))
    path = str(tmp_path / "vllm.sock")
    with UnixServer(ReplayUpstream().app, path):
        url, sock = resolve_backend(sidecar, vllm_url=None, vllm_socket=path)
        assert (url, sock) == (SOCKET_URL, path)
        cfg = proxy_config(sidecar, vllm_url=url, env={})
        app = create_app(cfg, transport=socket_transport(path))
        with BackgroundServer(app, name="sidecar") as front:
            client = openai.OpenAI(base_url=front.url + "/v1", api_key="k", max_retries=0)
            streamed = "".join(
                c.choices[0].text
                for c in client.completions.create(
                    model="customer-record", prompt="order 4471", stream=True
                )
                if c.choices
            )
            models = client.models.list()
    assert "jane.doe@example.com" not in streamed and "[EMAIL]" in streamed
    assert models.data  # other routes pass through the socket too
