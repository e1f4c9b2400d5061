"""Tampering with a decision log on disk: every change is caught and the place is named."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from checkstream.audit import DecisionLog, canonical_json, verify_log

HMAC_KEY = b"0123456789abcdef0123456789abcdef"
N = 6


def _record(i: int) -> dict[str, Any]:
    return {
        "request_id": f"req-{i}",
        "tenant": "acme",
        "policy_version": "p" * 16,
        "input_sha256": hashlib.sha256(f"in {i}".encode()).hexdigest(),
        "scores": {"toxicity": 0.125 * i, "injection": 0.5},
        "hits": [{"rule": "advice", "action": "stop", "start": i, "end": i + 4}],
        "latencies_ms": {"ingress": 0.25, "midstream": 1.5},
        "flags": [True, None],
    }


def _write(path: Path, **keys: Any) -> Path:
    with DecisionLog(path, **keys) as log:
        for i in range(N):
            log.append(_record(i))
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict) and value:
        return [p for k, v in value.items() for p in _leaf_paths(v, (*prefix, k))]
    if isinstance(value, list) and value:
        return [p for i, v in enumerate(value) for p in _leaf_paths(v, (*prefix, i))]
    return [prefix]


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1:] != "0" else "1")
    if value is None:
        return 0
    return {"added": 1} if isinstance(value, dict) else ["added"]


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


# Every field of every entry, as the attacker writes it back in canonical form.
_SAMPLE = json.loads(
    b'{"auth":{"hmac-sha256":"x"},"hash":"h","kind":"decision","mac":"m","prev":"p",'
    b'"record":' + canonical_json(_record(1)) + b',"seq":1,"ts":"t","v":1}'
)
FIELDS = _leaf_paths(_SAMPLE)


@pytest.mark.parametrize("index", range(N))
@pytest.mark.parametrize("field", FIELDS, ids=lambda p: ".".join(map(str, p)))
def test_changing_any_field_of_any_record_is_caught_at_that_line(
    tmp_path: Path, index: int, field: tuple[Any, ...]
) -> None:
    path = _write(tmp_path / "d.jsonl", hmac_key=HMAC_KEY)
    lines = _lines(path)
    entry = json.loads(lines[index])
    _set(entry, field, _changed(_get(entry, field)))
    lines[index] = canonical_json(entry) + b"\n"
    path.write_bytes(b"".join(lines))

    # The MAC is the one field only the key holder can check (it seals the hash, not itself).
    verifiers: list[dict[str, Any]] = [{"hmac_key": HMAC_KEY}] + ([] if field == ("mac",) else [{}])
    for keys in verifiers:
        result = verify_log([path], **keys)
        assert not result.ok
        assert result.first_bad is not None
        assert result.first_bad.file == str(path)
        assert result.first_bad.line == index + 1, result.first_bad
        assert result.records == index


def test_non_canonical_edit_is_caught(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl")
    lines = _lines(path)
    lines[2] = lines[2].replace(b'"kind":', b'"kind": ')
    path.write_bytes(b"".join(lines))
    bad = verify_log([path]).first_bad
    assert bad is not None and bad.line == 3 and "canonical" in bad.reason


def _reseal_without_key(entry: dict[str, Any]) -> bytes:
    """What an attacker without the key can do: recompute the hash after editing."""
    body = {k: v for k, v in entry.items() if k not in ("hash", "mac", "sig")}
    entry["hash"] = hashlib.sha256(canonical_json(body)).hexdigest()
    return canonical_json(entry) + b"\n"


def test_recomputed_hash_breaks_the_link_to_the_next_record(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl")
    lines = _lines(path)
    entry = json.loads(lines[2])
    entry["record"]["tenant"] = "evil"
    lines[2] = _reseal_without_key(entry)
    path.write_bytes(b"".join(lines))
    bad = verify_log([path]).first_bad
    assert bad is not None and bad.line == 4
    assert "prev does not match the hash of record seq 2" in bad.reason


def test_recomputed_hash_of_last_record_is_caught_by_the_head_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl")
    lines = _lines(path)
    entry = json.loads(lines[-1])
    entry["record"]["tenant"] = "evil"
    lines[-1] = _reseal_without_key(entry)
    path.write_bytes(b"".join(lines))
    bad = verify_log([path]).first_bad
    assert bad is not None and bad.line == N and "head file" in bad.reason


def test_hmac_catches_a_recomputed_hash_at_the_edited_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", hmac_key=HMAC_KEY)
    lines = _lines(path)
    entry = json.loads(lines[3])
    entry["record"]["hits"][0]["action"] = "pass"
    lines[3] = _reseal_without_key(entry)
    path.write_bytes(b"".join(lines))
    assert verify_log([path]).first_bad.line == 5  # type: ignore[union-attr]
    bad = verify_log([path], hmac_key=HMAC_KEY).first_bad
    assert bad is not None and bad.line == 4 and bad.reason == "bad HMAC"


def test_ed25519_catches_a_recomputed_hash_and_a_wrong_key(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = _write(tmp_path / "d.jsonl", signing_key=key)
    assert verify_log([path], public_key=key.public_key()).ok
    other = Ed25519PrivateKey.generate().public_key()
    bad = verify_log([path], public_key=other, head=False).first_bad
    assert bad is not None and bad.line == 1 and "another key" in bad.reason

    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["record"]["scores"]["toxicity"] = 0.0
    lines[1] = _reseal_without_key(entry)
    path.write_bytes(b"".join(lines))
    bad = verify_log([path], public_key=key.public_key()).first_bad
    assert bad is not None and bad.line == 2 and bad.reason == "bad signature"


def test_stripping_the_seal_is_caught_without_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", hmac_key=HMAC_KEY)
    lines = _lines(path)
    entry = json.loads(lines[2])
    del entry["mac"]
    entry["auth"] = {}
    lines[2] = _reseal_without_key(entry)
    path.write_bytes(b"".join(lines))
    bad = verify_log([path]).first_bad
    assert bad is not None and bad.line == 3 and "sealed with no keys" in bad.reason
    bad = verify_log([path], hmac_key=HMAC_KEY).first_bad
    assert bad is not None and bad.line == 3 and "no HMAC" in bad.reason


def test_a_verifier_with_a_key_refuses_an_unsealed_log(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl")
    bad = verify_log([path], hmac_key=HMAC_KEY, head=False).first_bad
    assert bad is not None and bad.line == 1 and "no HMAC" in bad.reason


@pytest.mark.parametrize("index", range(N - 1))
def test_deleting_a_record_is_caught(tmp_path: Path, index: int) -> None:
    path = _write(tmp_path / "d.jsonl")
    lines = _lines(path)
    del lines[index]
    path.write_bytes(b"".join(lines))
    bad = verify_log([path]).first_bad
    assert bad is not None and bad.line == index + 1
    assert f"record seq {index} missing" in bad.reason


def test_deleting_the_last_record_is_caught_by_the_head_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl")
    path.write_bytes(b"".join(_lines(path)[:-1]))
    result = verify_log([path])
    assert result.first_bad is not None and result.first_bad.line == N
    assert "truncated" in result.first_bad.reason and result.records == N - 1


@pytest.mark.parametrize("index", range(N - 1))
def test_swapping_two_records_is_caught(tmp_path: Path, index: int) -> None:
    path = _write(tmp_path / "d.jsonl")
    lines = _lines(path)
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    path.write_bytes(b"".join(lines))
    bad = verify_log([path]).first_bad
    assert bad is not None and bad.line == index + 1 and "missing" in bad.reason


def test_duplicating_a_record_is_caught(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl")
    lines = _lines(path)
    lines.insert(3, lines[2])
    path.write_bytes(b"".join(lines))
    bad = verify_log([path]).first_bad
    assert bad is not None and bad.line == 4 and "reordered or duplicated" in bad.reason


@pytest.mark.parametrize("cut", [1, 40, 200])
def test_truncating_mid_line_is_caught(tmp_path: Path, cut: int) -> None:
    path = _write(tmp_path / "d.jsonl")
    data = path.read_bytes()
    lines = _lines(path)
    path.write_bytes(data[: len(data) - cut])
    bad = verify_log([path]).first_bad
    assert bad is not None and bad.line == len(lines)
    assert "incomplete last line" in bad.reason


def test_truncating_at_a_line_boundary_is_caught_by_the_head_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl")
    path.write_bytes(b"".join(_lines(path)[:2]))
    result = verify_log([path])
    assert result.first_bad is not None and result.first_bad.line == 3
    assert "head file" in result.first_bad.reason and "seq 5" in result.first_bad.reason
    # Without the head file the cut is invisible: the head is the anchor worth shipping off-box.
    assert verify_log([path], head=False).ok


def test_emptying_the_file_is_caught(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl")
    path.write_bytes(b"")
    result = verify_log([path])
    assert not result.ok and result.first_bad is not None
    assert result.first_bad.line == 1 and "no records" in result.first_bad.reason


def test_garbage_line_in_the_middle_is_caught(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl")
    lines = _lines(path)
    lines.insert(2, b"not json\n")
    path.write_bytes(b"".join(lines))
    bad = verify_log([path]).first_bad
    assert bad is not None and bad.line == 3 and "not valid JSON" in bad.reason


def test_tampered_head_file_is_caught_with_a_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", hmac_key=HMAC_KEY)
    head = tmp_path / "d.jsonl.head"
    obj = json.loads(head.read_bytes())
    obj["head"]["seq"] = 99
    head.write_bytes(canonical_json(obj))
    bad = verify_log([path], hmac_key=HMAC_KEY).first_bad
    assert bad is not None and bad.file == str(head) and bad.reason == "bad HMAC"


def _rotated(tmp_path: Path) -> list[Path]:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, rotate_bytes=1500) as log:
        for i in range(12):
            log.append(_record(i))
    files = log.files()
    assert len(files) >= 4
    return files


def test_deleting_a_rotated_file_is_caught(tmp_path: Path) -> None:
    files = _rotated(tmp_path)
    first_seq_of_third = json.loads(_lines(files[2])[0])["seq"]
    files[1].unlink()
    bad = verify_log([tmp_path / "d.jsonl"]).first_bad
    assert bad is not None and bad.file == str(files[2]) and bad.line == 1
    assert "missing" in bad.reason and f"seq {first_seq_of_third}" in bad.reason


def test_deleting_the_first_rotated_file_is_caught(tmp_path: Path) -> None:
    files = _rotated(tmp_path)
    files[0].unlink()
    bad = verify_log([tmp_path / "d.jsonl"]).first_bad
    assert bad is not None and bad.file == str(files[1]) and "chain starts at seq" in bad.reason
    # Retention may delete the oldest files; the rest still verifies when that is declared ...
    assert verify_log([tmp_path / "d.jsonl"], pruned=True).ok
    # ... but not a gap further on.
    files[2].unlink()
    assert not verify_log([tmp_path / "d.jsonl"], pruned=True).ok


def test_truncating_a_rotated_file_is_caught(tmp_path: Path) -> None:
    files = _rotated(tmp_path)
    lines = _lines(files[1])
    files[1].write_bytes(b"".join(lines[:-1]))
    bad = verify_log([tmp_path / "d.jsonl"]).first_bad
    assert bad is not None and bad.file == str(files[2]) and bad.line == 1
    assert "missing" in bad.reason


def test_tampering_in_a_rotated_file_names_that_file(tmp_path: Path) -> None:
    files = _rotated(tmp_path)
    lines = _lines(files[2])
    lines[-1] = lines[-1].replace(b'"tenant":"acme"', b'"tenant":"acmf"')
    files[2].write_bytes(b"".join(lines))
    bad = verify_log(files).first_bad
    assert bad is not None and bad.file == str(files[2]) and bad.line == len(lines)
    assert "record modified" in bad.reason
