"""Banned phrases -> every token sequence a model could emit for them.

For each phrase the builder takes its surface forms (case variants, with and without a
leading space: mid-sentence words carry the space, text starts and words after punctuation
or a newline do not), and for each form both the tokenizer's own encoding and the bounded
set of alternative segmentations of its bytes (see ``segment``). vLLM's built-in
``bad_words`` registers at most two encodings per word and missed a phrase whose spaced and
unspaced forms had different lengths; this builder keeps them all.

Each sequence spells exactly a form, from a token boundary to a token boundary: a last token
that runs past the phrase (``"bo" + "mber"``) spells another word and is not banned, and a
first token that starts before it (``"xb" + "omb"``) is not either; the reactive text check
on the detokenised output covers those.

Trade-off to know: a bare (no leading space) one-token form such as ``"bomb"`` bans that
token everywhere, including inside longer words that the model would spell with it. Set
``bare=False`` to ban only the space-prefixed forms, and rely on the reactive text check for
phrases at the very start of a text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from tokenizers import Tokenizer

from checkstream.masking.segment import segmentations
from checkstream.masking.spelling import TokenSpelling, never_banned_ids, token_spelling

Case = Literal["as_is", "lower", "capitalized", "upper", "title"]


@dataclass(frozen=True)
class ExpansionOptions:
    """How far a phrase is expanded into token sequences."""

    cases: tuple[Case, ...] = ("as_is", "lower", "capitalized", "upper")
    #: the form preceded by a space (mid-sentence)
    leading_space: bool = True
    #: the form with no space before it (start of text, after punctuation or a newline)
    bare: bool = True
    #: alternative segmentations kept per surface form, fewest tokens first; 0 keeps only
    #: the tokenizer's own encoding (works with any tokenizer family)
    max_segmentations: int = 16
    #: overall cap per phrase, after the tokenizer's own encodings
    max_sequences_per_phrase: int = 256

    def __post_init__(self) -> None:
        if not self.cases:
            raise ValueError("ExpansionOptions.cases must name at least one case")
        if not (self.leading_space or self.bare):
            raise ValueError("ExpansionOptions needs leading_space or bare (or both)")
        if self.max_segmentations < 0 or self.max_sequences_per_phrase < 1:
            raise ValueError("max_segmentations must be >= 0 and max_sequences_per_phrase >= 1")


@dataclass(frozen=True)
class BannedSequences:
    """Token sequences to compile into a ``TokenMasker``, with where each came from."""

    sequences: tuple[tuple[int, ...], ...] = ()
    #: the phrase (or file entry) each sequence came from, parallel to ``sequences``
    sources: tuple[str, ...] = ()
    #: phrases whose caps cut off some segmentations (the reactive layer covers the rest)
    truncated: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.sequences)

    def merged(self, other: BannedSequences) -> BannedSequences:
        """Union with `other`; a sequence present in both keeps its first source."""
        seen = set(self.sequences)
        extra = [
            (q, s) for q, s in zip(other.sequences, other.sources, strict=True) if q not in seen
        ]
        return BannedSequences(
            self.sequences + tuple(q for q, _ in extra),
            self.sources + tuple(s for _, s in extra),
            self.truncated + tuple(t for t in other.truncated if t not in self.truncated),
        )


def surface_forms(phrase: str, options: ExpansionOptions) -> list[str]:
    """Distinct case and spacing variants of a phrase, the phrase itself first."""
    base = phrase.strip()
    cased = {
        "as_is": base,
        "lower": base.lower(),
        "capitalized": base[:1].upper() + base[1:],
        "upper": base.upper(),
        "title": base.title(),
    }
    out: list[str] = []
    for case in options.cases:
        text = cased[case]
        for form in ([" " + text] if options.leading_space else []) + (
            [text] if options.bare else []
        ):
            if form not in out:
                out.append(form)
    return out


def phrase_sequences(
    tokenizer: Tokenizer,
    phrases: Iterable[str],
    options: ExpansionOptions | None = None,
    spelling: TokenSpelling | None = None,
) -> BannedSequences:
    """Every token sequence (within the options' caps) that spells one of the phrases.

    `spelling` can be passed to reuse the per-tokenizer index across calls.
    """
    opts = options or ExpansionOptions()
    # A tokenizer.json may carry padding and truncation settings (sentence-embedding models
    # pad to 128 with [PAD]); a phrase's encoding must be its tokens only, so a copy
    # without them is used.
    tokenizer = unpadded(tokenizer)
    if opts.max_segmentations > 0 and spelling is None:
        spelling = token_spelling(tokenizer)
    special = spelling.special_ids if spelling is not None else never_banned_ids(tokenizer)
    sequences: list[tuple[int, ...]] = []
    sources: list[str] = []
    truncated: list[str] = []
    seen: set[tuple[int, ...]] = set()
    for index, phrase in enumerate(phrases):
        if not isinstance(phrase, str) or not phrase.strip():
            raise ValueError(f"banned phrase {index} is empty or not a string: {phrase!r}")
        own, alternatives, cut = _expand(tokenizer, phrase, opts, spelling, special)
        kept = list(dict.fromkeys(own + alternatives))
        if not kept:
            raise ValueError(f"banned phrase {index} ({phrase!r}) encodes to no tokens")
        if len(kept) > opts.max_sequences_per_phrase:
            kept, cut = kept[: opts.max_sequences_per_phrase], True
        if cut:
            truncated.append(phrase)
        for q in kept:
            if q not in seen:
                seen.add(q)
                sequences.append(q)
                sources.append(phrase)
    return BannedSequences(tuple(sequences), tuple(sources), tuple(truncated))


def unpadded(tokenizer: Tokenizer) -> Tokenizer:
    """`tokenizer` itself, or a copy with padding and truncation turned off."""
    if tokenizer.padding is None and tokenizer.truncation is None:
        return tokenizer
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def _expand(
    tokenizer: Tokenizer,
    phrase: str,
    opts: ExpansionOptions,
    spelling: TokenSpelling | None,
    special: frozenset[int],
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], bool]:
    """(tokenizer's own encodings, alternative segmentations, whether a cap cut some off)."""
    own: list[tuple[int, ...]] = []
    alternatives: list[tuple[int, ...]] = []
    cut = False
    for form in surface_forms(phrase, opts):
        ids = tuple(tokenizer.encode(form, add_special_tokens=False).ids)
        # An encoding through <unk> or other special tokens is not something to ban.
        if ids and not special.intersection(ids):
            own.append(ids)
        if spelling is not None:
            found = segmentations(
                spelling.target_bytes(tokenizer, form), spelling, opts.max_segmentations
            )
            alternatives.extend(found.sequences)
            cut = cut or found.truncated
    return own, alternatives, cut
