"""Both vLLM logits-processor interfaces, against the real vLLM classes, without an engine.

V1: ``BatchUpdateBuilder``/``BatchUpdate`` with added, removed, moved (UNIDIRECTIONAL and SWAP)
and live output lists. MRV2: ``LogitsProcRequestState`` and ``LogitsContext`` over CPU tensors,
with recycled slots and speculative-decoding rows. Both loaders, and the MRV2 loader's rejection
of a V1-only class.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from tinymodel import TinyModel
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import MoveDirectionality
from vllm.v1.sample.logits_processor.state import BatchUpdateBuilder
from vllm.v1.worker.gpu.sample.logits_processor.interface import (
    LogitsContext,
    LogitsProcRequestState,
)

from checkstream.sidecar.processor import CheckstreamLogitsProcessor
from conftest import BLOCKED_IN_TOOLS

PHRASE = "guarantee returns"  # words of the tiny corpus


@pytest.fixture(scope="module")
def make_config(tiny: TinyModel) -> Callable[..., Any]:
    from vllm.engine.arg_utils import EngineArgs

    def make(options: dict[str, Any] | None) -> Any:
        extra = {"checkstream": options} if options is not None else {}
        return EngineArgs(
            model=str(tiny.path),
            dtype="float32",
            max_model_len=256,
            enforce_eager=True,
            additional_config=extra,
        ).create_engine_config()

    return make


@pytest.fixture(scope="module")
def config(make_config: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    events = tmp_path_factory.mktemp("ifc") / "events.jsonl"
    return make_config(
        {
            "requests": "opt_in",
            "events_path": str(events),
            "guardrails": {
                "preventive": {"logit_masking": {"phrases": [PHRASE]}},
                "tools": {"blocked_phrases": [BLOCKED_IN_TOOLS]},
            },
        }
    )


@pytest.fixture(scope="module")
def ids(tiny: TinyModel) -> dict[str, int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny.path / "tokenizer.json"))
    a, b = tok.encode(" " + PHRASE, add_special_tokens=False).ids
    other = tok.encode(" ops", add_special_tokens=False).ids[0]
    return {"a": a, "b": b, "other": other, "vocab": tok.get_vocab_size()}


def on(**extra: Any) -> SamplingParams:
    return SamplingParams(temperature=1.0, extra_args={"checkstream": "on", **extra})


def off() -> SamplingParams:
    return SamplingParams(temperature=1.0, extra_args={"checkstream": "off"})


def banned_b(logits: torch.Tensor, b: int) -> list[bool]:
    return [bool(torch.isneginf(logits[r, b])) for r in range(logits.shape[0])]


# --------------------------------------------------------------------------- loaders


def test_both_loaders_accept_the_installed_entry_point() -> None:
    from vllm.v1.sample.logits_processor import (
        _load_logitsprocs_by_fqcns,
        _load_logitsprocs_plugins,
    )
    from vllm.v1.worker.gpu.sample.logits_processor.loader import (
        _load_v2_logitsprocs_by_fqcns,
        _load_v2_logitsprocs_plugins,
    )

    fqcn = "checkstream.sidecar.processor:CheckstreamLogitsProcessor"
    v1 = _load_logitsprocs_plugins()
    v2 = _load_v2_logitsprocs_plugins()
    assert [c.__qualname__ for c in v1] == ["CheckstreamLogitsProcessor"]
    assert [c.__qualname__ for c in v2] == ["CheckstreamLogitsProcessor"]
    assert _load_logitsprocs_by_fqcns([fqcn])[0].__qualname__ == "CheckstreamLogitsProcessor"
    assert _load_v2_logitsprocs_by_fqcns([fqcn])[0].__qualname__ == "CheckstreamLogitsProcessor"


def test_mrv2_loader_rejects_a_v1_only_class_but_not_ours() -> None:
    from vllm.v1.sample.logits_processor.builtin import MinPLogitsProcessor
    from vllm.v1.worker.gpu.sample.logits_processor.loader import _load_v2_logitsprocs_by_fqcns

    with pytest.raises(ValueError, match="is not a subclass of"):
        _load_v2_logitsprocs_by_fqcns([MinPLogitsProcessor])
    assert _load_v2_logitsprocs_by_fqcns([CheckstreamLogitsProcessor]) == [
        CheckstreamLogitsProcessor
    ]


def test_frontend_validators_turn_bad_options_into_validation_errors() -> None:
    from vllm.exceptions import VLLMValidationError
    from vllm.v1.sample.logits_processor import validate_logits_processors_parameters
    from vllm.v1.worker.gpu.sample.logits_processor.loader import (
        build_custom_logits_processors_params_validator,
    )

    v2 = build_custom_logits_processors_params_validator(None)
    bad = SamplingParams(extra_args={"checkstream_safe_top_p": 1.5})
    for validate in (v2, lambda p: validate_logits_processors_parameters(None, p)):
        with pytest.raises(VLLMValidationError, match="checkstream_safe_top_p must be"):
            validate(bad)
        validate(SamplingParams(extra_args={"checkstream": "on", "other_plugin": [1, 2]}))


def test_inert_without_additional_config(
    make_config: Callable[..., Any], ids: dict[str, int]
) -> None:
    cfg = make_config(None)
    v1 = CheckstreamLogitsProcessor(cfg, torch.device("cpu"), False)
    assert v1.core is None and v1.is_argmax_invariant() is False
    logits = torch.zeros(2, ids["vocab"])
    assert v1.apply(logits) is logits and not torch.isinf(logits).any()
    v2 = CheckstreamLogitsProcessor(cfg, mrv2_state(ids["vocab"]))
    assert v2.add_request(0, on()) is False
    disabled = make_config({"enabled": False})
    assert CheckstreamLogitsProcessor(disabled, torch.device("cpu"), False).core is None


def test_v1_refuses_to_start_under_speculative_decoding(config: Any) -> None:
    speculative = copy.copy(config)
    object.__setattr__(speculative, "speculative_config", SimpleNamespace(method="ngram"))
    with pytest.raises(RuntimeError, match="speculative decoding"):
        CheckstreamLogitsProcessor(speculative, torch.device("cpu"), False)


def test_constructor_arity_is_checked(config: Any) -> None:
    with pytest.raises(TypeError, match="takes"):
        CheckstreamLogitsProcessor(config, 1, 2, 3)


# --------------------------------------------------------------------------- V1


def step(
    proc: CheckstreamLogitsProcessor, builder: BatchUpdateBuilder, size: int, vocab: int
) -> torch.Tensor:
    proc.update_state(builder.get_and_reset(size))
    return proc.apply(torch.zeros(size, vocab))


def test_v1_batch_update_bookkeeping(config: Any, ids: dict[str, int]) -> None:
    a, b, other, vocab = ids["a"], ids["b"], ids["other"], ids["vocab"]
    proc = CheckstreamLogitsProcessor(config, torch.device("cpu"), False)
    outs: list[list[int]] = [[], [], []]
    builder = BatchUpdateBuilder()
    builder.added.extend(
        [(0, on(), [other], outs[0]), (1, off(), [other], outs[1]), (2, on(), [other], outs[2])]
    )
    assert banned_b(step(proc, builder, 3, vocab), b) == [False, False, False]
    # Live output lists: the engine appends, the processor sees it at the next step.
    outs[0].append(a)
    outs[1].append(a)
    outs[2].append(other)
    assert banned_b(step(proc, builder, 3, vocab), b) == [True, False, False]
    # SWAP 0 <-> 2: the state travels with the request.
    builder.moved.append((0, 2, MoveDirectionality.SWAP))
    assert banned_b(step(proc, builder, 3, vocab), b) == [False, False, True]
    # Remove row 0, move row 2 into it (UNIDIRECTIONAL); the request keeps its state.
    builder.removed_append(0)
    builder.moved.append((2, 0, MoveDirectionality.UNIDIRECTIONAL))
    logits = step(proc, builder, 2, vocab)
    assert banned_b(logits, b) == [True, False]
    # A new request in a recycled row starts clean, whatever the previous occupant left.
    fresh: list[int] = []
    builder.removed_append(0)
    builder.added.append((0, on(), [other], fresh))
    assert banned_b(step(proc, builder, 2, vocab), b) == [False, False]
    fresh.append(a)
    assert banned_b(step(proc, builder, 2, vocab), b) == [True, False]
    # Prompt context counts: a prompt ending in the phrase's first token bans the second.
    builder.added.append((2, on(), [other, a], []))
    assert banned_b(step(proc, builder, 3, vocab), b) == [True, False, True]


def test_v1_placeholders_fail_closed_until_the_real_ids_arrive(
    config: Any, ids: dict[str, int]
) -> None:
    a, b, other, vocab = ids["a"], ids["b"], ids["other"], ids["vocab"]
    proc = CheckstreamLogitsProcessor(config, torch.device("cpu"), False)
    out: list[int] = []
    builder = BatchUpdateBuilder()
    builder.added.append((0, on(), [other], out))
    step(proc, builder, 1, vocab)
    out.append(-1)  # async scheduling: the sampled id is not known yet
    logits = proc.apply(torch.zeros(1, vocab))
    assert proc.core is not None
    last = proc.core.bans.last_tokens
    assert len(last) > 1 and torch.isneginf(logits[0, torch.from_numpy(last)]).all()
    out[-1] = other  # filled in: exact masks again
    logits = proc.apply(torch.zeros(1, vocab))
    assert not torch.isinf(logits).any()
    out.append(a)
    assert banned_b(proc.apply(torch.zeros(1, vocab)), b) == [True]
    events = [e["event"] for e in proc.core.events.records]
    assert "fail_closed" in events


def test_v1_one_rust_call_covers_a_large_mixed_batch(config: Any, ids: dict[str, int]) -> None:
    a, b, other, vocab = ids["a"], ids["b"], ids["other"], ids["vocab"]
    proc = CheckstreamLogitsProcessor(config, torch.device("cpu"), False)
    n = 256
    outs: list[list[int]] = [[] for _ in range(n)]
    builder = BatchUpdateBuilder()
    builder.added.extend((i, on() if i % 2 else off(), [other], outs[i]) for i in range(n))
    step(proc, builder, n, vocab)
    for i, out in enumerate(outs):
        out.append(a if i % 4 in (0, 1) else other)
    got = banned_b(proc.apply(torch.zeros(n, vocab)), b)
    assert got == [i % 2 == 1 and i % 4 == 1 for i in range(n)]


# --------------------------------------------------------------------------- MRV2


def mrv2_state(vocab: int, slots: int = 8, width: int = 64) -> LogitsProcRequestState:
    return LogitsProcRequestState(
        device=torch.device("cpu"),
        max_num_reqs=slots,
        vocab_size=vocab,
        all_token_ids=SimpleNamespace(gpu=torch.zeros(slots, width, dtype=torch.int32)),
        prompt_len=SimpleNamespace(np=np.zeros(slots, dtype=np.int32)),
        prefill_len=SimpleNamespace(np=np.zeros(slots, dtype=np.int32)),
        total_len=SimpleNamespace(gpu=torch.zeros(slots, dtype=torch.int32)),
    )


def write_history(
    state: LogitsProcRequestState, slot: int, prompt: list[int], out: list[int]
) -> None:
    tokens = prompt + out
    state.all_token_ids.gpu[slot, : len(tokens)] = torch.tensor(tokens, dtype=torch.int32)
    state.prompt_len.np[slot] = len(prompt)
    state.total_len.gpu[slot] = len(tokens)


def context(
    state: LogitsProcRequestState,
    rows: list[int],
    local: list[int] | None = None,
    inputs: list[int] | None = None,
) -> LogitsContext:
    mapping = torch.tensor(rows, dtype=torch.int64)
    requests = sorted(set(rows), key=rows.index)
    total = state.total_len.gpu
    return LogitsContext(
        expanded_idx_mapping=mapping,
        idx_mapping=torch.tensor(requests, dtype=torch.int64),
        idx_mapping_np=np.array(requests, dtype=np.int64),
        expanded_local_pos=torch.tensor(local or [0] * len(rows), dtype=torch.int64),
        input_ids=torch.tensor(inputs or [0] * len(rows), dtype=torch.int64),
        pos=torch.tensor([int(total[s]) - 1 for s in rows], dtype=torch.int64),
        seq_lens_upper_bound_np=np.array([int(total[s]) for s in requests], dtype=np.int64),
    )


def test_mrv2_slots_rows_and_recycling(config: Any, ids: dict[str, int]) -> None:
    a, b, other, vocab = ids["a"], ids["b"], ids["other"], ids["vocab"]
    state = mrv2_state(vocab)
    proc = CheckstreamLogitsProcessor(config, state)
    assert proc.add_request(3, on()) is True
    assert proc.add_request(5, off()) is False
    write_history(state, 3, [other], [a])
    write_history(state, 5, [other], [a])
    # Rows are not slots: row 0 is slot 5 (opted out), row 1 is slot 3.
    logits = proc.apply(torch.zeros(2, vocab), context(state, [5, 3]))
    assert banned_b(logits, b) == [False, True]
    write_history(state, 3, [other], [a, other])  # one more token, read from the device buffer
    assert banned_b(proc.apply(torch.zeros(1, vocab), context(state, [3])), b) == [False]
    write_history(state, 3, [other], [a, other, a])
    assert banned_b(proc.apply(torch.zeros(1, vocab), context(state, [3])), b) == [True]
    # Slot 3 recycled for a new request: nothing of the old state survives.
    assert proc.add_request(3, on()) is True
    write_history(state, 3, [other, other], [])
    assert banned_b(proc.apply(torch.zeros(1, vocab), context(state, [3])), b) == [False]
    # Slot 5 recycled for an opted-in request whose prompt ends with the first token.
    assert proc.add_request(5, on()) is True
    write_history(state, 5, [other, a], [])
    assert banned_b(proc.apply(torch.zeros(2, vocab), context(state, [5, 3])), b) == [True, False]


def test_mrv2_speculative_rows_see_the_drafts_before_them(config: Any, ids: dict[str, int]) -> None:
    a, b, other, vocab = ids["a"], ids["b"], ids["other"], ids["vocab"]
    state = mrv2_state(vocab)
    proc = CheckstreamLogitsProcessor(config, state)
    proc.add_request(2, on())
    write_history(state, 2, [other], [other])
    # Three rows for slot 2: after the committed tokens, after draft `a`, after `a, other`.
    ctx = context(state, [2, 2, 2], local=[0, 1, 2], inputs=[other, a, other])
    assert banned_b(proc.apply(torch.zeros(3, vocab), ctx), b) == [False, True, False]


def test_blocked_phrase_is_masked_inside_tool_arguments_only(
    config: Any, ids: dict[str, int], tiny: TinyModel
) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny.path / "tokenizer.json"))
    seq = tok.encode(" " + BLOCKED_IN_TOOLS, add_special_tokens=False).ids
    inside = tok.encode('so {"tool": "send_email", "body": "please', add_special_tokens=False).ids
    outside = tok.encode("so please", add_special_tokens=False).ids
    proc = CheckstreamLogitsProcessor(config, torch.device("cpu"), False)
    builder = BatchUpdateBuilder()
    builder.added.extend([(0, on(), inside + seq[:-1], []), (1, on(), outside + seq[:-1], [])])
    logits = step(proc, builder, 2, ids["vocab"])
    assert banned_b(logits, seq[-1]) == [True, False]


def test_general_plugin_refuses_speculative_decoding_on_the_v1_runner(
    config: Any, make_config: Callable[..., Any]
) -> None:
    """vLLM's V1 ``build_logitsprocs`` drops entry-point processors when speculating; the
    checkstream general plugin (loaded by vLLM in every process) turns that into a refusal."""
    from vllm.plugins import load_plugins_by_group
    from vllm.v1.worker import gpu_model_runner

    plugins = load_plugins_by_group("vllm.general_plugins")
    assert "checkstream" in plugins
    plugins["checkstream"]()
    speculative = copy.copy(config)
    object.__setattr__(speculative, "speculative_config", SimpleNamespace(method="ngram"))
    with pytest.raises(RuntimeError, match="speculative decoding is enabled"):
        gpu_model_runner.build_logitsprocs(speculative, torch.device("cpu"), False, False)
    # Without checkstream configured, vLLM's own behaviour is unchanged.
    plain = copy.copy(make_config(None))
    object.__setattr__(plain, "speculative_config", SimpleNamespace(method="ngram"))
    built = gpu_model_runner.build_logitsprocs(plain, torch.device("cpu"), False, False)
    assert [type(p).__name__ for p in built.all] == ["MinTokensLogitsProcessor"]
    # And without speculation, checkstream is built with the other processors.
    normal = gpu_model_runner.build_logitsprocs(config, torch.device("cpu"), False, False)
    assert "CheckstreamLogitsProcessor" in [type(p).__name__ for p in normal.all]


POLICY = r"""
name: sidecar-reactive
version: "1"
rules:
  - name: stop-kalo
    phases: [midstream]
    trigger: {pattern: '\bkalo\b'}
    actions: [stop]
  - name: cool-mite
    phases: [midstream]
    trigger: {pattern: '\bmite\b'}
    actions: [{adapt_decoding: {temperature: 0.2, top_p: 0.5}}]
"""


def test_reactive_layer_adapts_then_stops_with_end_of_sequence(
    make_config: Callable[..., Any], tiny: TinyModel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Patterns cannot be token-masked; the policy engine judges the detokenised output."""
    from tokenizers import Tokenizer

    folder = tmp_path_factory.mktemp("policy")
    (folder / "policy.yaml").write_text(POLICY)
    cfg = make_config(
        {
            "requests": "opt_in",
            "policies": {"path": str(folder / "policy.yaml")},
            "guardrails": {"reactive": {"holdback_size": 2, "check_interval": 2}},
            "decision_log": str(folder / "decisions.jsonl"),
        }
    )
    proc = CheckstreamLogitsProcessor(cfg, torch.device("cpu"), False)
    assert proc.core is not None and proc.core.reactive is not None
    eos = int(proc.core.eos_ids[0])
    tok = Tokenizer.from_file(str(tiny.path / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    out: list[int] = []
    builder = BatchUpdateBuilder()
    builder.added.append((0, on(checkstream_tag="r1"), [5], out))
    step(proc, builder, 1, vocab)
    for t in tok.encode(" so mite so so so", add_special_tokens=False).ids:
        out.append(t)
        proc.apply(torch.zeros(1, vocab))
    safe = [e for e in proc.core.events.records if e["event"] == "safe_mode"]
    assert safe and safe[0]["source"] == "policy" and safe[0]["temperature"] == 0.2
    assert not proc.core.stop[0]
    for t in tok.encode(" then kalo so so so so", add_special_tokens=False).ids:
        out.append(t)
        logits = proc.apply(torch.zeros(1, vocab))
    stops = [e for e in proc.core.events.records if e["event"] == "reactive_stop"]
    assert stops and stops[0]["rules"] == ["stop-kalo"] and stops[0]["tag"] == "r1"
    assert torch.isfinite(logits[0]).nonzero().flatten().tolist() == [eos]
    # The request leaves the batch: its decision record goes to the proxy's decision log.
    builder.removed_append(0)
    step(proc, builder, 0, vocab)
    log = proc.core.reactive.log
    assert log is not None
    log.flush()
    from checkstream.audit.export import iter_entries

    records = [entry["record"] for _, entry in iter_entries([folder / "decisions.jsonl"])]
    assert [r["request_id"] for r in records] == ["r1"]
    assert records[0]["decision"] == "stop"
    assert {hit["rule"] for hit in records[0]["rules"]} >= {"stop-kalo", "cool-mite"}
    log.close()


# --------------------------------------------------------------------------- request ban lists

OWN = "bank loan"  # banned only by the requests that carry it (checkstream_ban)


@pytest.fixture(scope="module")
def own(tiny: TinyModel) -> tuple[int, int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny.path / "tokenizer.json"))
    c, d = tok.encode(" " + OWN, add_special_tokens=False).ids
    return c, d


def test_v1_request_ban_lists_apply_to_their_rows_only(
    config: Any, ids: dict[str, int], own: tuple[int, int]
) -> None:
    a, b, vocab = ids["a"], ids["b"], ids["vocab"]
    c, d = own
    proc = CheckstreamLogitsProcessor(config, torch.device("cpu"), False)
    outs: list[list[int]] = [[], [], [], []]
    builder = BatchUpdateBuilder()
    builder.added.extend(
        [
            (0, on(checkstream_ban=OWN), [ids["other"]], outs[0]),
            (1, on(), [ids["other"]], outs[1]),
            # Opt-in engine: the list alone opts the request in.
            (2, SamplingParams(extra_args={"checkstream_ban": [OWN, "guarantee"]}), [], outs[2]),
            (3, off(), [], outs[3]),
        ]
    )
    step(proc, builder, 4, vocab)
    for out in outs:
        out.append(c)
    assert banned_b(proc.apply(torch.zeros(4, vocab)), d) == [True, False, True, False]
    for out in outs:
        out.append(a)
    # The configured phrase stays banned on every guarded row.
    assert banned_b(proc.apply(torch.zeros(4, vocab)), b) == [True, True, True, False]
    # SWAP 0 <-> 1: the list travels with its request.
    for out in outs:
        out.append(c)
    builder.moved.append((0, 1, MoveDirectionality.SWAP))
    assert banned_b(step(proc, builder, 4, vocab), d) == [False, True, True, False]
    assert proc.core is not None
    noted = [e for e in proc.core.events.records if e["event"] == "request_bans"]
    assert [e["slot"] for e in noted] == [0, 2] and all("text" not in e for e in noted)


def test_mrv2_request_ban_lists_with_recycled_slots_and_draft_rows(
    config: Any, ids: dict[str, int], own: tuple[int, int]
) -> None:
    other, vocab = ids["other"], ids["vocab"]
    c, d = own
    state = mrv2_state(vocab)
    proc = CheckstreamLogitsProcessor(config, state)
    assert proc.add_request(4, on(checkstream_ban=OWN)) is True
    assert proc.add_request(6, on()) is True
    write_history(state, 4, [other], [c])
    write_history(state, 6, [other], [c])
    assert banned_b(proc.apply(torch.zeros(2, vocab), context(state, [6, 4])), d) == [False, True]
    # Slot 4 recycled for a request without a list: nothing of the old list survives.
    assert proc.add_request(4, on()) is True
    write_history(state, 4, [other, c], [])
    assert banned_b(proc.apply(torch.zeros(1, vocab), context(state, [4])), d) == [False]
    # Speculative rows: the draft row after `c` bans `d` for the request with the list only.
    assert proc.add_request(2, on(checkstream_ban=[OWN])) is True
    write_history(state, 2, [other], [other])
    write_history(state, 6, [other], [other])
    ctx = context(state, [2, 2, 6, 6], local=[0, 1, 0, 1], inputs=[other, c, other, c])
    assert banned_b(proc.apply(torch.zeros(4, vocab), ctx), d) == [False, True, False, False]


def test_bad_request_ban_lists_are_validation_errors_in_both_validators() -> None:
    from vllm.exceptions import VLLMValidationError
    from vllm.v1.sample.logits_processor import validate_logits_processors_parameters
    from vllm.v1.worker.gpu.sample.logits_processor.loader import (
        build_custom_logits_processors_params_validator,
    )

    from checkstream.sidecar.requests import MAX_BAN_PHRASES

    v2 = build_custom_logits_processors_params_validator(None)
    cases = [
        ([["nested", "list"]], r"checkstream_ban\[0\] must be a string"),
        ([" "], r"checkstream_ban\[0\] is empty or whitespace only"),
        ([f"p{i}" for i in range(MAX_BAN_PHRASES + 1)], f"the limit is {MAX_BAN_PHRASES}"),
    ]
    for validate in (v2, lambda p: validate_logits_processors_parameters(None, p)):
        for value, message in cases:
            with pytest.raises(VLLMValidationError, match=message):
                validate(SamplingParams(extra_args={"checkstream_ban": value}))
        validate(SamplingParams(extra_args={"checkstream_ban": [OWN, "guarantee"]}))


def test_embedding_mode_is_a_start_up_warning_in_the_events_log(
    make_config: Callable[..., Any],
    tmp_path_factory: pytest.TempPathFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The spec's sample file sets ``classifiers.embedding_mode: true``; vLLM gives plugins no
    hidden states, so the engine starts, says so in its log and on its events log's start
    line, and goes on."""
    import logging

    folder = tmp_path_factory.mktemp("embedding")
    path = folder / "sidecar-config.yaml"
    path.write_text(
        "vllm: {socket: /shared/checkstream.sock}\n"
        "classifiers: {embedding_mode: true, models: [toxicity_detector]}\n"
    )
    with caplog.at_level(logging.WARNING, logger="checkstream.sidecar"):
        proc = CheckstreamLogitsProcessor(
            make_config({"config": str(path)}), torch.device("cpu"), False
        )
    assert proc.core is not None
    start = proc.core.events.records[0]
    assert start["event"] == "engine_start"
    (warning,) = start["warnings"]
    assert warning.startswith("classifiers.embedding_mode: true is not supported")
    assert any(
        "classifiers.embedding_mode" in r.getMessage() and r.levelno == logging.WARNING
        for r in caplog.records
    )
    path.write_text("classifiers: {embedding_mode: false}\n")
    quiet = CheckstreamLogitsProcessor(
        make_config({"config": str(path)}), torch.device("cpu"), False
    )
    assert quiet.core is not None and quiet.core.events.records[0]["warnings"] == []
