"""The proxy's ``config.yaml``, validated into typed, immutable objects.

The layout is the one in the deployment spec (server, backend, guardrails, policies,
telemetry), plus optional ``tenants``. Unknown keys are errors (a typo must not silently
disable a guardrail), and every error names the field path, e.g.
``backend.retry.max_attempts: Input should be greater than or equal to 1``.

Environment overrides, applied after the file is read: ``BACKEND_URL`` (the default backend),
``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY`` (managed credentials sent upstream in place of the
client's own), ``CHECKSTREAM_CONFIG`` (the file, when ``--config`` is not given) and ``PORT``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from checkstream._validation import error_lines

ENV_VARS: frozenset[str] = frozenset(
    {
        "BACKEND_URL",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "CHECKSTREAM_CONFIG",
        "CHECKSTREAM_ADMIN_TOKEN",
        "PORT",
    }
)
"""Every environment variable the proxy reads (the deployment files are checked against it)."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file and the field."""


def parse_duration(value: Any) -> float:
    """``"300s"``, ``"500ms"``, ``"2m"``, ``"1h"`` or a bare number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be like '30s', '500ms', '2m' or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError(
            f"invalid duration {value!r}: use a number with a unit, like '30s', '500ms', '2m'"
        )
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Model):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    timeout: Duration = 300.0
    """Total time one request may take, streaming included."""
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    graceful_timeout: Duration = 10.0
    admin_token: str | None = Field(default=None, min_length=16, repr=False)
    """Bearer token for the admin API (``POST /admin/reload``); unset, the admin API answers 403.
    ``CHECKSTREAM_ADMIN_TOKEN`` overrides it (keep it out of config files)."""


class RetryConfig(_Model):
    max_attempts: int = Field(default=3, ge=1, le=10)
    backoff: Literal["exponential", "constant", "none"] = "exponential"
    base_delay: Duration = 0.2
    max_delay: Duration = 5.0


class BackendConfig(_Model):
    url: str = "https://api.openai.com/v1"
    provider: Literal["openai", "anthropic", "azure", "auto"] = "auto"
    """``auto`` guesses from the URL; ``azure`` sends ``api-key`` and ``api-version``."""
    timeout: Duration = 120.0
    """Total time for one upstream attempt."""
    connect_timeout: Duration = 10.0
    idle_timeout: Duration = 60.0
    """Longest silence allowed between two upstream reads (a stalled stream is cut)."""
    retry: RetryConfig = RetryConfig()
    api_key: str | None = None
    """Managed credential; normally from ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY``."""
    azure_api_version: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"backend url must start with http:// or https://, got {v!r}")
        return v.rstrip("/")

    @property
    def kind(self) -> Literal["openai", "anthropic", "azure"]:
        if self.provider != "auto":
            return self.provider
        if "anthropic" in self.url:
            return "anthropic"
        if ".openai.azure.com" in self.url:
            return "azure"
        return "openai"


class IngressConfig(_Model):
    enabled: bool = True
    classifiers: tuple[str, ...] = ()
    """Classifier names (checked against the registry at start-up; the policies decide when
    each runs). ``timeout_ms`` becomes the time budget of each listed classifier."""
    timeout_ms: int = Field(default=8, ge=1)


class MidstreamConfig(_Model):
    enabled: bool = True
    holdback_size: int = Field(default=16, ge=0, le=4096)
    check_interval: int = Field(default=8, ge=1, le=4096)
    classifiers: tuple[str, ...] = ()
    timeout_ms: int = Field(default=6, ge=1)


class EgressConfig(_Model):
    enabled: bool = True
    inject_disclaimers: bool = True


class GuardrailsConfig(_Model):
    ingress: IngressConfig = IngressConfig()
    midstream: MidstreamConfig = MidstreamConfig()
    egress: EgressConfig = EgressConfig()


class PoliciesConfig(_Model):
    path: tuple[Path, ...] = ()
    """A folder or file (or a list); empty means the shipped default pack."""
    hot_reload: bool = False
    reload_interval: Duration = 30.0

    @field_validator("path", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str | Path) else v


class ExportConfig(_Model):
    enabled: bool = False
    endpoint: str | None = None


class TelemetryConfig(_Model):
    mode: Literal["aggregate", "full_evidence"] = "aggregate"
    export: ExportConfig = ExportConfig()
    decision_log: Path | None = None
    """Hash-chained decision log file; none means records are only counted in metrics."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class ControlConfig(_Model):
    """Policy sync from a control plane (``docs/control-plane.md``): the default tenant serves
    ``policies_dir/current``, kept on the channel's latest signed bundle by an in-process agent
    that also sends heartbeats with this node's aggregate telemetry (never any text)."""

    url: str
    node_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    token_file: Path | None = None
    """File holding this node's token (kept out of the config). May be left out under mutual
    TLS when the control plane takes the node's certificate alone."""
    public_key: Path
    """The control plane's Ed25519 public key (PEM), pinned: other signatures are refused."""
    policies_dir: Path
    channel: str = Field(default="stable", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    interval: Duration = 30.0
    ca: Path | None = None
    """CA certificate (PEM) that the control plane's HTTPS certificate must chain to."""
    cert: Path | None = None
    """This node's client certificate (PEM), for mutual TLS; with ``key``."""
    key: Path | None = None
    ship_evidence: bool = False
    """Ship the decision log (``telemetry.decision_log``) to the control plane. Off by default:
    with full evidence it holds raw text; the control plane must accept it too."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"control url must start with http:// or https://, got {v!r}")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _credentials(self) -> ControlConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("control.cert and control.key go together (mutual TLS)")
        if self.token_file is None and self.cert is None:
            raise ValueError("control: give token_file, or cert and key (mutual TLS)")
        if (self.ca or self.cert) and not self.url.startswith("https://"):
            raise ValueError("control.ca / cert / key need an https:// url")
        return self


class TenantConfig(_Model):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    api_keys: tuple[str, ...] = ()
    """Keys that authenticate as this tenant; ``sha256:<hex>`` entries are compared by hash."""
    path_prefix: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9_.-]+$")
    backend: BackendConfig | None = None
    policies: PoliciesConfig | None = None


class ProxyConfig(_Model):
    server: ServerConfig = ServerConfig()
    backend: BackendConfig = BackendConfig()
    guardrails: GuardrailsConfig = GuardrailsConfig()
    policies: PoliciesConfig = PoliciesConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    tenants: tuple[TenantConfig, ...] = ()
    control: ControlConfig | None = None

    @model_validator(mode="after")
    def _unique_tenants(self) -> ProxyConfig:
        if self.control is not None and self.policies.path:
            raise ValueError("policies.path: leave it out when control is set (the control "
                             "plane supplies the default tenant's policies)")
        if self.control is not None and self.control.ship_evidence \
                and self.telemetry.decision_log is None:
            raise ValueError("control.ship_evidence: needs telemetry.decision_log (the log "
                             "that is shipped)")
        names: set[str] = set()
        prefixes: set[str] = set()
        keys: set[str] = set()
        for i, t in enumerate(self.tenants):
            if t.name in names or t.name == "default":
                raise ValueError(f"tenants[{i}].name: duplicate or reserved tenant name {t.name!r}")
            names.add(t.name)
            if t.path_prefix:
                reserved = {"/v1", "/health", "/metrics", "/admin"}
                if t.path_prefix in prefixes or t.path_prefix in reserved:
                    raise ValueError(f"tenants[{i}].path_prefix: {t.path_prefix!r} is taken")
                prefixes.add(t.path_prefix)
            for k in t.api_keys:
                if k in keys:
                    raise ValueError(f"tenants[{i}].api_keys: a key is listed for two tenants")
                keys.add(k)
            if not t.api_keys and not t.path_prefix:
                raise ValueError(f"tenants[{i}]: give api_keys or path_prefix (or both)")
        return self


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"  {loc}: {msg}" for loc, msg in error_lines(exc)]
    return f"invalid proxy configuration in {source}:\n" + "\n".join(lines)


def config_from_mapping(
    data: Mapping[str, Any] | None,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> ProxyConfig:
    """Validate a parsed config and apply the environment overrides."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = dict(data or {})
    if not isinstance(data, Mapping | None):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        cfg = ProxyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None
    backend = cfg.backend
    updates: dict[str, Any] = {}
    if env.get("BACKEND_URL"):
        try:
            backend = backend.model_validate({**backend.model_dump(), "url": env["BACKEND_URL"]})
        except ValidationError as exc:
            raise ConfigError(_format_errors(exc, "environment variable BACKEND_URL")) from None
    if backend.api_key is None:
        key_var = "ANTHROPIC_API_KEY" if backend.kind == "anthropic" else "OPENAI_API_KEY"
        if env.get(key_var):
            backend = backend.model_copy(update={"api_key": env[key_var]})
    updates["backend"] = backend
    server = cfg.server
    if env.get("PORT"):
        if not env["PORT"].isdigit() or not 0 <= int(env["PORT"]) <= 65535:
            raise ConfigError(f"environment variable PORT: not a port number: {env['PORT']!r}")
        server = server.model_copy(update={"port": int(env["PORT"])})
    if env.get("CHECKSTREAM_ADMIN_TOKEN"):
        try:
            server = server.model_validate(
                {**server.model_dump(), "admin_token": env["CHECKSTREAM_ADMIN_TOKEN"]})
        except ValidationError:
            raise ConfigError("environment variable CHECKSTREAM_ADMIN_TOKEN: the admin token "
                              "must be at least 16 characters") from None
    updates["server"] = server
    if base_dir is not None:
        # Relative policy paths are relative to the config file, so a config runs from anywhere.
        def rebase(p: PoliciesConfig) -> PoliciesConfig:
            paths = tuple(q if q.is_absolute() else base_dir / q for q in p.path)
            return p.model_copy(update={"path": paths})

        updates["policies"] = rebase(cfg.policies)
        updates["tenants"] = tuple(
            t.model_copy(update={"policies": rebase(t.policies)}) if t.policies else t
            for t in cfg.tenants
        )
        if cfg.control is not None:
            c = cfg.control
            paths = {k: getattr(c, k) for k in ("token_file", "public_key", "policies_dir", "ca",
                                                "cert", "key")}
            updates["control"] = c.model_copy(update={
                k: v if v.is_absolute() else base_dir / v for k, v in paths.items()
                if v is not None})
        if cfg.telemetry.decision_log and not cfg.telemetry.decision_log.is_absolute():
            updates["telemetry"] = cfg.telemetry.model_copy(
                update={"decision_log": base_dir / cfg.telemetry.decision_log}
            )
    return cfg.model_copy(update=updates)


def load_config(path: str | Path | None, *, env: Mapping[str, str] | None = None) -> ProxyConfig:
    """Read ``path`` (or ``$CHECKSTREAM_CONFIG``; none at all means every default)."""
    env = os.environ if env is None else env
    if path is None and env.get("CHECKSTREAM_CONFIG"):
        path = env["CHECKSTREAM_CONFIG"]
    if path is None:
        return config_from_mapping({}, source="<defaults>", env=env)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read proxy configuration {p}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}{where}: not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{p}: the top level must be a mapping, got {type(data).__name__}")
    return config_from_mapping(data, source=str(p), env=env, base_dir=p.parent.resolve())
