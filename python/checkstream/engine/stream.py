"""StreamGuard: one output stream (one choice / content block) through the holdback buffer.

Per delta: phrases come from the Rust ``HoldbackBuffer``'s matcher; regex and PII scanners run
incrementally on a window that crosses chunk boundaries and hold (``hold_from``) any suffix that
could still become a match; classifiers run every ``check_interval`` deltas on the last ``window``
deltas, and nothing they have not seen is released. Then the fired rules act: ``stop`` stops the
buffer, ``redact`` redacts it, and only then is text released.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, TypedDict

from checkstream._core import HoldbackBuffer
from checkstream.engine.classify import group_by_classifier, run_async, run_sync
from checkstream.engine.events import (
    Firing,
    LeafEvent,
    fire_on_events,
    first_stop,
    order_firings,
    plan_redactions,
)
from checkstream.engine.scanners import (
    SEAM_CONTEXT,
    PatternStream,
    PiiStream,
    phrase_events_from_matches,
)
from checkstream.engine.types import (
    CheckRecord,
    DecodingParams,
    RequestContext,
    RuleHit,
    StreamStep,
)
from checkstream.policy.models import AdaptDecodingAction, Phase
from checkstream.policy.policyset import holds

if TYPE_CHECKING:
    from checkstream.engine.guard import Guard

log = logging.getLogger("checkstream.engine")
PHASE: Phase = "midstream"
# Characters of already-scored text a classifier window starts with, so that text cut into
# several windows is never judged without what came just before it.
WINDOW_CONTEXT = 128


class _Window(TypedDict):
    text: str
    phase: str
    start: int
    end: int


class StreamGuard:
    """Guards one stream of text deltas. Not thread-safe: one per stream, fed in order."""

    def __init__(
        self,
        guard: Guard,
        ctx: RequestContext,
        *,
        holdback: int = 16,
        check_interval: int = 8,
        window: int = 64,
        window_chars: int = 1024,
    ) -> None:
        if holdback < 0 or check_interval < 1 or window < check_interval:
            raise ValueError(
                "need holdback >= 0, check_interval >= 1 and window >= check_interval (so that "
                "every delta is inside some classifier window)"
            )
        if window_chars < 2 * WINDOW_CONTEXT:
            raise ValueError(f"window_chars must be at least {2 * WINDOW_CONTEXT}")
        pset = guard.policy_set
        self.guard = guard
        self.ctx = ctx
        self.policy_version = pset.version
        self.check_interval = check_interval
        self.holdback = holdback
        self.window = window
        self.window_chars = window_chars
        plan = pset.plan(PHASE)
        self._plan = plan
        self._phrase_ids = plan.phrase_ids
        self._patterns = [PatternStream(leaf) for leaf in plan.patterns]
        self._pii = PiiStream(plan.pii) if plan.pii else None
        self._classifiers = group_by_classifier(plan.classifiers)
        self._buffer = HoldbackBuffer(holdback, pset.matcher if self._phrase_ids else None)
        self._external_hold = bool(self._patterns or self._pii or self._classifiers)
        self._fired_leaves: set[int] = set()
        self._fired_rules: set[tuple[str, str]] = set()
        self._text = ""  # the stream's text from absolute offset _text_start on
        self._text_start = 0
        self._end = 0
        self._deltas: deque[int] = deque(maxlen=window)  # start offsets of the last deltas
        self._since_check = 0
        self._since_scan = 0
        self._scan_every = max(1, holdback // 2)
        self._checked_to = 0
        self._started = False
        self._finished = False
        self.stopped = False
        self.stop_message: str | None = None
        self.decoding: DecodingParams | None = None
        self.hits: list[RuleHit] = []  # everything this stream decided, for the decision record
        self.checks: list[CheckRecord] = []
        self.released_chars = 0
        self.tokens = 0
        self._step_checks: list[CheckRecord] = []
        self._redacted: list[tuple[int, int]] = []  # spans redacted and not yet released

    # ---- public API

    def feed(self, delta: str) -> StreamStep:
        if self.stopped or self._finished:
            return _empty(self.stopped, self.stop_message)
        released, events = self._begin(delta)
        if self._classifier_due(final=False):
            events += self._classify_sync()
        return self._complete(released, events, final=False)

    async def afeed(self, delta: str) -> StreamStep:
        if self.stopped or self._finished:
            return _empty(self.stopped, self.stop_message)
        released, events = self._begin(delta)
        if self._classifier_due(final=False):
            events += await self._classify_async()
        return self._complete(released, events, final=False)

    def finish(self) -> StreamStep:
        if self.stopped or self._finished:
            return _empty(self.stopped, self.stop_message)
        events = self._begin_finish()
        if self._classifier_due(final=True):
            events += self._classify_sync()
        return self._complete("", events, final=True)

    async def afinish(self) -> StreamStep:
        if self.stopped or self._finished:
            return _empty(self.stopped, self.stop_message)
        events = self._begin_finish()
        if self._classifier_due(final=True):
            events += await self._classify_async()
        return self._complete("", events, final=True)

    @property
    def held_text(self) -> str:
        return str(self._buffer.held_text)

    # ---- the step, in two halves around the (sync or async) classifier call

    def _begin(self, delta: str) -> tuple[str, list[LeafEvent]]:
        buffer = self._buffer
        if self._external_hold:
            # Nothing past what every scanner has judged may leave with this push.
            buffer.hold_from(self._hold_position())
        released, matches = buffer.push(delta)
        self.tokens += 1
        self._since_check += 1
        self._deltas.append(self._end)
        self._text += delta
        self._end += len(delta)
        events = phrase_events_from_matches(self.guard.policy_set, matches, self._phrase_ids)
        self._since_scan += 1
        if self._since_scan >= self._scan_every:
            # Text is only released `holdback` deltas after it arrived and never past what the
            # scanners judged, so scanning every holdback/2 deltas costs no extra latency while
            # dividing the regex/PII work.
            self._since_scan = 0
            for scanner in self._patterns:
                events += scanner.step(self._text, self._text_start, final=False)
            if self._pii is not None:
                events += self._pii.step(self._text, self._text_start, final=False)
        return released, events

    def _begin_finish(self) -> list[LeafEvent]:
        self._finished = True
        matches = self._buffer.finish()
        events = phrase_events_from_matches(self.guard.policy_set, matches, self._phrase_ids)
        for scanner in self._patterns:
            events += scanner.step(self._text, self._text_start, final=True)
        if self._pii is not None:
            events += self._pii.step(self._text, self._text_start, final=True)
        return events

    def _classifier_due(self, *, final: bool) -> bool:
        if not self._classifiers or self._end <= self._checked_to:
            return False
        return final or self._since_check >= self.check_interval

    def _windows(self) -> list[_Window]:
        """The classifier windows covering every unchecked character.

        Normally one: the last ``window`` deltas, at most ``window_chars`` characters. A huge
        delta (a whole non-streamed answer) is cut into consecutive windows, so a model that
        truncates its input never leaves the end of a long text unscored.
        """
        lo = max(self._deltas[0] if self._deltas else self._end, self._text_start)
        out: list[_Window] = []
        new_from = self._checked_to
        while True:
            end = min(self._end, new_from + self.window_chars - WINDOW_CONTEXT)
            if self._end - end < WINDOW_CONTEXT:
                end = self._end  # no sliver of a last window
            start = max(lo, end - self.window_chars)
            text = self._text[start - self._text_start : end - self._text_start]
            out.append({"text": text, "phase": PHASE, "start": start, "end": end})
            if end >= self._end:
                break
            new_from = end
        self._since_check = 0
        self._checked_to = self._end
        return out

    def _classify_sync(self) -> list[LeafEvent]:
        events: list[LeafEvent] = []
        for window in self._windows():
            records, found = run_sync(self.guard.registry, self._classifiers, **window)
            self._note_checks(records)
            events += found
        return events

    async def _classify_async(self) -> list[LeafEvent]:
        windows = self._windows()
        results = await asyncio.gather(
            *(run_async(self.guard.registry, self._classifiers, **w) for w in windows)
        )
        events: list[LeafEvent] = []
        for records, found in results:
            self._note_checks(records)
            events += found
        return events

    def _note_checks(self, records: list[CheckRecord]) -> None:
        self.checks.extend(records)
        self._step_checks.extend(records)

    def _complete(self, released: str, events: list[LeafEvent], *, final: bool) -> StreamStep:
        step_checks, self._step_checks = self._step_checks, []
        firings: list[Firing] = []
        if not self._started:
            self._started = True
            firings += [
                Firing(r, None, None, None, "context matched")
                for r in self._plan.context_rules
                if holds(r.trigger, self._fired_leaves, self.ctx)
            ]
        if events:
            firings += fire_on_events(self._plan, events, self._fired_leaves, self.ctx)
        if final:
            # `not` over content can only be judged once the whole text is known.
            for rule in self._plan.end_rules:
                key = (rule.policy, rule.name)
                if (
                    key not in self._fired_rules
                    and not any(f.rule is rule for f in firings)
                    and holds(rule.trigger, self._fired_leaves, self.ctx)
                ):
                    firings.append(Firing(rule, None, None, None, "judged at end of text"))
        hits = self._act(order_firings(firings)) if firings else []
        text = released
        if not self.stopped:
            if self._external_hold:
                self._buffer.hold_from(None if final else self._hold_position())
            text += self._buffer.flush() if final else self._buffer.release()
        self.released_chars += len(text)
        self._trim()
        return StreamStep(text, self.stopped, self.stop_message, hits, step_checks, self.decoding)

    def _act(self, firings: list[Firing]) -> list[RuleHit]:
        hits = [f.hit(PHASE) for f in firings]
        for firing in firings:
            self._fired_rules.add((firing.rule.policy, firing.rule.name))
        self.hits.extend(hits)
        enforced = [f for f in firings if f.rule.mode == "enforce"]
        stop = first_stop(enforced)
        if stop is not None:
            self._buffer.stop()
            self.stopped = True
            action = stop.rule.action("stop")
            self.stop_message = getattr(action, "message", None)
        else:
            floor = int(self._buffer.released_chars)
            self._redacted = [(s, e) for s, e in self._redacted if e > floor]
            for start, end, replacement in plan_redactions(enforced, floor, self._redacted):
                self._buffer.redact(start, end, replacement)
                self._redacted.append((start, end))
        for firing in enforced:
            adapt = firing.rule.action("adapt_decoding")
            if isinstance(adapt, AdaptDecodingAction):
                self.decoding = (self.decoding or DecodingParams()).tighten(
                    adapt.temperature, adapt.top_p
                )
        self.guard.side_effects(firings, hits, self.ctx)
        return hits

    def _hold_position(self) -> int:
        pos = self._end
        for scanner in self._patterns:
            pos = min(pos, scanner.scan_from)
        if self._pii is not None:
            pos = min(pos, self._pii.scan_from)
        if self._classifiers:
            pos = min(pos, self._checked_to)
        return max(pos, int(self._buffer.released_chars))

    def _trim(self) -> None:
        """Drop text no scanner or classifier window can still need (keeps the work O(n))."""
        keep = self._end
        for scanner in self._patterns:
            keep = min(keep, scanner.scan_from)
        if self._pii is not None:
            keep = min(keep, self._pii.scan_from)
        if self._classifiers and self._deltas:
            keep = min(keep, self._deltas[0])
        keep = max(self._text_start, keep - SEAM_CONTEXT)
        if keep - self._text_start > 4096:
            self._text = self._text[keep - self._text_start :]
            self._text_start = keep


def _empty(stopped: bool, message: str | None) -> StreamStep:
    return StreamStep("", stopped, message, [])


__all__ = ["StreamGuard"]
