"""Token-level masking: banned phrases -> token sequences -> ``TokenMasker`` -> logits.

- ``phrase_sequences`` expands phrases with the served model's ``tokenizers.Tokenizer``
  (case and spacing variants, the tokenizer's own encodings, alternative segmentations);
- ``load_banned_tokens`` reads the sidecar's ``banned_tokens_file`` (format in
  ``banned_file``);
- ``compile_masker`` builds the Rust ``TokenMasker`` from either;
- ``apply_pairs`` / ``apply_columns`` / ``apply_flat`` write a step's bans into numpy or
  torch logits, one write each (see ``device`` for which is fastest where).
"""

from __future__ import annotations

from checkstream._core import TokenMasker
from checkstream.masking.banned_file import FORMAT, load_banned_tokens, parse_banned_tokens
from checkstream.masking.device import apply_columns, apply_flat, apply_pairs, pairs_to_device
from checkstream.masking.phrases import (
    BannedSequences,
    ExpansionOptions,
    phrase_sequences,
    surface_forms,
)
from checkstream.masking.segment import Segmentations, segmentations
from checkstream.masking.spelling import TokenSpelling, token_spelling


def compile_masker(banned: BannedSequences, vocab_size: int) -> TokenMasker:
    """A ``TokenMasker`` over `banned`; `vocab_size` is the logits width of the model."""
    return TokenMasker([list(q) for q in banned.sequences], vocab_size)


__all__ = [
    "FORMAT",
    "BannedSequences",
    "ExpansionOptions",
    "Segmentations",
    "TokenMasker",
    "TokenSpelling",
    "apply_columns",
    "apply_flat",
    "apply_pairs",
    "compile_masker",
    "load_banned_tokens",
    "pairs_to_device",
    "parse_banned_tokens",
    "phrase_sequences",
    "segmentations",
    "surface_forms",
    "token_spelling",
]
