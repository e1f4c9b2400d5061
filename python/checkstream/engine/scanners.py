"""Content scanners: whole-text scans (ingress, egress) and incremental stream scanners.

The stream scanners never rescan judged text: each keeps ``scan_from``, the earliest offset from
which a match could still begin or grow, and reports it so the holdback buffer keeps everything
from there on unreleased. Total work per stream is linear in its length (plus at most
``max_length`` characters re-read while a partial match is pending).

Every regex call runs under the pattern's ``timeout_s`` (the ``regex`` module's ``timeout=``,
one :class:`ScanBudget` per scan however many calls the scan makes), so a catastrophically
backtracking user pattern cannot stall a stream or the event loop. A scan that runs out of
time stops there: the text it left unjudged resolves by the rule's fail mode (a ``timed_out``
event over that text when it counts as a match) and is recorded as a :class:`ScanTimeout`,
never dropped.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Collection, Sequence

import regex

from checkstream.engine.events import LeafEvent
from checkstream.engine.types import ScanTimeout
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


# A pattern's timeout is per this many characters scanned (at least one such window per scan):
# a midstream step reads a few dozen characters, but a prompt or a non-streamed answer is read
# in one scan, and a legitimate pattern's cost grows with the text. Linear in the text, the
# limit still cuts off the exponential cost of catastrophic backtracking.
SCAN_WINDOW = 2048
# After a regex timeout that this thread's own clock does not confirm, a scan resumes at most
# this many times; the next call's regex timeout is scaled by how much faster the process's CPU
# clock ran than this thread's (with a margin), at most by MAX_SCALE.
MAX_RETRIES = 3
MAX_SCALE = 16.0
_CONFIRM = 0.9  # a call that got this share of what it was given really ran out of time


class ScanBudget:
    """The CPU time one pattern scan may use, counted on the scanning thread's own clock.

    The ``regex`` module times a call out on the *process's* CPU clock, which every other thread
    advances too: an ONNX classifier working beside the event loop would make a cheap scan of a
    legitimate pattern "time out", and a closed fail mode would then stop a benign stream. So a
    regex timeout counts only when this thread itself used (nearly) the time the call was
    given. Otherwise the scan resumes where it had got to, with the regex timeout scaled up
    by the clocks' ratio; the attempt cut short is not charged. A scan therefore uses at most
    ``limit`` of this thread's CPU, plus what ``MAX_RETRIES`` resumed calls can overrun when
    the other threads fall idle during one.
    """

    __slots__ = ("_given", "_spent", "_thread", "began", "limit", "retries", "scale", "waived")

    def __init__(self, seconds: float, chars: int = 0) -> None:
        """``seconds`` per ``SCAN_WINDOW`` characters of the ``chars`` the scan reads."""
        self.limit = seconds * max(1, -(-chars // SCAN_WINDOW))
        self.began = -1.0  # read with the first call's clock (one clock read per common scan)
        self.retries = 0
        self.scale = 1.0
        self.waived = 0.0  # thread time of calls cut short by other threads' CPU use
        self._given = self._thread = 0.0
        self._spent = False

    def timeout(self) -> float:
        """The ``timeout=`` for the next regex call (raises TimeoutError if none is left)."""
        now = time.thread_time()
        if self.began < 0:
            self.began = now
        left = self.limit - (now - self.began - self.waived)
        if left <= 0:
            self._spent = True
            raise TimeoutError("pattern scan budget spent")
        self._given, self._thread = left, now
        return left * self.scale

    def out_of_time(self) -> bool:
        """After a regex ``TimeoutError``: whether the scan is out of time (else: resume)."""
        used = time.thread_time() - self._thread
        if self._spent or used >= _CONFIRM * self._given or self.retries >= MAX_RETRIES:
            return True
        # The call stopped when the process's clock had run the timeout it was given.
        ran = self._given * self.scale
        self.retries += 1
        self.waived += used
        self.scale = min(MAX_SCALE, max(2.0 * self.scale, 1.25 * ran / max(used, 1e-6)))
        return False


def timed_out(
    leaf: PatternLeaf,
    budget: ScanBudget,
    phase: str,
    start: int,
    end: int,
    message_index: int | None = None,
) -> tuple[list[LeafEvent], ScanTimeout]:
    """A scan of ``leaf`` that ran out of ``budget`` with ``[start, end)`` unjudged: the event
    it resolves to (none when it counts as no match) and its record."""
    ms = round(budget.limit * 1000, 3)
    record = ScanTimeout(
        leaf.rule,
        leaf.policy,
        phase,
        leaf.source,
        start,
        end,
        ms,
        "fail_closed" if leaf.fail_mode == "closed" else "fail_open",
        message_index,
    )
    if not leaf.match_on_timeout:
        return [], record
    detail = f"pattern /{leaf.source}/ timed out after {ms:g} ms; fail mode {leaf.fail_mode}"
    return [LeafEvent(leaf.id, start, end, None, detail, timed_out=True)], record


def scan_pattern(
    leaf: PatternLeaf, text: str, phase: str, message_index: int | None = None
) -> tuple[list[LeafEvent], ScanTimeout | None]:
    """One whole-text scan of ``leaf``: its events, and its timeout record if it ran out of time."""
    out: list[LeafEvent] = []
    judged = 0  # no match can start before this (finditer does not look back)
    budget = ScanBudget(leaf.timeout_s, len(text))
    while True:
        try:
            for m in leaf.compiled.finditer(text, judged, timeout=budget.timeout()):
                if m.end() > m.start():
                    detail = f"pattern /{leaf.source}/"
                    out.append(LeafEvent(leaf.id, m.start(), m.end(), None, detail))
                judged = m.end()
            return out, None
        except TimeoutError:
            if budget.out_of_time():
                events, record = timed_out(leaf, budget, phase, judged, len(text), message_index)
                return out + events, record


def pattern_events(leaf: PatternLeaf, text: str) -> list[LeafEvent]:
    """``scan_pattern``'s events (a timeout shows only as a ``timed_out`` event, if it resolves
    to one); the engine uses ``scan_pattern`` so that every timeout is recorded."""
    return scan_pattern(leaf, text, "ingress")[0]


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


def content_events(
    pset: PolicySet, plan: PhasePlan, text: str, phase: str, message_index: int | None = None
) -> tuple[list[LeafEvent], list[ScanTimeout]]:
    """Every deterministic (phrase, pattern, PII) leaf event of one phase in ``text``, and the
    pattern scans that ran out of time."""
    events = phrase_events(pset, text, plan.phrase_ids)
    timeouts: list[ScanTimeout] = []
    for leaf in plan.patterns:
        found, timeout = scan_pattern(leaf, text, phase, message_index)
        events.extend(found)
        if timeout is not None:
            timeouts.append(timeout)
    events.extend(pii_events(plan.pii, text))
    return events, timeouts


# A `(?` that opens anything but a plain group or a look-around (inline flags, comments,
# recursion, conditionals, branch reset), or `\G` (anchored at the search's start): a pattern
# with one is never put into a union, where it could mean something else.
_NOT_UNION_SAFE = regex.compile(r"\(\?(?![:=!>]|<[=!])|\\G")


def union_safe(leaf: PatternLeaf) -> bool:
    """Whether ``leaf``'s pattern means the same as one branch of a non-capturing union: no
    capturing groups (whose numbers would shift, with backreferences to them), no inline flags
    and none of the constructs that refer to the whole pattern or to the search's start."""
    return leaf.compiled.groups == 0 and _NOT_UNION_SAFE.search(leaf.source) is None


@functools.lru_cache(maxsize=64)
def _union(sources: tuple[str, ...], flags: int) -> regex.Pattern[str] | None:
    try:
        return regex.compile("|".join(f"(?:{source})" for source in sources), flags)
    except regex.error:
        return None


class PatternProbe:
    """One search for all of a stream's pattern leaves, before their own scans: the union of
    their patterns. When it finds nothing in the new text (beyond the empty partial match
    every pattern has at the end of a text that may still grow), no leaf can match or start a
    match there, and their scans, each a regex call under its own timeout, are skipped.

    Only leaves whose patterns are ``union_safe`` and share their flags are united (else there
    is no probe). The probe runs under the shortest of the leaves' timeouts; a probe that
    times out is dropped for the rest of the stream, and that step scans leaf by leaf as
    before, so a slow pattern costs at most one probe timeout more.
    """

    __slots__ = ("compiled", "timeout_s")

    def __init__(self, leaves: Sequence[PatternLeaf]) -> None:
        self.compiled: regex.Pattern[str] | None = None
        self.timeout_s = min((leaf.timeout_s for leaf in leaves), default=0.0)
        flags = {leaf.compiled.flags for leaf in leaves}
        if len(leaves) > 1 and len(flags) == 1 and all(union_safe(leaf) for leaf in leaves):
            self.compiled = _union(tuple(leaf.source for leaf in leaves), flags.pop())

    def clear(self, text: str, pos: int, final: bool) -> bool:
        """True when no leaf can match, nor start a match that more text could complete,
        anywhere in ``text[pos:]``: each leaf's step from ``pos`` (or later) would find nothing
        and move its ``scan_from`` to the end of ``text``."""
        if self.compiled is None:
            return False
        try:
            m = self.compiled.search(text, pos, partial=not final, timeout=self.timeout_s)
        except TimeoutError:
            self.compiled = None
            return False
        return m is None or m.start() == len(text)


class PatternStream:
    """One regex over a stream, using ``partial=True`` to hold what could still become a match."""

    def __init__(self, leaf: PatternLeaf, phase: str = "midstream") -> None:
        self.leaf = leaf
        self.phase = phase
        self.scan_from = 0
        self.timeout: ScanTimeout | None = None  # set by a step that ran out of time

    def skip_to(self, end: int) -> None:
        """What ``step`` does when its text holds nothing for this leaf up to ``end``."""
        self.timeout = None
        self.scan_from = end

    def step(self, text: str, text_start: int, final: bool) -> list[LeafEvent]:
        """Scan ``text`` (which begins at absolute ``text_start``) from ``scan_from``.

        One budget (``timeout_s`` per ``SCAN_WINDOW`` characters read) covers the whole step.
        When it runs out, the text from where
        the scan had got to is judged by the fail mode (``timeout`` says so) and the scan goes
        on after it next time.
        """
        leaf = self.leaf
        end = text_start + len(text)
        out: list[LeafEvent] = []
        self.timeout = None
        pos = self.scan_from - text_start
        judged = pos  # relative offset no match can start before any more
        budget = ScanBudget(leaf.timeout_s, len(text) - pos)
        while True:
            resume: int | None = None
            try:
                for m in leaf.compiled.finditer(
                    text, pos, partial=not final, timeout=budget.timeout()
                ):
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
                        judged = m.end()
                    elif pending:
                        # Longer than max_length and still partial: give up on this start.
                        resume = judged = m.start() + 1
                        break
                    else:
                        judged = m.end()
            except TimeoutError:
                if budget.out_of_time():
                    start = min(text_start + judged, end)
                    events, self.timeout = timed_out(leaf, budget, self.phase, start, end)
                    out += events
                    break
                pos = judged  # not this thread's time that ran out: go on from here
                continue
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
