"""The compiled, immutable form of a policy set: what the engine evaluates on every token."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

import regex

from checkstream.policy.models import (
    ACTION_RANK,
    DEFAULT_TIMEOUT_MS,
    Action,
    ContextTrigger,
    FailMode,
    Mode,
    Phase,
    PolicyFile,
)

if TYPE_CHECKING:
    from checkstream._core import PhraseMatcher


class RequestLike(Protocol):
    """What a context trigger reads (``checkstream.engine.RequestContext`` is one)."""

    @property
    def tenant(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def metadata(self) -> Mapping[str, str]: ...


# --------------------------------------------------------------------------- trigger tree


@dataclass(frozen=True, slots=True)
class PhraseLeaf:
    id: int
    terms: tuple[str, ...]
    whole_word: bool


@dataclass(frozen=True, slots=True)
class PatternLeaf:
    id: int
    source: str
    compiled: regex.Pattern[str]
    max_length: int
    timeout_s: float = DEFAULT_TIMEOUT_MS / 1000  # per scan, whatever the scan's length
    fail_mode: FailMode = "closed"
    # What a scan that timed out counts as: a match of this leaf when that resolves the rule
    # by its fail mode (closed: the rule fires, open: it does not); under a `not`, the reverse.
    match_on_timeout: bool = True
    rule: str = ""  # the rule (and policy) the leaf belongs to, for the timeout record
    policy: str = ""


@dataclass(frozen=True, slots=True)
class ClassifierLeaf:
    id: int
    name: str
    label: str
    threshold: float | None  # None: the classifier's own threshold
    # Under an odd number of `not`s. A check that errors or times out resolves so that the
    # *rule* fires when the classifier's fail mode is closed (and not when it is open): the leaf
    # counts as fired for closed, and here under a `not`, the reverse (as pattern timeouts do).
    negated: bool = False


@dataclass(frozen=True, slots=True)
class PiiLeaf:
    id: int
    entities: frozenset[str]


@dataclass(frozen=True, slots=True)
class ContextLeaf:
    id: int
    spec: ContextTrigger

    def holds(self, ctx: RequestLike | None) -> bool:
        if ctx is None:
            return False
        spec = self.spec
        checks: list[tuple[str | None, tuple[str, ...] | None]] = [
            (ctx.tenant, spec.tenant),
            (ctx.model, spec.model),
            (ctx.endpoint, spec.endpoint),
        ]
        for key, globs in (spec.metadata or {}).items():
            checks.append((ctx.metadata.get(key), globs))
        return all(
            globs is None
            or (value is not None and any(fnmatch.fnmatchcase(value, g) for g in globs))
            for value, globs in checks
        )


ContentLeaf = PhraseLeaf | PatternLeaf | ClassifierLeaf | PiiLeaf
Leaf = ContentLeaf | ContextLeaf


@dataclass(frozen=True, slots=True)
class AllNode:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyNode:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class NotNode:
    child: Node


Node = Leaf | AllNode | AnyNode | NotNode


def holds(
    node: Node, fired: Mapping[int, bool] | frozenset[int] | set[int], ctx: RequestLike | None
) -> bool:
    """Whether ``node`` is true given the set of content leaves that fired and the request."""
    if isinstance(node, ContextLeaf):
        return node.holds(ctx)
    if isinstance(node, AllNode):
        return all(holds(child, fired, ctx) for child in node.children)
    if isinstance(node, AnyNode):
        return any(holds(child, fired, ctx) for child in node.children)
    if isinstance(node, NotNode):
        return not holds(node.child, fired, ctx)
    return node.id in fired


def positive_leaves(node: Node) -> frozenset[int]:
    """Content leaves whose firing can make ``node`` true (not under an odd number of ``not``)."""
    out: set[int] = set()

    def walk(n: Node, negated: bool) -> None:
        if isinstance(n, AllNode | AnyNode):
            for child in n.children:
                walk(child, negated)
        elif isinstance(n, NotNode):
            walk(n.child, not negated)
        elif not isinstance(n, ContextLeaf) and not negated:
            out.add(n.id)

    walk(node, False)
    return frozenset(out)


def leaves_of(node: Node) -> list[Leaf]:
    if isinstance(node, AllNode | AnyNode):
        return [leaf for child in node.children for leaf in leaves_of(child)]
    if isinstance(node, NotNode):
        return leaves_of(node.child)
    return [node]


def describe(node: Node) -> str:
    """A one-line human description of a trigger (used by ``policy explain`` and hit details)."""
    if isinstance(node, PhraseLeaf):
        shown = ", ".join(repr(t) for t in node.terms[:3])
        more = f" (+{len(node.terms) - 3} more)" if len(node.terms) > 3 else ""
        return f"phrases[{shown}{more}]"
    if isinstance(node, PatternLeaf):
        return f"pattern /{node.source}/"
    if isinstance(node, ClassifierLeaf):
        limit = "default" if node.threshold is None else f"{node.threshold:g}"
        return f"classifier {node.name}.{node.label} >= {limit}"
    if isinstance(node, PiiLeaf):
        return f"pii {sorted(node.entities)}"
    if isinstance(node, ContextLeaf):
        return f"context {node.spec.model_dump(exclude_none=True)}"
    if isinstance(node, AllNode):
        return "all(" + "; ".join(describe(c) for c in node.children) + ")"
    if isinstance(node, AnyNode):
        return "any(" + "; ".join(describe(c) for c in node.children) + ")"
    return f"not({describe(node.child)})"


# --------------------------------------------------------------------------- rules and the set


@dataclass(frozen=True, eq=False)
class CompiledRule:
    name: str
    policy: str
    description: str
    phases: frozenset[Phase]
    mode: Mode
    priority: int
    order: int  # position in load order; breaks priority ties deterministically
    regulation: str | None
    citation: str | None
    roles: frozenset[str] | None
    trigger: Node
    actions: tuple[Action, ...]
    source: str  # "file:line" of the rule, for explain output

    @property
    def action_kinds(self) -> tuple[str, ...]:
        return tuple(action.kind for action in self.actions)

    @property
    def primary_action(self) -> str:
        return min(self.action_kinds, key=ACTION_RANK.__getitem__)

    @cached_property
    def positive(self) -> frozenset[int]:
        return positive_leaves(self.trigger)

    @cached_property
    def negated_classifiers(self) -> frozenset[str]:
        """Classifiers this rule reads under a ``not`` (a failed check fails closed there by
        counting as not fired: the hit's detail says so)."""
        return frozenset(
            leaf.name
            for leaf in leaves_of(self.trigger)
            if isinstance(leaf, ClassifierLeaf) and leaf.negated
        )

    def action(self, kind: str) -> Action | None:
        for action in self.actions:
            if action.kind == kind:
                return action
        return None


@dataclass(frozen=True, eq=False)
class PhasePlan:
    """One phase's rules and leaves, indexed for evaluation."""

    rules: tuple[CompiledRule, ...]
    leaves: tuple[Leaf, ...]
    phrase_ids: frozenset[int]
    patterns: tuple[PatternLeaf, ...]
    pii: tuple[PiiLeaf, ...]
    classifiers: tuple[ClassifierLeaf, ...]
    context_rules: tuple[CompiledRule, ...]  # no content leaf: judged on the request alone
    end_rules: tuple[CompiledRule, ...]  # content under a `not`: judged again at end of text
    rules_by_leaf: Mapping[int, tuple[CompiledRule, ...]]  # positive leaf -> rules, in order

    @classmethod
    def build(cls, rules: tuple[CompiledRule, ...]) -> PhasePlan:
        seen: dict[int, Leaf] = {}
        by_leaf: dict[int, list[CompiledRule]] = {}
        context: list[CompiledRule] = []
        end: list[CompiledRule] = []
        for rule in rules:
            leaves = leaves_of(rule.trigger)
            for leaf in leaves:
                seen[leaf.id] = leaf
            for leaf_id in rule.positive:
                by_leaf.setdefault(leaf_id, []).append(rule)
            if all(isinstance(leaf, ContextLeaf) for leaf in leaves):
                context.append(rule)
            elif _has_not(rule.trigger):
                end.append(rule)
        ordered = tuple(seen[i] for i in sorted(seen))
        return cls(
            rules=rules,
            leaves=ordered,
            phrase_ids=frozenset(x.id for x in ordered if isinstance(x, PhraseLeaf)),
            patterns=tuple(x for x in ordered if isinstance(x, PatternLeaf)),
            pii=tuple(x for x in ordered if isinstance(x, PiiLeaf)),
            classifiers=tuple(x for x in ordered if isinstance(x, ClassifierLeaf)),
            context_rules=tuple(context),
            end_rules=tuple(end),
            rules_by_leaf={k: tuple(v) for k, v in by_leaf.items()},
        )


def _has_not(node: Node) -> bool:
    if isinstance(node, NotNode):
        return True
    if isinstance(node, AllNode | AnyNode):
        return any(_has_not(child) for child in node.children)
    return False


@dataclass(frozen=True, eq=False)
class PolicySet:
    """An immutable, compiled policy set. ``version`` is the sha256 of its canonical content."""

    files: tuple[PolicyFile, ...]
    sources: tuple[str, ...]
    rules: tuple[CompiledRule, ...]  # evaluation order: priority desc, then load order
    leaves: tuple[Leaf, ...]
    phrases: tuple[str, ...]
    phrase_whole_word: tuple[bool, ...]
    phrase_leaves: tuple[tuple[int, ...], ...]  # matcher phrase index -> phrase leaf ids
    leetspeak: bool
    matcher: PhraseMatcher | None
    version: str
    _plans: dict[str, PhasePlan] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Everything a request needs per phase is computed once here, not per request or token.
        for phase in ("ingress", "midstream", "egress"):
            self._plans[phase] = PhasePlan.build(tuple(r for r in self.rules if phase in r.phases))

    def plan(self, phase: Phase) -> PhasePlan:
        return self._plans[phase]

    def rules_for(self, phase: Phase) -> tuple[CompiledRule, ...]:
        return self._plans[phase].rules

    def leaves_for(self, phase: Phase) -> tuple[Leaf, ...]:
        return self._plans[phase].leaves

    @cached_property
    def classifier_names(self) -> frozenset[str]:
        return frozenset(leaf.name for leaf in self.leaves if isinstance(leaf, ClassifierLeaf))

    @property
    def short_version(self) -> str:
        return self.version[:12]
