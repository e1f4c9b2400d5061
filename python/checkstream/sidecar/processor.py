"""The vLLM logits-processor plugin: one class for both of vLLM's runner interfaces.

vLLM loads every class in the ``vllm.logits_processors`` entry-point group with whichever
runner it uses: the legacy V1 runner (CPU, and GPU fallbacks) calls
``cls(vllm_config, device, is_pin_memory)`` and ``update_state``/``apply(logits)``; Model Runner
V2 (the GPU default) calls ``cls(vllm_config, req_states)`` and ``add_request``/``apply(logits,
ctx)``, and refuses to start the engine if the class is not a subclass of its own base. So this
class subclasses both bases and tells the modes apart by constructor arity; installing
checkstream can never stop a vLLM server from starting.

It is inert unless ``--additional-config '{"checkstream": {...}}'`` enables it. Requests carry
their options in ``SamplingParams.extra_args`` (``vllm_xargs`` over HTTP), validated at
admission by :meth:`validate_params` (a ValueError becomes an HTTP 400).

Importing this module loads vLLM's two interface modules and torch, never CUDA (vLLM wraps the
load in ``guard_cuda_initialization``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality
from vllm.v1.sample.logits_processor import LogitsProcessor as V1LogitsProcessor

try:
    from vllm.v1.worker.gpu.sample.logits_processor.interface import (
        LogitsProcessor as V2LogitsProcessor,
    )
except ImportError:  # vLLM before Model Runner V2's plugin interface: the V1 side still loads

    class V2LogitsProcessor:  # type: ignore[no-redef]
        pass


from checkstream.sidecar.config import EngineOptions, engine_options
from checkstream.sidecar.requests import RequestOptions

if TYPE_CHECKING:
    import torch
    from vllm.config import VllmConfig
    from vllm.sampling_params import SamplingParams
    from vllm.v1.worker.gpu.sample.logits_processor.interface import (
        LogitsContext,
        LogitsProcRequestState,
    )

    from checkstream.sidecar.core import GuardCore

log = logging.getLogger("checkstream.sidecar")

SPEC_DECODE_V1 = (
    "checkstream: speculative decoding is enabled and this engine uses vLLM's V1 model runner, "
    "which silently skips entry-point logits processors when speculating; guarded requests "
    "would be generated unguarded. Disable speculative decoding (no --speculative-config) or "
    "run on Model Runner V2 (VLLM_USE_V2_MODEL_RUNNER=1 on a GPU), or remove "
    '"checkstream" from --additional-config to run without the guard.'
)


def build_core(vllm_config: Any, options: EngineOptions, capacity: int) -> GuardCore:
    """Compiles the maskers for the served model (once per engine, in the worker)."""
    from checkstream.sidecar.bans import compile_bans, load_tokenizer, options_with_policy
    from checkstream.sidecar.core import GuardCore, attach_reactive

    model_config = vllm_config.model_config
    tokenizer_path = options.tokenizer or model_config.tokenizer or model_config.model
    tokenizer = load_tokenizer(str(tokenizer_path))
    vocab_size = int(model_config.get_vocab_size())
    policy_set = None
    if options.policies.path:
        from checkstream.policy import load_policy_set

        policy_set = load_policy_set([options.policies.path])
    bans = compile_bans(options, tokenizer, vocab_size, policy_set)
    options = options_with_policy(options, bans.derived)
    core = GuardCore(options, bans, capacity=capacity)
    eos = getattr(model_config.hf_config, "eos_token_id", None)
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    attach_reactive(core, policy_set, eos_ids, str(model_config.model))
    warnings: list[str] = []
    if options.config:
        from checkstream.sidecar.config import config_warnings, load_sidecar_config

        warnings = config_warnings(load_sidecar_config(options.config))
        for warning in warnings:
            log.warning("checkstream: %s: %s", options.config, warning)
    core.events.record(
        "engine_start",
        ban_sequences=bans.num_ban_sequences,
        request_ban_cache=bans.requests.cache_size if bans.requests is not None else 0,
        warnings=warnings,
        risk_phrases=bans.risk_masker is not None,
        tools=bans.tools is not None,
        reactive=core.reactive is not None,
        vocab_size=vocab_size,
        requests=options.requests,
    )
    return core


class CheckstreamLogitsProcessor(V1LogitsProcessor, V2LogitsProcessor):  # type: ignore[misc]
    """checkstream's guard inside vLLM's sampler (both runner interfaces)."""

    def __init__(self, vllm_config: VllmConfig, *args: Any) -> None:
        if len(args) == 2:
            self.mode = "v1"
            self.device = args[0]
        elif len(args) == 1:
            self.mode = "v2"
            self.req_states: LogitsProcRequestState = args[0]
        else:
            raise TypeError(
                "CheckstreamLogitsProcessor takes (vllm_config, device, is_pin_memory) or "
                f"(vllm_config, req_states), got {1 + len(args)} arguments"
            )
        self.options = engine_options(getattr(vllm_config, "additional_config", None))
        self.core: GuardCore | None = None
        # V1: the live output lists, the prompts and how many output tokens each row's state
        # has consumed. MRV2: per slot, how many of all_token_ids were consumed.
        self._out: dict[int, list[int]] = {}
        self._prompt: dict[int, list[int]] = {}
        self._consumed: dict[int, int] = {}
        self._pending_init: set[int] = set()
        if self.options is None:
            return  # inert: installed but not enabled for this engine
        if self.mode == "v1" and getattr(vllm_config, "speculative_config", None):
            raise RuntimeError(SPEC_DECODE_V1)
        scheduler = getattr(vllm_config, "scheduler_config", None)
        if self.mode == "v1" and getattr(scheduler, "async_scheduling", False):
            log.warning(
                "checkstream: async scheduling on the V1 runner may hand entry-point processors "
                "-1 placeholders instead of sampled ids; rows with unknown history fail closed "
                "(the last token of every banned sequence is masked). Pass "
                "--no-async-scheduling for exact phrase masking."
            )
        capacity = int(getattr(getattr(vllm_config, "scheduler_config", None), "max_num_seqs", 64))
        if self.mode == "v2":
            capacity = int(self.req_states.max_num_reqs)
        self.core = build_core(vllm_config, self.options, max(capacity, 1))

    # ------------------------------------------------------------------ both interfaces

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        RequestOptions.parse(getattr(sampling_params, "extra_args", None))

    def is_argmax_invariant(self) -> bool:
        # Bans change the argmax; an argmax-invariant processor is skipped for greedy requests.
        return False

    def apply(self, logits: torch.Tensor, ctx: LogitsContext | None = None) -> torch.Tensor:
        core = self.core
        if core is None:
            return logits
        if ctx is not None:
            return self._apply_v2(core, logits, ctx)
        self._sync_v1(core)
        rows = np.arange(logits.shape[0], dtype=np.int64)
        return core.apply(logits, rows)

    # ------------------------------------------------------------------ V1 runner

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        core = self.core
        if core is None or batch_update is None:
            return
        for index in batch_update.removed:
            self._forget(core, index)
        for index, params, prompt, output in batch_update.added:
            self._forget(core, index)
            request = RequestOptions.parse(params.extra_args)
            temperature = float(params.temperature)
            if core.admit(index, request, temperature, prompt):
                self._out[index] = output  # live reference: grows as the request generates
                self._prompt[index] = list(prompt or [])
                self._consumed[index] = 0
        for a, b, direction in batch_update.moved:
            if direction == MoveDirectionality.SWAP:
                core.swap(a, b)
                for table in (self._out, self._prompt, self._consumed):
                    va, vb = table.pop(a, None), table.pop(b, None)
                    if va is not None:
                        table[b] = va  # type: ignore[assignment]
                    if vb is not None:
                        table[a] = vb  # type: ignore[assignment]
            else:
                core.move(a, b)
                for table in (self._out, self._prompt, self._consumed):
                    va = table.pop(a, None)
                    table.pop(b, None)
                    if va is not None:
                        table[b] = va  # type: ignore[assignment]

    def _forget(self, core: GuardCore, index: int) -> None:
        core.release(index)
        self._out.pop(index, None)
        self._prompt.pop(index, None)
        self._consumed.pop(index, None)

    def _sync_v1(self, core: GuardCore) -> None:
        """Folds the tokens appended to each guarded row's live output list into its state."""
        if not self._out:
            return
        rows = list(self._out)
        outs = [self._out[r] for r in rows]
        lens = np.fromiter(map(len, outs), dtype=np.int64, count=len(outs))
        done = np.fromiter((self._consumed[r] for r in rows), dtype=np.int64, count=len(rows))
        delta = lens - done
        one = np.nonzero(delta == 1)[0]
        if len(one):
            slots = np.asarray(rows, dtype=np.int64)[one]
            last = np.fromiter((outs[i][-1] for i in one.tolist()), dtype=np.int64, count=len(one))
            core.feed(slots, last)
        for i in np.nonzero(delta != 1)[0].tolist():
            row = rows[i]
            if delta[i] > 1:
                core.feed_history(row, outs[i][int(done[i]) :])
            elif delta[i] < 0:  # the list shrank: rebuild from what is there now
                core.resync(row, self._prompt[row], list(outs[i]))
        for i, row in enumerate(rows):
            self._consumed[row] = int(lens[i])
        if core.unknown.any():
            # Async scheduling fills placeholders in later: once a row's history is whole
            # again, rebuild its state from it.
            for row in rows:
                if core.unknown[row] and -1 not in self._out[row]:
                    core.resync(row, self._prompt[row], list(self._out[row]))

    # ------------------------------------------------------------------ Model Runner V2

    def add_request(self, req_idx: int, sampling_params: SamplingParams) -> bool:
        core = self.core
        if core is None:
            return False
        request = RequestOptions.parse(getattr(sampling_params, "extra_args", None))
        guarded = core.admit(req_idx, request, float(sampling_params.temperature), None)
        # The slot's token history is only on the device after the runner's staged writes;
        # it is read at the first apply().
        self._consumed[req_idx] = 0
        if guarded:
            self._pending_init.add(req_idx)
        else:
            self._pending_init.discard(req_idx)
        return guarded

    def apply_staged_writes(self) -> None:
        return None

    def _apply_v2(self, core: GuardCore, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        import torch

        num_rows = logits.shape[0]
        spec = num_rows != len(ctx.idx_mapping_np)
        if spec:
            row_slots = ctx.expanded_idx_mapping.to("cpu").numpy().astype(np.int64)
        else:
            row_slots = np.asarray(ctx.idx_mapping_np, dtype=np.int64)
        guarded_rows = core.guarded[row_slots]
        if not guarded_rows.any():
            return logits
        req_states = self.req_states
        all_ids = req_states.all_token_ids.gpu
        slots = np.unique(row_slots[guarded_rows])
        slots_t = torch.from_numpy(slots).to(all_ids.device)
        total = req_states.total_len.gpu[slots_t].to("cpu").numpy().astype(np.int64)
        done = np.fromiter((self._consumed.get(s, 0) for s in slots.tolist()), dtype=np.int64)
        fresh = np.fromiter((s in self._pending_init for s in slots.tolist()), dtype=bool)
        delta = total - done
        one = np.nonzero((delta == 1) & ~fresh)[0]
        if len(one):
            pos = torch.from_numpy(total[one] - 1).to(all_ids.device)
            last = all_ids[slots_t[one], pos].to("cpu").numpy().astype(np.int64)
            core.feed(slots[one], last)
        for i in np.nonzero((delta != 1) | fresh)[0].tolist():
            slot = int(slots[i])
            if fresh[i]:
                history = all_ids[slot, : int(total[i])].to("cpu").tolist()
                prompt_len = int(req_states.prompt_len.np[slot])
                core.feed_history(slot, history[:prompt_len], is_prompt=True)
                core.feed_history(slot, history[prompt_len:])
                self._pending_init.discard(slot)
            elif delta[i] > 1:
                core.feed_history(
                    slot, all_ids[slot, int(done[i]) : int(total[i])].to("cpu").tolist()
                )
            elif delta[i] < 0:
                history = all_ids[slot, : int(total[i])].to("cpu").tolist()
                prompt_len = int(req_states.prompt_len.np[slot])
                core.resync(slot, history[:prompt_len], history[prompt_len:])
            self._consumed[slot] = int(total[i])
        for i in one.tolist():
            self._consumed[int(slots[i])] = int(total[i])
        row_states = row_xstates = None
        if spec:
            row_states, row_xstates = self._draft_states(core, row_slots, guarded_rows, ctx)
        return core.apply(logits, row_slots, row_states, row_xstates)

    def _draft_states(
        self,
        core: GuardCore,
        row_slots: np.ndarray[Any, Any],
        guarded_rows: np.ndarray[Any, Any],
        ctx: LogitsContext,
    ) -> tuple[np.ndarray[Any, Any] | None, np.ndarray[Any, Any] | None]:
        """Under speculative decoding a request owns one row per draft token: each row's
        history is the committed tokens plus the drafts before it. Returns the rows' states in
        the configured masker and in their request lists' maskers (None: nothing to override)."""
        masker = core.bans.ban_masker
        has_x = (core.xban_id[row_slots] >= 0) & guarded_rows
        if masker is None and not has_x.any():
            return None, None
        local = ctx.expanded_local_pos.to("cpu").numpy().astype(np.int64)
        states = np.asarray(core.state[row_slots], dtype=np.uint32).copy()
        xstates = np.asarray(core.xban_state[row_slots], dtype=np.uint32).copy()
        drafted = np.nonzero((local > 0) & guarded_rows)[0]
        input_ids = None if not len(drafted) else ctx.input_ids.to("cpu").numpy()
        for row in drafted.tolist():
            assert input_ids is not None
            k = int(local[row])
            drafts: Sequence[int] = input_ids[row - k + 1 : row + 1].astype(np.int64).tolist()
            if masker is not None:
                states[row] = masker.walk(int(states[row]), list(drafts))
            xbans = core.request_bans(int(row_slots[row]))
            if xbans is not None and xbans.masker is not None:
                xstates[row] = xbans.masker.walk(int(xstates[row]), list(drafts))
        return states, xstates
