"""What each token id spells, as bytes, when a model emits it.

Alternative segmentations of a phrase are searched over bytes, so every token needs its
byte spelling in running text. That depends on the tokenizer family, read from the
tokenizer's own JSON description (``Tokenizer.to_str()``):

- byte-level BPE (GPT-2, Llama 3, Qwen, ...): token strings use the GPT-2 byte-to-unicode
  alphabet (``Ġ`` is a space); each character maps back to one byte;
- Metaspace / SentencePiece (Llama 2, Mistral, T5, ...): ``▁`` stands for a space, and
  byte-fallback tokens ``<0xNN>`` spell one raw byte;
- WordPiece (BERT, MiniLM) and WordLevel: a word-initial token is spelled with the space
  that decoding puts before it (``" kill"``), a continuation (``##er``) without (``"er"``);
  callers then spell the phrase the same way (see ``target_bytes``).

Special tokens are left out: the phrase builder never bans a sequence through them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tokenizers import Tokenizer

Family = Literal["byte_level", "metaspace", "wordpiece", "wordlevel"]

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's reversible byte <-> printable-character table, character -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


@dataclass(frozen=True)
class TokenSpelling:
    """Byte spellings of a tokenizer's (non-special) tokens, indexed for segmentation."""

    family: Family
    #: byte string -> ids of every token that spells exactly it (usually one)
    by_bytes: dict[bytes, tuple[int, ...]]
    #: longest spelling, in bytes, bounding the segmentation search
    max_len: int
    #: ids of special tokens and the unknown token (never part of a banned sequence)
    special_ids: frozenset[int]

    def target_bytes(self, tokenizer: Tokenizer, surface: str) -> bytes:
        """The bytes a token sequence must spell to produce `surface` in running text."""
        if self.family in ("wordpiece", "wordlevel"):
            # Word-level vocabularies hold normalised words (BERT: lower-cased, accents
            # stripped), so the phrase is normalised the same way before it is spelled.
            if tokenizer.normalizer is not None:
                surface = tokenizer.normalizer.normalize_str(surface)
            pre = tokenizer.pre_tokenizer
            words = (
                [w for w, _ in pre.pre_tokenize_str(surface)]
                if pre is not None
                else surface.split()
            )
            return "".join(" " + w for w in words).encode("utf-8")
        return surface.encode("utf-8")


def _types(component: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """A pipeline component and, for ``Sequence`` components, all its members."""
    if not component:
        return
    yield component
    for key in ("decoders", "pretokenizers", "normalizers"):
        for child in component.get(key) or []:
            yield from _types(child)


def detect_family(config: dict[str, Any]) -> tuple[Family, str]:
    """Tokenizer family and its marker (space replacement or continuation prefix)."""
    model = config.get("model") or {}
    parts = [*_types(config.get("decoder")), *_types(config.get("pre_tokenizer"))]
    kinds = {p.get("type") for p in parts}
    if "ByteLevel" in kinds:
        return "byte_level", ""
    if model.get("type") == "WordPiece" or "WordPiece" in kinds:
        return "wordpiece", model.get("continuing_subword_prefix") or "##"
    for p in parts:
        if p.get("type") == "Metaspace":
            return "metaspace", p.get("replacement") or "▁"
    for p in [*parts, *_types(config.get("normalizer"))]:
        pattern = p.get("pattern") or {}
        if p.get("type") == "Replace" and "▁" in (pattern.get("String") or "", p.get("content")):
            return "metaspace", "▁"
    if model.get("type") == "WordLevel":
        return "wordlevel", ""
    raise ValueError(
        f"cannot tell how tokens of this tokenizer spell text (model {model.get('type')!r}, "
        f"decoder/pre-tokenizer types {sorted(str(k) for k in kinds)}); alternative "
        "segmentations need byte-level, Metaspace/SentencePiece, WordPiece or WordLevel"
    )


def never_banned_ids(tokenizer: Tokenizer, config: dict[str, Any] | None = None) -> frozenset[int]:
    """Special tokens and the model's unknown token: never part of a banned sequence (an
    encoding through ``<unk>`` says the vocabulary cannot spell the text, not what to ban)."""
    config = config if config is not None else json.loads(tokenizer.to_str())
    ids = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    unk = (config.get("model") or {}).get("unk_token")
    unk_id = tokenizer.token_to_id(unk) if isinstance(unk, str) else None
    if unk_id is not None:
        ids.add(unk_id)
    return frozenset(ids)


def token_spelling(tokenizer: Tokenizer) -> TokenSpelling:
    """Reads the tokenizer's family and spells every non-special token in bytes."""
    config = json.loads(tokenizer.to_str())
    family, marker = detect_family(config)
    added = tokenizer.get_added_tokens_decoder()
    special = never_banned_ids(tokenizer, config)
    alphabet = byte_level_alphabet() if family == "byte_level" else {}

    def spell(token: str, is_added: bool) -> bytes | None:
        if family == "metaspace" and (fallback := _BYTE_FALLBACK.fullmatch(token)):
            return bytes([int(fallback.group(1), 16)])
        if is_added:
            raw = token.encode("utf-8")
            return b" " + raw if family in ("wordpiece", "wordlevel") else raw
        if family == "byte_level":
            try:
                return bytes(alphabet[c] for c in token)
            except KeyError:
                return None  # not a byte-level token (malformed vocabulary entry)
        if family == "metaspace":
            return token.replace(marker, " ").encode("utf-8")
        if family == "wordpiece" and token.startswith(marker):
            return token[len(marker) :].encode("utf-8")
        return b" " + token.encode("utf-8")

    by_bytes: dict[bytes, list[int]] = {}
    for token, idx in tokenizer.get_vocab(with_added_tokens=True).items():
        if idx in special:
            continue
        spelled = spell(token, idx in added)
        if spelled:
            by_bytes.setdefault(spelled, []).append(idx)
    return TokenSpelling(
        family=family,
        by_bytes={b: tuple(sorted(ids)) for b, ids in by_bytes.items()},
        max_len=max((len(b) for b in by_bytes), default=0),
        special_ids=special,
    )
