"""Pure-Python classifier kinds: ``pii`` (the recognizers) and ``pattern`` (whole-word regexes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import regex

from checkstream.classifiers.base import Classifier
from checkstream.classifiers.pii import find_pii


@dataclass
class PiiClassifier(Classifier):
    """Score 1.0 for each entity type (label) found in the text, else 0.0."""

    kind: str = "pii"

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        out = []
        for text in texts:
            found = {m.entity for m in find_pii(text, self.labels)}
            out.append({label: 1.0 if label in found else 0.0 for label in self.labels})
        return out


@dataclass
class PatternClassifier(Classifier):
    """Score 1.0 for a label when any of its patterns matches as a whole word (case-insensitive).

    Patterns are anchored on word boundaries so that "hell" never fires inside "hello".
    """

    kind: str = "pattern"
    patterns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _compiled: dict[str, regex.Pattern[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for label, pats in self.patterns.items():
            joined = "|".join(f"(?:{p})" for p in pats)
            self._compiled[label] = regex.compile(
                rf"(?<!\w)(?:{joined})(?!\w)", regex.IGNORECASE | regex.VERSION0
            )

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [
            {label: 1.0 if self._compiled[label].search(t) else 0.0 for label in self.labels}
            for t in texts
        ]
