"""Classifiers: PII recognizers, ONNX text models, the registry that names them, batching.

The PII functions are pure Python and cheap to import; the registry and the ONNX runtime live in
their own modules (``checkstream.classifiers.registry``).
"""

from __future__ import annotations

from checkstream.classifiers.pii import (
    PII_ENTITY_TYPES,
    PiiMatch,
    find_pii,
    pii_hold_from,
    redact_pii,
)

__all__ = [
    "PII_ENTITY_TYPES",
    "PiiMatch",
    "find_pii",
    "pii_hold_from",
    "redact_pii",
]
