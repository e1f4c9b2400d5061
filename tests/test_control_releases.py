"""Release management over real HTTP: every version stays stored, promote (by version or from
another channel), roll back, the history (who, when, what), the errors (409 nothing to roll back
to, 404 unknown version, 403 for non-admins), a node following a rollback, and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from checkstream.audit import generate_keypair, load_signing_key
from checkstream.cli import main
from checkstream.control.agent import Agent
from checkstream.control.auth import Tokens
from checkstream.control.server import create_app
from checkstream.control.storage import ControlStore
from checkstream.proxy.server import BackgroundServer
from test_control_server import ADMIN, NODE1, Control, bearer, pack

OPS = "ops-alice-token-0123456789"


@pytest.fixture
def control(tmp_path: Path) -> Iterator[Control]:
    private, public = generate_keypair()
    store = ControlStore(tmp_path / "data")
    tokens = Tokens({"admin": ADMIN, "alice": OPS}, {"node-1": NODE1})
    with BackgroundServer(create_app(store, load_signing_key(private), tokens)) as server:
        yield Control(server.url, store, public, tmp_path)


def publish(c: Control, name: str, channel: str = "stable") -> str:
    resp = c.upload(pack(c.tmp, name), channel)
    assert resp.status_code == 201, resp.text
    version: str = resp.json()["version"]
    return version


def latest(c: Control, channel: str = "stable") -> str:
    with c.client(NODE1) as node:
        resp = node.get("/v1/bundles/latest", params={"channel": channel})
    return resp.headers["ETag"].strip('"')


def test_promote_from_canary_to_stable_and_by_version(control: Control) -> None:
    v1 = publish(control, "v1")
    v2 = publish(control, "v2", "canary")
    with control.client(OPS) as ops:
        resp = ops.post("/v1/channels/stable/release", json={"from_channel": "canary"})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        assert (body["version"], body["released"]) == (v2, True)
        assert body["event"]["by"] == "alice" and body["event"]["from_channel"] == "canary"
        assert latest(control) == v2
        # Again: already the channel's release, nothing recorded.
        again = ops.post("/v1/channels/stable/release", json={"version": v2})
        assert again.status_code == 200 and again.json()["released"] is False
        # Back to v1 by a short version (what the fleet page shows).
        resp = ops.post("/v1/channels/stable/release", json={"version": v1[:12]})
        assert resp.status_code == 201 and resp.json()["version"] == v1
    assert latest(control) == v1
    assert control.store.read_bundle(v2) is not None  # every version stays stored


def test_rollback_and_history_order(control: Control) -> None:
    v1, v2, v3 = (publish(control, n) for n in ("v1", "v2", "v3"))
    with control.client(OPS) as ops:
        first = ops.post("/v1/channels/stable/rollback")
        assert first.status_code == 200, first.text
        assert (first.json()["version"], first.json()["rolled_back"]) == (v2, v3)
        assert latest(control) == v2
        # A second rollback goes on back to v1 (not forth to v3).
        assert ops.post("/v1/channels/stable/rollback").json()["version"] == v1
        assert latest(control) == v1
        refused = ops.post("/v1/channels/stable/rollback")
        assert refused.status_code == 409
        err = refused.json()["error"]
        assert err["reason"] == "no_previous_release"
        assert "no earlier release to roll back to" in err["message"] and v1[:12] in err["message"]
        history = ops.get("/v1/channels/stable/history").json()
    assert history["current"] == v1
    rows = [(e["action"], e["version"], e["by"]) for e in history["history"]]
    assert rows == [  # newest first
        ("rollback", v1, "alice"), ("rollback", v2, "alice"),
        ("publish", v3, "admin"), ("publish", v2, "admin"), ("publish", v1, "admin")]
    assert history["history"][0]["rolled_back"] == v2
    ats = [e["at"] for e in history["history"]]
    assert ats == sorted(ats, reverse=True) and all(a.endswith("Z") for a in ats)


def test_release_errors(control: Control) -> None:
    v1 = publish(control, "v1")
    with control.client(ADMIN) as admin:
        unknown = admin.post("/v1/channels/stable/release", json={"version": "ab" * 32})
        assert unknown.status_code == 404 and unknown.json()["error"]["reason"] == "not_found"
        assert "no stored bundle" in unknown.json()["error"]["message"]
        empty = admin.post("/v1/channels/stable/release", json={"from_channel": "canary"})
        assert empty.status_code == 404 and "canary" in empty.json()["error"]["message"]
        nothing = admin.post("/v1/channels/canary/rollback")
        assert nothing.status_code == 409 and "nothing has been released" in nothing.text
        for body, reason in (({"version": "xyz"}, "bad_version"),
                             ({"version": v1[:6]}, "bad_version"),
                             ({"version": v1, "from_channel": "x"}, "bad_request"),
                             ({"channel": "stable"}, "bad_request"), ([], "bad_request")):
            resp = admin.post("/v1/channels/stable/release", json=body)
            assert (resp.status_code, resp.json()["error"]["reason"]) == (400, reason), body
        assert admin.post("/v1/channels/stable/release", content=b"{").status_code == 400
        bad = admin.post("/v1/channels/Bad%20Name/rollback")
        assert bad.status_code == 400 and bad.json()["error"]["reason"] == "bad_channel"
        assert admin.get("/v1/channels/stable/history").json()["history"][0]["version"] == v1
    with control.client(NODE1) as node:
        for method, path in (("POST", "/v1/channels/stable/release"),
                             ("POST", "/v1/channels/stable/rollback"),
                             ("GET", "/v1/channels/stable/history")):
            assert node.request(method, path, json={"version": v1}).status_code == 403
    with httpx.Client(base_url=control.url) as anon:
        assert anon.post("/v1/channels/stable/rollback").status_code == 401
    assert latest(control) == v1


async def test_a_node_follows_a_rollback(control: Control, tmp_path: Path) -> None:
    v1 = publish(control, "v1")
    agent = Agent(None, control_url=control.url, node_id="node-1", token=NODE1,
                  public_key=control.public, policies_dir=tmp_path / "node")
    try:
        assert (await agent.poll_once()).version == v1
        v2 = publish(control, "v2")
        assert (await agent.poll_once()).version == v2
        await agent.heartbeat()
        with control.client(ADMIN) as admin:
            assert admin.post("/v1/channels/stable/rollback").status_code == 200
            # Until it polls, the node runs a release the channel withdrew.
            node = admin.get("/v1/fleet").json()["nodes"][0]
            assert (node["policy_status"], node["drift"]) == ("withdrawn", True)
        result = await agent.poll_once()  # the ETag moved back: v1 is installed again
        assert (result.outcome, result.version) == ("installed", v1)
        assert agent.store is not None and agent.store.current.version == v1
        await agent.heartbeat()
        with control.client(ADMIN) as admin:
            node = admin.get("/v1/fleet").json()["nodes"][0]
        assert (node["policy_status"], node["drift"]) == ("current", False)
    finally:
        await agent.aclose()


def test_release_cli(control: Control, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = publish(control, "v1")
    v2 = publish(control, "v2", "canary")
    opts = ["--control", control.url, "--token", OPS]
    assert main(["control", "release", "--channel", "stable", "--from", "canary", *opts]) == 0
    assert f"channel stable now serves {v2}" in capsys.readouterr().out
    assert main(["control", "rollback", "--channel", "stable", *opts]) == 0
    assert f"rolled back from {v2} to {v1}" in capsys.readouterr().out
    assert main(["control", "rollback", "--channel", "stable", *opts]) == 1
    assert "409 no_previous_release" in capsys.readouterr().err
    assert main(["control", "release", "--channel", "stable", "f" * 64, *opts]) == 1
    assert "404 not_found" in capsys.readouterr().err
    assert main(["control", "release", "--channel", "stable", *opts]) == 2
    assert main(["control", "history", "--channel", "stable", *opts]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["rollback", "release", "publish"]
    assert "by alice" in lines[0] and "(from canary)" in lines[1]
    with httpx.Client(base_url=control.url, headers=bearer(ADMIN)) as admin:
        assert admin.get("/v1/bundles/latest").headers["ETag"] == f'"{v1}"'
