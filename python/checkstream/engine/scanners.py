"""Content scanners: whole-text scans (ingress, egress) and incremental stream scanners.

The stream scanners never rescan judged text: each keeps ``scan_from``, the earliest offset from
which a match could still begin or grow, and reports it so the holdback buffer keeps everything
from there on unreleased. Total work per stream is linear in its length (plus at most
``max_length`` characters re-read while a partial match is pending).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from checkstream.engine.events import LeafEvent
from checkstream.policy.policyset import PatternLeaf, PhasePlan, PiiLeaf, PolicySet

# Characters of already-judged text kept in front of ``scan_from`` so that look-behinds and word
# boundaries at the seam see the same text as a whole-text scan would.
SEAM_CONTEXT = 64
# A PII candidate (a PEM key block, say) may legitimately be long; past this the scanner judges
# what it has rather than holding the stream indefinitely.
PII_MAX_HOLD = 16384


def phrase_events(pset: PolicySet, text: str, wanted: Collection[int]) -> list[LeafEvent]:
    """Phrase leaf events from one pass of the set's shared matcher over ``text``."""
    if pset.matcher is None or not wanted:
        return []
    return phrase_events_from_matches(pset, pset.matcher.find_all(text), wanted)


def phrase_events_from_matches(
    pset: PolicySet,
    matches: Sequence[tuple[int, int, int]],
    wanted: Collection[int],
) -> list[LeafEvent]:
    # Details name the phrase, never the matched text: hits end up in decision records.
    out: list[LeafEvent] = []
    seen: set[tuple[int, int, int]] = set()
    for index, start, end in matches:
        for leaf in pset.phrase_leaves[index]:
            if leaf in wanted and (leaf, start, end) not in seen:
                seen.add((leaf, start, end))
                out.append(LeafEvent(leaf, start, end, None, f"phrase {pset.phrases[index]!r}"))
    return out


def pattern_events(leaf: PatternLeaf, text: str) -> list[LeafEvent]:
    return [
        LeafEvent(leaf.id, m.start(), m.end(), None, f"pattern /{leaf.source}/")
        for m in leaf.compiled.finditer(text)
        if m.end() > m.start()
    ]


def pii_events(leaves: Sequence[PiiLeaf], text: str) -> list[LeafEvent]:
    from checkstream.classifiers import find_pii

    if not leaves:
        return []
    entities = frozenset().union(*(leaf.entities for leaf in leaves))
    out: list[LeafEvent] = []
    for match in find_pii(text, entities):
        for leaf in leaves:
            if match.entity in leaf.entities:
                out.append(
                    LeafEvent(
                        leaf.id,
                        match.start,
                        match.end,
                        None,
                        f"pii {match.entity}",
                        match.placeholder,
                    )
                )
    return out


def content_events(pset: PolicySet, plan: PhasePlan, text: str) -> list[LeafEvent]:
    """Every deterministic (phrase, pattern, PII) leaf event of one phase in ``text``."""
    events = phrase_events(pset, text, plan.phrase_ids)
    for leaf in plan.patterns:
        events.extend(pattern_events(leaf, text))
    events.extend(pii_events(plan.pii, text))
    return events


class PatternStream:
    """One regex over a stream, using ``partial=True`` to hold what could still become a match."""

    def __init__(self, leaf: PatternLeaf) -> None:
        self.leaf = leaf
        self.scan_from = 0

    def step(self, text: str, text_start: int, final: bool) -> list[LeafEvent]:
        """Scan ``text`` (which begins at absolute ``text_start``) from ``scan_from``."""
        leaf = self.leaf
        end = text_start + len(text)
        out: list[LeafEvent] = []
        pos = self.scan_from - text_start
        while True:
            resume: int | None = None
            for m in leaf.compiled.finditer(text, pos, partial=not final):
                start_abs = text_start + m.start()
                pending = m.partial or (not final and m.end() == len(text))
                if pending and end - start_abs <= leaf.max_length:
                    self.scan_from = start_abs
                    return out
                if m.end() > m.start() and not m.partial:
                    out.append(
                        LeafEvent(
                            leaf.id,
                            start_abs,
                            text_start + m.end(),
                            None,
                            f"pattern /{leaf.source}/",
                        )
                    )
                elif pending:
                    # Longer than max_length and still partial: give up on this start position.
                    resume = m.start() + 1
                    break
            if resume is None or resume > len(text):
                break
            pos = resume
        self.scan_from = end
        return out


class PiiStream:
    """The PII recognizers over a stream, holding what ``pii_hold_from`` says could still grow."""

    def __init__(self, leaves: Sequence[PiiLeaf]) -> None:
        self.leaves = tuple(leaves)
        self.entities = frozenset().union(*(leaf.entities for leaf in leaves))
        self.scan_from = 0
        self._emitted_to = 0

    def step(self, text: str, text_start: int, final: bool) -> list[LeafEvent]:
        from checkstream.classifiers import find_pii, pii_hold_from

        end = text_start + len(text)
        base = max(0, self.scan_from - text_start - SEAM_CONTEXT)
        window = text[base:]
        origin = text_start + base
        hold = None if final else pii_hold_from(window, self.entities)
        if hold is not None and end - (origin + hold) > PII_MAX_HOLD:
            hold = None
        limit = end if hold is None else origin + hold
        out: list[LeafEvent] = []
        next_from = limit
        for match in find_pii(window, self.entities):
            start, stop = origin + match.start, origin + match.end
            if start < self._emitted_to or stop <= self.scan_from:
                continue  # already reported, or wholly inside judged seam context
            if not final and (stop > limit or match.end == len(window)):
                next_from = min(next_from, start)  # could still grow: judge it later
                break
            self._emitted_to = stop
            for leaf in self.leaves:
                if match.entity in leaf.entities:
                    out.append(
                        LeafEvent(
                            leaf.id, start, stop, None, f"pii {match.entity}", match.placeholder
                        )
                    )
        self.scan_from = next_from
        return out
