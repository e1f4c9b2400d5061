"""Per-request ban lists (``checkstream_ban``) in the sidecar's engine-independent core, without
vLLM or torch: a real ``tokenizers`` BPE trained here, the real Rust maskers, numpy logits.

tests/sidecar/test_interfaces.py drives the same paths through vLLM's two runner interfaces and
tests/sidecar/test_engine.py and test_server.py through a real CPU engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from checkstream.masking import phrase_sequences
from checkstream.sidecar.bans import CompiledBans, compile_bans
from checkstream.sidecar.config import EngineOptions
from checkstream.sidecar.core import EventLog, GuardCore
from checkstream.sidecar.request_bans import RequestBanCompiler, ban_digest
from checkstream.sidecar.requests import RequestOptions

CORPUS = [
    "the cat sat on the mat and the bomb squad came to defuse the bomb",
    "a red fox ran past the green gate, kill switch engaged, then the red fox slept",
    "green tea and red wine; the gate closed. bomb squad, red fox, green gate.",
] * 40
CONFIGURED = "kill switch"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    t.train_from_iterator(CORPUS, trainer)
    return t


def options(**extra: Any) -> EngineOptions:
    raw: dict[str, Any] = {
        "requests": "opt_in",
        "guardrails": {"preventive": {"logit_masking": {"phrases": [CONFIGURED]}}},
    }
    raw.update(extra)
    return EngineOptions.model_validate(raw)


@pytest.fixture
def bans(tok: Tokenizer) -> CompiledBans:
    return compile_bans(options(), tok, tok.get_vocab_size())


def enc(tok: Tokenizer, text: str) -> list[int]:
    return list(tok.encode(text, add_special_tokens=False).ids)


def req(*phrases: str, **extra: Any) -> RequestOptions:
    args: dict[str, Any] = {"checkstream": "on", **extra}
    if phrases:
        args["checkstream_ban"] = list(phrases)
    return RequestOptions.parse(args)


def masked(core: GuardCore, slots: list[int], token: int, vocab: int) -> list[bool]:
    logits = np.zeros((len(slots), vocab), dtype=np.float32)
    core.apply(logits, np.asarray(slots, dtype=np.int64))
    return [bool(np.isneginf(logits[r, token])) for r in range(len(slots))]


def feed(core: GuardCore, slots: list[int], tokens: list[int]) -> None:
    core.feed(np.asarray(slots, dtype=np.int64), np.asarray(tokens, dtype=np.int64))


def test_request_phrases_compile_to_the_same_sequences_as_configured_ones(
    tok: Tokenizer, bans: CompiledBans
) -> None:
    vocab = tok.get_vocab_size()
    as_config = compile_bans(
        EngineOptions.model_validate(
            {"guardrails": {"preventive": {"logit_masking": {"phrases": ["red fox"]}}}}
        ),
        tok,
        vocab,
    )
    assert bans.requests is not None and as_config.ban_masker is not None
    compiled, cached = bans.requests.get(("red fox",))
    assert not cached and compiled.masker is not None
    expected = phrase_sequences(tok, ["red fox"]).sequences
    assert compiled.num_sequences == len(expected) == as_config.num_ban_sequences
    assert compiled.masker.num_sequences == as_config.ban_masker.num_sequences
    for seq in expected:
        # Every spelling: its prefix bans its last token in both maskers, identically.
        got = compiled.masker.banned_tokens(compiled.masker.walk(compiled.start, list(seq[:-1])))
        ref = as_config.ban_masker.banned_tokens(
            as_config.ban_masker.walk(as_config.ban_start, list(seq[:-1]))
        )
        assert seq[-1] in got and sorted(got) == sorted(ref)
    assert np.array_equal(compiled.last_tokens, as_config.last_tokens)


def test_only_the_request_that_carries_a_list_gets_it_on_top_of_the_configured_bans(
    tok: Tokenizer, bans: CompiledBans
) -> None:
    vocab = tok.get_vocab_size()
    core = GuardCore(options(), bans)
    fox_a, fox_b = enc(tok, " red fox")
    kill_a, kill_b = enc(tok, " kill switch")
    prompt = enc(tok, "the")
    assert core.admit(0, req("red fox"), 1.0, prompt)
    assert core.admit(1, req(), 1.0, prompt)
    assert core.admit(2, req("green gate"), 1.0, prompt)
    # Opt-in engine: a list alone opts the request in; without one, it stays unguarded.
    assert core.admit(3, RequestOptions.parse({"checkstream_ban": "red fox"}), 1.0, prompt)
    assert not core.admit(4, RequestOptions(), 1.0, prompt)
    feed(core, [0, 1, 2, 3, 4], [fox_a] * 5)
    assert masked(core, [0, 1, 2, 3, 4], fox_b, vocab) == [True, False, False, True, False]
    # The configured phrase stays banned for every guarded row, with or without a list.
    feed(core, [0, 1, 2, 3, 4], [kill_a] * 5)
    assert masked(core, [0, 1, 2, 3, 4], kill_b, vocab) == [True, True, True, True, False]
    # Rows not in slot order, several lists in one batch: pairs land on the right rows.
    green_a, green_b = enc(tok, " green gate")
    feed(core, [2, 0], [green_a, green_a])
    assert masked(core, [0, 2, 1], green_b, vocab) == [False, True, False]


def test_a_list_is_compiled_once_for_a_thousand_requests(
    tok: Tokenizer, bans: CompiledBans, tmp_path: Path
) -> None:
    compiler = bans.requests
    assert compiler is not None
    events = EventLog(str(tmp_path / "events.jsonl"))
    core = GuardCore(options(), bans, events=events)
    for i in range(1000):
        phrases = ["green gate", "red fox"] if i % 2 else ["red fox", " green gate", "red fox"]
        core.admit(i % 8, req(*phrases), 1.0, None)
    assert (compiler.misses, compiler.hits, len(compiler)) == (1, 999, 1)
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    noted = [e for e in lines if e["event"] == "request_bans"]
    assert len(noted) == 1000
    assert [e["cached"] for e in noted[:3]] == [False, True, True]
    digest = ban_digest(["green gate", "red fox"])
    assert {e["sha256"] for e in noted} == {digest}
    # A hash, never the phrases, unless the operator opted into full evidence.
    text = (tmp_path / "events.jsonl").read_text()
    assert "red fox" not in text and "green gate" not in text
    assert noted[0]["phrases"] == 2 and noted[0]["sequences"] > 2
    full = GuardCore(options(full_evidence=True), bans)
    full.admit(0, req("red fox"), 1.0, None)
    assert full.events.records[-1]["text"] == ["red fox"]


def test_the_cache_is_a_bounded_lru(tok: Tokenizer) -> None:
    compiler = RequestBanCompiler(tok, tok.get_vocab_size(), cache_size=2)
    a, _ = compiler.get(("red fox",))
    compiler.get(("green gate",))
    assert compiler.get(("red fox",))[1] is True  # a is now the most recent
    compiler.get(("bomb squad",))  # evicts green gate
    assert len(compiler) == 2
    assert compiler.get(("red fox",)) == (a, True)
    _, cached = compiler.get(("green gate",))
    assert cached is False and compiler.misses == 4
    with pytest.raises(ValueError, match="cache_size"):
        RequestBanCompiler(tok, 10, cache_size=0)


def test_state_travels_with_moves_and_swaps_and_a_recycled_slot_starts_clean(
    tok: Tokenizer, bans: CompiledBans
) -> None:
    vocab = tok.get_vocab_size()
    core = GuardCore(options(), bans)
    fox_a, fox_b = enc(tok, " red fox")
    core.admit(0, req("red fox"), 1.0, None)
    core.admit(1, req(), 1.0, None)
    feed(core, [0, 1], [fox_a, fox_a])
    core.swap(0, 1)
    assert masked(core, [0, 1], fox_b, vocab) == [False, True]
    core.move(1, 5)
    assert masked(core, [1, 5], fox_b, vocab) == [False, True]
    assert core.request_bans(1) is None and core.request_bans(5) is not None
    core.release(5)
    core.admit(5, req(), 1.0, None)
    feed(core, [5], [fox_a])
    assert masked(core, [5], fox_b, vocab) == [False]
    # History fed at once (admission prompt, catch-up) walks the request masker too.
    core.admit(6, req("red fox"), 1.0, enc(tok, "the cat sat on the mat and the red"))
    assert masked(core, [6], fox_b, vocab) == [True]
    core.resync(6, enc(tok, "the"), [])
    assert masked(core, [6], fox_b, vocab) == [False]


def test_unknown_history_fails_closed_on_the_request_list_too(
    tok: Tokenizer, bans: CompiledBans
) -> None:
    vocab = tok.get_vocab_size()
    core = GuardCore(options(), bans)
    core.admit(0, req("red fox"), 1.0, None)
    core.admit(1, req(), 1.0, None)
    feed(core, [0, 1], [-1, -1])  # async-scheduling placeholders
    logits = np.zeros((2, vocab), dtype=np.float32)
    core.apply(logits, np.array([0, 1], dtype=np.int64))
    own = core.request_bans(0)
    assert own is not None
    extra = np.setdiff1d(own.last_tokens, bans.last_tokens)
    assert len(extra) and np.isneginf(logits[0, extra]).all()
    assert not np.isneginf(logits[1, extra]).any()
    assert np.isneginf(logits[:, bans.last_tokens]).all()


def test_a_list_the_tokenizer_cannot_spell_fails_closed_for_that_request_only(
    tmp_path: Path,
) -> None:
    """A WordLevel vocabulary has no tokens for unknown words: the list cannot be compiled, so
    the request is ended (end-of-sequence) instead of running without its bans, and the engine
    loop goes on."""
    words = Tokenizer(models.WordLevel({"red": 0, "fox": 1, "[UNK]": 2, "</s>": 3}, "[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    bans = compile_bans(EngineOptions(), words, 4)
    core = GuardCore(EngineOptions(), bans)
    core.eos_ids = np.array([3], dtype=np.int64)
    assert core.admit(0, req("zebra crossing"), 1.0, None)
    assert core.admit(1, req("red fox"), 1.0, None)
    logits = np.zeros((2, 4), dtype=np.float32)
    core.apply(logits, np.array([0, 1], dtype=np.int64))
    assert np.isfinite(logits[0]).nonzero()[0].tolist() == [3]
    assert np.isfinite(logits[1]).all()
    error = next(e for e in core.events.records if e["event"] == "request_bans_error")
    assert error["sha256"] == ban_digest(["zebra crossing"]) and error["enforced"] is True
    assert "encodes to no tokens" in error["error"] and "zebra" not in json.dumps(error)


POLICY = r"""
name: request-bans-record
version: "1"
rules:
  - name: stop-gate
    phases: [midstream]
    trigger: {pattern: '\bgate\b'}
    actions: [stop]
"""


@pytest.mark.parametrize("full_evidence", [False, True])
def test_the_decision_record_notes_the_list_by_hash(
    tok: Tokenizer, tmp_path: Path, full_evidence: bool
) -> None:
    from checkstream.audit.export import iter_entries
    from checkstream.policy import load_policy_set
    from checkstream.sidecar.core import attach_reactive

    (tmp_path / "policy.yaml").write_text(POLICY)
    log_path = tmp_path / "decisions.jsonl"
    opts = options(
        decision_log=str(log_path),
        full_evidence=full_evidence,
        guardrails={"reactive": {"holdback_size": 1, "check_interval": 1}},
    )
    core = GuardCore(opts, compile_bans(opts, tok, tok.get_vocab_size()))
    attach_reactive(core, load_policy_set([tmp_path / "policy.yaml"]), [1], "tiny")
    assert core.reactive is not None and core.reactive.log is not None
    core.admit(0, req("red fox", "bomb squad", checkstream_tag="with-list"), 1.0, None)
    core.admit(1, req(checkstream_tag="without"), 1.0, None)
    for t in enc(tok, " the green gate"):
        feed(core, [0, 1], [t, t])
    core.swap(0, 1)  # the note travels with its request
    core.release(0)
    core.release(1)
    core.reactive.log.close()
    records = {e["record"]["request_id"]: e["record"] for _, e in iter_entries([log_path])}
    assert set(records) == {"with-list", "without"}
    assert records["with-list"]["decision"] == "stop"
    note = records["with-list"]["request_bans"]
    assert note["sha256"] == ban_digest(["bomb squad", "red fox"]) and note["phrases"] == 2
    assert "request_bans" not in records["without"]
    raw = log_path.read_text()
    if full_evidence:
        assert note["text"] == ["bomb squad", "red fox"]
        assert records["with-list"]["output"].endswith("green gate")
    else:
        assert "text" not in note and "red fox" not in raw and "bomb squad" not in raw
        assert "output" not in records["with-list"]


def test_a_listed_phrase_that_reaches_the_text_stops_that_request_only(
    tok: Tokenizer, tmp_path: Path
) -> None:
    """A spelling the masker does not cover (here: tokens fed straight in, as a sampler would
    after an uncovered segmentation) is still caught on the detokenised text by the reactive
    layer, for the request that banned it; the same text in a request without the list
    passes. The stop is recorded under the list's own rule."""
    from checkstream.audit.export import iter_entries
    from checkstream.policy import load_policy_set
    from checkstream.sidecar.core import attach_reactive
    from checkstream.sidecar.request_bans import REQUEST_BAN_RULE

    (tmp_path / "policy.yaml").write_text(POLICY)
    log_path = tmp_path / "decisions.jsonl"
    opts = options(
        decision_log=str(log_path),
        guardrails={"reactive": {"holdback_size": 1, "check_interval": 1}},
    )
    core = GuardCore(opts, compile_bans(opts, tok, tok.get_vocab_size()))
    attach_reactive(core, load_policy_set([tmp_path / "policy.yaml"]), [1], "tiny")
    assert core.reactive is not None and core.reactive.log is not None
    core.admit(0, req("red fox", checkstream_tag="with-list"), 1.0, None)
    core.admit(1, req(checkstream_tag="without"), 1.0, None)
    # Character by character: a segmentation no bounded expansion of "red fox" produces.
    spelled = [t for ch in " the r3d fox ran" for t in enc(tok, ch)]
    for t in spelled:
        feed(core, [0, 1], [t, t])
    assert bool(core.stop[0]) and not bool(core.stop[1])
    core.release(0)
    core.release(1)
    core.reactive.log.close()
    records = {e["record"]["request_id"]: e["record"] for _, e in iter_entries([log_path])}
    assert records["with-list"]["decision"] == "stop"
    assert REQUEST_BAN_RULE in json.dumps(records["with-list"])
    assert records["without"]["decision"] != "stop"
