"""Leaf events (a content trigger matched a span) and turning fired rules into hits and edits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from checkstream.engine.types import CheckRecord, RuleHit
from checkstream.policy.models import AuditAction, RedactAction
from checkstream.policy.policyset import CompiledRule, PhasePlan, RequestLike, holds

DEFAULT_REPLACEMENT = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class LeafEvent:
    """A content leaf matched ``[start, end)`` (absolute offsets in the scanned text)."""

    leaf: int
    start: int
    end: int
    score: float | None = None
    detail: str = ""
    placeholder: str | None = None  # PII: the entity's placeholder, e.g. "[EMAIL]"
    timed_out: bool = False  # a pattern scan ran out of time; the span is what it left unjudged


@dataclass(frozen=True, slots=True)
class Firing:
    rule: CompiledRule
    start: int | None
    end: int | None
    score: float | None
    detail: str
    placeholder: str | None = None
    timed_out: bool = False

    def hit(self, phase: str, message_index: int | None = None) -> RuleHit:
        rule = self.rule
        audit = rule.action("audit")
        return RuleHit(
            rule=rule.name,
            policy=rule.policy,
            phase=phase,
            action=rule.primary_action,
            mode=rule.mode,
            start=self.start,
            end=self.end,
            score=self.score,
            regulation=rule.regulation,
            citation=rule.citation,
            detail=self.detail,
            actions=rule.action_kinds,
            message_index=message_index,
            category=audit.category if isinstance(audit, AuditAction) else None,
            severity=audit.severity if isinstance(audit, AuditAction) else None,
            timed_out=self.timed_out,
        )

    def replacement(self) -> str:
        action = self.rule.action("redact")
        assert isinstance(action, RedactAction)
        if action.replacement is not None:
            return action.replacement
        return self.placeholder or DEFAULT_REPLACEMENT


def fire_on_events(
    plan: PhasePlan,
    events: Iterable[LeafEvent],
    fired_leaves: set[int],
    ctx: RequestLike | None,
) -> list[Firing]:
    """Feed events in text order, firing each rule whose trigger is true on that event.

    Processing in offset order (not arrival order) is what makes the decision independent of how
    a stream was chunked. Only the rules the event's leaf can make true are looked at, so the
    cost per event does not grow with the size of the set.
    """
    out: list[Firing] = []
    for event in sorted(events, key=lambda e: (e.end, e.start, e.leaf)):
        fired_leaves.add(event.leaf)
        for rule in plan.rules_by_leaf.get(event.leaf, ()):
            if holds(rule.trigger, fired_leaves, ctx):
                out.append(
                    Firing(
                        rule,
                        event.start,
                        event.end,
                        event.score,
                        event.detail,
                        event.placeholder,
                        event.timed_out,
                    )
                )
    return out


def order_firings(firings: list[Firing]) -> list[Firing]:
    """Priority order (then load order, then position): the order actions are applied in."""
    return sorted(firings, key=lambda f: (-f.rule.priority, f.rule.order, f.start or 0))


def plan_redactions(
    firings: Iterable[Firing], floor: int = 0, done: Iterable[tuple[int, int]] = ()
) -> list[tuple[int, int, str]]:
    """Non-overlapping redactions, higher-priority rules first.

    Text below ``floor`` is already released; ``done`` spans were redacted by earlier steps of the
    same stream and are not redacted again.
    """
    taken: list[tuple[int, int]] = list(done)
    out: list[tuple[int, int, str]] = []
    for firing in order_firings(list(firings)):
        if firing.rule.mode != "enforce" or firing.rule.action("redact") is None:
            continue
        if firing.start is None or firing.end is None:
            continue
        pieces = [(max(firing.start, floor), firing.end)]
        for t_start, t_end in taken:
            next_pieces = []
            for start, end in pieces:
                if end <= t_start or start >= t_end:
                    next_pieces.append((start, end))
                    continue
                if start < t_start:
                    next_pieces.append((start, t_start))
                if end > t_end:
                    next_pieces.append((t_end, end))
            pieces = next_pieces
        for start, end in pieces:
            if end > start:
                taken.append((start, end))
                out.append((start, end, firing.replacement()))
    out.sort()
    # Adjacent pieces with the same replacement (one rule matching a span twice, by a phrase and
    # a pattern, say) become one replacement rather than a stutter.
    merged: list[tuple[int, int, str]] = []
    for start, end, replacement in out:
        if merged and merged[-1][1] == start and merged[-1][2] == replacement:
            merged[-1] = (merged[-1][0], end, replacement)
        else:
            merged.append((start, end, replacement))
    return merged


def apply_redactions(text: str, redactions: Sequence[tuple[int, int, str]]) -> str:
    parts: list[str] = []
    cursor = 0
    for start, end, replacement in sorted(redactions):
        parts.append(text[cursor:start])
        parts.append(replacement)
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def first_stop(firings: Iterable[Firing]) -> Firing | None:
    for firing in order_firings(list(firings)):
        if firing.rule.mode == "enforce" and firing.rule.action("stop") is not None:
            return firing
    return None


def failed_closed(checks: Iterable[CheckRecord]) -> dict[str, str]:
    """Classifiers whose check failed closed, and why ("failed" or "timed out")."""
    return {
        c.classifier: "timed out" if c.timed_out else "failed"
        for c in checks
        if c.resolution == "fail_closed"
    }


def note_failures(firings: list[Firing], failed: Mapping[str, str]) -> list[Firing]:
    """Firings whose rule reads a classifier that failed closed under a ``not`` say so.

    Such a check counts as "not found" so that the rule fires: the hit cannot point at the
    classifier's span (it is no positive leaf), so its detail names the failure.
    """
    if not failed:
        return firings
    out: list[Firing] = []
    for firing in firings:
        names = sorted(firing.rule.negated_classifiers & failed.keys())
        note = "".join(
            f"; classifier {n} {failed[n]}, fail mode closed: counted as not found under `not`"
            for n in names
        )
        out.append(replace(firing, detail=firing.detail + note) if note else firing)
    return out
