"""The sidecar's banned_tokens file: both JSON shapes, phrases through a real tokenizer, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from checkstream.masking import (
    FORMAT,
    ExpansionOptions,
    compile_masker,
    load_banned_tokens,
    parse_banned_tokens,
    phrase_sequences,
)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["the bomb squad came to the bomb site, kill switch"] * 30, trainer)
    return tok


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "banned_tokens.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_object_format_with_ids_and_phrases(tmp_path: Path, tokenizer: Tokenizer) -> None:
    vocab = tokenizer.get_vocab_size()
    path = write(
        tmp_path,
        {
            "format": FORMAT,
            "vocab_size": vocab,
            "sequences": [[5, 6], 7, [5, 6]],
            "phrases": ["bomb"],
        },
    )
    opts = ExpansionOptions(max_segmentations=4)
    banned = load_banned_tokens(path, tokenizer=tokenizer, options=opts, vocab_size=vocab)
    assert banned.sequences[:2] == ((5, 6), (7,))
    assert banned.sources[:2] == (f"{path}[0]", f"{path}[1]")
    expected_phrase = phrase_sequences(tokenizer, ["bomb"], opts).sequences
    assert set(banned.sequences[2:]) == set(expected_phrase) - {(5, 6), (7,)}
    masker = compile_masker(banned, vocab)
    assert masker.num_sequences == len(banned)
    assert 7 in masker.global_banned().tolist()
    assert masker.banned_tokens(masker.walk(0, [5, 6, 5])) == sorted(
        {6, 7} | set(masker.global_banned().tolist())
    )


def test_list_format_mixes_ids_and_phrases(tokenizer: Tokenizer) -> None:
    banned = parse_banned_tokens([[1, 2], "kill switch", 3], tokenizer=tokenizer)
    assert banned.sequences[:2] == ((1, 2), (3,))
    assert "kill switch" in banned.sources
    ids_only = parse_banned_tokens([9, [4, 4]], vocab_size=10)
    assert ids_only.sequences == ((9,), (4, 4))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sequences": [[1, -2]]}, "entry 0 has token id -2"),
        ({"sequences": [[1], [2, 99]], "vocab_size": 50}, "entry 1 has token id 99 outside 0..50"),
        ([[1, True]], "entry 0 must be a phrase, a token id or a non-empty list"),
        ([[]], "entry 0 must be"),
        ([1.5], "entry 0 must be"),
        ({"sequences": ["bomb"]}, "sequences holds token ids and phrases holds strings"),
        ({"phrases": [[1]]}, "sequences holds token ids and phrases holds strings"),
        ({"sequences": 5}, "sequences must be a list"),
        ({"format": "other/2", "sequences": [[1]]}, "format is 'other/2'"),
        ({"sequence": [[1]]}, "unknown keys \\['sequence'\\]"),
        ({"vocab_size": -3, "sequences": [[1]]}, "vocab_size must be a positive integer"),
        ({"sequences": []}, "holds no banned entries"),
        ("bomb", "expected a JSON object or list, got str"),
        (["bomb"], "has phrases, which need the model's tokenizer"),
    ],
)
def test_bad_content_is_a_precise_error(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_banned_tokens(data, origin="banned.json")


def test_declared_vocab_must_match_the_model(tmp_path: Path) -> None:
    path = write(tmp_path, {"vocab_size": 1000, "sequences": [[1]]})
    with pytest.raises(ValueError, match="written for vocab_size 1000, but the model has 2000"):
        load_banned_tokens(path, vocab_size=2000)


def test_file_level_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"sequences": [[1, 2],\n  [3,]}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.json: invalid JSON at line 2, column"):
        load_banned_tokens(path)
    path.write_bytes(b'["\xff"]')
    with pytest.raises(ValueError, match="not UTF-8"):
        load_banned_tokens(path)
    with pytest.raises(FileNotFoundError):
        load_banned_tokens(tmp_path / "missing.json")
