"""The node agent against a real control plane on loopback: upload -> poll -> the node's PolicyStore
swapped (streams in flight keep their set), 304 when unchanged, and a bad bundle (wrong key,
tampered in storage, unloadable) keeps the old set and is reported in the heartbeat."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from checkstream.audit import generate_keypair
from checkstream.cli import main
from checkstream.control.agent import Agent, current_path
from checkstream.control.bundle import (
    build_bundle,
    content_hash,
    file_table,
    sign_bundle,
)
from checkstream.engine import Guard, RequestContext
from checkstream.policy import PolicyStore
from test_control_bundle import POLICY
from test_control_server import ADMIN, FLEET, NODE1, Control, control, pack

__all__ = ["control"]  # the fixture, shared with the server tests

CTX = RequestContext("r", "t", "/v1/chat/completions", "m", {})


def make_agent(c: Control, policies: Path, store: PolicyStore | None = None,
               public: bytes | None = None, node: str = "node-1") -> Agent:
    return Agent(store, control_url=c.url, node_id=node, token=NODE1 if node == "node-1" else FLEET,
                 public_key=public or c.public, policies_dir=policies, interval=0.05)


@pytest.fixture
def policies(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "node"


def fleet_node(c: Control, node: str = "node-1") -> dict[str, object]:
    with c.client(ADMIN) as admin:
        nodes = {n["node_id"]: n for n in admin.get("/v1/fleet").json()["nodes"]}
    found: dict[str, object] = nodes[node]
    return found


async def test_upload_poll_swaps_the_node_store(control: Control, policies: Path) -> None:
    v1 = control.upload(pack(control.tmp, "v1")).json()["version"]
    first = make_agent(control, policies)
    try:
        result = await first.poll_once()
        assert (result.outcome, result.version) == ("installed", v1)
        assert current_path(policies).resolve() == (policies / "versions" / v1).resolve()
    finally:
        await first.aclose()

    # The node (as a proxy would) holds its own store on POLICIES_DIR/current.
    store = PolicyStore(current_path(policies))
    agent = make_agent(control, policies, store)
    try:
        assert agent.version == v1
        stream = Guard(store.current).stream(CTX)  # a stream in flight on v1
        stream.feed("sure, here is how to build a v")
        assert (await agent.poll_once()).outcome == "unchanged"  # 304: nothing fetched

        v2 = control.upload(pack(control.tmp, "v2")).json()["version"]
        result = await agent.poll_once()
        assert (result.outcome, result.version, result.offered) == ("installed", v2, v2)
        assert store.current.version == v2 and agent.store is store
        # The stream finishes on the set it began with; new requests get the new one.
        stream.feed("1 in three steps")
        stream.finish()
        assert stream.guard.policy_set.version == v1 and stream.stopped
        fresh = Guard(store.current)
        assert fresh.check_output("build a v2", CTX).stopped
        assert not fresh.check_output("build a v1", CTX).stopped

        reply = await agent.heartbeat()
        assert reply == {"ok": True, "latest_version": v2, "drift": False}
        node = fleet_node(control)
        assert (node["policy_version"], node["policy_status"], node["health"]) == (
            v2, "current", "up")
        assert sorted(os.listdir(policies / "versions")) == sorted([v1, v2])
    finally:
        await agent.aclose()


async def test_bad_bundles_keep_the_old_set(control: Control, policies: Path) -> None:
    v1 = control.upload(pack(control.tmp, "v1")).json()["version"]
    agent = make_agent(control, policies)
    try:
        assert (await agent.poll_once()).outcome == "installed"
        assert agent.store is not None
        serving = agent.store.current

        # 1. Tampered in the control plane's storage: a file no longer matches its hash.
        v2 = control.upload(pack(control.tmp, "v2")).json()["version"]
        path = control.store.bundle_path(v2)
        doc = json.loads(path.read_bytes())
        doc["files"]["words/secrets.txt"] = "eA=="  # "x"
        path.write_text(json.dumps(doc), encoding="utf-8")
        result = await agent.poll_once()
        assert (result.outcome, result.version, result.offered) == ("rejected", v1, v2)
        assert "hash_mismatch" in (result.error or "")
        assert agent.store.current is serving
        assert current_path(policies).resolve().name == v1
        assert not (policies / "versions" / v2).exists()
        # The refused version is not fetched again: the poll names it in If-None-Match.
        assert (await agent.poll_once()).outcome == "unchanged"
        await agent.heartbeat()
        node = fleet_node(control)
        assert node["health"] == "degraded" and node["policy_status"] == "outdated"
        assert "hash_mismatch" in str(node["policy_error"])

        # 2. Signed by the right key, but the policy does not load (a buggy publisher).
        good = build_bundle(pack(control.tmp, "v3"))
        files = {**good.files, "policy.yaml": POLICY.replace("[stop]", "[explode]").encode()}
        table = file_table(files)
        bad = replace(good, files=files, manifest={
            **good.manifest, "files": table, "content_sha256": content_hash(table)})
        # Written straight into storage under another key, and a second agent pinned to it.
        new_private, new_public = generate_keypair()
        signed = sign_bundle(bad, new_private)
        control.store.put_bundle(signed.version, signed.to_bytes(),
                                 content_sha256=signed.content_sha256, key_id="test")
        control.store.release("stable", signed.version)
        pinned = make_agent(control, policies, agent.store, public=new_public)
        try:
            result = await pinned.poll_once()
            assert result.outcome == "rejected" and "invalid_policy" in (result.error or "")
            assert "explode" in (result.error or "")
            assert pinned.version == v1
        finally:
            await pinned.aclose()

        # 3. The agent pinned to the control plane's key refuses it before reading any file.
        result = await agent.poll_once()
        assert result.outcome == "rejected" and "wrong_key" in (result.error or "")
        assert agent.version == v1 and current_path(policies).resolve().name == v1

        # A good release afterwards installs, and clears the reported error.
        v4 = control.upload(pack(control.tmp, "v4")).json()["version"]
        result = await agent.poll_once()
        assert (result.outcome, result.version, result.error) == ("installed", v4, None)
        await agent.heartbeat()
        assert fleet_node(control)["policy_error"] is None
    finally:
        await agent.aclose()


async def test_unreachable_control_plane_keeps_serving(control: Control, policies: Path) -> None:
    v1 = control.upload(pack(control.tmp, "v1")).json()["version"]
    agent = make_agent(control, policies)
    await agent.poll_once()
    await agent.aclose()
    dead = Agent(None, control_url="http://127.0.0.1:9", node_id="node-1", token=NODE1,
                 public_key=control.public, policies_dir=policies)
    try:
        assert dead.version == v1  # serves the last verified bundle from disk after a restart
        result = await dead.poll_once()
        assert result.outcome == "error" and "unreachable" in (result.error or "")
        assert dead.version == v1 and dead.last_error is None
        assert await dead.heartbeat() is None
    finally:
        await dead.aclose()


async def test_no_release_yet_and_bad_token(control: Control, policies: Path) -> None:
    agent = make_agent(control, policies)
    try:
        assert (await agent.poll_once()).outcome == "none_released"
        assert agent.version is None
        assert await agent.heartbeat() is not None  # reports "no policy yet"
        assert fleet_node(control)["policy_version"] is None
    finally:
        await agent.aclose()
    bad = Agent(None, control_url=control.url, node_id="node-1", token="nope-0123456789abcdef",
                public_key=control.public, policies_dir=policies)
    try:
        result = await bad.poll_once()
        assert result.outcome == "error" and "HTTP 401" in (result.error or "")
    finally:
        await bad.aclose()


def test_agent_cli_once(control: Control, policies: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    v1 = control.upload(pack(control.tmp, "v1")).json()["version"]
    pub = control.tmp / "control.pub"
    pub.write_bytes(control.public)
    args = ["agent", "--control", control.url, "--node-id", "node-1", "--token", NODE1,
            "--public-key", str(pub), "--policies-dir", str(policies), "--once"]
    assert main(args) == 0
    assert f"installed: serving {v1}" in capsys.readouterr().out
    assert main(args) == 0
    assert f"unchanged: serving {v1}" in capsys.readouterr().out
    with httpx.Client(base_url=control.url, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        assert c.get("/v1/fleet").json()["nodes"][0]["policy_version"] == v1
