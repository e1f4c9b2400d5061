"""The shipped registry: names, aliases, versions, load errors, and the committed artifacts."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from checkstream.classifiers import ClassifierError, load_registry
from checkstream.classifiers.registry import DEFAULT_CONFIG

MODELS = DEFAULT_CONFIG.parent / "models"


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return load_registry()


def test_spec_names_exist_and_aliases_resolve(registry) -> None:  # type: ignore[no-untyped-def]
    required = {
        "toxicity", "prompt_injection", "financial_advice", "pii_detector",
        "toxicity_detector", "regulatory_finance", "finance_regulatory",
    }  # fmt: skip
    assert required <= registry.names()
    assert registry.get("toxicity_detector") is registry.get("toxicity")
    assert registry.get("regulatory_finance") is registry.get("financial_advice")
    assert registry.get("finance_regulatory") is registry.get("financial_advice")
    assert registry.canonical("toxicity_detector") == "toxicity"
    assert "toxicity_detector" in registry and "nope" not in registry


def test_unknown_name_is_a_clear_key_error(registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KeyError, match=r"unknown classifier 'toxcity'.*known classifiers"):
        registry.get("toxcity")


def test_every_classifier_reports_version_and_provider(registry) -> None:  # type: ignore[no-untyped-def]
    for entry in registry.describe():
        assert str(entry["version"]).startswith("sha256:")
        if entry["kind"] == "onnx":
            assert entry["provider"] == "CPUExecutionProvider"
        else:
            assert entry["provider"] == "python"
    # Heads sharing one model file still have distinct versions (different output column).
    versions = {registry.get(n).version for n in ("prompt_injection", "financial_advice")}
    assert len(versions) == 2


def test_version_is_content_hash_independent_of_threshold(tmp_path: Path) -> None:
    base = DEFAULT_CONFIG.read_text()
    changed = base.replace(
        "output_index: {toxic: 1}\n    threshold: 0.5",
        "output_index: {toxic: 1}\n    threshold: 0.7",
    )
    assert changed != base
    cfg = tmp_path / "classifiers.yaml"
    cfg.write_text(changed.replace("models/", str(MODELS) + "/"))
    other = load_registry(cfg)
    assert other.get("toxicity").threshold == 0.7
    assert other.get("toxicity").version == load_registry().get("toxicity").version


def test_manifest_matches_committed_artifacts() -> None:
    manifest = json.loads((MODELS / "manifest.json").read_text())
    for name, info in manifest["artifacts"].items():
        data = (MODELS / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"], name
        assert len(data) == info["bytes"]
    for source in manifest["sources"].values():
        assert len(source["sha256"]) == 64
    total = sum(p.stat().st_size for p in MODELS.iterdir())
    assert total < 40 * 1024 * 1024  # wheel budget: well under ~60 MB


def test_loads_and_scores_with_network_disabled() -> None:
    """The shipped models load from the installed package and need no network at all."""
    code = textwrap.dedent(
        """
        import socket
        def refuse(*a, **k):
            raise RuntimeError("network access attempted")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from checkstream.classifiers import load_registry
        r = load_registry()
        for name in sorted(r):
            r.get(name).score(["hello there"])
        print("ok", len(r))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def _write(tmp_path: Path, body: str) -> Path:
    cfg = tmp_path / "classifiers.yaml"
    cfg.write_text(textwrap.dedent(body).replace("MODELS", str(MODELS)))
    return cfg


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("classifiers:\n  x:\n    kind: magic\n", r"line 2.*kind"),
        (
            "classifiers:\n  x:\n    kind: onnx\n    model: MODELS/missing.onnx\n"
            "    input: string\n    output: probabilities\n    output_index: {a: 1}\n",
            r"classifier 'x'.*model file not found",
        ),
        (
            "classifiers:\n  x:\n    kind: onnx\n    model: MODELS/toxicity_profanity.onnx\n"
            "    input: string\n    output: nope\n    output_index: {a: 1}\n",
            r"no output 'nope'",
        ),
        (
            "classifiers:\n  x:\n    kind: onnx\n    model: MODELS/static_heads.onnx\n"
            "    input: string\n    output: scores\n    output_index: {a: 0}\n",
            r"needs one string input",
        ),
        (
            "classifiers:\n  x:\n    kind: onnx\n    model: MODELS/static_heads.onnx\n"
            "    output: scores\n    output_index: {a: 0}\n",
            r"needs a 'tokenizer'",
        ),
        (
            "classifiers:\n  x:\n    kind: pattern\n    patterns: {a: ['(unclosed']}\n",
            r"bad regex",
        ),
        ("classifiers:\n  x:\n    kind: pii\n    entities: [PASSPORT]\n", r"unknown PII"),
        ("classifiers:\n  x:\n    kind: pii\n    thresold: 0.3\n", r"thresold"),
        ("classifiers:\n  x:\n    kind: pii\n    fail_mode: maybe\n", r"fail_mode"),
        ("classifiers:\n  x:\n    kind: pii\n    timeout_ms: 0\n", r"timeout_ms"),
        (
            "classifiers:\n  x:\n    kind: pii\n    aliases: [y]\n  y:\n    kind: pii\n",
            r"alias 'y' is already",
        ),
        ("classifiers: [1, 2\n", r"invalid YAML"),
    ],
)
def test_config_errors_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ClassifierError, match=message):
        load_registry(_write(tmp_path, body))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ClassifierError, match="cannot read"):
        load_registry(tmp_path / "absent.yaml")


def test_cuda_request_without_cuda_fails_loudly(tmp_path: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu installed: covered by benches/gpu/onnx_cuda.py on a GPU")
    cfg = _write(
        tmp_path,
        """
        classifiers:
          x:
            kind: onnx
            model: MODELS/toxicity_profanity.onnx
            input: string
            output: probabilities
            output_index: {toxic: 1}
            device: cuda
        """,
    )
    with pytest.raises(
        ClassifierError, match=r"device 'cuda' requested but onnxruntime runs it on"
    ):
        load_registry(cfg)


def test_device_auto_reports_cpu_here(tmp_path: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu installed: auto picks CUDA (benches/gpu/onnx_cuda.py)")
    cfg = _write(
        tmp_path,
        """
        classifiers:
          x:
            kind: onnx
            model: MODELS/toxicity_profanity.onnx
            input: string
            output: probabilities
            output_index: {toxic: 1}
            device: auto
        """,
    )
    assert load_registry(cfg).get("x").provider == "CPUExecutionProvider"
