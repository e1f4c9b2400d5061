"""The sidecar's ``banned_tokens_file`` (``logit_masking.banned_tokens_file`` in the spec).

Format (JSON, UTF-8). Either an object::

    {
      "format": "checkstream.banned_tokens/1",   # optional; if present, must be this
      "vocab_size": 128256,                      # optional; checked against the tokenizer/masker
      "sequences": [[1234], [50, 60, 70], 999],  # token-id sequences; a bare id is one token
      "phrases": ["kill yourself", "bomb"]       # expanded with the served model's tokenizer
    }

or just a list mixing the two kinds of entry: ``[[50, 60], 999, "kill yourself"]``.

Token-id entries are banned exactly as written (tokenizer-specific, so pin ``vocab_size``);
phrases are expanded like policy phrases (case, spacing and alternative segmentations, see
``phrases``). Every problem is a ``ValueError`` naming the file and the entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from checkstream.masking.phrases import BannedSequences, ExpansionOptions, phrase_sequences

FORMAT = "checkstream.banned_tokens/1"


def parse_banned_tokens(
    data: Any,
    *,
    tokenizer: Tokenizer | None = None,
    options: ExpansionOptions | None = None,
    vocab_size: int | None = None,
    origin: str = "banned_tokens",
) -> BannedSequences:
    """Validates decoded JSON `data` and builds its sequences (see the module doc)."""
    entries: list[Any]
    declared_vocab: int | None = None
    if isinstance(data, list):
        entries = data
    elif isinstance(data, dict):
        unknown = set(data) - {"format", "vocab_size", "sequences", "phrases"}
        if unknown:
            raise ValueError(f"{origin}: unknown keys {sorted(unknown)}")
        if "format" in data and data["format"] != FORMAT:
            raise ValueError(f"{origin}: format is {data['format']!r}, expected {FORMAT!r}")
        if "vocab_size" in data:
            declared_vocab = data["vocab_size"]
            if not _is_int(declared_vocab) or declared_vocab <= 0:
                raise ValueError(f"{origin}: vocab_size must be a positive integer")
        seqs, phrases = data.get("sequences", []), data.get("phrases", [])
        for key, value in (("sequences", seqs), ("phrases", phrases)):
            if not isinstance(value, list):
                raise ValueError(f"{origin}: {key} must be a list")
        entries = [*seqs, *phrases]
        if any(isinstance(e, str) for e in seqs) or any(not isinstance(p, str) for p in phrases):
            raise ValueError(f"{origin}: sequences holds token ids and phrases holds strings")
    else:
        raise ValueError(f"{origin}: expected a JSON object or list, got {type(data).__name__}")

    limit = vocab_size if vocab_size is not None else declared_vocab
    if vocab_size is not None and declared_vocab is not None and declared_vocab != vocab_size:
        raise ValueError(
            f"{origin}: written for vocab_size {declared_vocab}, but the model has {vocab_size}"
        )
    if limit is None and tokenizer is not None:
        limit = tokenizer.get_vocab_size(with_added_tokens=True)

    ids: list[tuple[int, ...]] = []
    id_sources: list[str] = []
    phrases_in: list[str] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            phrases_in.append(entry)
            continue
        seq = [entry] if _is_int(entry) else entry
        if not isinstance(seq, list) or not seq or not all(_is_int(t) for t in seq):
            raise ValueError(
                f"{origin}: entry {i} must be a phrase, a token id or a non-empty list of "
                f"token ids, got {entry!r}"
            )
        bad = [t for t in seq if t < 0 or (limit is not None and t >= limit)]
        if bad:
            raise ValueError(
                f"{origin}: entry {i} has token id {bad[0]} outside 0..{limit if limit else '∞'}"
            )
        ids.append(tuple(seq))
        id_sources.append(f"{origin}[{i}]")
    result = BannedSequences(tuple(dict.fromkeys(ids)), tuple(_first_sources(ids, id_sources)))
    if phrases_in:
        if tokenizer is None:
            raise ValueError(f"{origin}: has phrases, which need the model's tokenizer")
        result = result.merged(phrase_sequences(tokenizer, phrases_in, options))
    if not result.sequences:
        raise ValueError(f"{origin}: holds no banned entries")
    return result


def load_banned_tokens(
    path: str | Path,
    *,
    tokenizer: Tokenizer | None = None,
    options: ExpansionOptions | None = None,
    vocab_size: int | None = None,
) -> BannedSequences:
    """Reads a ``banned_tokens_file``; see the module doc for the format."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not UTF-8 ({e.reason} at byte {e.start})") from e
    return parse_banned_tokens(
        data, tokenizer=tokenizer, options=options, vocab_size=vocab_size, origin=str(p)
    )


def _is_int(value: Any) -> bool:
    # JSON true/false decode to bool, a subclass of int: not a token id.
    return isinstance(value, int) and not isinstance(value, bool)


def _first_sources(ids: list[tuple[int, ...]], sources: list[str]) -> list[str]:
    first: dict[tuple[int, ...], str] = {}
    for q, s in zip(ids, sources, strict=True):
        first.setdefault(q, s)
    return list(first.values())
