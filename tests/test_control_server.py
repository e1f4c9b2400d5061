"""The control plane over real HTTP on loopback: upload, ETag/304 polling, heartbeats, the fleet
view (version, drift, down nodes), the evidence CSV, and every auth failure (401/403)."""

from __future__ import annotations

import base64
import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from checkstream.audit import generate_keypair, load_signing_key
from checkstream.control.auth import Tokens
from checkstream.control.bundle import build_bundle, content_hash, file_table, verify_bundle
from checkstream.control.server import create_app
from checkstream.control.storage import ControlStore
from checkstream.proxy.server import BackgroundServer
from test_control_bundle import POLICY, write_pack

ADMIN = "admin-token-0123456789"
NODE1 = "node1-token-0123456789"
NODE2 = "node2-token-0123456789"
FLEET = "fleet-token-0123456789"  # any node id
DOWN_AFTER = 1.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Control:
    url: str
    store: ControlStore
    public: bytes
    tmp: Path

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=bearer(token) if token else {}, timeout=10)

    def upload(self, policy_dir: Path, channel: str = "stable") -> httpx.Response:
        with self.client(ADMIN) as c:
            return c.post("/v1/bundles", params={"channel": channel},
                          content=build_bundle(policy_dir).to_bytes())


@pytest.fixture
def control(tmp_path: Path) -> Iterator[Control]:
    private, public = generate_keypair()
    store = ControlStore(tmp_path / "data")
    tokens = Tokens([ADMIN], {"node-1": NODE1, "node-2": NODE2, "*": FLEET})
    app = create_app(store, load_signing_key(private), tokens, down_after=DOWN_AFTER)
    with BackgroundServer(app, name="control") as server:
        yield Control(server.url, store, public, tmp_path)


def pack(tmp: Path, name: str, word: str = "hunter2") -> Path:
    return write_pack(tmp / name, policy=POLICY.replace("build a bomb", f"build a {name}"),
                      words=f"{word}\n")


def test_upload_signs_stores_and_serves_with_etag(control: Control) -> None:
    resp = control.upload(pack(control.tmp, "v1"))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    version = body["version"]
    assert body["created"] and body["released"] and resp.headers["ETag"] == f'"{version}"'
    assert control.upload(pack(control.tmp, "v1")).status_code == 200  # idempotent, immutable

    with control.client(NODE1) as c:
        latest = c.get("/v1/bundles/latest", params={"channel": "stable"})
        assert latest.status_code == 200 and latest.headers["ETag"] == f'"{version}"'
        bundle, _ = verify_bundle(latest.content, control.public)  # signed by the server's key
        assert bundle.version == version
        # Polling with the running version is a bodiless 304; so is the by-version route.
        again = c.get("/v1/bundles/latest", headers={"If-None-Match": f'"{version}"'})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["ETag"] == f'"{version}"'
        assert c.get(f"/v1/bundles/{version}").content == latest.content
        assert c.get(f"/v1/bundles/{version}",
                     headers={"If-None-Match": f'"{"0" * 64}", "{version}"'}).status_code == 304
        assert c.get(f"/v1/bundles/{'a' * 64}").status_code == 404
        assert c.get("/v1/bundles/not-hex").status_code == 400
        assert c.get("/v1/bundles/latest", params={"channel": "canary"}).status_code == 404

        # A new upload moves the channel; the old ETag no longer matches.
        v2 = control.upload(pack(control.tmp, "v2")).json()["version"]
        moved = c.get("/v1/bundles/latest", headers={"If-None-Match": f'"{version}"'})
        assert moved.status_code == 200 and moved.headers["ETag"] == f'"{v2}"'
    assert (control.tmp / "data" / "bundles" / f"{version}.json").is_file()


def test_upload_of_a_bad_policy_is_refused_and_not_released(control: Control) -> None:
    bundle = build_bundle(write_pack(control.tmp / "p"))
    raw = bundle.to_bytes()
    # Files altered after building: the hashes no longer match.
    tampered = raw.replace(base64.b64encode(b"hunter2\nswordfish\n"), base64.b64encode(b"x\n"))
    with control.client(ADMIN) as c:
        resp = c.post("/v1/bundles", content=tampered)
        assert resp.status_code == 400 and resp.json()["error"]["reason"] == "hash_mismatch"
        # Consistent hashes, but the policy does not load.
        files = {**bundle.files, "policy.yaml": POLICY.replace("[stop]", "[explode]").encode()}
        table = file_table(files)
        crafted = replace(bundle, files=files, manifest={
            **bundle.manifest, "files": table, "content_sha256": content_hash(table)})
        resp = c.post("/v1/bundles", content=crafted.to_bytes())
        assert resp.status_code == 400 and resp.json()["error"]["reason"] == "invalid_policy"
        assert "explode" in resp.json()["error"]["message"]
        resp = c.post("/v1/bundles", content=b"not json")
        assert resp.status_code == 400 and resp.json()["error"]["reason"] == "malformed"
        assert c.get("/v1/bundles/latest").status_code == 404
        assert c.post("/v1/bundles", params={"channel": "Bad Name"}, content=raw).status_code == 400


def test_auth_failures(control: Control) -> None:
    data = build_bundle(pack(control.tmp, "v1")).to_bytes()
    beat = {"mode": "proxy", "software_version": "0.1.0"}
    with control.client() as anon:
        r = anon.post("/v1/bundles", content=data)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        assert anon.get("/v1/bundles/latest").status_code == 401
        assert anon.post("/v1/nodes/node-1/heartbeat", json=beat).status_code == 401
        assert anon.get("/v1/fleet").status_code == 401
        assert anon.get("/v1/telemetry/export").status_code == 401
        page = anon.get("/fleet")
        assert page.status_code == 401 and page.headers["WWW-Authenticate"].startswith("Basic")
        basic = base64.b64encode(f"admin:{ADMIN}".encode()).decode()
        assert anon.get("/fleet", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        assert anon.get("/health").status_code == 200
    with control.client("wrong-token-0123456789") as c:
        assert c.get("/v1/bundles/latest").status_code == 401
    with control.client(NODE1) as node:
        assert node.post("/v1/bundles", content=data).status_code == 403
        assert node.get("/v1/fleet").status_code == 403
        assert node.get("/v1/telemetry/export").status_code == 403
        forbidden = node.post("/v1/nodes/node-2/heartbeat", json=beat)
        assert forbidden.status_code == 403 and "node-1" in forbidden.json()["error"]["message"]
        assert node.post("/v1/nodes/node-1/heartbeat", json=beat).status_code == 200
    with control.client(ADMIN) as admin:
        assert admin.post("/v1/nodes/node-1/heartbeat", json=beat).status_code == 403
    with control.client(FLEET) as fleet:
        assert fleet.post("/v1/nodes/any-node/heartbeat", json=beat).status_code == 200


def test_heartbeat_refuses_raw_text_and_bad_shapes(control: Control) -> None:
    good = {"mode": "proxy", "software_version": "0.1.0"}
    cases = [
        ({**good, "prompt": "my card is 4111..."}, "raw text is never sent"),
        ({**good, "metrics": {"requests": 1, "content": "hello"}}, "raw text is never sent"),
        ({**good, "notes": "x"}, "notes"),
        ({**good, "mode": "gateway"}, "mode"),
        ({**good, "metrics": {"requests": -1}}, "metrics.requests"),
        ({**good, "metrics": {"rules_triggered": {"this is a whole sentence of text, no?": 1}}},
         "not a rule id"),
        ({**good, "interval": "yesterday"}, "interval"),
        ({**good, "node_id": "node-2"}, "does not match"),
    ]
    with control.client(NODE1) as c:
        for body, needle in cases:
            resp = c.post("/v1/nodes/node-1/heartbeat", json=body)
            assert resp.status_code == 422, (body, resp.text)
            assert needle in resp.json()["error"]["message"], (needle, resp.text)
        assert c.post("/v1/nodes/node-1/heartbeat", content=b"{").status_code == 422


def heartbeat(
    c: httpx.Client, node: str, version: str | None, *, requests: int = 0, redact: int = 0,
    stop: int = 0, p95: float | None = None, error: str | None = None,
) -> httpx.Response:
    body: dict[str, object] = {
        "node_id": node, "mode": "sidecar" if node == "node-3" else "proxy",
        "software_version": "0.1.0", "interval": "2026-11-27T08:00:00Z/PT30S",
        "metrics": {
            "requests": requests, "tokens_generated": 10 * requests,
            "decisions": {"allow": requests - redact - stop, "redact": redact, "stop": stop},
            "latency_p50_ms": 1.5, "latency_p95_ms": p95, "latency_p99_ms": 9.0,
            "rules_triggered": {"no-secrets": redact, "PRIN-2A-001": stop},
        },
    }
    if version is not None:
        body["policy_version"] = version
    if error is not None:
        body["policy_error"] = error
    return c.post(f"/v1/nodes/{node}/heartbeat", json=body)


def test_fleet_shows_versions_drift_and_down_nodes(control: Control) -> None:
    v1 = control.upload(pack(control.tmp, "v1")).json()["version"]
    v2 = control.upload(pack(control.tmp, "v2")).json()["version"]
    with control.client(NODE2) as c:
        assert heartbeat(c, "node-2", v1, requests=10).json() == {
            "ok": True, "latest_version": v2, "drift": True}
    time.sleep(DOWN_AFTER + 0.2)  # node-2 falls silent
    with control.client(NODE1) as c:
        assert heartbeat(c, "node-1", v2, requests=100, redact=5, stop=2, p95=8.3).json()[
            "drift"] is False
    with control.client(FLEET) as c:
        assert heartbeat(c, "node-3", "f" * 64, error="bundle 1234 rejected").status_code == 200
    with control.client(ADMIN) as admin:
        view = admin.get("/v1/fleet").json()
        page = admin.get("/fleet")
    nodes = {n["node_id"]: n for n in view["nodes"]}
    assert view["channels"]["stable"]["version"] == v2
    one, two, three = nodes["node-1"], nodes["node-2"], nodes["node-3"]
    assert (one["health"], one["policy_status"], one["drift"]) == ("up", "current", False)
    assert one["policy_version"] == v2 and one["latency_ms"] == {"p50": 1.5, "p95": 8.3,
                                                                 "p99": 9.0}
    assert one["rates"] == {"allow": 0.93, "redact": 0.05, "stop": 0.02}
    assert (two["health"], two["policy_status"], two["drift"]) == ("down", "outdated", True)
    assert two["policy_version"] == v1
    assert (three["health"], three["policy_status"]) == ("degraded", "drift")
    assert three["mode"] == "sidecar" and three["policy_error"] == "bundle 1234 rejected"
    assert view["summary"] == {"nodes": 3, "up": 1, "down": 1, "degraded": 1, "current": 1,
                               "outdated": 1, "withdrawn": 0, "drift": 1}
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "node-2" in page.text and "outdated" in page.text and v2[:12] in page.text


def test_evidence_export_csv(control: Control) -> None:
    with control.client(NODE1) as c:
        heartbeat(c, "node-1", None, requests=100, redact=5, stop=2, p95=8.3)
        heartbeat(c, "node-1", None, requests=0)
    with control.client(ADMIN) as admin:
        resp = admin.get("/v1/telemetry/export")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(resp.text)))
        assert len(rows) == 2
        first = rows[0]
        assert first["node_id"] == "node-1" and first["requests"] == "100"
        assert (first["allow"], first["redact"], first["stop"]) == ("93", "5", "2")
        assert (first["redact_rate"], first["stop_rate"]) == ("0.0500", "0.0200")
        assert first["latency_p95_ms"] == "8.3" and first["tokens_generated"] == "1000"
        assert first["interval_start"] == "2026-11-27T08:00:00Z"
        assert first["interval_end"] == "2026-11-27T08:00:30Z"
        assert first["rules_triggered"] == '{"PRIN-2A-001":2,"no-secrets":5}'
        assert rows[1]["redact_rate"] == ""  # no requests: no rate, not a division by zero
        future = admin.get("/v1/telemetry/export", params={"since": "2999-01-01"})
        assert future.text.count("\n") == 1  # the header only
        past = admin.get("/v1/telemetry/export", params={"until": "2000-01-01T00:00:00Z"})
        assert past.text.count("\n") == 1
        assert admin.get("/v1/telemetry/export", params={"since": "soon"}).status_code == 400
        only = admin.get("/v1/telemetry/export", params={"node": "node-9"})
        assert only.text.count("\n") == 1
