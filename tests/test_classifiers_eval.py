"""`checkstream classifiers eval|list` and the metrics they print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checkstream.classifiers.metrics import binary_metrics, roc_auc
from checkstream.cli import main

DATA = Path(__file__).resolve().parent.parent / "data"


def test_roc_auc_known_values() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5  # ties count one half
    assert roc_auc([0, 1, 1], [0.1, 0.4, 0.35]) == 1.0
    assert roc_auc([1, 1], [0.3, 0.4]) is None


def test_binary_metrics() -> None:
    m = binary_metrics([1, 1, 0, 0, 1], [0.9, 0.2, 0.7, 0.1, 0.6], 0.5)
    assert (m.precision, m.recall) == (2 / 3, 2 / 3)
    assert m.f1 == pytest.approx(2 / 3)
    assert m.accuracy == pytest.approx(0.6)
    with pytest.raises(ValueError, match="labels but"):
        binary_metrics([1], [0.1, 0.2], 0.5)


def test_eval_command_reports_models_and_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    assert main(["classifiers", "eval", "--data", str(DATA), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "keyword baseline" in printed and "bastioncorpus (OOD)" in printed
    rows = json.loads(out.read_text())
    by_key = {(r["classifier"], r["dataset"]): r for r in rows}
    for clf in ("toxicity", "prompt_injection", "financial_advice", "harmful_output"):
        assert any(c == clf for c, _ in by_key), clf
    ood = by_key[("prompt_injection", "bastioncorpus (OOD)")]
    assert ood["independent"] is True and ood["model"]["n"] == 181
    # The models must beat substring keywords where it matters: no Scunthorpe false positives
    # (precision on chunks) and better ranking on the independent sets.
    chunks = by_key[("toxicity", "output_chunks")]
    assert chunks["model"]["precision"] > chunks["keyword_baseline"]["precision"]
    assert ood["model"]["roc_auc"] > ood["keyword_baseline"]["roc_auc"]
    fin = by_key[("financial_advice", "finance_heldout")]
    assert fin["model"]["roc_auc"] > fin["keyword_baseline"]["roc_auc"]


def test_eval_only_accepts_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classifiers", "eval", "--data", str(DATA), "--only", "regulatory_finance"]) == 0
    printed = capsys.readouterr().out
    assert "financial_advice" in printed and "prompt_injection |" not in printed


def test_eval_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classifiers", "eval", "--data", str(DATA), "--only", "nope"]) == 2
    assert "unknown classifier" in capsys.readouterr().err
    assert main(["classifiers", "eval", "--data", str(tmp_path)]) == 1
    assert "evaluation data missing" in capsys.readouterr().err


def test_list_command_shows_provider_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classifiers", "list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    tox = next(e for e in entries if e["name"] == "toxicity")
    assert tox["provider"] == "CPUExecutionProvider"
    assert tox["version"].startswith("sha256:")
    assert tox["aliases"] == ["toxicity_detector"]
