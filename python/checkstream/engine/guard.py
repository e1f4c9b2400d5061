"""Guard: a policy set (plus classifiers) applied to requests. Immutable; cheap to build.

``ingress`` judges every message (system, tool and assistant content carry injections too),
``stream`` returns a :class:`StreamGuard` per output stream, ``egress`` adds disclaimers, and
``check_output`` is the non-streaming path, implemented through the same StreamGuard so that the
two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Literal

from checkstream.engine.classify import group_by_classifier, run_async, run_sync, text_windows
from checkstream.engine.events import (
    Firing,
    LeafEvent,
    apply_redactions,
    failed_closed,
    first_stop,
    note_failures,
    order_firings,
    plan_redactions,
)
from checkstream.engine.scanners import content_events
from checkstream.engine.stream import StreamGuard
from checkstream.engine.types import (
    ChatMessage,
    CheckRecord,
    EgressResult,
    IngressResult,
    OutputResult,
    Phase,
    RequestContext,
    RuleHit,
    ScanTimeout,
)
from checkstream.policy.loader import RegistryLike, shipped_registry
from checkstream.policy.models import (
    AddSystemPromptAction,
    InjectDisclaimerAction,
    LogAction,
    NotifyAction,
    StopAction,
)
from checkstream.policy.notify import Notifier, default_notifier
from checkstream.policy.policyset import PhasePlan, PolicySet, holds

log = logging.getLogger("checkstream.engine")
# What scanning one text gives: leaf events, classifier records and pattern scans that timed out.
_Scanned = tuple[list[LeafEvent], list[CheckRecord], list[ScanTimeout]]
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class Guard:
    """Applies one immutable :class:`PolicySet`. Safe to share across threads and requests."""

    def __init__(
        self,
        policy_set: PolicySet,
        classifiers: RegistryLike | None = None,
        *,
        notifier: Notifier | None = None,
    ) -> None:
        """``classifiers``: the registry the set's classifier triggers use (None: the shipped
        one, loaded once per process, and only if the set names a classifier). ``notifier``:
        where ``notify`` actions go (None: a process-wide background notifier)."""
        self.policy_set = policy_set
        if classifiers is None and policy_set.classifier_names:
            classifiers = shipped_registry()
        self.registry = classifiers
        if classifiers is not None:
            missing = policy_set.classifier_names - frozenset(classifiers.names())
            if missing:
                raise ValueError(
                    f"classifier registry lacks {sorted(missing)} used by the policy set"
                )
        self.notifier = notifier

    @property
    def policy_version(self) -> str:
        return self.policy_set.version

    # ---- ingress

    def ingress(self, messages: Sequence[ChatMessage], ctx: RequestContext) -> IngressResult:
        began = time.perf_counter()
        per_message = [
            self._scan_sync("ingress", message.content, index, message.role)
            for index, message in enumerate(messages)
        ]
        return self._ingress_result(messages, ctx, per_message, began)

    async def aingress(self, messages: Sequence[ChatMessage], ctx: RequestContext) -> IngressResult:
        """``ingress`` with classifiers through their async micro-batchers."""
        began = time.perf_counter()
        per_message = [
            await self._scan_async("ingress", message.content, index, message.role)
            for index, message in enumerate(messages)
        ]
        return self._ingress_result(messages, ctx, per_message, began)

    def _ingress_result(
        self,
        messages: Sequence[ChatMessage],
        ctx: RequestContext,
        scanned: list[_Scanned],
        began: float,
    ) -> IngressResult:
        hits: list[RuleHit] = []
        checks: list[CheckRecord] = []
        timeouts: list[ScanTimeout] = []
        out_messages: list[ChatMessage] = []
        additions: list[str] = []
        all_firings: list[Firing] = []
        modified = False
        plan = self.policy_set.plan("ingress")
        context_only = {id(r) for r in plan.context_rules}
        context_fired: set[int] = set()
        for index, (message, (events, found_checks, found_timeouts)) in enumerate(
            zip(messages, scanned, strict=True)
        ):
            checks.extend(found_checks)
            timeouts.extend(found_timeouts)
            firings = []
            for firing in order_firings(
                _fire_whole(plan, events, ctx, message.role, found_timeouts, found_checks)
            ):
                rule_id = id(firing.rule)
                if rule_id in context_only:
                    # A rule on the request alone fires once per request, not once per message.
                    if rule_id in context_fired:
                        continue
                    context_fired.add(rule_id)
                firings.append(firing)
            all_firings.extend(firings)
            hits.extend(
                f.hit("ingress", None if id(f.rule) in context_only else index) for f in firings
            )
            redactions = plan_redactions(firings)
            if redactions:
                modified = True
                message = ChatMessage(
                    message.role, apply_redactions(message.content, redactions), message.name
                )
            out_messages.append(message)
        ordered = order_firings(all_firings)
        for firing in ordered:
            action = firing.rule.action("add_system_prompt")
            if (
                firing.rule.mode == "enforce"
                and isinstance(action, AddSystemPromptAction)
                and action.text not in additions
            ):
                additions.append(action.text)
        stop = first_stop(ordered)
        self.side_effects(ordered, hits, ctx)
        latency = (time.perf_counter() - began) * 1000
        if stop is not None:
            action = stop.rule.action("stop")
            assert isinstance(action, StopAction)
            return IngressResult(
                "block",
                list(messages),
                [],
                action.message,
                action.status,
                hits,
                checks,
                latency,
                timeouts,
            )
        verdict: Literal["pass", "modify"] = "modify" if modified or additions else "pass"
        return IngressResult(
            verdict, out_messages, additions, None, 200, hits, checks, latency, timeouts
        )

    # ---- midstream

    def stream(
        self,
        ctx: RequestContext,
        *,
        holdback: int = 16,
        check_interval: int = 8,
        window: int = 64,
        window_chars: int = 1024,
        classifier_lag: int = 0,
        check_offset: int = 0,
    ) -> StreamGuard:
        """One guard per output stream (choice / content block): ``holdback`` deltas are held;
        classifiers run every ``check_interval`` deltas on the last ``window`` deltas (at most
        ``window_chars`` characters a window), and their verdicts are applied
        ``classifier_lag`` deltas after the check started (``afeed`` runs the model meanwhile;
        up to ``holdback - check_interval`` this costs no release latency, and nothing a
        verdict judges is released before it is applied). ``check_offset`` (below
        ``check_interval``) brings the first check that many deltas earlier: streams that advance
        in lockstep spread their checks over the interval instead of all checking on one delta."""
        return StreamGuard(
            self,
            ctx,
            holdback=holdback,
            check_interval=check_interval,
            window=window,
            window_chars=window_chars,
            classifier_lag=classifier_lag,
            check_offset=check_offset,
        )

    def check_output(self, text: str, ctx: RequestContext) -> OutputResult:
        """Non-streaming output: the same StreamGuard path as streaming (feed all, finish)."""
        sg = self.stream(ctx)
        first = sg.feed(text)
        last = sg.finish()
        return _output_result(sg, first.text + last.text)

    async def acheck_output(self, text: str, ctx: RequestContext) -> OutputResult:
        sg = self.stream(ctx)
        first = await sg.afeed(text)
        last = await sg.afinish()
        return _output_result(sg, first.text + last.text)

    # ---- egress

    def egress(self, full_text: str, ctx: RequestContext) -> EgressResult:
        began = time.perf_counter()
        return self._egress_result(self._scan_sync("egress", full_text, None, None), ctx, began)

    async def aegress(self, full_text: str, ctx: RequestContext) -> EgressResult:
        began = time.perf_counter()
        scanned = await self._scan_async("egress", full_text, None, None)
        return self._egress_result(scanned, ctx, began)

    def _egress_result(self, scanned: _Scanned, ctx: RequestContext, began: float) -> EgressResult:
        events, checks, timeouts = scanned
        firings = order_firings(
            _fire_whole(self.policy_set.plan("egress"), events, ctx, None, timeouts, checks)
        )
        hits = [f.hit("egress") for f in firings]
        prepend: list[str] = []
        append: list[str] = []
        for firing in firings:
            action = firing.rule.action("inject_disclaimer")
            if firing.rule.mode != "enforce" or not isinstance(action, InjectDisclaimerAction):
                continue
            target = prepend if action.position == "prepend" else append
            if action.text not in target:  # one disclaimer however often its rule matched
                target.append(action.text)
        self.side_effects(firings, hits, ctx)
        return EgressResult(
            "".join(p + "\n\n" for p in prepend),
            "".join("\n\n" + a for a in append),
            hits,
            checks,
            (time.perf_counter() - began) * 1000,
            timeouts,
        )

    # ---- shared

    def _scan_sync(self, phase: Phase, text: str, index: int | None, role: str | None) -> _Scanned:
        plan = self.policy_set.plan(phase)
        events, timeouts = content_events(self.policy_set, plan, text, phase, index)
        groups = group_by_classifier(plan.classifiers)
        checks: list[CheckRecord] = []
        if groups and text:
            for start, end in text_windows(len(text)):
                found_checks, found = run_sync(
                    self.registry,
                    groups,
                    text[start:end],
                    phase=phase,
                    start=start,
                    end=end,
                    message_index=index,
                )
                checks.extend(found_checks)
                events.extend(found)
        return events, checks, timeouts

    async def _scan_async(
        self, phase: Phase, text: str, index: int | None, role: str | None
    ) -> _Scanned:
        plan = self.policy_set.plan(phase)
        events, timeouts = content_events(self.policy_set, plan, text, phase, index)
        groups = group_by_classifier(plan.classifiers)
        checks: list[CheckRecord] = []
        if groups and text:
            results = await asyncio.gather(
                *(
                    run_async(
                        self.registry,
                        groups,
                        text[start:end],
                        phase=phase,
                        start=start,
                        end=end,
                        message_index=index,
                    )
                    for start, end in text_windows(len(text))
                )
            )
            for found_checks, found in results:
                checks.extend(found_checks)
                events.extend(found)
        return events, checks, timeouts

    def side_effects(
        self, firings: Sequence[Firing], hits: Sequence[RuleHit], ctx: RequestContext
    ) -> None:
        """Log and notify for enforced rules; notifications are queued, never sent inline."""
        for firing, hit in zip(firings, hits, strict=True):
            if firing.rule.mode != "enforce":
                continue
            for action in firing.rule.actions:
                if isinstance(action, LogAction):
                    log.log(
                        _LEVELS[action.level],
                        "rule %s/%s fired (%s) on %s: %s",
                        hit.policy,
                        hit.rule,
                        hit.phase,
                        ctx.request_id,
                        hit.detail,
                    )
                elif isinstance(action, NotifyAction):
                    notifier = self.notifier
                    if notifier is None:
                        notifier = default_notifier()
                    notifier.submit(action, hit, ctx, self.policy_set.version)


def _output_result(sg: StreamGuard, text: str) -> OutputResult:
    """A whole-output check's result, once ``sg`` has released ``text`` and finished."""
    return OutputResult(
        text,
        sg.stopped,
        sg.stop_message,
        list(sg.hits),
        list(sg.checks),
        list(sg.timeouts),
    )


def _fire_whole(
    plan: PhasePlan,
    events: Sequence[LeafEvent],
    ctx: RequestContext,
    roles_of: str | None = None,
    timeouts: Sequence[ScanTimeout] = (),
    checks: Sequence[CheckRecord] = (),
) -> list[Firing]:
    """Rules over a whole text: each true rule fires once per span of its positive leaves.

    Only rules that can be true are looked at: those a fired leaf feeds, context-only rules and
    rules with a ``not``. A hit that a classifier failing closed under a ``not`` let fire says
    so in its detail.
    """
    fired = {e.leaf for e in events}
    by_leaf: dict[int, list[LeafEvent]] = {}
    for event in events:
        by_leaf.setdefault(event.leaf, []).append(event)
    candidates = {id(r): r for leaf in fired for r in plan.rules_by_leaf.get(leaf, ())}
    candidates.update({id(r): r for r in plan.context_rules})
    candidates.update({id(r): r for r in plan.end_rules})
    out: list[Firing] = []
    for rule in sorted(candidates.values(), key=lambda r: (-r.priority, r.order)):
        if roles_of is not None and rule.roles is not None and roles_of not in rule.roles:
            continue
        if not holds(rule.trigger, fired, ctx):
            continue
        spans = sorted(
            (e for leaf in rule.positive for e in by_leaf.get(leaf, [])),
            key=lambda e: (e.start, e.end),
        )
        if not spans:
            why = "context matched" if not rule.positive else "judged on the whole text"
            ran_out = any(t.rule == rule.name and t.policy == rule.policy for t in timeouts)
            out.append(Firing(rule, None, None, None, why, timed_out=ran_out))
        for e in spans:
            out.append(Firing(rule, e.start, e.end, e.score, e.detail, e.placeholder, e.timed_out))
    return note_failures(out, failed_closed(checks))
