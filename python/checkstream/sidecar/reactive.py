"""The reactive layer: the policy engine's StreamGuard on each guarded request's output text.

Token masks cover the phrases a tokenizer can spell; patterns, PII, classifiers and spellings
outside the masker's caps are judged on text. Inside the sampler, the output is detokenised in
chunks of ``check_interval`` tokens and fed to one :class:`~checkstream.engine.StreamGuard` per
request. A rule that stops the stream makes the processor force the end-of-sequence token for
that request (text already returned by vLLM cannot be taken back here: the masks come first, and
``checkstream sidecar serve`` puts the same policies' StreamGuard between vLLM's server and the
client, see :mod:`checkstream.sidecar.serve`); a rule with ``adapt_decoding`` switches the
request to safe mode with the rule's values.
The policy logic itself stays in :mod:`checkstream.engine`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from checkstream.policy import PolicySet


@dataclass
class ReactiveResult:
    stopped: bool = False
    stop_message: str | None = None
    rules: list[str] = field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None


class ReactiveLayer:
    def __init__(
        self,
        policy_set: PolicySet,
        detokenize: Callable[[Sequence[int]], str],
        *,
        holdback: int,
        check_interval: int,
        model: str,
        full_evidence: bool = False,
    ) -> None:
        from checkstream.engine import Guard

        self.guard = Guard(policy_set)
        self.detokenize = detokenize
        self.holdback = holdback
        self.check_interval = check_interval
        self.model = model
        # Per slot: the policy set's StreamGuard, then one per extra guard (a request's own
        # ban list); all of them read the same text.
        self.streams: dict[int, tuple[Any, ...]] = {}
        self.pending: dict[int, list[int]] = {}
        self.output: dict[int, list[str]] = {}
        # Extra top-level fields of a slot's decision record (e.g. its request ban list).
        self.notes: dict[int, dict[str, Any]] = {}
        self.full_evidence = full_evidence
        self.policy_version = policy_set.version
        # Same decision log as the proxy (checkstream.audit.DecisionLog); None: no records.
        self.log: Any | None = None

    def admit(
        self,
        slot: int,
        tag: str | None,
        notes: Mapping[str, Any] | None = None,
        extra_guards: Sequence[Any] = (),
    ) -> None:
        from checkstream.engine import RequestContext

        ctx = RequestContext(
            request_id=tag or f"slot-{slot}", tenant="vllm", endpoint="sidecar", model=self.model
        )
        # The rows of a batch decode in lockstep: offsetting each row's classifier checks by
        # its slot spreads the model's windows over the interval's steps instead of running all
        # of them on one step.
        self.streams[slot] = tuple(
            guard.stream(ctx, holdback=max(self.holdback, 1), check_interval=self.check_interval,
                         check_offset=slot % self.check_interval)
            for guard in (self.guard, *extra_guards)
        )
        self.pending[slot] = []
        self.output[slot] = []
        if notes:
            self.notes[slot] = dict(notes)

    def release(self, slot: int) -> None:
        """The request left the batch: judge its last text and write its decision record."""
        streams = self.streams.pop(slot, None)
        pending = self.pending.pop(slot, None)
        output = self.output.pop(slot, None)
        notes = self.notes.pop(slot, None)
        if streams is None or self.log is None:
            return
        from checkstream.engine.records import build_record

        text = self.detokenize(pending) if pending else ""
        if text:
            (output or []).append(text)
        for stream in streams:
            if text:
                stream.feed(text)
            stream.finish()
        record = build_record(
            streams[0].ctx,
            ingress=None,
            streams=list(streams),
            egress=None,
            latencies_ms={},
            input_text="",
            output_text="".join(output or []),
            full_evidence=self.full_evidence,
            policy_version=self.policy_version,
        )
        if notes:
            record.update(notes)
        self.log.append(record)

    def move(self, src: int, dst: int) -> None:
        self.release(dst)
        if src in self.streams:
            self.streams[dst] = self.streams.pop(src)
            self.pending[dst] = self.pending.pop(src)
            self.output[dst] = self.output.pop(src)
        if src in self.notes:
            self.notes[dst] = self.notes.pop(src)

    def swap(self, a: int, b: int) -> None:
        sa, sb = self.streams.pop(a, None), self.streams.pop(b, None)
        pa, pb = self.pending.pop(a, None), self.pending.pop(b, None)
        oa, ob = self.output.pop(a, None), self.output.pop(b, None)
        if sa is not None and pa is not None and oa is not None:
            self.streams[b], self.pending[b], self.output[b] = sa, pa, oa
        if sb is not None and pb is not None and ob is not None:
            self.streams[a], self.pending[a], self.output[a] = sb, pb, ob
        na, nb = self.notes.pop(a, None), self.notes.pop(b, None)
        if na is not None:
            self.notes[b] = na
        if nb is not None:
            self.notes[a] = nb

    def feed(self, slot: int, token: int) -> ReactiveResult | None:
        """Queues a token; every ``check_interval`` tokens judges the new text."""
        pending = self.pending.get(slot)
        if pending is None:
            return None
        pending.append(token)
        if len(pending) < self.check_interval:
            return None
        text = self.detokenize(pending)
        if text.endswith("\ufffd") and len(pending) < 4 * self.check_interval:
            return None  # a character split across tokens: wait for the rest of it
        pending.clear()
        self.output[slot].append(text)
        result = ReactiveResult()
        decided = False
        for stream in self.streams[slot]:
            step = stream.feed(text)
            result.rules += [hit.rule for hit in step.hits]
            if step.stopped and not result.stopped:
                result.stopped, result.stop_message = True, step.stop_message
            if step.decoding is not None:
                decided = True
                result.temperature = step.decoding.temperature
                result.top_p = step.decoding.top_p
        if not result.stopped and not result.rules and not decided:
            return None
        return result
