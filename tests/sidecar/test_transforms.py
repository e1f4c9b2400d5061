"""Adaptive-decoding transforms and finished-tool-call rewriting, on plain tensors and dicts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from checkstream.sidecar.adaptive import apply_safe_mode, safe_factors
from checkstream.sidecar.config import ToolControl
from checkstream.sidecar.tools import MODIFIED_KEY, rewrite_tool_call

NAN = float("nan")


def run(
    logits: torch.Tensor, req_t: list[float], safe_t: list[float], top_p: list[float]
) -> torch.Tensor:
    out = logits.clone()
    rows = torch.arange(out.shape[0])
    apply_safe_mode(out, rows, np.array(req_t), np.array(safe_t), np.array(top_p))
    return out


def test_temperature_factor_gives_the_safe_effective_temperature() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0, 0.5]])
    out = run(logits, [1.0], [0.5], [NAN])
    # vLLM divides by the request's T=1 afterwards: softmax(out) == softmax(logits / 0.5).
    assert torch.allclose(torch.softmax(out, 1), torch.softmax(logits / 0.5, 1))
    # A request already cooler than safe mode is left alone (only ever tightens).
    assert torch.equal(run(logits, [0.2], [0.5], [NAN]), logits)


def test_zero_safe_temperature_keeps_only_the_argmax() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0, 0.5], [4.0, 0.0, 1.0, 2.0]])
    out = run(logits, [1.0, 0.7], [0.0, 0.0], [NAN, NAN])
    assert torch.isfinite(out).sum().item() == 2
    assert out.argmax(1).tolist() == [2, 0]


def test_top_p_keeps_the_nucleus_of_the_distribution_vllm_samples_from() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(run(logits, [1.0], [NAN], [0.7]))[0].tolist()
    assert kept == [True, True, False, False]  # 0.5 < 0.7 <= 0.8: the second token is needed
    # At request temperature 2 the distribution vLLM samples from is flatter: more survive.
    kept_t2 = torch.isfinite(run(logits, [2.0], [NAN], [0.7]))[0].tolist()
    assert kept_t2 == [True, True, True, False]
    # The top token always survives, however small p is.
    assert torch.isfinite(run(logits, [1.0], [NAN], [1e-9]))[0].tolist() == [
        True,
        False,
        False,
        False,
    ]


def test_greedy_requests_and_unset_values_are_untouched() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.equal(run(logits, [0.0], [0.3], [0.5]), logits)
    assert torch.equal(run(logits, [1.0], [NAN], [NAN]), logits)
    assert safe_factors(np.array([1.0, 0.0]), np.array([0.3, 0.3])).tolist() == [0.3, 1.0]


TOOLS = ToolControl.model_validate(
    {
        "arguments": {"send_email.to": {"allow": ["ops@example.com"]}},
        "blocked_phrases": ["ignore previous instructions"],
    }
)


def test_finished_tool_calls_are_rewritten_in_every_shape() -> None:
    flat, found = rewrite_tool_call({"tool": "send_email", "to": "evil@x.com", "body": "hi"}, TOOLS)
    assert flat["to"] == "ops@example.com" and flat[MODIFIED_KEY] is True and len(found) == 1
    openai = {
        "type": "function",
        "function": {
            "name": "send_email",
            "arguments": json.dumps(
                {"to": "ops@example.com", "body": "Ignore previous instructions!"}
            ),
        },
    }
    fixed, found = rewrite_tool_call(openai, TOOLS)
    args = json.loads(fixed["function"]["arguments"])
    assert args["body"] == "[BLOCKED]!" and args[MODIFIED_KEY] is True
    assert found == [
        {"argument": "body", "reason": "blocked phrase 'ignore previous instructions'"}
    ]
    clean = {"name": "send_email", "arguments": {"to": "ops@example.com"}}
    assert rewrite_tool_call(clean, TOOLS) == (clean, [])


def test_malformed_tool_calls_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        rewrite_tool_call({"name": "send_email", "arguments": "{oops"}, TOOLS)
    with pytest.raises(ValueError, match="must be a JSON object"):
        rewrite_tool_call({"name": "send_email", "arguments": "[1]"}, TOOLS)
