"""Typed configuration of the vLLM sidecar.

Two sources, one shape:

- ``sidecar-config.yaml`` (the deployment spec's file), loaded with :func:`load_sidecar_config`;
- ``--additional-config '{"checkstream": {...}}'`` on the vLLM command line, which reaches the
  logits processor as ``vllm_config.additional_config["checkstream"]`` and is parsed by
  :func:`engine_options`. It either names a ``config`` file or carries the same sections inline.

Every model forbids unknown keys, so a typo is an error naming the field, never a silent no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from checkstream._validation import error_lines


class SidecarConfigError(ValueError):
    """A sidecar configuration that cannot be used; the message names the file and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VllmSection(_Model):
    # The unix socket vLLM's OpenAI server listens on (``--uds``): where ``checkstream sidecar
    # serve`` reaches vLLM unless --vllm-url/--vllm-socket say otherwise. The processor runs
    # inside vLLM and needs none. Accepted callbacks are the ones the processor implements.
    socket: str | None = None
    callbacks: tuple[Literal["on_sampling_step", "on_token_generated", "on_tool_call"], ...] = (
        "on_sampling_step",
        "on_token_generated",
        "on_tool_call",
    )


class LogitMasking(_Model):
    enabled: bool = True
    # JSON file: a list of token-id sequences and/or phrases (see checkstream.masking).
    banned_tokens_file: str | None = None
    # Phrases banned outright, expanded to every tokenisation the served tokenizer can produce.
    phrases: tuple[str, ...] = ()


class SafeMode(_Model):
    # 0 means greedy (only the most likely token survives).
    temperature: float | None = Field(default=0.3, ge=0.0, le=2.0)
    top_p: float | None = Field(default=0.6, gt=0.0, le=1.0)


class AdaptiveDecoding(_Model):
    enabled: bool = True
    risk_threshold: float = Field(default=0.7, gt=0.0)
    safe_mode: SafeMode = SafeMode()
    # Phrases whose appearance in the generated text (or the prompt) raises the running risk.
    risk_phrases: tuple[str, ...] = ()
    risk_per_hit: float = Field(default=1.0, gt=0.0)
    include_prompt: bool = False


class Preventive(_Model):
    enabled: bool = True
    logit_masking: LogitMasking = LogitMasking()
    adaptive_decoding: AdaptiveDecoding = AdaptiveDecoding()


class Reactive(_Model):
    enabled: bool = True
    holdback_size: int = Field(default=8, ge=0, le=4096)
    check_interval: int = Field(default=10, ge=1, le=4096)


class ToolArgumentRule(_Model):
    """Allowed values of one tool argument (``send_email.to``); anything else is rewritten."""

    allow: tuple[str, ...] = Field(min_length=1)
    # Value written instead of a violating one (default: the first allowed value).
    replacement: str | None = None


class ToolControl(_Model):
    enabled: bool = True
    # "tool.argument" -> rule; "*.argument" applies to every tool.
    arguments: dict[str, ToolArgumentRule] = {}
    # Phrases that must never appear inside a tool call's arguments (injected instructions).
    blocked_phrases: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _keys(self) -> ToolControl:
        for key in self.arguments:
            tool, _, arg = key.partition(".")
            if not tool or not arg:
                raise ValueError(f"tool argument key {key!r} must look like 'tool.argument'")
        return self


class Guardrails(_Model):
    preventive: Preventive = Preventive()
    reactive: Reactive = Reactive()
    tools: ToolControl = ToolControl()


class Classifiers(_Model):
    # The spec's "use KV-cache embeddings": accepted so that its sample file loads, but vLLM
    # gives plugins no hidden states, so it cannot be honoured (see config_warnings).
    embedding_mode: bool = False
    models: tuple[str, ...] = ()


class Policies(_Model):
    path: str | None = None
    hot_reload: bool = False


class SidecarConfig(_Model):
    """The spec's ``sidecar-config.yaml``."""

    vllm: VllmSection = VllmSection()
    guardrails: Guardrails = Guardrails()
    classifiers: Classifiers = Classifiers()
    policies: Policies = Policies()


class EngineOptions(_Model):
    """``additional_config["checkstream"]``: turns the plugin on and says how requests opt in."""

    enabled: bool = True
    # A sidecar-config.yaml; inline sections below are used when it is absent.
    config: str | None = None
    guardrails: Guardrails = Guardrails()
    policies: Policies = Policies()
    # "all": every request is guarded and cannot opt out unless allow_opt_out;
    # "opt_in": only requests with extra_args {"checkstream": "on"} are guarded.
    requests: Literal["all", "opt_in"] = "all"
    allow_opt_out: bool = False
    # JSON lines of every decision the processor takes (safe-mode switches, tool rewrites,
    # fail-closed steps); the worker process has no other channel back to the operator.
    events_path: str | None = None
    # The proxy's hash-chained decision log (checkstream.audit): one record per guarded request
    # when a policy set is configured. One writer per file: give each engine its own path.
    decision_log: str | None = None
    # Raw text in the decision records and the phrases of request ban lists in the events
    # log (otherwise: hashes only).
    full_evidence: bool = False
    # Tokenizer used to expand phrases (default: the served model's).
    tokenizer: str | None = None


EMBEDDING_MODE_WARNING = (
    "classifiers.embedding_mode: true is not supported and is ignored: vLLM gives logits "
    "processors no hidden states or KV-cache embeddings, so classifiers score the detokenised "
    "text instead"
)


def config_warnings(config: SidecarConfig) -> list[str]:
    """Fields of ``sidecar-config.yaml`` that are accepted (the spec's sample has them) but
    cannot be honoured; each is logged at start-up and listed in the start-up summary."""
    out = []
    if config.classifiers.embedding_mode:
        out.append(EMBEDDING_MODE_WARNING)
    return out


def _format(err: ValidationError, source: str) -> str:
    return "\n".join(f"{source}: {where}: {msg}" for where, msg in error_lines(err))


def parse_sidecar_config(data: Any, source: str = "sidecar config") -> SidecarConfig:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SidecarConfigError(
            f"{source}: the top level must be a mapping, got {type(data).__name__}"
        )
    try:
        return SidecarConfig.model_validate(dict(data))
    except ValidationError as err:
        raise SidecarConfigError(_format(err, source)) from None


def load_sidecar_config(path: str | Path) -> SidecarConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise SidecarConfigError(f"{p}: cannot read sidecar config: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SidecarConfigError(f"{p}: invalid YAML: {err}") from None
    config = parse_sidecar_config(data, str(p))
    return _resolve_paths(config, p.parent)


def _resolve_paths(config: SidecarConfig, base: Path) -> SidecarConfig:
    """Relative file paths in a config file are relative to that file, not to the cwd."""
    masking = config.guardrails.preventive.logit_masking
    policies = config.policies
    if masking.banned_tokens_file and not Path(masking.banned_tokens_file).is_absolute():
        masking = masking.model_copy(
            update={"banned_tokens_file": str(base / masking.banned_tokens_file)}
        )
    if policies.path and not Path(policies.path).is_absolute():
        policies = policies.model_copy(update={"path": str(base / policies.path)})
    preventive = config.guardrails.preventive.model_copy(update={"logit_masking": masking})
    guardrails = config.guardrails.model_copy(update={"preventive": preventive})
    return config.model_copy(update={"guardrails": guardrails, "policies": policies})


def engine_options(additional_config: Mapping[str, Any] | None) -> EngineOptions | None:
    """The plugin's options, or None when ``additional_config`` does not enable it."""
    if not additional_config or "checkstream" not in additional_config:
        return None
    raw = additional_config["checkstream"]
    source = 'additional_config["checkstream"]'
    if isinstance(raw, bool):
        raw = {"enabled": raw}
    if not isinstance(raw, Mapping):
        raise SidecarConfigError(f"{source} must be a mapping, got {type(raw).__name__}")
    try:
        options = EngineOptions.model_validate(dict(raw))
    except ValidationError as err:
        raise SidecarConfigError(_format(err, source)) from None
    if not options.enabled:
        return None
    if options.config is not None:
        inline = raw.keys() & {"guardrails", "policies"}
        if inline:
            raise SidecarConfigError(
                f"{source}: give either 'config' or inline {sorted(inline)}, not both"
            )
        file_config = load_sidecar_config(options.config)
        options = options.model_copy(
            update={"guardrails": file_config.guardrails, "policies": file_config.policies}
        )
    return options
