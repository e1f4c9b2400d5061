"""DecisionLog: restart and rotation continuity, clean shutdown, crash recovery, bad input."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from checkstream.audit import (
    GENESIS_HASH,
    AuditKeyError,
    CanonicalError,
    DecisionLog,
    LogClosedError,
    LogCorruptError,
    LogInUseError,
    canonical_json,
    verify_log,
)
from checkstream.audit.files import next_segment_path
from checkstream.engine.records import build_record
from checkstream.engine.types import RequestContext
from checkstream.telemetry.metrics import Metrics

HMAC_KEY = b"k" * 32


def _entries(*files: Path) -> list[dict[str, Any]]:
    out = []
    for file in files:
        for line in file.read_bytes().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def test_first_record_links_to_genesis_and_each_to_its_predecessor(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path) as log:
        for i in range(5):
            log.append({"i": i})
    entries = _entries(path)
    assert [e["seq"] for e in entries] == [0, 1, 2, 3, 4]
    assert entries[0]["prev"] == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after["prev"] == before["hash"]
    assert [e["record"] for e in entries] == [{"i": i} for i in range(5)]
    assert verify_log([path]).ok


def test_chain_continues_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    for run in range(3):
        with DecisionLog(path, hmac_key=HMAC_KEY) as log:
            for i in range(4):
                log.append({"run": run, "i": i})
    entries = _entries(path)
    assert [e["seq"] for e in entries] == list(range(12))
    assert all(e["kind"] == "decision" for e in entries)  # a clean restart needs no recovery
    result = verify_log([path], hmac_key=HMAC_KEY)
    assert result.ok and result.records == 12 and result.last_seq == 11


def test_chain_continues_across_rotation_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    for run in range(2):
        with DecisionLog(path, rotate_bytes=1024) as log:
            for i in range(20):
                log.append({"run": run, "i": i, "pad": "x" * 100})
    files = log.files()
    assert len(files) > 5 and files[-1] == path
    for file in files:
        assert file.stat().st_size <= 1024
    # The first record of each file links to the last record of the one before.
    for older, newer in itertools.pairwise(files):
        assert _entries(newer)[0]["prev"] == _entries(older)[-1]["hash"]
    assert [e["seq"] for e in _entries(*files)] == list(range(40))
    # Files may be given in any order, or as the directory.
    assert verify_log(list(reversed(files))).ok
    assert verify_log([tmp_path]).records == 40


def test_rotation_of_an_oversized_record_still_writes_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, rotate_bytes=200) as log:
        log.append({"big": "y" * 1000})
        log.append({"small": 1})
    assert verify_log([path]).records == 2


def test_close_drains_everything_queued(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path, fsync="never")
    for i in range(20_000):
        log.append({"i": i})
    log.close()
    result = verify_log([path])
    assert result.ok and result.records == 20_000


def test_appends_from_many_threads_form_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, max_pending=64) as log:

        def work(t: int) -> None:
            for i in range(500):
                log.append({"t": t, "i": i})

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    result = verify_log([path])
    assert result.ok and result.records == 4000
    seen = {(e["record"]["t"], e["record"]["i"]) for e in _entries(path)}
    assert len(seen) == 4000


def test_flush_makes_records_visible_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path) as log:
        log.append({"a": 1})
        log.flush(timeout=10)
        assert verify_log([path]).records == 1
        head = json.loads((tmp_path / "d.jsonl.head").read_bytes())["head"]
        assert head["seq"] == 0 and head["hash"] == _entries(path)[0]["hash"]


def test_the_caller_cannot_change_a_record_after_append(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    record: dict[str, Any] = {"action": "stop"}
    with DecisionLog(path) as log:
        log.append(record)
        record["action"] = "pass"
    assert _entries(path)[0]["record"] == {"action": "stop"}


@pytest.mark.parametrize(
    ("record", "where"),
    [
        ({"score": float("nan")}, "$.score"),
        ({"hits": [{"end": float("inf")}]}, "$.hits[0].end"),
        ({1: "int key"}, "$"),
        ({"when": object()}, "$.when"),
        ({"text": "\ud800"}, "$.text"),
    ],
)
def test_a_record_that_is_not_json_fails_in_the_caller(
    tmp_path: Path, record: Any, where: str
) -> None:
    with DecisionLog(tmp_path / "d.jsonl") as log:
        with pytest.raises(CanonicalError) as info:
            log.append(record)
        assert info.value.path == where
        log.append({"ok": True})
    assert verify_log([tmp_path / "d.jsonl"]).records == 1


def test_append_rejects_a_non_mapping(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "d.jsonl") as log, pytest.raises(TypeError, match="mapping"):
        log.append(["not", "a", "record"])  # type: ignore[arg-type]


def test_append_and_flush_after_close_raise(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.jsonl")
    log.close()
    log.close()  # idempotent
    with pytest.raises(LogClosedError):
        log.append({"a": 1})
    with pytest.raises(LogClosedError):
        log.flush()


def test_a_second_writer_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    first = DecisionLog(path)
    with pytest.raises(LogInUseError, match="another process"):
        DecisionLog(path)
    first.close()
    DecisionLog(path).close()


def test_reopening_with_other_keys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, hmac_key=HMAC_KEY) as log:
        log.append({"a": 1})
    with pytest.raises(AuditKeyError, match="one log keeps one set of keys"):
        DecisionLog(path, hmac_key=b"other key of 32 bytes..........!")
    with pytest.raises(AuditKeyError):
        DecisionLog(path, signing_key=Ed25519PrivateKey.generate())
    with DecisionLog(path, hmac_key=HMAC_KEY) as log:  # the lock was released by the failures
        log.append({"a": 2})
    assert verify_log([path], hmac_key=HMAC_KEY).records == 2


def test_both_hmac_and_signature(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    key = Ed25519PrivateKey.generate()
    tricky = {"note": ',"mac":"00","sig":"11","hash":"22"', "auth": {"hash": "x"}, "v": 2}
    with DecisionLog(path, hmac_key=HMAC_KEY, signing_key=key) as log:
        log.append({"a": 1})
        log.append(tricky)
    assert _entries(path)[1]["record"] == tricky
    entry = _entries(path)[0]
    assert set(entry["auth"]) == {"hmac-sha256", "ed25519"} and "mac" in entry and "sig" in entry
    assert verify_log([path], hmac_key=HMAC_KEY, public_key=key.public_key()).ok


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rotate_bytes": 0}, "rotate_bytes"),
        ({"fsync": "sometimes"}, "fsync"),
        ({"max_pending": 0}, "max_pending"),
        ({"hmac_key": b"short"}, "at least 16"),
        ({"signing_key": b"not a key"}, "PEM"),
    ],
)
def test_bad_configuration_is_a_clear_error(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DecisionLog(tmp_path / "d.jsonl", **kwargs)


def test_torn_last_line_is_recorded_and_the_chain_continues(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, hmac_key=HMAC_KEY) as log:
        for i in range(3):
            log.append({"i": i})
    good = path.read_bytes()
    # A power cut in the middle of writing the fourth record leaves half a line.
    fragment = b'{"auth":{"hmac-sha256":"x"},"hash":"5e'
    path.write_bytes(good + fragment)
    before = verify_log([path], hmac_key=HMAC_KEY)
    assert not before.ok and before.records == 3
    assert before.first_bad is not None and before.first_bad.line == 4
    assert "incomplete last line" in before.first_bad.reason

    with DecisionLog(path, hmac_key=HMAC_KEY) as log:
        log.append({"i": 3})
    assert path.read_bytes().startswith(good + fragment + b"\n")  # the torn bytes are kept
    entries = _entries(path)
    recovery = entries[3]
    assert recovery["kind"] == "recovery" and recovery["seq"] == 3
    assert recovery["prev"] == entries[2]["hash"]
    torn = recovery["record"]["torn_tail"]
    assert torn["offset"] == len(good) and torn["length"] == len(fragment)
    assert entries[4]["record"] == {"i": 3} and entries[4]["seq"] == 4
    after = verify_log([path], hmac_key=HMAC_KEY)
    assert after.ok and after.records == 5 and len(after.recoveries) == 1


def test_a_fake_torn_line_is_not_excused(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path) as log:
        log.append({"i": 0})
    path.write_bytes(path.read_bytes() + b"garbage")
    with DecisionLog(path) as log:
        log.append({"i": 1})
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b"garbagf\n"  # not the bytes the recovery entry names
    path.write_bytes(b"".join(lines))
    bad = verify_log([path]).first_bad
    assert bad is not None and bad.line == 2 and "not valid JSON" in bad.reason


def test_a_log_whose_last_record_was_tampered_is_not_continued(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path) as log:
        log.append({"i": 0})
    path.write_bytes(path.read_bytes().replace(b'"i":0', b'"i":1'))
    with pytest.raises(LogCorruptError, match="fails its check"):
        DecisionLog(path)


def test_truncation_below_the_head_is_recorded_at_restart(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path) as log:
        for i in range(4):
            log.append({"i": i})
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]))
    with DecisionLog(path) as log:
        log.append({"i": 4})
    entries = _entries(path)
    assert entries[2]["kind"] == "recovery"
    assert entries[2]["record"]["head"]["head_seq"] == 3
    bad = verify_log([path]).first_bad
    assert bad is not None and bad.line == 3 and "records missing" in bad.reason


def test_a_rewritten_last_record_is_recorded_at_restart(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path) as log:
        for i in range(3):
            log.append({"i": i})
    # Without a key, an attacker can rewrite the last record with a fresh hash while the
    # writer is down; the head file still names the original.
    lines = path.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[-1])
    entry["record"] = {"i": 99}
    body = {k: v for k, v in entry.items() if k != "hash"}
    entry["hash"] = hashlib.sha256(canonical_json(body)).hexdigest()
    path.write_bytes(b"".join(lines[:-1]) + canonical_json(entry) + b"\n")
    with DecisionLog(path) as log:
        log.append({"i": 3})
    entries = _entries(path)
    assert (
        entries[3]["kind"] == "recovery" and "rewritten" in entries[3]["record"]["head"]["problem"]
    )
    bad = verify_log([path]).first_bad
    assert bad is not None and bad.line == 4 and "rewritten" in bad.reason


def test_no_raw_text_unless_the_record_carries_it(tmp_path: Path) -> None:
    ctx = RequestContext("req-1", "acme", "/v1/chat/completions", "gpt-x", {})
    secret_in, secret_out = "my card 4111 1111 1111 1111", "call me on 07700 900123"
    path = tmp_path / "d.jsonl"
    with DecisionLog(path) as log:
        log.append(
            build_record(
                ctx, ingress=None, streams=[], egress=None, latencies_ms={"ingress": 0.1},
                input_text=secret_in, output_text=secret_out,
            )
        )  # fmt: skip
    data = path.read_text(encoding="utf-8")
    assert secret_in not in data and secret_out not in data and "4111" not in data
    assert _entries(path)[0]["record"]["input_sha256"]

    full = tmp_path / "full.jsonl"
    with DecisionLog(full) as log:
        log.append(
            build_record(
                ctx, ingress=None, streams=[], egress=None, latencies_ms={},
                input_text=secret_in, output_text=secret_out, full_evidence=True,
            )
        )  # fmt: skip
    assert secret_in in full.read_text(encoding="utf-8")
    assert verify_log([full]).ok


def test_metrics_count_written_records(tmp_path: Path) -> None:
    own = Metrics(CollectorRegistry())
    with DecisionLog(tmp_path / "d.jsonl", metrics=own) as log:
        for i in range(7):
            log.append({"i": i})
    written = own.registry.get_sample_value(
        "checkstream_audit_records_written_total", {"kind": "decision"}
    )
    assert written == 7
    assert own.registry.get_sample_value("checkstream_audit_queue_depth") == 0
    batches = own.registry.get_sample_value("checkstream_audit_batch_seconds_count")
    assert batches is not None and 1 <= batches <= 7
    text, content_type = own.render()
    assert b"checkstream_audit_records_written_total" in text
    assert content_type.startswith("text/plain")


def test_torn_first_line_of_a_freshly_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, rotate_bytes=400) as log:
        for i in range(6):
            log.append({"i": i, "pad": "p" * 150})
    # Crash right after a rotation: the new active file holds only half of its first line.
    path.rename(next_segment_path(path))
    path.write_bytes(b'{"auth":{},"hash":"0f')
    assert not verify_log([path]).ok
    with DecisionLog(path, rotate_bytes=400) as log:
        log.append({"i": 99})
    result = verify_log([path])
    assert result.ok, result.first_bad
    assert len(result.recoveries) == 1


def test_crash_between_rotation_and_the_new_active_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, rotate_bytes=400) as log:
        for i in range(4):
            log.append({"i": i, "pad": "p" * 150})
    path.rename(next_segment_path(path))  # renamed, and the process died before reopening
    assert verify_log([path]).ok
    with DecisionLog(path, rotate_bytes=400) as log:
        log.append({"i": 4})
    result = verify_log([path])
    assert result.ok and result.records == 5 and not result.recoveries
