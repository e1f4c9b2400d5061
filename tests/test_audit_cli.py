"""``checkstream audit verify|export|keygen``: exit codes, messages and filters."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from checkstream.audit import DecisionLog, load_signing_key
from checkstream.cli import main


def _record(i: int, rule: str | None, regulation: str | None) -> dict[str, Any]:
    rules = [] if rule is None else [{"rule": rule, "action": "stop", "regulation": regulation}]
    return {"request_id": f"r{i}", "tenant": "acme", "decision": "stop" if rules else "allow",
            "rules": rules, "input_sha256": "ab" * 32}  # fmt: skip


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "logs" / "decisions.jsonl"
    with DecisionLog(path, rotate_bytes=700) as log:
        log.append(_record(0, None, None))
        log.append(_record(1, "advice-boundary", "FCA COBS 9A"))
        log.append(_record(2, "=HYPERLINK(evil)", None))
        log.append(_record(3, "pii-email", "UK GDPR Art. 5"))
    return path


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    # The real console entry point, as an operator would run it.
    code = "import sys; from checkstream.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60
    )


def test_verify_ok_exits_0(log_path: Path) -> None:
    done = _cli("audit", "verify", str(log_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: 4 records, seq 0..3,")


def test_verify_tampered_exits_1_and_names_the_place(log_path: Path) -> None:
    files = sorted(log_path.parent.glob("decisions-*.jsonl"))
    target = files[0]
    lines = target.read_bytes().splitlines(keepends=True)
    lines[-1] = lines[-1].replace(b'"tenant":"acme"', b'"tenant":"acmf"')
    target.write_bytes(b"".join(lines))
    done = _cli("audit", "verify", str(log_path))
    assert done.returncode == 1
    assert f"FAIL: {target}:{len(lines)}: hash does not match" in done.stderr


def test_verify_missing_file_or_bad_key_exits_2(tmp_path: Path, log_path: Path) -> None:
    assert main(["audit", "verify", str(tmp_path / "nope.jsonl")]) == 2
    (tmp_path / "bad.hmac").write_text("not hex")
    assert main(["audit", "verify", str(log_path), "--hmac-key", str(tmp_path / "bad.hmac")]) == 2


def test_keygen_sign_and_verify_with_the_public_key(tmp_path: Path) -> None:
    prefix = tmp_path / "audit"
    assert main(["audit", "keygen", str(prefix)]) == 0
    assert (tmp_path / "audit.key").stat().st_mode & 0o777 == 0o600
    assert main(["audit", "keygen", str(prefix)]) == 2  # never overwrites silently
    path = tmp_path / "signed.jsonl"
    with DecisionLog(path, signing_key=tmp_path / "audit.key") as log:
        log.append({"a": 1})
    assert main(["audit", "verify", str(path), "--public-key", str(tmp_path / "audit.pub")]) == 0
    assert main(["audit", "keygen", str(tmp_path / "other")]) == 0
    assert main(["audit", "verify", str(path), "--public-key", str(tmp_path / "other.pub")]) == 1
    assert load_signing_key(tmp_path / "audit.key").public_key() is not None


def test_keygen_hmac_and_verify(tmp_path: Path) -> None:
    assert main(["audit", "keygen", "--hmac", str(tmp_path / "k")]) == 0
    key = bytes.fromhex((tmp_path / "k.hmac").read_text())
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, hmac_key=key) as log:
        log.append({"a": 1})
    assert main(["audit", "verify", str(path), "--hmac-key", str(tmp_path / "k.hmac")]) == 0
    (tmp_path / "wrong.hmac").write_text("ab" * 32)
    assert main(["audit", "verify", str(path), "--hmac-key", str(tmp_path / "wrong.hmac")]) == 1


def _export(log_path: Path, tmp_path: Path, *args: str) -> list[dict[str, str]]:
    out = tmp_path / "out.csv"
    assert main(["audit", "export", str(log_path), "-o", str(out), *args]) == 0
    return list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))


def test_export_csv_all_and_filtered(tmp_path: Path, log_path: Path) -> None:
    rows = _export(log_path, tmp_path)
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2", "r3"]
    assert rows[1]["rules"] == "advice-boundary" and rows[1]["regulations"] == "FCA COBS 9A"
    assert rows[1]["decision"] == "stop" and rows[1]["actions"] == "stop"
    assert json.loads(rows[3]["record"])["rules"][0]["rule"] == "pii-email"
    assert rows[2]["rules"] == "'=HYPERLINK(evil)"  # never a live spreadsheet formula

    assert [r["request_id"] for r in _export(log_path, tmp_path, "--rule", "pii-email")] == ["r3"]
    by_reg = _export(log_path, tmp_path, "--regulation", "cobs")
    assert [r["request_id"] for r in by_reg] == ["r1"]


def test_export_time_range(tmp_path: Path, log_path: Path) -> None:
    ts = [r["ts"] for r in _export(log_path, tmp_path)]
    assert _export(log_path, tmp_path, "--since", "2000-01-01", "--until", "2000-01-02") == []
    rows = _export(log_path, tmp_path, "--since", ts[1], "--until", ts[3])
    assert [r["ts"] for r in rows] == [t for t in ts if ts[1] <= t < ts[3]]
    assert len(_export(log_path, tmp_path, "--since", ts[0])) == 4


def test_export_jsonl_keeps_the_entries_byte_for_byte(tmp_path: Path, log_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    args = ["audit", "export", str(log_path), "--format", "jsonl", "--rule", "advice-boundary"]
    assert main([*args, "-o", str(out)]) == 0
    line = out.read_bytes()
    originals = b"".join(p.read_bytes() for p in log_path.parent.glob("*.jsonl"))
    assert line.count(b"\n") == 1 and line in originals


def test_export_refuses_a_broken_log_unless_told(
    tmp_path: Path, log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path.write_bytes(log_path.read_bytes()[:-5])
    out = tmp_path / "out.csv"
    assert main(["audit", "export", str(log_path), "-o", str(out)]) == 1
    assert "not exporting" in capsys.readouterr().err
    assert main(["audit", "export", str(log_path), "-o", str(out), "--no-verify"]) == 0


def test_bad_time_is_a_usage_error(log_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["audit", "export", str(log_path), "--since", "yesterday"])
    assert info.value.code == 2
    assert "--since" in capsys.readouterr().err


def test_verify_pruned_log(log_path: Path) -> None:
    oldest = sorted(log_path.parent.glob("decisions-*.jsonl"))[0]
    oldest.unlink()
    assert main(["audit", "verify", str(log_path)]) == 1
    done = _cli("audit", "verify", "--pruned", str(log_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: ") and "seq 0.." not in done.stdout
