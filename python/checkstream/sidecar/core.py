"""The sidecar's engine-independent core: per-slot guard state and the per-step logits edit.

vLLM's two runner interfaces and the transformers adapter are thin shells around
:class:`GuardCore`. A *slot* is whatever index the shell keeps state under (a V1 batch row, an
MRV2 request slot, an HF batch row); every step the shell says which slot each logits row
belongs to and which tokens were sampled, and the core

1. advances each slot's masker state with one Rust call for the whole batch
   (:meth:`GuardCore.feed`);
2. lists the banned ``(row, token)`` pairs with one Rust call and writes them with one sparse
   ``index_put_`` on the logits tensor, wherever it lives (:meth:`GuardCore.apply`). Rows of
   requests with a ban list of their own (``checkstream_ban``) also hold a state in that list's
   masker: one more Rust call per *distinct* list in the batch (rows grouped by list), and their
   pairs join the same single write;
3. applies the adaptive-decoding transforms to rows in safe mode, and the tool-call forcing to
   the few rows that are inside a guarded tool argument.

Unknown history (vLLM's ``-1`` placeholders under async scheduling) fails closed: such a row
gets the last token of every banned sequence masked until its real history arrives.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from checkstream.masking.device import apply_pairs
from checkstream.sidecar.adaptive import apply_safe_mode
from checkstream.sidecar.config import EngineOptions
from checkstream.sidecar.reactive import ReactiveLayer, ReactiveResult
from checkstream.sidecar.request_bans import RequestBans, ban_digest, summary
from checkstream.sidecar.requests import RequestOptions
from checkstream.sidecar.tools import ToolTracker

if TYPE_CHECKING:
    import torch

    from checkstream.policy import PolicySet
    from checkstream.sidecar.bans import CompiledBans

log = logging.getLogger("checkstream.sidecar")

U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]


class EventLog:
    """Decisions of the processor, kept in memory and appended as JSON lines to a file.

    The logits processor runs in vLLM's worker process; the file is how its decisions reach the
    operator (and the tests). Writes are rare (a mode switch, a rewrite), so a line-buffered
    append is enough.
    """

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, kind: str, **fields: Any) -> None:
        entry = {"ts": time.time(), "event": kind, **fields}
        with self._lock:
            self.records.append(entry)
            del self.records[:-10000]
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry, sort_keys=True) + "\n")
        log.info("checkstream sidecar: %s %s", kind, fields)


class GuardCore:
    """Per-slot guard state over compiled bans; shared by every runner interface."""

    def __init__(
        self,
        options: EngineOptions,
        bans: CompiledBans,
        *,
        capacity: int = 64,
        events: EventLog | None = None,
    ) -> None:
        self.options = options
        self.bans = bans
        self.events = events if events is not None else EventLog(options.events_path)
        adaptive = options.guardrails.preventive.adaptive_decoding
        self.adaptive_enabled = options.guardrails.preventive.enabled and adaptive.enabled
        self.default_threshold = adaptive.risk_threshold
        self.risk_per_hit = adaptive.risk_per_hit
        self.safe_temperature = adaptive.safe_mode.temperature
        self.safe_top_p = adaptive.safe_mode.top_p
        self.include_prompt_risk = adaptive.include_prompt
        self._cap = 0
        self._alloc(capacity)
        self.trackers: dict[int, ToolTracker] = {}
        # Request ban lists in use, by RequestBans.id (xban_id holds the id per slot, -1: none).
        self._xbans: dict[int, RequestBans] = {}
        # Set by the shells when a policy set is configured (see reactive.py).
        self.reactive: ReactiveLayer | None = None
        self.eos_ids: I64 = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ slot storage

    def _alloc(self, capacity: int) -> None:
        old = self._cap
        if capacity <= old:
            return
        cap = max(capacity, 2 * old)

        def grow(arr: Any, dtype: Any, fill: Any) -> Any:
            new = np.full(cap, fill, dtype=dtype)
            if old:
                new[:old] = arr
            return new

        self.guarded: npt.NDArray[np.bool_] = grow(getattr(self, "guarded", None), np.bool_, False)
        self.state: U32 = grow(getattr(self, "state", None), np.uint32, 0)
        self.risk_state: U32 = grow(getattr(self, "risk_state", None), np.uint32, 0)
        self.risk: npt.NDArray[np.float64] = grow(getattr(self, "risk", None), np.float64, 0.0)
        self.threshold: npt.NDArray[np.float64] = grow(
            getattr(self, "threshold", None), np.float64, np.inf
        )
        self.safe: npt.NDArray[np.bool_] = grow(getattr(self, "safe", None), np.bool_, False)
        self.unknown: npt.NDArray[np.bool_] = grow(getattr(self, "unknown", None), np.bool_, False)
        self.req_temp: npt.NDArray[np.float64] = grow(
            getattr(self, "req_temp", None), np.float64, 1.0
        )
        self.safe_temp: npt.NDArray[np.float64] = grow(
            getattr(self, "safe_temp", None), np.float64, np.nan
        )
        self.safe_top_p_arr: npt.NDArray[np.float64] = grow(
            getattr(self, "safe_top_p_arr", None), np.float64, np.nan
        )
        self.generated: npt.NDArray[np.int64] = grow(getattr(self, "generated", None), np.int64, 0)
        self.stop: npt.NDArray[np.bool_] = grow(getattr(self, "stop", None), np.bool_, False)
        self.xban_id: I64 = grow(getattr(self, "xban_id", None), np.int64, -1)
        self.xban_state: U32 = grow(getattr(self, "xban_state", None), np.uint32, 0)
        self.tags: list[str | None] = [*getattr(self, "tags", []), *([None] * (cap - old))]
        self._cap = cap

    # ------------------------------------------------------------------ lifecycle

    def admit(
        self,
        slot: int,
        request: RequestOptions,
        temperature: float,
        prompt_ids: Sequence[int] | None,
    ) -> bool:
        """(Re)initialises ``slot`` for a new request; returns whether it is guarded.

        A recycled slot is fully overwritten, whatever its previous occupant left behind.
        """
        self._alloc(slot + 1)
        guarded = request.guarded(self.options)
        if request.switch == "off" and guarded:
            self.events.record("opt_out_refused", tag=request.tag, reason="opt-out not allowed")
        self.guarded[slot] = guarded
        self.state[slot] = self.bans.ban_start
        self.risk_state[slot] = self.bans.risk_start
        self.risk[slot] = 0.0
        self.threshold[slot] = (
            request.risk_threshold if request.risk_threshold is not None else self.default_threshold
        )
        self.safe[slot] = False
        self.unknown[slot] = False
        self.req_temp[slot] = float(temperature)
        st = (
            request.safe_temperature
            if request.safe_temperature is not None
            else self.safe_temperature
        )
        sp = request.safe_top_p if request.safe_top_p is not None else self.safe_top_p
        self.safe_temp[slot] = np.nan if st is None else st
        self.safe_top_p_arr[slot] = np.nan if sp is None else sp
        self.generated[slot] = 0
        self.stop[slot] = False
        self.xban_id[slot] = -1
        self.xban_state[slot] = 0
        self.tags[slot] = request.tag
        self.trackers.pop(slot, None)
        if self.reactive is not None:
            self.reactive.release(slot)
        if not guarded:
            return False
        noted, text_guard = self._admit_bans(slot, request) if request.bans else (None, None)
        if self.reactive is not None:
            # The request's own list is judged on the text too, like the policy's phrases.
            self.reactive.admit(slot, request.tag, {"request_bans": noted} if noted else None,
                                extra_guards=(text_guard,) if text_guard is not None else ())
        tools = self.bans.tools
        if tools is not None and request.tools:
            self.trackers[slot] = ToolTracker(tools, self.bans.detokenize)
        if prompt_ids:
            self.feed_history(slot, prompt_ids, is_prompt=True)
        return True

    def _admit_bans(self, slot: int, request: RequestOptions) -> tuple[dict[str, Any], Any]:
        """Compiles (or finds in the cache) the request's own ban list for ``slot``; returns
        what to record about it and its text guard (None when it could not be compiled).

        Runs inside vLLM's engine loop, where an exception would take the engine down: a list
        that cannot be compiled fails closed instead (the request is ended with end-of-sequence,
        as a reactive stop) and is recorded."""
        compiler = self.bans.requests
        try:
            if compiler is None:
                raise ValueError("this engine has no tokenizer to compile request bans with")
            bans, cached = compiler.get(request.bans)
        except Exception as err:  # the engine loop must survive a bad list; fail closed
            self.stop[slot] = True
            message = str(err)
            if not self.options.full_evidence:  # the phrases stay out of the log
                for index, phrase in enumerate(request.bans):
                    message = message.replace(phrase, f"<phrase {index}>")
            info: dict[str, Any] = {
                "sha256": ban_digest(request.bans),
                "phrases": len(request.bans),
                "error": message,
            }
            self.events.record(
                "request_bans_error",
                tag=request.tag,
                slot=slot,
                enforced=bool(len(self.eos_ids)),
                **info,
            )
            return info, None
        if bans.masker is not None:
            self._xbans[bans.id] = bans
            self.xban_id[slot] = bans.id
            self.xban_state[slot] = bans.start
            if len(self._xbans) > 2 * compiler.cache_size:
                live = set(self.xban_id[self.xban_id >= 0].tolist())
                self._xbans = {k: v for k, v in self._xbans.items() if k in live}
        info = summary(bans, cached, self.options.full_evidence)
        self.events.record("request_bans", tag=request.tag, slot=slot, **info)
        return info, bans.text_guard

    def request_bans(self, slot: int) -> RequestBans | None:
        """The request ban list ``slot`` is masked with, if any."""
        x = int(self.xban_id[slot]) if slot < self._cap else -1
        return self._xbans[x] if x >= 0 else None

    def release(self, slot: int) -> None:
        if slot < self._cap:
            self.guarded[slot] = False
            self.unknown[slot] = False
            self.xban_id[slot] = -1
            self.trackers.pop(slot, None)
            if self.reactive is not None:
                self.reactive.release(slot)

    def move(self, src: int, dst: int) -> None:
        """V1 ``UNIDIRECTIONAL`` move: ``dst`` takes ``src``'s request, ``src`` becomes empty."""
        self._alloc(max(src, dst) + 1)
        for arr in self._arrays():
            arr[dst] = arr[src]
        self.tags[dst] = self.tags[src]
        tracker = self.trackers.pop(src, None)
        self.trackers.pop(dst, None)
        if tracker is not None:
            self.trackers[dst] = tracker
        if self.reactive is not None:
            self.reactive.move(src, dst)
        self.release(src)

    def swap(self, a: int, b: int) -> None:
        self._alloc(max(a, b) + 1)
        for arr in self._arrays():
            arr[[a, b]] = arr[[b, a]]
        self.tags[a], self.tags[b] = self.tags[b], self.tags[a]
        ta, tb = self.trackers.pop(a, None), self.trackers.pop(b, None)
        if ta is not None:
            self.trackers[b] = ta
        if tb is not None:
            self.trackers[a] = tb
        if self.reactive is not None:
            self.reactive.swap(a, b)

    def _arrays(self) -> tuple[npt.NDArray[Any], ...]:
        return (
            self.guarded,
            self.state,
            self.risk_state,
            self.risk,
            self.threshold,
            self.safe,
            self.unknown,
            self.req_temp,
            self.safe_temp,
            self.safe_top_p_arr,
            self.generated,
            self.stop,
            self.xban_id,
            self.xban_state,
        )

    # ------------------------------------------------------------------ history

    def feed_history(
        self, slot: int, tokens: Sequence[int], *, is_prompt: bool = False, observe: bool = True
    ) -> None:
        """Advances one slot over several tokens (admission, catch-up after a gap).

        ``observe=False`` rebuilds the masker and risk states only (the tool tracker and the
        reactive layer have seen these tokens before)."""
        if not self.guarded[slot] or not len(tokens):
            return
        toks = [int(t) for t in tokens]
        if any(t < 0 for t in toks):
            # Placeholder ids: the history is unknown from here on, fail closed.
            self.unknown[slot] = True
            return
        masker = self.bans.ban_masker
        if masker is not None:
            self.state[slot] = masker.walk(int(self.state[slot]), toks)
        xbans = self.request_bans(slot)
        if xbans is not None and xbans.masker is not None:
            self.xban_state[slot] = xbans.masker.walk(int(self.xban_state[slot]), toks)
        risk = self.bans.risk_masker
        one = np.array([slot], dtype=np.int64)
        if risk is not None and self.adaptive_enabled:
            if is_prompt and not self.include_prompt_risk:
                self.risk_state[slot] = risk.walk(int(self.risk_state[slot]), toks)
            else:
                for t in toks:
                    if not is_prompt:
                        self.generated[slot] += 1
                    self._risk_step(one, np.array([t], dtype=np.int64))
        elif not is_prompt:
            self.generated[slot] += len(toks)
        tracker = self.trackers.get(slot) if observe else None
        if tracker is not None:
            tracker.feed_tokens(toks)
        if observe and not is_prompt and self.reactive is not None:
            for t in toks:
                self._react(slot, self.reactive.feed(slot, t))

    def feed(self, slots: I64, tokens: I64) -> None:
        """Advances each slot by the one token it sampled (``-1``: unknown, fails closed)."""
        if not len(slots):
            return
        keep = self.guarded[slots]
        if not keep.all():
            slots, tokens = slots[keep], tokens[keep]
            if not len(slots):
                return
        placeholder = tokens < 0
        if placeholder.any():
            self.unknown[slots[placeholder]] = True
            slots, tokens = slots[~placeholder], tokens[~placeholder]
            if not len(slots):
                return
        known = ~self.unknown[slots]
        if not known.all():
            slots, tokens = slots[known], tokens[known]
            if not len(slots):
                return
        masker = self.bans.ban_masker
        if masker is not None:
            states = np.ascontiguousarray(self.state[slots])
            masker.advance(states, np.ascontiguousarray(tokens))
            self.state[slots] = states
        if self._xbans:
            self._advance_request_bans(slots, tokens)
        # Counted first: a safe-mode switch records the number of tokens that led to it.
        self.generated[slots] += 1
        if self.bans.risk_masker is not None and self.adaptive_enabled:
            self._risk_step(slots, tokens)
        if self.trackers:
            for slot, tok in zip(slots.tolist(), tokens.tolist(), strict=True):
                tracker = self.trackers.get(slot)
                if tracker is not None:
                    tracker.feed_tokens([tok])
        reactive = self.reactive
        if reactive is not None and reactive.streams:
            for slot, tok in zip(slots.tolist(), tokens.tolist(), strict=True):
                self._react(slot, reactive.feed(slot, tok))

    def _advance_request_bans(self, slots: I64, tokens: I64) -> None:
        """One ``advance`` per distinct request list among ``slots`` (rows grouped by list)."""
        ids = self.xban_id[slots]
        has = ids >= 0
        if not has.any():
            return
        xslots, xtokens, xids = slots[has], tokens[has], ids[has]
        for key in np.unique(xids).tolist():
            masker = self._xbans[key].masker
            assert masker is not None
            sel = xids == key
            states = np.ascontiguousarray(self.xban_state[xslots[sel]])
            masker.advance(states, np.ascontiguousarray(xtokens[sel]))
            self.xban_state[xslots[sel]] = states

    def _react(self, slot: int, result: ReactiveResult | None) -> None:
        """Acts on the reactive layer's verdict for one request."""
        if result is None:
            return
        if result.stopped and not self.stop[slot]:
            self.stop[slot] = True
            self.events.record(
                "reactive_stop",
                tag=self.tags[slot],
                slot=slot,
                rules=result.rules,
                at_token=int(self.generated[slot]),
                enforced=bool(len(self.eos_ids)),
            )
        if (result.temperature is not None or result.top_p is not None) and not self.safe[slot]:
            if result.temperature is not None:
                self.safe_temp[slot] = result.temperature
            if result.top_p is not None:
                self.safe_top_p_arr[slot] = result.top_p
            self.risk[slot] = max(float(self.risk[slot]), float(self.threshold[slot]))
            self._check_threshold(np.array([slot], dtype=np.int64), source="policy")

    def resync(self, slot: int, prompt: Sequence[int], output: Sequence[int]) -> None:
        """Rebuilds a slot's state from its full known history (after placeholders resolved).

        Safe mode, once on, stays on; the risk is recounted over the known history."""
        self.unknown[slot] = False
        self.state[slot] = self.bans.ban_start
        xbans = self.request_bans(slot)
        self.xban_state[slot] = xbans.start if xbans is not None else 0
        self.risk_state[slot] = self.bans.risk_start
        self.risk[slot] = 0.0
        self.generated[slot] = 0
        self.feed_history(slot, prompt, is_prompt=True, observe=False)
        self.feed_history(slot, output, observe=False)

    def _risk_step(self, slots: I64, tokens: I64) -> None:
        risk = self.bans.risk_masker
        assert risk is not None
        states = np.ascontiguousarray(self.risk_state[slots])
        rows, toks = risk.banned(states)
        if len(rows):
            hit_rows = rows[toks == tokens[rows]]
            if len(hit_rows):
                hit_slots = slots[hit_rows]
                np.add.at(self.risk, hit_slots, self.risk_per_hit)
                self._check_threshold(np.unique(hit_slots))
        risk.advance(states, np.ascontiguousarray(tokens))
        self.risk_state[slots] = states

    def _check_threshold(self, slots: I64, source: str = "risk_phrases") -> None:
        crossing = slots[(self.risk[slots] >= self.threshold[slots]) & ~self.safe[slots]]
        for slot in crossing.tolist():
            self.safe[slot] = True
            st, sp = self.safe_temp[slot], self.safe_top_p_arr[slot]
            self.events.record(
                "safe_mode",
                tag=self.tags[slot],
                slot=slot,
                source=source,
                risk=float(self.risk[slot]),
                threshold=float(self.threshold[slot]),
                at_token=int(self.generated[slot]),
                request_temperature=float(self.req_temp[slot]),
                temperature=None if np.isnan(st) else float(st),
                top_p=None if np.isnan(sp) else float(sp),
            )

    # ------------------------------------------------------------------ the logits edit

    def apply(
        self,
        logits: torch.Tensor,
        row_slots: I64,
        row_states: U32 | None = None,
        row_xstates: U32 | None = None,
    ) -> torch.Tensor:
        """Edits ``logits`` (``[rows, vocab]``) in place for the guarded rows; returns it.

        ``row_slots[i]`` is the slot of row ``i``; ``row_states`` and ``row_xstates`` override
        the rows' states in the configured and the request maskers (speculative decoding: a
        draft row's history includes the drafts before it). A numpy array works as well as a
        torch tensor.
        """
        if not len(row_slots):
            return logits
        guarded = self.guarded[row_slots]
        if not guarded.any():
            return logits
        rows_g = np.nonzero(guarded)[0]
        slots_g = row_slots[rows_g]
        pair_rows: list[I64] = []
        pair_ids: list[I64] = []
        masker = self.bans.ban_masker
        if masker is not None:
            src = self.state[slots_g] if row_states is None else row_states[rows_g]
            states = np.ascontiguousarray(src, dtype=np.uint32)
            r, t = masker.banned(states)
            if len(r):
                pair_rows.append(rows_g[r])
                pair_ids.append(t)
        xkeys = self.xban_id[slots_g] if self._xbans else None
        if xkeys is not None and (xkeys >= 0).any():
            self._request_ban_pairs(rows_g, slots_g, xkeys, row_xstates, pair_rows, pair_ids)
        unknown = self.unknown[slots_g]
        if unknown.any():
            # Fail closed: with the history unknown, any banned sequence could be one token
            # from completion, so its last token is masked.
            urows = rows_g[unknown]
            before = len(pair_rows)
            last = self.bans.last_tokens
            if len(last):
                pair_rows.append(np.repeat(urows, len(last)))
                pair_ids.append(np.tile(last, len(urows)))
            if xkeys is not None:
                for row, key in zip(urows.tolist(), xkeys[unknown].tolist(), strict=True):
                    if key >= 0:
                        xlast = self._xbans[key].last_tokens
                        pair_rows.append(np.full(len(xlast), row, dtype=np.int64))
                        pair_ids.append(xlast)
            if len(pair_rows) > before:
                self.events.record("fail_closed", rows=len(urows), reason="unknown token history")
        if self.trackers:
            self._tool_pairs(logits, row_slots, rows_g, slots_g, pair_rows, pair_ids)
        if pair_rows:
            rows_all = np.concatenate(pair_rows)
            ids_all = np.concatenate(pair_ids)
            apply_pairs(logits, rows_all, ids_all)
        stopping = self.stop[slots_g]
        if stopping.any() and len(self.eos_ids):
            # The policy stopped this stream: only end-of-sequence may follow.
            for row in rows_g[stopping].tolist():
                logits[row] = float("-inf")
                logits[row, int(self.eos_ids[0])] = 0.0
        if self.adaptive_enabled:
            safe = self.safe[slots_g]
            if safe.any():
                import torch

                srows = rows_g[safe]
                sslots = slots_g[safe]
                apply_safe_mode(
                    logits,
                    torch.from_numpy(srows).to(logits.device),
                    self.req_temp[sslots],
                    self.safe_temp[sslots],
                    self.safe_top_p_arr[sslots],
                )
        return logits

    def _request_ban_pairs(
        self,
        rows_g: I64,
        slots_g: I64,
        xkeys: I64,
        row_xstates: U32 | None,
        pair_rows: list[I64],
        pair_ids: list[I64],
    ) -> None:
        """Banned pairs of the rows with a request list: one ``banned`` call per distinct list."""
        has = xkeys >= 0
        xrows, xslots, keys = rows_g[has], slots_g[has], xkeys[has]
        src = self.xban_state[xslots] if row_xstates is None else row_xstates[xrows]
        for key in np.unique(keys).tolist():
            masker = self._xbans[key].masker
            assert masker is not None
            sel = keys == key
            r, t = masker.banned(np.ascontiguousarray(src[sel], dtype=np.uint32))
            if len(r):
                pair_rows.append(xrows[sel][r])
                pair_ids.append(t)

    def _tool_pairs(
        self,
        logits: torch.Tensor,
        row_slots: I64,
        rows_g: I64,
        slots_g: I64,
        pair_rows: list[I64],
        pair_ids: list[I64],
    ) -> None:
        vocab = logits.shape[1]
        for row, slot in zip(rows_g.tolist(), slots_g.tolist(), strict=True):
            tracker = self.trackers.get(slot)
            if tracker is None:
                continue
            forced = tracker.next_forced(logits[row])
            if forced is not None:
                # Everything but the forced token: written as one slice, not as pairs.
                keep = float(logits[row, forced])
                logits[row].fill_(float("-inf"))
                logits[row, forced] = keep if math.isfinite(keep) else 0.0
                continue
            if tracker.in_argument and self.bans.tool_masker is not None:
                ids = self.bans.tool_masker.banned_tokens(tracker.tool_state)
                if ids:
                    arr = np.asarray(ids, dtype=np.int64)
                    arr = arr[arr < vocab]
                    pair_rows.append(np.full(len(arr), row, dtype=np.int64))
                    pair_ids.append(arr)
            if tracker.pending_event is not None:
                self.events.record("tool_call", tag=self.tags[slot], **tracker.pending_event)
                tracker.pending_event = None


def attach_reactive(
    core: GuardCore, policy_set: PolicySet | None, eos_ids: Sequence[int], model: str
) -> None:
    """Runs the policy's StreamGuard on the output when a policy set and the reactive layer are
    configured; ``eos_ids`` is how a stopped stream is ended."""
    core.eos_ids = np.asarray([int(t) for t in eos_ids], dtype=np.int64)
    reactive = core.options.guardrails.reactive
    if policy_set is None or not reactive.enabled:
        return
    core.reactive = ReactiveLayer(
        policy_set,
        core.bans.detokenize,
        holdback=reactive.holdback_size,
        check_interval=reactive.check_interval,
        model=model,
        full_evidence=core.options.full_evidence,
    )
    if core.options.decision_log:
        import atexit

        from checkstream.audit import DecisionLog

        log = DecisionLog(core.options.decision_log)
        atexit.register(log.close)
        core.reactive.log = log
