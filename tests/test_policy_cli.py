"""``checkstream policy validate | test | explain`` through the real entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from checkstream.cli import main

ROOT = Path(__file__).resolve().parents[1] / "policies"


def test_validate_ok_and_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "validate", str(ROOT)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: 4 policies") and "fca-consumer-duty 1.0.0" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: b\nversion: '1'\nrules:\n  - name: r\n    trigger: {pattern: '(('}\n"
        "    actions: [log]\n",
        encoding="utf-8",
    )
    assert main(["policy", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}:5: rule 'r': field 'trigger.pattern': bad regex" in err


def test_explain_shows_rules_spans_and_regulations(capsys: pytest.CaptureFixture[str]) -> None:
    text = "Honestly, you should invest in this fund."
    assert main(["policy", "explain", str(ROOT / "fca-consumer-duty"), text]) == 0
    out = capsys.readouterr().out
    assert "decision: stop" in out
    assert "fca-consumer-duty/personal-recommendation: stop [10:27] 'you should invest'" in out
    assert "regulation: FCA COBS 9A COBS 9A.2.1R" in out
    assert "defined at" in out and "policy.yaml" in out
    assert (
        main(
            [
                "policy",
                "explain",
                str(ROOT / "fca-consumer-duty"),
                "--phase",
                "egress",
                "bitcoin funds",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "decision: disclaimer" in out and "Don't invest unless" in out
    assert (
        main(
            [
                "policy",
                "explain",
                str(ROOT / "fca-consumer-duty"),
                "--meta",
                "customer_segment=vulnerable",
                "try leveraged trading",
            ]
        )
        == 0
    )
    assert "high-risk-products-for-vulnerable" in capsys.readouterr().out
    assert main(["policy", "explain", str(ROOT / "default"), "--meta", "novalue", "x"]) == 1


def test_test_command_can_also_stream_cases(capsys: pytest.CaptureFixture[str]) -> None:
    pack = ROOT / "pii-strict"
    args = ["policy", "test", str(pack), "--cases", str(pack / "cases.yaml")]
    assert main([*args, "--stream-chunk", "1", "--stream-chunk", "7"]) == 0
    assert "0 failed" in capsys.readouterr().out
    assert main([*args, "--stream-chunk", "0"]) == 1


def test_console_script_exit_codes(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("checkstream")
    ok = subprocess.run(
        [str(exe), "policy", "validate", str(ROOT / "default")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        [str(exe), "policy", "test", str(ROOT / "default"), "--cases", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1 and "cannot read cases file" in missing.stderr
