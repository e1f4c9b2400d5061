"""Fast PII and secret recognizers: regex candidates confirmed by checksums and ``phonenumbers``."""

from checkstream.classifiers.pii.recognizers import PII_ENTITY_TYPES, PiiMatch, placeholder_for
from checkstream.classifiers.pii.scan import find_pii, pii_hold_from, redact_pii

__all__ = [
    "PII_ENTITY_TYPES",
    "PiiMatch",
    "find_pii",
    "pii_hold_from",
    "placeholder_for",
    "redact_pii",
]
