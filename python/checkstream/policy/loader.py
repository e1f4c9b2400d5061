"""Loading policy files into a :class:`PolicySet`, loudly.

Every problem is a :class:`PolicyError` naming file, line, rule and field: unknown classifiers,
labels or PII entity types, bad or empty-matching regexes, empty phrase lists, unknown actions and
actions used in a phase where they cannot act. Nothing is skipped and nothing fails open.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import regex
from pydantic import ValidationError

from checkstream.policy.errors import PolicyError
from checkstream.policy.models import (
    ACTION_PHASES,
    PHASES,
    FailMode,
    Phase,
    PolicyFile,
    Rule,
    Trigger,
)
from checkstream.policy.policyset import (
    AllNode,
    AnyNode,
    ClassifierLeaf,
    CompiledRule,
    ContextLeaf,
    Leaf,
    Node,
    NotNode,
    PatternLeaf,
    PhraseLeaf,
    PiiLeaf,
    PolicySet,
    leaves_of,
)
from checkstream.policy.yamlsource import LineMap, load_yaml

PolicyPaths = str | Path | Sequence[str | Path]
CASES_NAMES = ("cases.yaml", "cases.yml")


class RegistryLike(Protocol):
    """The part of ``checkstream.classifiers.ClassifierRegistry`` validation needs."""

    def names(self) -> frozenset[str]: ...
    def get(self, name: str) -> Any: ...


@functools.cache
def shipped_registry() -> RegistryLike:
    """The shipped classifier registry, loaded once per process (models are not reloaded on
    every policy reload or Guard)."""
    from checkstream.classifiers import load_registry

    registry: RegistryLike = load_registry()
    return registry


def policy_files(paths: PolicyPaths) -> list[Path]:
    """Expand files and directories (recursively) into policy files, in a stable order.

    In a directory every ``*.yaml``/``*.yml`` is a policy except test-case files (``cases.yaml``,
    ``*.cases.yaml``), which ``policy test`` reads instead.
    """
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    if not items:
        raise PolicyError("no policy paths given")
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in (".yaml", ".yml") and p.is_file() and not _is_cases(p)
            )
            if not found:
                raise PolicyError("directory holds no policy files (*.yaml)", file=str(path))
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise PolicyError("no such policy file or directory", file=str(path))
    return out


def _is_cases(path: Path) -> bool:
    return path.name in CASES_NAMES or path.name.endswith((".cases.yaml", ".cases.yml"))


def load_policy_set(paths: PolicyPaths, *, registry: RegistryLike | None = None) -> PolicySet:
    """Load, validate and compile policy files (or directories of them) into one set.

    ``registry`` checks classifier names and labels; None uses the shipped registry
    (``checkstream.classifiers.load_registry()``), loaded only if some rule names a classifier.
    """
    builder = _Builder(registry)
    for path in policy_files(paths):
        builder.add_file(path)
    return builder.build()


def load_policy_text(
    text: str,
    *,
    file: str = "<string>",
    base_dir: Path | None = None,
    registry: RegistryLike | None = None,
) -> PolicySet:
    """Load a single policy document from text (tests, the control plane's bundles)."""
    builder = _Builder(registry)
    builder.add_text(text, file, base_dir or Path.cwd())
    return builder.build()


# --------------------------------------------------------------------------- internals


@dataclass
class _FileState:
    file: str
    lines: LineMap
    data: Any


@dataclass(frozen=True)
class _PatternScope:
    """What the rule being compiled gives its pattern leaves: names and the scan limits."""

    rule: str
    policy: str
    timeout_s: float
    fail_mode: FailMode


@dataclass
class _Builder:
    registry: RegistryLike | None
    files: list[PolicyFile] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    rules: list[CompiledRule] = field(default_factory=list)
    leaves: list[Leaf] = field(default_factory=list)
    phrase_index: dict[tuple[str, bool], int] = field(default_factory=dict)
    phrase_leaves: list[list[int]] = field(default_factory=list)
    leetspeak: bool | None = None
    hashed: list[Any] = field(default_factory=list)
    _registry_loaded: bool = False
    _pii_types: frozenset[str] | None = None

    # ---- files

    def add_file(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read policy file: {exc}", file=str(path)) from exc
        self.add_text(text, str(path), path.parent)

    def add_text(self, text: str, file: str, base_dir: Path) -> None:
        data, lines = load_yaml(text, file)
        if not isinstance(data, dict):
            raise PolicyError(
                "a policy file is a mapping with name, version and rules",
                file=file,
                line=lines.line_of(()),
            )
        state = _FileState(file, lines, data)
        try:
            policy = PolicyFile.model_validate(data)
        except ValidationError as exc:
            raise _from_validation(exc, state) from None
        for other in self.files:
            if other.name == policy.name:
                raise PolicyError(
                    f"policy name {policy.name!r} is used by two files",
                    file=file,
                    line=lines.line_of(("name",)),
                    field="name",
                )
        if self.leetspeak is None:
            self.leetspeak = policy.defaults.leetspeak
        elif self.leetspeak != policy.defaults.leetspeak:
            raise PolicyError(
                "defaults.leetspeak differs from the other files of this set (the set shares one "
                "phrase matcher, so all files must agree)",
                file=file,
                line=lines.line_of(("defaults", "leetspeak")),
                field="defaults.leetspeak",
            )
        names: set[str] = set()
        file_hash: dict[str, Any] = {"policy": policy.model_dump(mode="json", by_alias=True)}
        resolved_terms: dict[str, list[str]] = {}
        for index, rule in enumerate(policy.rules):
            where = ("rules", index)
            if rule.name in names:
                raise self._err(
                    state, (*where, "name"), rule.name, f"duplicate rule name {rule.name!r}"
                )
            names.add(rule.name)
            self._add_rule(state, policy, index, rule, base_dir, resolved_terms)
        file_hash["phrase_files"] = resolved_terms
        self.hashed.append(file_hash)
        self.files.append(policy)
        self.sources.append(file)

    def _add_rule(
        self,
        state: _FileState,
        policy: PolicyFile,
        index: int,
        rule: Rule,
        base_dir: Path,
        resolved: dict[str, list[str]],
    ) -> None:
        where = ("rules", index)
        phases = self._phases(state, policy, index, rule)
        if rule.roles is not None and "ingress" not in phases:
            raise self._err(
                state, (*where, "roles"), rule.name, "roles only apply to the ingress phase"
            )
        scope = _PatternScope(
            rule.name,
            policy.name,
            (rule.timeout_ms or policy.defaults.timeout_ms) / 1000,
            rule.fail_mode or policy.defaults.fail_mode,
        )
        trigger = self._compile(
            state, rule.name, rule.trigger, (*where, "trigger"), base_dir, resolved, scope
        )
        if not any(isinstance(leaf, PatternLeaf) for leaf in leaves_of(trigger)):
            # A limit on nothing is a misunderstanding (classifiers declare their own timeout
            # and fail mode in the registry); say so rather than ignore it.
            for name in ("timeout_ms", "fail_mode"):
                if getattr(rule, name) is not None:
                    raise self._err(
                        state,
                        (*where, name),
                        rule.name,
                        f"{name} applies to pattern triggers and this rule has none "
                        "(classifiers declare their own timeout and fail mode)",
                    )
        self.rules.append(
            CompiledRule(
                name=rule.name,
                policy=policy.name,
                description=rule.description,
                phases=phases,
                mode=rule.mode or policy.defaults.mode,
                priority=rule.priority,
                order=len(self.rules),
                regulation=rule.regulation or policy.regulation,
                citation=rule.citation,
                roles=frozenset(rule.roles) if rule.roles is not None else None,
                trigger=trigger,
                actions=rule.actions,
                source=f"{state.file}:{state.lines.line_of(where)}",
            )
        )

    def _phases(
        self, state: _FileState, policy: PolicyFile, index: int, rule: Rule
    ) -> frozenset[Phase]:
        where = ("rules", index)
        if rule.phases is not None:
            for j, action in enumerate(rule.actions):
                for phase in rule.phases:
                    if phase not in ACTION_PHASES[action.kind]:
                        allowed = ", ".join(p for p in PHASES if p in ACTION_PHASES[action.kind])
                        raise self._err(
                            state,
                            (*where, "actions", j),
                            rule.name,
                            f"action {action.kind!r} is not allowed in phase {phase!r} "
                            f"(allowed: {allowed})",
                        )
            return frozenset(rule.phases)
        # Phases left out: the file's default phases where every action of the rule can act.
        phases = frozenset(
            p
            for p in policy.defaults.phases
            if all(p in ACTION_PHASES[a.kind] for a in rule.actions)
        )
        if not phases:
            kinds = ", ".join(a.kind for a in rule.actions)
            raise self._err(
                state,
                (*where, "actions"),
                rule.name,
                f"actions [{kinds}] share no phase among the defaults "
                f"{list(policy.defaults.phases)}; split the rule or set phases",
            )
        return phases

    # ---- triggers

    def _compile(
        self,
        state: _FileState,
        rule: str,
        trig: Trigger,
        path: tuple[str | int, ...],
        base_dir: Path,
        resolved: dict[str, list[str]],
        scope: _PatternScope,
        negated: bool = False,
    ) -> Node:
        kind = trig.kind
        here = (*path, kind)
        if trig.all_ is not None:
            return AllNode(
                tuple(
                    self._compile(state, rule, t, (*here, i), base_dir, resolved, scope, negated)
                    for i, t in enumerate(trig.all_)
                )
            )
        if trig.any_ is not None:
            return AnyNode(
                tuple(
                    self._compile(state, rule, t, (*here, i), base_dir, resolved, scope, negated)
                    for i, t in enumerate(trig.any_)
                )
            )
        if trig.not_ is not None:
            return NotNode(
                self._compile(state, rule, trig.not_, here, base_dir, resolved, scope, not negated)
            )
        leaf_id = len(self.leaves)
        leaf: Leaf
        if trig.phrases is not None:
            terms = list(trig.phrases.terms)
            if trig.phrases.file is not None:
                terms += self._phrase_file(
                    state, rule, (*here, "file"), base_dir, trig.phrases.file, resolved
                )
            if not terms:
                raise self._err(state, here, rule, "empty phrase list (give terms or a file)")
            leaf = PhraseLeaf(leaf_id, tuple(terms), trig.phrases.whole_word)
            for term in dict.fromkeys(terms):
                key = (term, trig.phrases.whole_word)
                if key not in self.phrase_index:
                    self.phrase_index[key] = len(self.phrase_leaves)
                    self.phrase_leaves.append([])
                self.phrase_leaves[self.phrase_index[key]].append(leaf_id)
        elif trig.pattern is not None:
            flags = regex.V1 | (regex.IGNORECASE if trig.pattern.ignore_case else 0)
            try:
                compiled = regex.compile(trig.pattern.regex, flags)
            except regex.error as exc:
                # The long form's `regex:` line if there is one, else the `pattern:` line.
                where = (*here, "regex") if (*here, "regex") in state.lines.lines else here
                raise self._err(
                    state,
                    where,
                    rule,
                    f"bad regex: {exc}",
                ) from None
            if compiled.fullmatch("") is not None:
                raise self._err(state, here, rule, "pattern matches the empty string")
            leaf = PatternLeaf(
                leaf_id,
                trig.pattern.regex,
                compiled,
                trig.pattern.max_length,
                timeout_s=scope.timeout_s,
                fail_mode=scope.fail_mode,
                match_on_timeout=(scope.fail_mode == "closed") != negated,
                rule=scope.rule,
                policy=scope.policy,
            )
        elif trig.classifier is not None:
            self._check_classifier(state, rule, here, trig.classifier.name, trig.classifier.label)
            leaf = ClassifierLeaf(
                leaf_id,
                trig.classifier.name,
                trig.classifier.label,
                trig.classifier.threshold,
                negated=negated,
            )
        elif trig.pii is not None:
            known = self._pii_entity_types(state, rule, here)
            for i, entity in enumerate(trig.pii.entities):
                if entity not in known:
                    sub = (*here, i) if (*here, i) in state.lines.lines else (*here, "entities", i)
                    raise self._err(
                        state,
                        sub,
                        rule,
                        f"unknown PII entity type {entity!r}; known: {', '.join(sorted(known))}",
                    )
            leaf = PiiLeaf(leaf_id, frozenset(trig.pii.entities))
        else:
            assert trig.context is not None
            leaf = ContextLeaf(leaf_id, trig.context)
        self.leaves.append(leaf)
        return leaf

    def _phrase_file(
        self,
        state: _FileState,
        rule: str,
        path: tuple[str | int, ...],
        base_dir: Path,
        name: str,
        resolved: dict[str, list[str]],
    ) -> list[str]:
        target = (base_dir / name).resolve()
        try:
            lines = target.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise self._err(
                state, path, rule, f"cannot read phrase file {str(target)!r}: {exc}"
            ) from None
        terms = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        if not terms:
            raise self._err(state, path, rule, f"phrase file {str(target)!r} is empty")
        resolved[name] = terms
        return terms

    def _check_classifier(
        self, state: _FileState, rule: str, path: tuple[str | int, ...], name: str, label: str
    ) -> None:
        registry = self._load_registry(state, rule, path)
        names = registry.names()
        if name not in names:
            raise self._err(
                state,
                (*path, "name"),
                rule,
                f"unknown classifier {name!r}; known: {', '.join(sorted(names))}",
            )
        labels = tuple(getattr(registry.get(name), "labels", ()))
        if labels and label not in labels:
            raise self._err(
                state,
                (*path, "label"),
                rule,
                f"classifier {name!r} has no label {label!r}; labels: {', '.join(labels)}",
            )

    def _load_registry(
        self, state: _FileState, rule: str, path: tuple[str | int, ...]
    ) -> RegistryLike:
        if self.registry is None:
            try:
                self.registry = shipped_registry()
            except Exception as exc:  # an unusable registry must fail the load, not skip the rule
                raise self._err(
                    state,
                    path,
                    rule,
                    f"cannot check classifier names: registry unavailable ({exc})",
                ) from exc
        return self.registry

    def _pii_entity_types(
        self, state: _FileState, rule: str, path: tuple[str | int, ...]
    ) -> frozenset[str]:
        if self._pii_types is None:
            try:
                from checkstream.classifiers import PII_ENTITY_TYPES
            except Exception as exc:
                raise self._err(
                    state,
                    path,
                    rule,
                    f"cannot check PII entity types: checkstream.classifiers unavailable ({exc})",
                ) from exc
            self._pii_types = frozenset(PII_ENTITY_TYPES)
        return self._pii_types

    @staticmethod
    def _err(
        state: _FileState, path: tuple[str | int, ...], rule: str | None, message: str
    ) -> PolicyError:
        return PolicyError(
            message,
            file=state.file,
            line=state.lines.line_of(path),
            rule=rule,
            field=_field_name(path[2:] if path[:1] == ("rules",) else path),
        )

    # ---- the set

    def build(self) -> PolicySet:
        phrases = [term for term, _ in self.phrase_index]
        whole = [ww for _, ww in self.phrase_index]
        leet = bool(self.leetspeak)
        matcher = None
        if phrases:
            from checkstream._core import PhraseMatcher

            try:
                matcher = PhraseMatcher(phrases, whole_word=whole, leetspeak=leet)
            except ValueError as exc:
                raise PolicyError(
                    f"phrases cannot be compiled: {exc}", file=self.sources[0]
                ) from exc
        ordered = sorted(self.rules, key=lambda r: (-r.priority, r.order))
        canonical = json.dumps(
            sorted(self.hashed, key=lambda f: str(f["policy"]["name"])),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return PolicySet(
            files=tuple(self.files),
            sources=tuple(self.sources),
            rules=tuple(ordered),
            leaves=tuple(self.leaves),
            phrases=tuple(phrases),
            phrase_whole_word=tuple(whole),
            phrase_leaves=tuple(tuple(ids) for ids in self.phrase_leaves),
            leetspeak=leet,
            matcher=matcher,
            version=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        )


def _field_name(path: Iterable[str | int]) -> str | None:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or None


def _from_validation(exc: ValidationError, state: _FileState) -> PolicyError:
    error = exc.errors(include_url=False)[0]
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # pydantic reports aliases ("not") and discriminator tags; map the alias fields back.
    loc = tuple(
        {"all_": "all", "any_": "any", "not_": "not"}.get(p, p) if isinstance(p, str) else p
        for p in loc
    )
    rule: str | None = None
    field_path: tuple[str | int, ...] = loc
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = state.data.get("rules")
        if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
            name = rules[loc[1]].get("name")
            rule = str(name) if name is not None else f"#{loc[1]}"
        field_path = loc[2:]
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if error["type"] == "extra_forbidden":
        message = f"unknown field {loc[-1]!r}"
    elif error["type"] == "missing":
        message = f"missing required field {loc[-1]!r}"
    return PolicyError(
        message,
        file=state.file,
        line=state.lines.line_of(loc),
        rule=rule,
        field=_field_name(field_path),
    )


__all__ = [
    "PolicyError",
    "PolicyPaths",
    "RegistryLike",
    "load_policy_set",
    "load_policy_text",
    "policy_files",
]
