"""Policy bundles: deterministic bytes, version = the PolicySet's, and every tamper is caught with
a precise reason (changed file, re-hashed manifest, wrong key, unsigned, bad policy, bad path)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from checkstream.audit import generate_keypair
from checkstream.cli import main
from checkstream.control.bundle import (
    Bundle,
    BundleError,
    build_bundle,
    content_hash,
    file_table,
    sign_bundle,
    verify_bundle,
)
from checkstream.policy import load_policy_set

POLICY = """name: shop
version: '1'
rules:
  - name: no-secrets
    trigger: {phrases: {file: words/secrets.txt}}
    actions: [{redact: {replacement: '[secret]'}}]
  - name: no-bombs
    trigger: {phrases: [build a bomb]}
    actions: [stop]
"""


def write_pack(root: Path, policy: str = POLICY, words: str = "hunter2\nswordfish\n") -> Path:
    (root / "words").mkdir(parents=True, exist_ok=True)
    (root / "words" / "secrets.txt").write_text(words, encoding="utf-8")
    (root / "policy.yaml").write_text(policy, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    return generate_keypair()


def test_build_is_deterministic_and_versioned_like_the_policy_set(tmp_path: Path) -> None:
    a = write_pack(tmp_path / "a")
    # The same files written in the other order, plus things a bundle leaves out.
    b = tmp_path / "b"
    (b / "words").mkdir(parents=True)
    (b / "policy.yaml").write_text(POLICY, encoding="utf-8")
    (b / "words" / "secrets.txt").write_text("hunter2\nswordfish\n", encoding="utf-8")
    (b / ".git").mkdir()
    (b / ".git" / "HEAD").write_text("ref", encoding="utf-8")
    first, second = build_bundle(a), build_bundle(b)
    assert first.to_bytes() == second.to_bytes() == build_bundle(a).to_bytes()
    assert sorted(first.files) == ["policy.yaml", "words/secrets.txt"]
    assert first.version == load_policy_set(a).version
    # A changed phrase file changes the policy, hence the version.
    write_pack(a, words="hunter3\n")
    assert build_bundle(a).version != first.version


def test_signed_bundle_round_trips(tmp_path: Path, keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    signed = sign_bundle(build_bundle(write_pack(tmp_path / "p")), private)
    bundle, policy_set = verify_bundle(signed.to_bytes(), public)
    assert bundle == signed and policy_set.version == signed.version
    assert [r.name for r in policy_set.rules] == ["no-secrets", "no-bombs"]
    assert sign_bundle(signed, private).to_bytes() == signed.to_bytes()  # Ed25519 is deterministic


def _doc(signed: Bundle) -> dict[str, object]:
    doc: dict[str, object] = json.loads(signed.to_bytes())
    return doc


def test_tampered_file_is_a_hash_mismatch(tmp_path: Path, keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    signed = sign_bundle(build_bundle(write_pack(tmp_path / "p")), private)
    doc = _doc(signed)
    files = doc["files"]
    assert isinstance(files, dict)
    files["words/secrets.txt"] = base64.b64encode(b"nothing\n").decode()
    with pytest.raises(BundleError, match=r"file 'words/secrets.txt': sha256") as err:
        verify_bundle(json.dumps(doc).encode(), public)
    assert err.value.reason == "hash_mismatch"
    # An added file the manifest does not name is refused too.
    files["words/secrets.txt"] = base64.b64encode(b"hunter2\nswordfish\n").decode()
    files["extra.yaml"] = base64.b64encode(b"name: x\n").decode()
    with pytest.raises(BundleError, match=r"not in manifest \['extra.yaml'\]"):
        verify_bundle(json.dumps(doc).encode(), public)


def test_rehashed_manifest_breaks_the_signature(tmp_path: Path, keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    signed = sign_bundle(build_bundle(write_pack(tmp_path / "p")), private)
    files = {**signed.files, "words/secrets.txt": b"nothing\n"}
    table = file_table(files)
    forged = replace(signed, files=files, manifest={
        **signed.manifest, "files": table, "content_sha256": content_hash(table)})
    with pytest.raises(BundleError) as err:
        verify_bundle(forged.to_bytes(), public)
    assert err.value.reason == "bad_signature"


def test_wrong_key_and_unsigned(tmp_path: Path, keys: tuple[bytes, bytes]) -> None:
    _private, public = keys
    unsigned = build_bundle(write_pack(tmp_path / "p"))
    other_private, _ = generate_keypair()
    with pytest.raises(BundleError, match="not the pinned key") as err:
        verify_bundle(sign_bundle(unsigned, other_private).to_bytes(), public)
    assert err.value.reason == "wrong_key"
    with pytest.raises(BundleError, match="not signed") as err:
        verify_bundle(unsigned.to_bytes(), public)
    assert err.value.reason == "unsigned"


def test_bad_policy_never_builds_and_never_verifies(
    tmp_path: Path, keys: tuple[bytes, bytes]
) -> None:
    private, public = keys
    bad = POLICY.replace("actions: [stop]", "actions: [explode]")
    with pytest.raises(BundleError, match=r"policy.yaml.*explode|explode") as err:
        build_bundle(write_pack(tmp_path / "bad", policy=bad))
    assert err.value.reason == "invalid_policy"
    assert str(tmp_path) not in str(err.value)  # bundle paths, not the unpack directory
    # Signed by the right key but not loadable (a buggy or compromised publisher): still refused.
    good = build_bundle(write_pack(tmp_path / "good"))
    files = {**good.files, "policy.yaml": bad.encode()}
    table = file_table(files)
    crafted = replace(good, files=files, manifest={
        **good.manifest, "files": table, "content_sha256": content_hash(table)})
    with pytest.raises(BundleError) as err:
        verify_bundle(sign_bundle(crafted, private).to_bytes(), public)
    assert err.value.reason == "invalid_policy"
    # Loadable files under a manifest that names another version.
    lying = replace(good, manifest={**good.manifest, "policy_version": hashlib.sha256(
        b"x").hexdigest()})
    with pytest.raises(BundleError, match="manifest says") as err:
        verify_bundle(sign_bundle(lying, private).to_bytes(), public)
    assert err.value.reason == "version_mismatch"


@pytest.mark.parametrize("path", ["../evil.yaml", "/etc/x.yaml", "a/../../b.yaml", ".hidden",
                                  "a\\b.yaml", "a//b.yaml"])
def test_unsafe_paths_are_refused(tmp_path: Path, path: str) -> None:
    doc = _doc(build_bundle(write_pack(tmp_path / "p")))
    files = doc["files"]
    assert isinstance(files, dict)
    files[path] = base64.b64encode(b"x").decode()
    with pytest.raises(BundleError, match="unsafe file path") as err:
        Bundle.from_bytes(json.dumps(doc).encode())
    assert err.value.reason == "malformed"


def test_not_a_bundle() -> None:
    for data in (b"", b"[]", b'{"format": "other"}', b"\xff"):
        with pytest.raises(BundleError) as err:
            Bundle.from_bytes(data)
        assert err.value.reason == "malformed"


def test_cli_build_sign_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private, public = generate_keypair()
    (tmp_path / "k.key").write_bytes(private)
    (tmp_path / "k.pub").write_bytes(public)
    pack = write_pack(tmp_path / "p")
    out = tmp_path / "b.json"
    assert main(["control", "bundle", "build", str(pack), "-o", str(out)]) == 0
    assert main(["control", "bundle", "verify", str(out), "--public-key",
                 str(tmp_path / "k.pub")]) == 1
    assert "unsigned" in capsys.readouterr().err
    assert main(["control", "bundle", "sign", str(out), "--key", str(tmp_path / "k.key")]) == 0
    assert main(["control", "bundle", "verify", str(out), "--public-key",
                 str(tmp_path / "k.pub")]) == 0
    assert f"OK, policy version {load_policy_set(pack).version}" in capsys.readouterr().out
    out.write_bytes(out.read_bytes().replace(b"aHVudGVy", b"aHVudGVz"))  # hunter -> hunteq
    assert main(["control", "bundle", "verify", str(out), "--public-key",
                 str(tmp_path / "k.pub")]) == 1
    assert "hash_mismatch" in capsys.readouterr().err
