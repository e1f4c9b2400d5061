"""The sidecar's guard as a Hugging Face transformers ``LogitsProcessor``.

A lighter target than vLLM for users of ``model.generate``::

    proc = CheckstreamHFLogitsProcessor.from_options({"guardrails": {...}}, tokenizer, vocab)
    model.generate(..., logits_processor=LogitsProcessorList([proc]), temperature=0.8)

transformers runs custom processors before its sampling warpers (temperature, top-k, top-p), so
the same logits transforms as in vLLM apply. One processor guards one ``generate`` call: its
first call admits every row with the prompt, later calls feed each row's last token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from transformers import LogitsProcessor

from checkstream.sidecar.bans import compile_bans, load_tokenizer, options_with_policy
from checkstream.sidecar.config import EngineOptions, SidecarConfigError
from checkstream.sidecar.core import EventLog, GuardCore, attach_reactive
from checkstream.sidecar.requests import RequestOptions

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer


class CheckstreamHFLogitsProcessor(LogitsProcessor):  # type: ignore[misc]
    """Masks banned sequences, adapts decoding and controls tool calls inside ``generate``."""

    def __init__(
        self,
        core: GuardCore,
        request: RequestOptions | Mapping[str, Any] | None = None,
        temperature: float = 1.0,
    ) -> None:
        self.core = core
        self.request = (
            request if isinstance(request, RequestOptions) else RequestOptions.parse(request)
        )
        self.temperature = float(temperature) if temperature else 0.0
        self._length: int | None = None
        self._rows = 0

    @classmethod
    def from_options(
        cls,
        options: EngineOptions | Mapping[str, Any],
        tokenizer: Tokenizer | Any,
        vocab_size: int,
        *,
        request: RequestOptions | Mapping[str, Any] | None = None,
        temperature: float = 1.0,
        events: EventLog | None = None,
        eos_token_ids: Sequence[int] = (),
    ) -> CheckstreamHFLogitsProcessor:
        """Compiles the maskers; ``tokenizer`` is a ``tokenizers.Tokenizer``, a transformers
        fast tokenizer or a path. ``vocab_size`` is the model's (logits width);
        ``eos_token_ids`` end a stream the policy's reactive layer stops."""
        if not isinstance(options, EngineOptions):
            try:
                options = EngineOptions.model_validate(dict(options))
            except Exception as err:
                raise SidecarConfigError(f"invalid checkstream options: {err}") from None
        if isinstance(tokenizer, str):
            tokenizer = load_tokenizer(tokenizer)
        elif hasattr(tokenizer, "backend_tokenizer"):
            tokenizer = tokenizer.backend_tokenizer
        policy_set = None
        if options.policies.path:
            from checkstream.policy import load_policy_set

            policy_set = load_policy_set([options.policies.path])
        bans = compile_bans(options, tokenizer, int(vocab_size), policy_set)
        options = options_with_policy(options, bans.derived)
        core = GuardCore(options, bans, events=events)
        attach_reactive(core, policy_set, list(eos_token_ids), "transformers")
        return cls(core, request, temperature)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        rows, length = int(input_ids.shape[0]), int(input_ids.shape[1])
        core = self.core
        if self._length is None or rows != self._rows or length != self._length + 1:
            # A new generate call (or an unexpected jump): admit every row with its prompt.
            ids = input_ids.to("cpu").tolist()
            for row in range(rows):
                core.admit(row, self.request, self.temperature, ids[row])
            self._rows = rows
        else:
            slots = np.arange(rows, dtype=np.int64)
            last = input_ids[:, -1].to("cpu").numpy().astype(np.int64)
            core.feed(slots, last)
        self._length = length
        return core.apply(scores, np.arange(rows, dtype=np.int64))
