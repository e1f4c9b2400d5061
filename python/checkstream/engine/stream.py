"""StreamGuard: one output stream (one choice / content block) through the holdback buffer.

Per delta: phrases come from the Rust ``HoldbackBuffer``'s matcher; regex and PII scanners run
incrementally on a window that crosses chunk boundaries and hold (``hold_from``) any suffix that
could still become a match; classifiers run every ``check_interval`` deltas on the last ``window``
deltas, and nothing they have not seen is released. Then the fired rules act: ``stop`` stops the
buffer, ``redact`` redacts it, and only then is text released.

The per-delta cost is what a proxy pays on every token of every stream, so the step does as
little as it can:

* the deltas are kept as a list and joined only when a scanner or classifier reads them (a
  ``str +=`` on an attribute copies the whole tail every token);
* regex and PII scanners run every ``holdback`` deltas, not every delta: text leaves the buffer
  only ``holdback`` deltas after it arrived and never past what the scanners judged, so a scan
  that late still comes before any release of what it judges, and costs no latency; the
  pattern leaves' own (timed) scans are skipped when one search of their union finds nothing
  in the new text (``PatternProbe``);
* the buffer's external hold is recomputed only when a scanner or a classifier moved it;
* a classifier check may be *launched* when due (every ``check_interval`` deltas, the first one
  ``check_offset`` deltas early, so that streams in lockstep spread their checks) and *applied*
  ``classifier_lag`` deltas later
  (the proxy sets ``holdback - check_interval``): on the async path the model runs in the
  background, batched with the other streams' windows, while this stream keeps flowing, and the
  step that applies the verdict awaits it only if it is not in yet. Until it is applied, the
  text it judges stays held (the hold never passes the last applied check), so a late verdict
  can never leak. The verdict is applied at the same delta in ``feed`` and ``afeed``, so both
  paths decide identically. A launched check is its windows' futures in the classifiers'
  batchers (``Submitted``), polled on later deltas: no task and no timer of its own;
* a classifier that only shadow-mode rules read ("recorded, not acted on") can change nothing
  that is released, so its text is never held for it: on the async path its verdicts are
  recorded whenever the model returns (all of them by the end of the stream), and a slow or
  busy model costs the stream no latency. Only classifiers an enforced rule reads gate release.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from typing import TYPE_CHECKING, TypedDict

from checkstream._core import HoldbackBuffer
from checkstream.engine.classify import Submitted, group_by_classifier, run_sync
from checkstream.engine.events import (
    Firing,
    LeafEvent,
    failed_closed,
    fire_on_events,
    first_stop,
    note_failures,
    order_firings,
    plan_redactions,
)
from checkstream.engine.scanners import (
    SEAM_CONTEXT,
    PatternProbe,
    PatternStream,
    PiiStream,
    phrase_events_from_matches,
)
from checkstream.engine.types import (
    CheckRecord,
    DecodingParams,
    RequestContext,
    RuleHit,
    ScanTimeout,
    StreamStep,
)
from checkstream.policy.models import AdaptDecodingAction, Phase
from checkstream.policy.policyset import ClassifierLeaf, PhasePlan, holds, leaves_of

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


_Results = list[tuple[list[CheckRecord], list[LeafEvent]]]


_Groups = dict[str, tuple[ClassifierLeaf, ...]]


class _Check:
    """Classifier windows launched at one delta, applied at delta ``due``."""

    __slots__ = ("calls", "due", "end", "groups", "windows")

    def __init__(self, windows: list[_Window], groups: _Groups, due: int, end: int) -> None:
        self.windows = windows
        self.groups = groups  # the classifiers (and the leaves they answer) this check runs
        self.due = due
        self.end = end  # every character before this is inside one of the windows
        # Launched in the background (afeed): the windows' calls in the batchers, polled.
        self.calls: list[Submitted] | None = None

    def done(self) -> bool:
        # Polled on every delta while a shadow check is out: loops, not generators.
        if self.calls is None:
            return False
        for calls in self.calls:
            for future in calls.futures:
                if not future.done():
                    return False
        return True

    def judge(self) -> _Results:
        assert self.calls is not None
        return [c.judge() for c in self.calls]


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
        classifier_lag: int = 0,
        check_offset: int = 0,
    ) -> None:
        if holdback < 0 or check_interval < 1 or window < check_interval:
            raise ValueError(
                "need holdback >= 0, check_interval >= 1 and window >= check_interval (so that "
                "every delta is inside some classifier window)"
            )
        if window_chars < 2 * WINDOW_CONTEXT:
            raise ValueError(f"window_chars must be at least {2 * WINDOW_CONTEXT}")
        if classifier_lag < 0:
            raise ValueError("classifier_lag must be >= 0")
        if not 0 <= check_offset < check_interval:
            raise ValueError("check_offset must be >= 0 and < check_interval")
        pset = guard.policy_set
        self.guard = guard
        self.ctx = ctx
        self.policy_version = pset.version
        self.check_interval = check_interval
        self.check_offset = check_offset
        self.holdback = holdback
        self.window = window
        self.window_chars = window_chars
        self.classifier_lag = classifier_lag
        plan = pset.plan(PHASE)
        self._plan = plan
        self._phrase_ids = plan.phrase_ids
        self._patterns = [PatternStream(leaf) for leaf in plan.patterns]
        self._probe = PatternProbe(plan.patterns)
        self._pii = PiiStream(plan.pii) if plan.pii else None
        self._scanning = bool(self._patterns or self._pii)
        self._classifiers = group_by_classifier(plan.classifiers)
        gating = _enforced_classifiers(plan)
        self._gating = {k: v for k, v in self._classifiers.items() if k in gating}
        self._shadow = {k: v for k, v in self._classifiers.items() if k not in gating}
        # The classifier objects, looked up once (the guard checked they exist), in group order.
        get = guard.registry.get if guard.registry is not None else None
        self._gating_objs = tuple(get(n) for n in self._gating) if get is not None else ()
        self._shadow_objs = tuple(get(n) for n in self._shadow) if get is not None else ()
        self._buffer = HoldbackBuffer(holdback, pset.matcher if self._phrase_ids else None)
        self._keep_text = bool(self._scanning or self._classifiers)
        self._external_hold = bool(self._scanning or self._gating)
        self._hold: int | None = None
        if self._external_hold:
            # Nothing is judged yet; the hold moves as scanners and verdicts advance.
            self._hold = 0
            self._buffer.hold_from(0)
        self._hold_moved = False  # set when a scanner or a verdict may have moved the hold
        self._fired_leaves: set[int] = set()
        self._fired_rules: set[tuple[str, str]] = set()
        self._joined = ""  # the stream's text from absolute offset _text_start on ...
        self._tail: list[str] = []  # ... followed by these deltas, not joined yet
        self._text_start = 0
        self._end = 0
        self._deltas: deque[int] = deque(maxlen=window)  # start offsets of the last deltas
        # The first check comes `check_interval - check_offset` deltas in, then one every
        # `check_interval`: streams that advance in lockstep (a batch decoded together, or
        # started at once) but have different offsets launch their checks on different deltas,
        # instead of all on the same one.
        self._since_check = check_offset
        self._since_scan = 0
        self._scan_every = max(1, holdback)
        self._launched_to = 0  # text inside a launched classifier window
        self._checked_to = 0  # text inside an applied one (what the hold may pass)
        self._pending: deque[_Check] = deque()  # gating checks, applied when due
        self._shadow_pending: deque[_Check] = deque()  # shadow-only checks, recorded when in
        self._started = False
        self._finished = False
        self.stopped = False
        self.stop_message: str | None = None
        self.decoding: DecodingParams | None = None
        self.hits: list[RuleHit] = []  # everything this stream decided, for the decision record
        self.checks: list[CheckRecord] = []
        self.timeouts: list[ScanTimeout] = []  # pattern scans that ran out of time
        self._failed_closed: dict[str, str] = {}  # classifier -> "failed" / "timed out"
        self.released_chars = 0
        self.tokens = 0
        self._step_checks: list[CheckRecord] = []
        self._step_timeouts: list[ScanTimeout] = []
        self._redacted: list[tuple[int, int]] = []  # spans redacted and not yet released

    # ---- public API

    def feed(self, delta: str) -> StreamStep:
        if self.stopped or self._finished:
            return _empty(self.stopped, self.stop_message)
        released, events = self._begin(delta, background=False)
        if self._pending and self._pending[0].due <= self.tokens:
            events += self._apply_sync(final=False)
        if self._shadow_pending:
            events += self._apply_sync(final=False, gating=False)
        return self._complete(released, events, final=False)

    async def afeed(self, delta: str) -> StreamStep:
        if self.stopped or self._finished:
            return _empty(self.stopped, self.stop_message)
        released, events = self._begin(delta, background=True)
        if self._pending and self._pending[0].due <= self.tokens:
            events += await self._apply_async(final=False)
        if self._shadow_pending and self._shadow_pending[0].done():
            events += self._apply_shadow_ready()
        return self._complete(released, events, final=False)

    def finish(self) -> StreamStep:
        if self.stopped or self._finished:
            return _empty(self.stopped, self.stop_message)
        events = self._begin_finish()
        if self._pending:
            events += self._apply_sync(final=True)
        if self._shadow_pending:
            events += self._apply_sync(final=True, gating=False)
        return self._complete("", events, final=True)

    async def afinish(self) -> StreamStep:
        if self.stopped or self._finished:
            return _empty(self.stopped, self.stop_message)
        events = self._begin_finish()
        if self._pending:
            events += await self._apply_async(final=True)
        while self._shadow_pending:  # every shadow verdict is in the record at the end
            check = self._shadow_pending.popleft()
            events += self._applied(check, await self._awaited(check), gating=False)
        return self._complete("", events, final=True)

    @property
    def held_text(self) -> str:
        return str(self._buffer.held_text)

    @property
    def _text(self) -> str:
        """The stream's text from ``_text_start`` on (joins the deltas not joined yet)."""
        if self._tail:
            self._joined += "".join(self._tail)
            self._tail.clear()
        return self._joined

    # ---- the step, in two halves around the (sync or async) classifier call

    def _begin(self, delta: str, *, background: bool) -> tuple[str, list[LeafEvent]]:
        # The buffer's external hold was set by the previous step and only moves when a
        # scanner or a classifier verdict moves it.
        released, matches = self._buffer.push(delta)
        self.tokens += 1
        start = self._end
        self._deltas.append(start)
        if self._keep_text:  # phrases alone need no text here: the buffer has it
            self._tail.append(delta)
        self._end = start + len(delta)
        events = (
            phrase_events_from_matches(self.guard.policy_set, matches, self._phrase_ids)
            if matches
            else []
        )
        if self._scanning:
            self._since_scan += 1
            if self._since_scan >= self._scan_every:
                events += self._scan(final=False)
        if self._classifiers:
            self._since_check += 1
            if self._since_check >= self.check_interval:
                self._launch(background)
        return released, events

    def _begin_finish(self) -> list[LeafEvent]:
        self._finished = True
        matches = self._buffer.finish()
        events = phrase_events_from_matches(self.guard.policy_set, matches, self._phrase_ids)
        if self._scanning:
            events += self._scan(final=True)
        if self._classifiers and self._end > self._launched_to:
            self._launch(background=False)
        return events

    def _scan(self, *, final: bool) -> list[LeafEvent]:
        text, origin, end = self._text, self._text_start, self._end
        events: list[LeafEvent] = []
        judged = end
        patterns = self._patterns
        if patterns and self._probe.clear(text, min(p.scan_from for p in patterns) - origin, final):
            for scanner in patterns:  # no leaf can match in the new text: nothing to scan
                scanner.skip_to(end)
            patterns = []
        for scanner in patterns:
            events += scanner.step(text, origin, final=final)
            judged = min(judged, scanner.scan_from)
            if scanner.timeout is not None:
                self.timeouts.append(scanner.timeout)
                self._step_timeouts.append(scanner.timeout)
        if self._pii is not None:
            events += self._pii.step(text, origin, final=final)
            judged = min(judged, self._pii.scan_from)
        self._since_scan = 0
        # Text is released `holdback` deltas after it arrived, so scanning every `holdback`
        # deltas judges it in time. A scan that left a possible match pending holds the stream
        # at its start: look again sooner, so that the hold is lifted without a stall.
        self._scan_every = max(1, self.holdback if judged >= end else self.holdback // 2)
        self._hold_moved = True
        return events

    # ---- classifiers: launched when due, applied `classifier_lag` deltas later

    def _launch(self, background: bool) -> None:
        if self._end <= self._launched_to:
            self._since_check = 0
            return
        windows = self._windows()
        due, end = self.tokens + self.classifier_lag, self._launched_to
        if self._gating:
            check = _Check(windows, self._gating, due, end)
            if background and self.classifier_lag > 0:
                check.calls = self._submit(windows, self._gating)
            self._pending.append(check)
        if self._shadow:
            shadow = _Check(windows, self._shadow, due, end)
            if background:  # never awaited before the end of the stream
                shadow.calls = self._submit(windows, self._shadow)
            self._shadow_pending.append(shadow)

    def _windows(self) -> list[_Window]:
        """The classifier windows covering every character no window has covered yet.

        Normally one: the last ``window`` deltas, at most ``window_chars`` characters. A huge
        delta (a whole non-streamed answer) is cut into consecutive windows, so a model that
        truncates its input never leaves the end of a long text unscored.
        """
        lo = max(self._deltas[0] if self._deltas else self._end, self._text_start)
        text_all, origin = self._text, self._text_start
        out: list[_Window] = []
        new_from = self._launched_to
        while True:
            end = min(self._end, new_from + self.window_chars - WINDOW_CONTEXT)
            if self._end - end < WINDOW_CONTEXT:
                end = self._end  # no sliver of a last window
            start = max(lo, end - self.window_chars)
            text = text_all[start - origin : end - origin]
            out.append({"text": text, "phase": PHASE, "start": start, "end": end})
            if end >= self._end:
                break
            new_from = end
        self._since_check = 0
        self._launched_to = self._end
        return out

    def _run_sync(self, windows: list[_Window], groups: _Groups) -> _Results:
        return [run_sync(self.guard.registry, groups, **w) for w in windows]

    def _submit(self, windows: list[_Window], groups: _Groups) -> list[Submitted]:
        objs = self._gating_objs if groups is self._gating else self._shadow_objs
        return [
            Submitted(objs, groups, w["text"], phase=PHASE, start=w["start"], end=w["end"])
            for w in windows
        ]

    async def _awaited(self, check: _Check) -> _Results:
        """The check's verdicts, submitting its windows now if it was not launched yet."""
        if check.calls is None:
            check.calls = self._submit(check.windows, check.groups)
        try:
            for calls in check.calls:
                await calls.wait()
        except asyncio.CancelledError:  # the caller went away: no window of it needs scoring
            for calls in check.calls:
                calls.cancel()
            raise
        return check.judge()

    def _due(self, final: bool, queue: deque[_Check] | None = None) -> list[_Check]:
        queue = self._pending if queue is None else queue
        out: list[_Check] = []
        while queue and (final or queue[0].due <= self.tokens):
            out.append(queue.popleft())
        return out

    def _apply_sync(self, *, final: bool, gating: bool = True) -> list[LeafEvent]:
        """The due checks of the gating queue (or, ``gating=False``, the shadow queue: on the
        sync path shadow checks are judged when due like the others)."""
        events: list[LeafEvent] = []
        for check in self._due(final, self._pending if gating else self._shadow_pending):
            if check.done():
                results = check.judge()
            else:  # launched by afeed, now fed synchronously: judge it here
                for calls in check.calls or ():
                    calls.cancel()
                results = self._run_sync(check.windows, check.groups)
            events += self._applied(check, results, gating=gating)
        return events

    def _apply_shadow_ready(self) -> list[LeafEvent]:
        """Shadow checks on the async path: recorded in launch order once the model answered;
        nothing waits for them."""
        events: list[LeafEvent] = []
        queue = self._shadow_pending
        while queue and queue[0].done():
            check = queue.popleft()
            events += self._applied(check, check.judge(), gating=False)
        return events

    async def _apply_async(self, *, final: bool) -> list[LeafEvent]:
        events: list[LeafEvent] = []
        for check in self._due(final):
            events += self._applied(check, await self._awaited(check))
        return events

    def _applied(self, check: _Check, results: _Results, *, gating: bool = True) -> list[LeafEvent]:
        events: list[LeafEvent] = []
        for records, found in results:
            self.checks.extend(records)
            self._step_checks.extend(records)
            self._failed_closed.update(failed_closed(records))
            events += found
        if gating:  # a shadow verdict moves no hold: the text never waited for it
            self._checked_to = check.end
            self._hold_moved = True
        return events

    def _drop_pending(self) -> None:
        """After a stop: verdicts still to come decide nothing (their text is never released)
        and are not recorded, so that ``feed`` and ``afeed`` leave the same record."""
        for check in (*self._pending, *self._shadow_pending):
            for calls in check.calls or ():
                calls.cancel()
        self._pending.clear()
        self._shadow_pending.clear()

    # ---- decisions and release

    def _complete(self, released: str, events: list[LeafEvent], *, final: bool) -> StreamStep:
        step_checks = self._step_checks
        if step_checks:
            self._step_checks = []
        step_timeouts = self._step_timeouts
        if step_timeouts:
            self._step_timeouts = []
        # The usual token fired nothing: no rule to judge (context rules fire on the first step,
        # end rules on the last).
        hits = self._decide(events, final) if events or final or not self._started else []
        text = released
        if not self.stopped:
            buffer = self._buffer
            if final:
                if self._external_hold:
                    buffer.hold_from(None)
                text += buffer.flush()
            else:
                if self._hold_moved:
                    self._hold_moved = False
                    hold = self._hold_position()
                    if hold != self._hold:
                        self._hold = hold
                        buffer.hold_from(hold)
                    self._trim()
                text += buffer.release()
        self.released_chars += len(text)
        return _step(
            text,
            self.stopped,
            self.stop_message,
            hits,
            step_checks or [],
            self.decoding,
            step_timeouts or [],
        )

    def _decide(self, events: list[LeafEvent], final: bool) -> list[RuleHit]:
        """The rules the step's events (and, first and last, the context and end) fire, acted
        on: their hits."""
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
                    firings.append(
                        Firing(
                            rule,
                            None,
                            None,
                            None,
                            "judged at end of text",
                            timed_out=any(
                                t.rule == rule.name and t.policy == rule.policy
                                for t in self.timeouts
                            ),
                        )
                    )
        if firings and self._failed_closed:
            firings = note_failures(firings, self._failed_closed)
        return self._act(order_firings(firings)) if firings else []

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
            self._drop_pending()
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
        """Nothing from here on may leave: the earliest offset a scanner has not judged or a
        classifier verdict has not been applied to."""
        pos = self._end
        for scanner in self._patterns:
            pos = min(pos, scanner.scan_from)
        if self._pii is not None:
            pos = min(pos, self._pii.scan_from)
        if self._gating:
            pos = min(pos, self._checked_to)
        return pos

    def _trim(self) -> None:
        """Drop text no scanner or classifier window can still need (keeps the work O(n))."""
        if self._end - self._text_start <= 4096 + SEAM_CONTEXT:
            return
        keep = self._end
        for scanner in self._patterns:
            keep = min(keep, scanner.scan_from)
        if self._pii is not None:
            keep = min(keep, self._pii.scan_from)
        if self._classifiers and self._deltas:
            keep = min(keep, self._deltas[0])
        keep = max(self._text_start, keep - SEAM_CONTEXT)
        if keep - self._text_start > 4096:
            self._joined = self._text[keep - self._text_start :]
            self._text_start = keep


def _enforced_classifiers(plan: PhasePlan) -> frozenset[str]:
    """Classifiers that an enforced rule of the phase reads: only their verdicts gate release."""
    return frozenset(
        leaf.name
        for rule in plan.rules
        if rule.mode == "enforce"
        for leaf in leaves_of(rule.trigger)
        if isinstance(leaf, ClassifierLeaf)
    )


def _empty(stopped: bool, message: str | None) -> StreamStep:
    return StreamStep("", stopped, message, [])


_new = object.__new__
# The slots' own setters: a frozen dataclass's __init__ goes through object.__setattr__ per
# field (~0.9 us a step, on every token of every stream); this builds the same object in half.
_STEP_FIELDS = ("text", "stopped", "stop_message", "hits", "checks", "decoding", "timeouts")
_set_text, _set_stopped, _set_message, _set_hits, _set_checks, _set_decoding, _set_timeouts = (
    getattr(StreamStep, name).__set__ for name in _STEP_FIELDS
)
assert tuple(f.name for f in dataclasses.fields(StreamStep)) == _STEP_FIELDS


def _step(
    text: str,
    stopped: bool,
    message: str | None,
    hits: list[RuleHit],
    checks: list[CheckRecord],
    decoding: DecodingParams | None,
    timeouts: list[ScanTimeout],
) -> StreamStep:
    """``StreamStep(...)``, built through its slots' setters."""
    step: StreamStep = _new(StreamStep)
    _set_text(step, text)
    _set_stopped(step, stopped)
    _set_message(step, message)
    _set_hits(step, hits)
    _set_checks(step, checks)
    _set_decoding(step, decoding)
    _set_timeouts(step, timeouts)
    return step


__all__ = ["StreamGuard"]
