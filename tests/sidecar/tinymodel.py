"""A tiny random Llama and its byte-level BPE tokenizer, built locally (no hub).

Shapes follow the vLLM CPU backend's constraints: head_dim must be one of its supported sizes
(2 heads x 32). ``lm_head`` is scaled so that next-token distributions are peaked; otherwise
all logits sit ~1e-3 apart and a "greedy after the trigger" comparison is decided by noise.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ru",
    "te",
    "va",
    "zo",
    "ne",
    "pi",
    "sa",
    "do",
    "fe",
    "gu",
    "ha",
    "ji",
    "bo",
    "xi",
    "qu",
    "we",
    "yo",
    "ri",
    "su",
    "ta",
    "ce",
    "mo",
]
STARTERS = ["so", "then", "and"]
WORDS = [
    "send",
    "email",
    "tool",
    "ops",
    "example",
    "com",
    "name",
    "to",
    "body",
    "ignore",
    "previous",
    "instructions",
    "the",
    "and",
    "risk",
    "safe",
    "bank",
    "loan",
    "guarantee",
    "returns",
]


def corpus(lines: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(300)]
    vocab += WORDS
    out = []
    for i in range(lines):
        # Lines open with a few fixed words only, so most words exist as one token only with
        # their leading space (the case vLLM's bad_words handles badly).
        words = [rng.choice(STARTERS)] + [rng.choice(vocab) for _ in range(rng.randint(4, 14))]
        line = " ".join(words)
        if i % 10 == 0:
            to = f"{rng.choice(vocab)}@{rng.choice(vocab)}.com"
            line = f'{{"tool": "send_email", "to": "{to}", "body": "{line}"}}'
        out.append(line)
    return out


@dataclass(frozen=True)
class TinyModel:
    path: Path
    vocab_size: int


def build_tiny_model(path: Path, vocab_size: int = 1024, seed: int = 0) -> TinyModel:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(1500, seed), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )
    fast.save_pretrained(str(path))
    vocab = tok.get_vocab_size()
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(15.0)
    model.save_pretrained(str(path), safe_serialization=True)
    return TinyModel(path, vocab)


@dataclass(frozen=True)
class Picks:
    """Phrases chosen from the tokenizer for the tests (see ``pick_phrases``)."""

    ban_phrase: str  # two words; " a b" is [a, b] but "a b" encodes to a different length
    ban_ids: tuple[int, int]
    risk_phrase: str
    risk_id: int
    # two words banned by no configuration, only by the requests that carry them
    # (``checkstream_ban``); " c d" is [c, d]
    own_phrase: str
    own_ids: tuple[int, int]


def _word_tokens(tok: object) -> list[tuple[int, str]]:
    vocab = tok.get_vocab()  # type: ignore[attr-defined]
    out = []
    for piece, idx in vocab.items():
        if piece.startswith("\u0120") and piece[1:].isalpha() and len(piece) >= 4:
            out.append((idx, piece[1:]))
    return sorted(out)


def pick_phrases(tokenizer_json: Path) -> Picks:
    """A two-word phrase that vLLM's ``bad_words`` cannot fully register (A.7 of the notes),
    a one-word risk phrase distinct from it, and a third two-word phrase of other words."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    words = _word_tokens(tok)

    def enc(text: str) -> list[int]:
        return list(tok.encode(text, add_special_tokens=False).ids)

    for ia, wa in words:
        for ib, wb in words:
            if ia == ib or wa in WORDS or wb in WORDS:
                continue
            phrase = f"{wa} {wb}"
            if enc(" " + phrase) == [ia, ib] and len(enc(phrase)) != 2:
                for ir, wr in words:
                    if ir not in (ia, ib) and wr not in (wa, wb) and wr not in WORDS:
                        own = _own_phrase(words, enc, {wa, wb, wr})
                        return Picks(phrase, (ia, ib), wr, ir, *own)
    raise AssertionError("no suitable phrase in the tiny tokenizer")


def _own_phrase(
    words: list[tuple[int, str]], enc: Callable[[str], list[int]], taken: set[str]
) -> tuple[str, tuple[int, int]]:
    free = [(i, w) for i, w in words if w not in WORDS and w not in taken and len(w) >= 4]
    for ic, wc in free[len(free) // 2 :]:
        for id_, wd in free[len(free) // 3 :]:
            # Neither word inside the others (a text check must not match them by accident).
            if ic == id_ or any(wc in t or t in wc or wd in t or t in wd for t in taken):
                continue
            if enc(f" {wc} {wd}") == [ic, id_]:
                return f"{wc} {wd}", (ic, id_)
    raise AssertionError("no third phrase in the tiny tokenizer")
