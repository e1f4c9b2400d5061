"""Classifiers: PII recognizers, ONNX text models, the registry that names them, batching.

The PII functions are pure Python and imported eagerly; the registry and the ONNX runtime are
imported on first use, so ``from checkstream.classifiers import find_pii`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from checkstream.classifiers.pii import (
    PII_ENTITY_TYPES,
    PiiMatch,
    find_pii,
    pii_hold_from,
    redact_pii,
)

if TYPE_CHECKING:
    from checkstream.classifiers.base import Classifier, ClassifierError, ScoreResult
    from checkstream.classifiers.registry import ClassifierRegistry, load_registry

_LAZY = {
    "Classifier": "checkstream.classifiers.base",
    "ClassifierError": "checkstream.classifiers.base",
    "ScoreResult": "checkstream.classifiers.base",
    "ClassifierRegistry": "checkstream.classifiers.registry",
    "load_registry": "checkstream.classifiers.registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'checkstream.classifiers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "PII_ENTITY_TYPES",
    "Classifier",
    "ClassifierError",
    "ClassifierRegistry",
    "PiiMatch",
    "ScoreResult",
    "find_pii",
    "load_registry",
    "pii_hold_from",
    "redact_pii",
]
