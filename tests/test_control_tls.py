"""The control plane over real TLS and mutual TLS on loopback: a node with a good certificate polls,
heartbeats and ships evidence; no certificate, or one from another CA, is refused in the
handshake; a certificate for node A used as node B is a 403; plain HTTP to the TLS port gets a
400 that says to use https://; node tokens are a second factor when the server has them."""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from checkstream.audit import generate_keypair, load_signing_key
from checkstream.cli import main
from checkstream.control.agent import Agent
from checkstream.control.auth import Tokens
from checkstream.control.bundle import build_bundle
from checkstream.control.certs import issue_node, make_ca, write_demo_pki
from checkstream.control.server import create_app
from checkstream.control.serving import ControlServer
from checkstream.control.storage import ControlStore
from checkstream.control.tls import (
    ServerTLS,
    TLSConfigError,
    cert_node_ids,
    client_context,
)
from test_control_server import ADMIN, pack

NODE1_TOKEN = "node1-token-0123456789"
BEAT = {"mode": "proxy", "software_version": "0.1.0"}


@dataclass
class PKI:
    dir: Path
    other: Path  # a second, unrelated CA with its own "node-1" certificate

    def ctx(self, name: str | None = None, *, other: bool = False) -> ssl.SSLContext:
        base = self.other if other else self.dir
        if name is None:
            return client_context(self.dir / "ca.pem")
        return client_context(self.dir / "ca.pem", base / f"{name}.pem", base / f"{name}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    root = tmp_path_factory.mktemp("pki")
    write_demo_pki(root / "ours", nodes=["node-1", "node-2"], clients=["admin"])
    write_demo_pki(root / "theirs", nodes=["node-1"])
    return PKI(root / "ours", root / "theirs")


@dataclass
class TLSControl:
    url: str
    store: ControlStore
    public: bytes
    tmp: Path
    pki: PKI

    def client(self, name: str | None, token: str | None = None, *,
               other: bool = False) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.pki.ctx(name, other=other),
                            headers={"Authorization": f"Bearer {token}"} if token else {},
                            timeout=10)

    def upload(self, name: str) -> str:
        with self.client("admin", ADMIN) as c:
            resp = c.post("/v1/bundles", content=build_bundle(pack(self.tmp, name)).to_bytes())
        assert resp.status_code == 201, resp.text
        version: str = resp.json()["version"]
        return version


def _serve(tmp: Path, pki: PKI, *, mutual: bool, node_tokens: dict[str, str] | None = None
           ) -> tuple[ControlServer, ControlStore, bytes]:
    private, public = generate_keypair()
    store = ControlStore(tmp / "data")
    app = create_app(store, load_signing_key(private), Tokens([ADMIN], node_tokens or {}),
                     accept_evidence=True)
    tls = ServerTLS(pki.dir / "server.pem", pki.dir / "server.key",
                    pki.dir / "ca.pem" if mutual else None)
    return ControlServer(app, tls=tls), store, public


@pytest.fixture
def mtls(tmp_path: Path, pki: PKI) -> Iterator[TLSControl]:
    server, store, public = _serve(tmp_path, pki, mutual=True)
    with server:
        yield TLSControl(server.url, store, public, tmp_path, pki)


def _agent(c: TLSControl, node: str, tmp: Path, **tls: Path) -> Agent:
    return Agent(None, control_url=c.url, node_id=node, token=None, public_key=c.public,
                 policies_dir=tmp / f"policies-{node}", **tls)


async def test_node_with_a_good_certificate_works(mtls: TLSControl, tmp_path: Path) -> None:
    v1 = mtls.upload("v1")
    d = mtls.pki.dir
    agent = _agent(mtls, "node-1", tmp_path, ca=d / "ca.pem", cert=d / "node-1.pem",
                   key=d / "node-1.key")
    try:
        result = await agent.poll_once()
        assert (result.outcome, result.version) == ("installed", v1)
        assert await agent.heartbeat() == {"ok": True, "latest_version": v1, "drift": False}
    finally:
        await agent.aclose()
    with mtls.client("admin", ADMIN) as admin:
        nodes = admin.get("/v1/fleet").json()["nodes"]
    assert [(n["node_id"], n["policy_version"]) for n in nodes] == [("node-1", v1)]


@pytest.mark.parametrize("case", ["no certificate", "another CA"])
def test_handshake_refuses_missing_or_foreign_certificates(
    mtls: TLSControl, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "checkstream.control.tls")
    name, other = (None, False) if case == "no certificate" else ("node-1", True)
    with mtls.client(name, other=other) as c, pytest.raises(httpx.TransportError):
        c.post("/v1/nodes/node-1/heartbeat", json=BEAT)
    assert mtls.store.nodes() == []  # nothing got through
    with mtls.client("node-1") as good:  # and the server keeps serving
        assert good.post("/v1/nodes/node-1/heartbeat", json=BEAT).status_code == 200
    # The operator sees why, with the peer's address (logged by the server's thread, which may
    # close the connection a moment before it writes the line).
    expected = "PEER_DID_NOT_RETURN_A_CERTIFICATE" if name is None else "CERTIFICATE_VERIFY_FAILED"
    deadline = time.monotonic() + 5
    while True:
        refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        if refusals or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert refusals and expected in refusals[-1] and "127.0.0.1:" in refusals[-1], refusals


def test_a_certificate_for_node_a_cannot_post_as_node_b(mtls: TLSControl) -> None:
    with mtls.client("node-1") as c:
        resp = c.post("/v1/nodes/node-2/heartbeat", json=BEAT)
        assert resp.status_code == 403
        assert "'node-1', not 'node-2'" in resp.json()["error"]["message"]
        assert c.post("/v1/nodes/node-2/evidence", content=b"{}\n").status_code == 403
        assert c.get("/v1/nodes/node-2/evidence/head").status_code == 403
        assert c.post("/v1/nodes/node-1/heartbeat", json=BEAT).status_code == 200
        # A node's certificate is not an admin's credential.
        assert c.get("/v1/fleet").status_code == 401
    with mtls.client("admin") as no_token:  # an admin's certificate names no node
        resp = no_token.post("/v1/nodes/node-1/heartbeat", json=BEAT)
        assert resp.status_code == 403 and "no node id" in resp.json()["error"]["message"]
    assert [n.node_id for n in mtls.store.nodes()] == ["node-1"]


async def test_plain_http_to_the_tls_port_fails_clearly(mtls: TLSControl, tmp_path: Path) -> None:
    plain = mtls.url.replace("https://", "http://")
    resp = httpx.get(f"{plain}/health", timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"]["reason"] == "tls_required"
    assert "https://" in resp.json()["error"]["message"]
    agent = Agent(None, control_url=plain, node_id="node-1", token=None,
                  public_key=mtls.public, policies_dir=tmp_path / "p")
    try:
        result = await agent.poll_once()
        assert result.outcome == "error" and "tls_required" in (result.error or "")
    finally:
        await agent.aclose()
    with mtls.client("node-1") as c:
        assert c.get("/health").status_code == 200


async def test_agent_explains_a_refused_client_certificate(
    mtls: TLSControl, tmp_path: Path
) -> None:
    o = mtls.pki.other
    agent = _agent(mtls, "node-1", tmp_path, ca=mtls.pki.dir / "ca.pem", cert=o / "node-1.pem",
                   key=o / "node-1.key")
    try:
        result = await agent.poll_once()
        assert result.outcome == "error"
        assert "client certificate refused?" in (result.error or ""), result.error
    finally:
        await agent.aclose()


def test_node_tokens_are_a_second_factor_under_mtls(tmp_path: Path, pki: PKI) -> None:
    server, _, _ = _serve(tmp_path, pki, mutual=True, node_tokens={"node-1": NODE1_TOKEN})
    with server:
        c = TLSControl(server.url, ControlStore(tmp_path / "unused"), b"", tmp_path, pki)
        with c.client("node-1") as cert_only:
            assert cert_only.post("/v1/nodes/node-1/heartbeat", json=BEAT).status_code == 401
            assert cert_only.get("/v1/bundles/latest").status_code == 401
        with c.client("node-1", NODE1_TOKEN) as both:
            assert both.post("/v1/nodes/node-1/heartbeat", json=BEAT).status_code == 200
        with c.client("node-2", NODE1_TOKEN) as mismatch:  # node-1's token, node-2's cert
            resp = mismatch.post("/v1/nodes/node-1/heartbeat", json=BEAT)
            assert resp.status_code == 403 and "'node-2', not 'node-1'" in resp.text


def test_tls_without_client_certificates(tmp_path: Path, pki: PKI) -> None:
    server, _, _ = _serve(tmp_path, pki, mutual=False, node_tokens={"node-1": NODE1_TOKEN})
    with server:
        ok = httpx.post(f"{server.url}/v1/nodes/node-1/heartbeat", json=BEAT, timeout=10,
                        verify=pki.ctx(), headers={"Authorization": f"Bearer {NODE1_TOKEN}"})
        assert ok.status_code == 200
        untrusted = client_context(pki.other / "ca.pem")  # the server's cert is not from it
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{server.url}/health", verify=untrusted, timeout=10)


def test_certificate_identities() -> None:
    ca = make_ca()
    assert cert_node_ids(issue_node(ca, "proxy:eu_1").cert_pem.decode()) == {"proxy:eu_1"}
    assert cert_node_ids(issue_node(ca, "edge-1", dns=True).cert_pem.decode()) == {"edge-1"}
    # No SAN at all: the subject CN is the identity (RFC 6125's fallback).
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "legacy-node")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.cert.subject)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(ca.cert.not_valid_before_utc)
            .not_valid_after(ca.cert.not_valid_after_utc).sign(ca.key, hashes.SHA256()))
    assert cert_node_ids(cert.public_bytes(Encoding.PEM).decode()) == {"legacy-node"}


def test_bad_tls_files_fail_at_start_with_their_name(tmp_path: Path, pki: PKI) -> None:
    with pytest.raises(TLSConfigError, match=r"--tls-key .*no such file"):
        ServerTLS(pki.dir / "server.pem", tmp_path / "missing.key").context()
    with pytest.raises(TLSConfigError, match="cannot load"):  # key of another certificate
        ServerTLS(pki.dir / "server.pem", pki.dir / "node-1.key").context()
    with pytest.raises(TLSConfigError, match="--cert"):
        client_context(pki.dir / "ca.pem", pki.dir / "node-1.pem", pki.dir / "node-2.key")
    with pytest.raises(TLSConfigError, match="both --cert and --key"):
        client_context(pki.dir / "ca.pem", pki.dir / "node-1.pem")


def test_certs_and_serve_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pki"
    assert main(["control", "certs", str(out), "--node", "node-1", "--client", "ops"]) == 0
    assert "node-1.key" in capsys.readouterr().out
    assert (out / "node-1.key").stat().st_mode & 0o777 == 0o600
    assert cert_node_ids((out / "node-1.pem").read_text()) == {"node-1"}
    assert cert_node_ids((out / "ops.pem").read_text()) == frozenset()
    key = tmp_path / "control.key"
    key.write_bytes(generate_keypair()[0])
    base = ["control", "serve", "--data", str(tmp_path / "d"), "--signing-key", str(key),
            "--admin-token", ADMIN]
    assert main([*base, "--client-ca", str(out / "ca.pem")]) == 2
    assert "needs --tls-cert" in capsys.readouterr().err
    assert main([*base, "--tls-cert", str(out / "server.pem"),
                 "--tls-key", str(tmp_path / "nope.key")]) == 2
    assert "nope.key: no such file" in capsys.readouterr().err


def test_serve_and_agent_commands_over_mutual_tls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands an operator runs: ``control certs``, ``control serve`` with mutual TLS (a
    real process), ``bundle push`` with an admin certificate, ``agent --once`` with a node's."""
    pki = tmp_path / "pki"
    assert main(["control", "certs", str(pki), "--node", "node-1"]) == 0
    key = tmp_path / "control.key"
    private, public = generate_keypair()
    key.write_bytes(private)
    (tmp_path / "control.pub").write_bytes(public)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"https://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; from checkstream.cli import main; "
         "sys.exit(main(sys.argv[1:]))", "control", "serve", "--data", str(tmp_path / "data"),
         "--signing-key", str(key), "--port", str(port), "--admin-token", ADMIN,
         "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
         "--client-ca", str(pki / "ca.pem"), "--accept-evidence"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    admin_tls = ["--ca", str(pki / "ca.pem"), "--cert", str(pki / "admin.pem"),
                 "--key", str(pki / "admin.key")]
    try:
        ctx = client_context(pki / "ca.pem", pki / "admin.pem", pki / "admin.key")
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"{url}/health", verify=ctx, timeout=2).status_code == 200
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.1)
        policy = pack(tmp_path, "v1")
        assert main(["control", "bundle", "push", str(policy), "--control", url, "--token", ADMIN,
                     *admin_tls]) == 0
        capsys.readouterr()
        node = ["agent", "--control", url, "--node-id", "node-1", "--public-key",
                str(tmp_path / "control.pub"), "--policies-dir", str(tmp_path / "node"),
                "--ca", str(pki / "ca.pem"), "--once"]
        def identity(name: str) -> list[str]:
            return ["--cert", str(pki / f"{name}.pem"), "--key", str(pki / f"{name}.key")]

        assert main([*node, *identity("node-1")]) == 0
        assert "installed: serving" in capsys.readouterr().out
        # Without a certificate (or token) the agent refuses to start; with the admin's
        # certificate it is refused as node-1 (that certificate names no node).
        assert main(node) == 2
        assert main([*node, *identity("admin")]) == 1
        assert "HTTP 403" in capsys.readouterr().out
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "mutual TLS: client certificates required" in output
