"""Phrase -> token sequences with real `tokenizers` tokenizers trained here (no hub access)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from checkstream.masking import (
    ExpansionOptions,
    compile_masker,
    phrase_sequences,
    segmentations,
    surface_forms,
    token_spelling,
)

CORPUS = [
    "the cat sat on the mat and the bomb squad came to defuse the bomb",
    "Bombs are loud. A bomber flew over. Kill the process, then kill the cat's toy.",
    "THE END. Killing time is fine; killjoy is a word. bombastic speech!",
    "a naive plan, naively made",
] * 40


def byte_level_bpe(vocab: int = 400) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def metaspace_bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Sequence([decoders.Metaspace(), decoders.ByteFallback()])
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"])
    tok.train_from_iterator(CORPUS, trainer)
    # SentencePiece models keep the 256 byte-fallback pieces in the model's own vocabulary.
    config = json.loads(tok.to_str())
    vocab = config["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    return Tokenizer.from_str(json.dumps(config))


def wordpiece_uncased() -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[UNK]", "[CLS]", "[PAD]"])
    tok.train_from_iterator(CORPUS, trainer)
    # Sentence-embedding tokenizer.json files ship like this (all-MiniLM-L6-v2 pads to 128).
    tok.enable_padding(length=32, pad_token="[PAD]", pad_id=tok.token_to_id("[PAD]"))
    tok.enable_truncation(max_length=32)
    return tok


BYTE_BPE = byte_level_bpe()


def test_surface_forms_cover_case_and_spacing() -> None:
    forms = surface_forms("  kill the cat ", ExpansionOptions(cases=("as_is", "upper", "title")))
    assert forms == [
        " kill the cat",
        "kill the cat",
        " KILL THE CAT",
        "KILL THE CAT",
        " Kill The Cat",
        "Kill The Cat",
    ]
    assert surface_forms("Bomb", ExpansionOptions(bare=False, cases=("lower", "as_is"))) == [
        " bomb",
        " Bomb",
    ]


def test_byte_level_sequences_spell_the_forms_and_include_the_tokenizers_own() -> None:
    opts = ExpansionOptions(max_segmentations=8)
    banned = phrase_sequences(BYTE_BPE, ["bomb", "kill the cat"], opts)
    forms = {p: set(surface_forms(p, opts)) for p in ("bomb", "kill the cat")}
    for seq, source in zip(banned.sequences, banned.sources, strict=True):
        assert BYTE_BPE.decode(list(seq)) in forms[source]
    for phrase, variants in forms.items():
        for form in variants:
            own = tuple(BYTE_BPE.encode(form, add_special_tokens=False).ids)
            assert own in banned.sequences, (phrase, form)
    # Alternative splits beyond the tokenizer's own: " bomb" as " " + "bomb", etc.
    bomb = [q for q, s in zip(banned.sequences, banned.sources, strict=True) if s == "bomb"]
    assert len(bomb) > len(forms["bomb"])
    assert len(set(banned.sequences)) == len(banned.sequences)
    assert "kill the cat" in banned.truncated  # 8 per form is far below all its byte splits


def brute_segmentations(
    target: bytes, by_bytes: dict[bytes, tuple[int, ...]]
) -> set[tuple[int, ...]]:
    if not target:
        return {()}
    out: set[tuple[int, ...]] = set()
    for j in range(1, len(target) + 1):
        for idx in by_bytes.get(target[:j], ()):
            out |= {(idx, *rest) for rest in brute_segmentations(target[j:], by_bytes)}
    return out


@pytest.mark.parametrize("text", [" bomb", "Kill", " the cat", "é!"])
def test_segmentations_are_exactly_all_splits_fewest_tokens_first(text: str) -> None:
    spelling = token_spelling(BYTE_BPE)
    target = text.encode()
    expected = brute_segmentations(target, spelling.by_bytes)
    found = segmentations(target, spelling, limit=10_000)
    assert set(found.sequences) == expected
    assert found.total == len(expected) and not found.truncated
    lengths = [len(q) for q in found.sequences]
    assert lengths == sorted(lengths)
    capped = segmentations(target, spelling, limit=3)
    assert capped.sequences == found.sequences[:3] or len(expected) <= 3
    assert capped.truncated == (len(expected) > 3)


def test_metaspace_with_byte_fallback() -> None:
    tok = metaspace_bpe()
    spelling = token_spelling(tok)
    assert spelling.family == "metaspace"
    assert spelling.by_bytes[b"\xc3"]  # <0xC3> spells one raw byte
    opts = ExpansionOptions(max_segmentations=6)
    banned = phrase_sequences(tok, ["bomb squad"], opts)
    forms = {f.strip() for f in surface_forms("bomb squad", opts)}
    for seq in banned.sequences:
        assert tok.decode(list(seq)).strip() in forms
    assert tuple(tok.encode(" bomb squad", add_special_tokens=False).ids) in banned.sequences
    # A phrase with a character the vocabulary lacks is still spelled, through byte fallback.
    odd = phrase_sequences(tok, ["bömb"], ExpansionOptions(max_segmentations=4, cases=("as_is",)))
    assert any(tok.decode(list(q)).strip() == "bömb" for q in odd.sequences)


def test_wordpiece_spells_word_starts_and_continuations() -> None:
    tok = wordpiece_uncased()
    spelling = token_spelling(tok)
    assert spelling.family == "wordpiece"
    special = {tok.token_to_id("[UNK]"), tok.token_to_id("[CLS]")}
    assert special.isdisjoint(i for ids in spelling.by_bytes.values() for i in ids)
    banned = phrase_sequences(tok, ["Kill the cat!"], ExpansionOptions(max_segmentations=8))
    assert banned.sequences
    for seq in banned.sequences:
        # An uncased vocabulary can only spell the lower-case form ("!" is its own word,
        # which the decoder glues back).
        assert tok.decode(list(seq)) == "kill the cat!"
        assert not special.intersection(seq)
    tok.no_padding()
    assert tuple(tok.encode("kill the cat!", add_special_tokens=False).ids) in banned.sequences


def test_wordpiece_phrases_are_normalised_like_the_vocabulary() -> None:
    """BERT-style vocabularies hold lower-cased, accent-stripped words; padding settings in
    the tokenizer must not leak [PAD] into sequences, nor be changed on the caller's object."""
    tok = wordpiece_uncased()
    banned = phrase_sequences(tok, ["Naïve"], ExpansionOptions(max_segmentations=4))
    assert banned.sequences
    assert {tok.decode(list(q)) for q in banned.sequences} == {"naive"}
    pad = tok.token_to_id("[PAD]")
    assert all(pad not in q for q in banned.sequences)
    own_only = phrase_sequences(tok, ["kill the cat"], ExpansionOptions(max_segmentations=0))
    assert own_only.sequences == (
        (tok.token_to_id("kill"), tok.token_to_id("the"), tok.token_to_id("cat")),
    )
    assert tok.padding is not None and tok.truncation is not None


def test_unknown_tokenizer_family_is_an_error_unless_only_own_encodings() -> None:
    tok = Tokenizer(models.WordLevel({"bomb": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # WordLevel is understood ...
    assert phrase_sequences(tok, ["bomb"]).sequences == ((0,),)
    bpe = Tokenizer(models.BPE())
    bpe.add_tokens(["bomb"])
    with pytest.raises(ValueError, match="cannot tell how tokens of this tokenizer spell"):
        phrase_sequences(bpe, ["bomb"])
    assert phrase_sequences(bpe, ["bomb"], ExpansionOptions(max_segmentations=0)).sequences


def test_bad_phrases_and_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="banned phrase 1 is empty"):
        phrase_sequences(BYTE_BPE, ["bomb", "  "])
    with pytest.raises(ValueError, match="cases"):
        ExpansionOptions(cases=())
    with pytest.raises(ValueError, match="leading_space or bare"):
        ExpansionOptions(leading_space=False, bare=False)
    with pytest.raises(ValueError, match="max_segmentations"):
        ExpansionOptions(max_segmentations=-1)


def boundary_occurrence(tokens: list[int], forms: list[bytes], spell: dict[int, bytes]) -> bool:
    """Whether a form occurs in the decoded bytes starting and ending at token boundaries
    (a token running past the phrase, "bo" + "mber", spells another word)."""
    text = b"".join(spell[t] for t in tokens)
    cuts = set(itertools.accumulate((len(spell[t]) for t in tokens), initial=0))
    return any(text.startswith(f, s) and s + len(f) in cuts for f in forms for s in cuts)


def adversarial_streams(phrase: str, seed: int, masked: bool) -> tuple[list[list[int]], bool]:
    """Samples 8 rows x 40 tokens with a strong push towards spelling `phrase`'s forms.

    Returns the streams and whether any form occurs between token boundaries."""
    spelling = token_spelling(BYTE_BPE)
    spell = {i: b for b, ids in spelling.by_bytes.items() for i in ids}
    opts = ExpansionOptions(cases=("lower", "capitalized"), max_segmentations=100_000)
    banned = phrase_sequences(BYTE_BPE, [phrase], opts)
    assert not banned.truncated  # exhaustive here, so the guarantee is exact
    forms = [f.encode() for f in surface_forms(phrase, opts)]
    vocab = BYTE_BPE.get_vocab_size()
    masker = compile_masker(banned, vocab)
    rng = np.random.default_rng(seed)
    boost = np.zeros(vocab, dtype=np.float32)
    for i, b in spell.items():
        if any(b in f for f in forms):
            boost[i] = 6.0
    rows = 8
    states = np.zeros(rows, dtype=np.uint32)
    streams: list[list[int]] = [[] for _ in range(rows)]
    for _ in range(40):
        logits = rng.normal(size=(rows, vocab)).astype(np.float32) + boost
        logits[:, [0, 1]] = -np.inf  # special tokens
        if masked:
            masker.apply(states, logits)
        noise = rng.gumbel(size=logits.shape).astype(np.float32)
        choice = (logits + noise).argmax(axis=1).astype(np.int64)
        masker.advance(states, choice)
        for r in range(rows):
            streams[r].append(int(choice[r]))
    return streams, any(boundary_occurrence(s, forms, spell) for s in streams)


@pytest.mark.parametrize("phrase", ["bomb", "kill the", "cat"])
def test_adversary_spells_the_phrase_without_the_mask(phrase: str) -> None:
    assert any(adversarial_streams(phrase, seed, masked=False)[1] for seed in range(5))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["bomb", "kill the", "cat"]))
def test_adversarial_sampler_never_spells_a_banned_phrase(seed: int, phrase: str) -> None:
    """The same sampler, masked by the TokenMasker built from all the phrase's segmentations,
    never spells any of its forms between token boundaries."""
    _, spelled = adversarial_streams(phrase, seed, masked=True)
    assert not spelled
