"""The transformers ``LogitsProcessor`` adapter, on the same tiny model with ``generate``."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
import torch
from tinymodel import Picks, TinyModel

from checkstream.sidecar.core import EventLog
from checkstream.sidecar.hf import CheckstreamHFLogitsProcessor
from conftest import ALLOWED_RECIPIENT, checkstream_options


@pytest.fixture(scope="module")
def hf(tiny: TinyModel) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.set_num_threads(2)
    return LlamaForCausalLM.from_pretrained(str(tiny.path)).eval(), AutoTokenizer.from_pretrained(
        str(tiny.path)
    )


def generate(hf: tuple[Any, Any], prompt: str, n: int, proc: Any | None, **kw: Any) -> torch.Tensor:
    from transformers import LogitsProcessorList

    model, tok = hf
    ids = tok([prompt] * n, return_tensors="pt").input_ids
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        logits_processor=LogitsProcessorList([proc] if proc is not None else []),
        pad_token_id=tok.pad_token_id,
        **kw,
    )
    return out[:, ids.shape[1] :]


def processor(picks: Picks, tok: Any, vocab: int, tmp_path: Any, **request: Any) -> Any:
    options = checkstream_options(picks, tmp_path / "events.jsonl")
    return CheckstreamHFLogitsProcessor.from_options(
        options,
        tok,
        vocab,
        request={"checkstream": "on", **request},
        events=EventLog(None),
    )


def test_hf_adapter_blocks_the_phrase_that_unguarded_generation_produces(
    hf: tuple[Any, Any], picks: Picks, tiny: TinyModel, tmp_path: Any
) -> None:
    a, b = picks.ban_ids
    torch.manual_seed(0)
    common = {
        "do_sample": True,
        "max_new_tokens": 32,
        "min_new_tokens": 32,
        "sequence_bias": {(a,): 5.0, (b,): 7.0},
    }
    free = generate(hf, "so kalo mite", 64, None, **common)
    proc = processor(picks, hf[1], tiny.vocab_size, tmp_path)
    guarded = generate(hf, "so kalo mite", 64, proc, **common)

    def hits(t: torch.Tensor) -> int:
        return sum(x == a and y == b for row in t.tolist() for x, y in pairwise(row))

    assert hits(free) > 5
    assert hits(guarded) == 0


def test_hf_safe_mode_makes_the_rest_greedy(
    hf: tuple[Any, Any], picks: Picks, tiny: TinyModel, tmp_path: Any
) -> None:
    from transformers import LogitsProcessorList

    model, tok = hf
    r = picks.risk_id
    torch.manual_seed(1)
    proc = processor(picks, tok, tiny.vocab_size, tmp_path, checkstream_safe_temperature=0)
    out = generate(
        hf, "so kalo", 32, proc, do_sample=True, max_new_tokens=40, sequence_bias={(r,): 3.0}
    )
    switched = [e for e in proc.core.events.records if e["event"] == "safe_mode"]
    assert len(switched) >= 5
    prompt = tok("so kalo", return_tensors="pt").input_ids[0].tolist()
    same = checked = 0
    for event in switched:
        row, k = int(event["slot"]), int(event["at_token"])
        ids = out[row].tolist()
        if k >= len(ids):
            continue
        # Greedy decoding from the same prefix, under the same guard (without the switch).
        ref_proc = processor(picks, tok, tiny.vocab_size, tmp_path)
        prefix = torch.tensor([prompt + ids[:k]])
        ref = model.generate(
            prefix,
            attention_mask=torch.ones_like(prefix),
            do_sample=False,
            max_new_tokens=len(ids) - k,
            sequence_bias={(r,): 3.0},
            logits_processor=LogitsProcessorList([ref_proc]),
            pad_token_id=tok.pad_token_id,
        )[0, prefix.shape[1] :].tolist()
        checked += 1
        same += ref == ids[k:]
    assert checked >= 5
    assert same >= 0.9 * checked, f"{same}/{checked} tails equal greedy decoding"


def test_hf_tool_call_recipient_is_rewritten(
    hf: tuple[Any, Any], picks: Picks, tiny: TinyModel, tmp_path: Any
) -> None:
    _, tok = hf
    proc = processor(picks, tok, tiny.vocab_size, tmp_path)
    torch.manual_seed(2)
    out = generate(
        hf, 'so {"tool": "send_email", "to": "', 8, proc, do_sample=True, max_new_tokens=40
    )
    texts = tok.batch_decode(out)
    assert all(t.startswith(ALLOWED_RECIPIENT + '"') for t in texts), texts[:2]
    assert any('"_checkstream_modified": true' in t for t in texts), texts[:2]
