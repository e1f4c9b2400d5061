"""Real generation on the CPU engine (V1 runner) with checkstream loaded from its entry point.

Hundreds of sampled generations per check, opted-in and opted-out requests in the same batch.
The banned bigram and the risk word are made frequent with ``logit_bias`` so that the
opted-out requests show what the guard prevents.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from conftest import ALLOWED_RECIPIENT, Engine, ban_sequences, occurrences

N = 200
TOKENS = 32


def prompts(n: int) -> list[str]:
    words = ["kalo", "mite", "vasu", "rone", "pido", "fega", "hujo", "bori"]
    return [" ".join(words[(i + j) % len(words)] for j in range(1 + i % 5)) for i in range(n)]


def count_bigram(ids: list[int], a: int, b: int) -> int:
    return sum(1 for x, y in pairwise(ids) if x == a and y == b)


def params(**kw: Any) -> Any:
    from vllm import SamplingParams

    base: dict[str, Any] = {"temperature": 1.0, "max_tokens": TOKENS, "ignore_eos": True}
    base.update(kw)
    return SamplingParams(**base)


def test_banned_phrase_never_generated_when_opted_in_while_opted_out_rows_produce_it(
    engine: Engine,
) -> None:
    a, b = engine.picks.ban_ids
    phrase = engine.picks.ban_phrase
    bias = {a: 5.0, b: 7.0}
    reqs = [
        params(seed=i, logit_bias=bias, extra_args={"checkstream": "on" if i % 2 else "off"})
        for i in range(N)
    ]
    outs = engine.llm.generate(prompts(N), reqs, use_tqdm=False)
    guarded = [o.outputs[0] for i, o in enumerate(outs) if i % 2]
    free = [o.outputs[0] for i, o in enumerate(outs) if not i % 2]
    assert sum(len(o.token_ids) for o in guarded) == (N // 2) * TOKENS
    guarded_hits = sum(count_bigram(list(o.token_ids), a, b) for o in guarded)
    free_hits = sum(count_bigram(list(o.token_ids), a, b) for o in free)
    assert guarded_hits == 0
    assert not any(phrase.lower() in o.text.lower() for o in guarded)
    assert free_hits > 10, "the bias should make the phrase frequent without the guard"


def test_phrase_that_vllm_bad_words_misses_is_blocked(engine: Engine) -> None:
    a, b = engine.picks.ban_ids
    phrase = engine.picks.ban_phrase
    bias = {a: 5.0, b: 7.0}
    reqs = [
        params(
            seed=1000 + i,
            logit_bias=bias,
            bad_words=[phrase],
            extra_args={"checkstream": "on" if i % 2 else "off"},
        )
        for i in range(N)
    ]
    outs = engine.llm.generate(prompts(N), reqs, use_tqdm=False)
    with_bad_words_only = sum(
        count_bigram(list(o.outputs[0].token_ids), a, b) for i, o in enumerate(outs) if not i % 2
    )
    with_checkstream = sum(
        count_bigram(list(o.outputs[0].token_ids), a, b) for i, o in enumerate(outs) if i % 2
    )
    # " a b" is [a, b] but "a b" encodes to another length, so bad_words registers only the
    # unspaced form and the mid-sentence phrase slips through.
    assert with_bad_words_only > 0
    assert with_checkstream == 0


def test_after_the_risk_trigger_output_follows_the_tightened_decoding(engine: Engine) -> None:
    """Safe mode at temperature 0: after the trigger, every token is the greedy choice."""
    from vllm.inputs import TokensPrompt

    r = engine.picks.risk_id
    tokenizer = engine.llm.get_tokenizer()
    texts = prompts(100)
    reqs = [
        params(
            seed=2000 + i,
            max_tokens=48,
            logit_bias={r: 3.0},
            extra_args={
                "checkstream": "on",
                "checkstream_tag": f"safe-{i}",
                "checkstream_safe_temperature": 0,
            },
        )
        for i in range(len(texts))
    ]
    outs = engine.llm.generate(texts, reqs, use_tqdm=False)
    switched = {
        e["tag"]: e
        for e in engine.read_events()
        if e["event"] == "safe_mode" and str(e.get("tag", "")).startswith("safe-")
    }
    assert len(switched) >= 20, f"the risk word should trigger often, got {len(switched)}"
    refs, ref_prompts, tails = [], [], []
    for i, out in enumerate(outs):
        event = switched.get(f"safe-{i}")
        if event is None:
            continue
        k = int(event["at_token"])
        ids = list(out.outputs[0].token_ids)
        assert r in ids[:k] or k > 0
        if k >= len(ids):
            continue
        prompt_ids = tokenizer.encode(texts[i])
        ref_prompts.append(TokensPrompt(prompt_token_ids=prompt_ids + ids[:k]))
        refs.append(
            params(
                temperature=0.0,
                max_tokens=len(ids) - k,
                logit_bias={r: 3.0},
                extra_args={"checkstream": "on"},
            )
        )
        tails.append(ids[k:])
    greedy = engine.llm.generate(ref_prompts, refs, use_tqdm=False)
    same = sum(list(g.outputs[0].token_ids) == t for g, t in zip(greedy, tails, strict=True))
    assert same >= 0.9 * len(tails), f"{same}/{len(tails)} tails equal greedy decoding"
    # Control: without the switch the tails are sampled, so they rarely equal greedy.
    event = next(iter(switched.values()))
    assert event["temperature"] == 0 and event["request_temperature"] == 1.0


def test_malicious_tool_call_recipient_is_rewritten(engine: Engine) -> None:
    prompt = 'mite vasu {"tool": "send_email", "to": "'
    reqs = [
        params(
            seed=3000 + i,
            extra_args={"checkstream": "on" if i % 2 else "off", "checkstream_tag": f"tool-{i}"},
        )
        for i in range(40)
    ]
    outs = engine.llm.generate([prompt] * 40, reqs, use_tqdm=False)
    guarded = [o.outputs[0].text for i, o in enumerate(outs) if i % 2]
    free = [o.outputs[0].text for i, o in enumerate(outs) if not i % 2]
    assert all(t.startswith(ALLOWED_RECIPIENT + '"') for t in guarded), guarded[:3]
    marked = [
        t for t in guarded if t.startswith(ALLOWED_RECIPIENT + '", "_checkstream_modified": true')
    ]
    assert len(marked) >= len(guarded) - 2
    assert not any(t.startswith(ALLOWED_RECIPIENT) for t in free)
    rewrites = [
        e
        for e in engine.read_events()
        if e["event"] == "tool_call" and str(e.get("tag", "")).startswith("tool-")
    ]
    assert any(e.get("action") == "argument_rewritten" for e in rewrites)


def test_invalid_per_request_options_are_rejected_at_admission(engine: Engine) -> None:
    from vllm.exceptions import VLLMValidationError

    with pytest.raises(VLLMValidationError, match="checkstream must be 'on' or 'off'"):
        engine.llm.generate(["kalo"], [params(extra_args={"checkstream": "maybe"})], use_tqdm=False)
    with pytest.raises(
        VLLMValidationError, match="unknown checkstream argument 'checkstream_typo'"
    ):
        engine.llm.generate(["kalo"], [params(extra_args={"checkstream_typo": 1})], use_tqdm=False)


def test_engine_with_speculative_decoding_refuses_to_start(
    engine: Engine, capfd: pytest.CaptureFixture[str]
) -> None:
    """vLLM's V1 runner would drop the plugin silently when speculating: the engine must not
    start with checkstream enabled (reproduced with n-gram speculation on the CPU)."""
    from vllm import LLM

    with pytest.raises(RuntimeError, match="Engine core initialization failed"):
        LLM(
            model=str(engine.model.path),
            dtype="float32",
            max_model_len=256,
            enforce_eager=True,
            speculative_config={
                "method": "ngram",
                "num_speculative_tokens": 2,
                "prompt_lookup_max": 2,
            },
            additional_config={"checkstream": {"requests": "all"}},
        )
    out, err = capfd.readouterr()  # vLLM logs the worker's root cause (stdout by default)
    assert "checkstream: speculative decoding is enabled" in out + err


def test_phrase_banned_only_by_checkstream_ban_never_appears_in_the_requests_that_carry_it(
    engine: Engine,
) -> None:
    """Every request opted in; half of them also carry ``checkstream_ban`` with a phrase no
    configuration bans. Same batch, same bias: none of the phrase's token spellings that
    checkstream compiles (the same bounded expansion as a configured phrase) is ever generated
    by those requests, the other half produces them, and the list is compiled once."""
    from checkstream.sidecar.request_bans import ban_digest

    c, d = engine.picks.own_ids
    phrase = engine.picks.own_phrase
    spellings = ban_sequences(engine.model, [phrase])
    assert (c, d) in spellings
    bias = {c: 5.0, d: 7.0}
    reqs = [
        params(
            seed=4000 + i,
            logit_bias=bias,
            extra_args={"checkstream": "on", "checkstream_tag": f"own-{i}"}
            | ({"checkstream_ban": [phrase]} if i % 2 else {}),
        )
        for i in range(N)
    ]
    outs = engine.llm.generate(prompts(N), reqs, use_tqdm=False)
    banned = [o.outputs[0] for i, o in enumerate(outs) if i % 2]
    free = [o.outputs[0] for i, o in enumerate(outs) if not i % 2]
    assert sum(len(o.token_ids) for o in banned) == (N // 2) * TOKENS
    assert sum(occurrences(list(o.token_ids), spellings) for o in banned) == 0
    assert sum(occurrences(list(o.token_ids), spellings) for o in free) > 10
    # In the text: the masker's caps leave rare spellings to the reactive layer (and to
    # `checkstream sidecar serve`), exactly as for configured phrases.
    in_banned = sum(phrase.lower() in o.text.lower() for o in banned)
    in_free = sum(phrase.lower() in o.text.lower() for o in free)
    assert in_free > 10 and in_banned * 10 <= in_free, (in_banned, in_free)
    noted = [
        e
        for e in engine.read_events()
        if e["event"] == "request_bans" and str(e.get("tag", "")).startswith("own-")
    ]
    assert len(noted) == N // 2
    assert {e["sha256"] for e in noted} == {ban_digest([phrase])}
    assert sum(not e["cached"] for e in noted) == 1  # compiled once, in the worker
    assert phrase not in engine.events.read_text()  # a hash, not the phrase


def test_a_bad_request_ban_list_is_rejected_at_admission(engine: Engine) -> None:
    from vllm.exceptions import VLLMValidationError

    with pytest.raises(VLLMValidationError, match=r"checkstream_ban\[0\] must be a string"):
        engine.llm.generate(
            ["kalo"], [params(extra_args={"checkstream_ban": [["a", "b"]]})], use_tqdm=False
        )
    with pytest.raises(VLLMValidationError, match="checkstream_ban is empty"):
        engine.llm.generate(["kalo"], [params(extra_args={"checkstream_ban": " "})], use_tqdm=False)
