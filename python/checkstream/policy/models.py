"""The policy language as typed, immutable models (parsed from YAML by :mod:`loader`).

Shorthands keep files short (``phrases: [a, b]``, ``pattern: "..."``, ``actions: [log]``); the
validators below expand them so that everything downstream sees one shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

Phase = Literal["ingress", "midstream", "egress"]
Mode = Literal["enforce", "shadow"]
FailMode = Literal["open", "closed"]
PHASES: tuple[Phase, ...] = ("ingress", "midstream", "egress")
RULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
# Per scan of one pattern (per 2048 characters): several times what the slowest shipped pattern
# needs, far below a stall.
DEFAULT_TIMEOUT_MS = 5.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_bool(value: Any) -> Any:
    # pydantic reads `true` as 1.0 for a float field; a timeout of `true` is a mistake.
    if isinstance(value, bool):
        raise ValueError("a timeout is a number of milliseconds, not a boolean")
    return value


# CPU milliseconds one pattern scan may take per 2048 characters it reads (the `regex` module's
# `timeout=`): from 0.1 ms, and at most a second, since a scan runs on the event loop.
TimeoutMs = Annotated[float, BeforeValidator(_not_bool), Field(ge=0.1, le=1000.0)]


def _one_of(value: Any, names: tuple[str, ...], what: str) -> None:
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"a {what} is a mapping with exactly one of: {', '.join(names)}")
    (key,) = value
    if key not in names:
        raise ValueError(f"unknown {what} {key!r}; expected one of: {', '.join(names)}")


# --------------------------------------------------------------------------- triggers


class PhrasesTrigger(_Model):
    """Literal phrases, all compiled into the policy set's one streaming matcher."""

    terms: tuple[str, ...] = ()
    file: str | None = None  # one phrase per line, relative to the policy file; '#' comments
    whole_word: bool = True

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"terms": value}
        return value

    @field_validator("terms")
    @classmethod
    def _no_blank(cls, terms: tuple[str, ...]) -> tuple[str, ...]:
        for term in terms:
            if not term.strip():
                raise ValueError("phrases must not be blank")
        return terms


class PatternTrigger(_Model):
    """A regular expression (the ``regex`` module's syntax), compiled once at load."""

    regex: str
    ignore_case: bool = False
    # Longest text a streaming partial match may pin in the holdback before it is judged as is.
    max_length: int = Field(default=512, ge=1, le=65536)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"regex": value}
        return value


class ClassifierTrigger(_Model):
    """A named classifier's label score at or above a threshold (default: the classifier's)."""

    name: str
    label: str
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class PiiTrigger(_Model):
    """Personal data of the given entity types (``checkstream.classifiers.PII_ENTITY_TYPES``)."""

    entities: tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"entities": value}
        return value


class ContextTrigger(_Model):
    """Conditions on the request (shell-style globs); every given field must match."""

    tenant: tuple[str, ...] | None = None
    model: tuple[str, ...] | None = None
    endpoint: tuple[str, ...] | None = None
    metadata: dict[str, tuple[str, ...]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = dict(value)
        for key in ("tenant", "model", "endpoint"):
            if isinstance(out.get(key), str):
                out[key] = [out[key]]
        meta = out.get("metadata")
        if isinstance(meta, dict):
            out["metadata"] = {k: [v] if isinstance(v, str) else v for k, v in meta.items()}
        return out

    @model_validator(mode="after")
    def _not_empty(self) -> ContextTrigger:
        if (
            self.tenant is None
            and self.model is None
            and self.endpoint is None
            and not self.metadata
        ):
            raise ValueError(
                "a context trigger needs at least one of tenant, model, endpoint, metadata"
            )
        return self


TRIGGER_KINDS = ("phrases", "pattern", "classifier", "pii", "context", "all", "any", "not")


class Trigger(_Model):
    """Exactly one of the trigger kinds; ``all``/``any``/``not`` nest further triggers."""

    phrases: PhrasesTrigger | None = None
    pattern: PatternTrigger | None = None
    classifier: ClassifierTrigger | None = None
    pii: PiiTrigger | None = None
    context: ContextTrigger | None = None
    all_: tuple[Trigger, ...] | None = Field(default=None, alias="all", min_length=1)
    any_: tuple[Trigger, ...] | None = Field(default=None, alias="any", min_length=1)
    not_: Trigger | None = Field(default=None, alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, value: Any) -> Any:
        _one_of(value, TRIGGER_KINDS, "trigger")
        return value

    @property
    def kind(self) -> str:
        for name in TRIGGER_KINDS:
            if getattr(self, _TRIGGER_ATTR.get(name, name)) is not None:
                return name
        raise AssertionError("validated trigger has no kind")


_TRIGGER_ATTR = {"all": "all_", "any": "any_", "not": "not_"}


# --------------------------------------------------------------------------- actions


class RedactAction(_Model):
    kind: Literal["redact"] = "redact"
    # None: PII spans get their entity placeholder (``[EMAIL]``), everything else ``[REDACTED]``.
    replacement: str | None = None


class StopAction(_Model):
    kind: Literal["stop"] = "stop"
    message: str = "This content was blocked by policy."
    status: int = Field(
        default=400, ge=400, le=599
    )  # HTTP status when stopped before the first byte


class InjectDisclaimerAction(_Model):
    kind: Literal["inject_disclaimer"] = "inject_disclaimer"
    text: str = Field(min_length=1)
    position: Literal["prepend", "append"] = "append"


class AddSystemPromptAction(_Model):
    kind: Literal["add_system_prompt"] = "add_system_prompt"
    text: str = Field(min_length=1)


class AdaptDecodingAction(_Model):
    kind: Literal["adapt_decoding"] = "adapt_decoding"
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _something(self) -> AdaptDecodingAction:
        if self.temperature is None and self.top_p is None:
            raise ValueError("adapt_decoding needs temperature and/or top_p")
        return self


class LogAction(_Model):
    kind: Literal["log"] = "log"
    level: Literal["info", "warning", "error"] = "warning"


class AuditAction(_Model):
    kind: Literal["audit"] = "audit"
    category: str = "policy"
    severity: Literal["low", "medium", "high", "critical"] = "medium"


class NotifyAction(_Model):
    kind: Literal["notify"] = "notify"
    webhook: str = Field(pattern=r"^https?://")
    # The HMAC-SHA256 signing secret is read from this environment variable, never from the file.
    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_s: float = Field(default=5.0, gt=0.0, le=60.0)


Action = Annotated[
    RedactAction
    | StopAction
    | InjectDisclaimerAction
    | AddSystemPromptAction
    | AdaptDecodingAction
    | LogAction
    | AuditAction
    | NotifyAction,
    Field(discriminator="kind"),
]
ACTION_KINDS = (
    "redact",
    "stop",
    "inject_disclaimer",
    "add_system_prompt",
    "adapt_decoding",
    "log",
    "audit",
    "notify",
)
# Where each action can take effect: text already sent cannot be redacted at egress, and a system
# prompt only exists before the model runs.
ACTION_PHASES: dict[str, frozenset[str]] = {
    "redact": frozenset({"ingress", "midstream"}),
    "stop": frozenset({"ingress", "midstream"}),
    "inject_disclaimer": frozenset({"egress"}),
    "add_system_prompt": frozenset({"ingress"}),
    "adapt_decoding": frozenset({"midstream"}),
    "log": frozenset(PHASES),
    "audit": frozenset(PHASES),
    "notify": frozenset(PHASES),
}
# The action a hit is reported under when a rule has several: the one with the biggest effect.
ACTION_RANK = {
    name: rank
    for rank, name in enumerate(
        (
            "stop",
            "redact",
            "add_system_prompt",
            "inject_disclaimer",
            "adapt_decoding",
            "notify",
            "audit",
            "log",
        )
    )
}


def _expand_action(item: Any) -> Any:
    if isinstance(item, str):
        item = {item: None}
    _one_of(item, ACTION_KINDS, "action")
    ((kind, params),) = item.items()
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValueError(f"the parameters of action {kind!r} must be a mapping")
    return {"kind": kind, **params}


# --------------------------------------------------------------------------- rules and files


class Rule(_Model):
    name: str = Field(pattern=RULE_NAME, max_length=128)
    description: str = ""
    phases: tuple[Phase, ...] | None = Field(default=None, min_length=1)
    mode: Mode | None = None
    priority: int = 0  # higher is evaluated (and wins) first
    regulation: str | None = None
    citation: str | None = None
    roles: tuple[str, ...] | None = (
        None  # ingress: which message roles the rule reads (default all)
    )
    trigger: Trigger
    actions: tuple[Annotated[Action, BeforeValidator(_expand_action)], ...] = Field(min_length=1)
    # Pattern triggers only: the time one scan may take, and what a scan that runs out of it
    # counts as (closed: the rule fires on the text left unjudged; open: it does not).
    timeout_ms: TimeoutMs | None = None
    fail_mode: FailMode | None = None


class Defaults(_Model):
    mode: Mode = "enforce"
    phases: tuple[Phase, ...] = Field(default=PHASES, min_length=1)
    # Leetspeak folding is a property of the set's single phrase automaton, so it is per file and
    # all files of a set must agree.
    leetspeak: bool = False
    # For the rules' pattern triggers, unless a rule sets its own.
    timeout_ms: TimeoutMs = DEFAULT_TIMEOUT_MS
    fail_mode: FailMode = "closed"


class PolicyFile(_Model):
    name: str = Field(pattern=RULE_NAME, max_length=128)
    version: str
    description: str = ""
    regulation: str | None = None
    defaults: Defaults = Defaults()
    rules: tuple[Rule, ...] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value
