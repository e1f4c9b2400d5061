"""``checkstream sidecar ...`` commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from checkstream.sidecar.config import SidecarConfigError, config_warnings, load_sidecar_config
from checkstream.sidecar.serve import DEFAULT_PORT, DEFAULT_VLLM_URL


def add_commands(subparsers: Any) -> None:
    sidecar = subparsers.add_parser("sidecar", help="vLLM sidecar (logits-processor plugin)")
    sub = sidecar.add_subparsers(dest="sidecar_command", metavar="COMMAND")
    validate = sub.add_parser(
        "validate-config", help="check a sidecar-config.yaml (and the policies it names)"
    )
    validate.add_argument("path", help="sidecar-config.yaml")
    validate.set_defaults(func=_validate)
    serve = sub.add_parser(
        "serve",
        help="serve the merged safe stream: the proxy in front of the co-located vLLM server",
        description="Serve vLLM's OpenAI-compatible API through checkstream's streaming guard "
        "(the proxy app): the reactive holdback, check interval, classifiers and policies come "
        "from sidecar-config.yaml, so text vLLM has generated is redacted or stopped before the "
        "client receives it. Point clients at this port instead of vLLM's.",
    )
    serve.add_argument("--config", "-c", required=True, help="sidecar-config.yaml")
    serve.add_argument(
        "--vllm-url",
        help=f"vLLM's /v1 URL (default {DEFAULT_VLLM_URL}, or vllm.socket when the config "
        "gives one)",
    )
    serve.add_argument(
        "--vllm-socket",
        metavar="PATH",
        help="reach vLLM's OpenAI server over this unix socket (vLLM started with --uds PATH); "
        "default: vllm.socket from the config. Not with --vllm-url",
    )
    serve.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"listen port (default {DEFAULT_PORT})"
    )
    serve.add_argument(
        "--decision-log",
        help="hash-chained decision log (checkstream audit verify); not the file the in-engine "
        "processor writes: one writer per file",
    )
    serve.add_argument(
        "--full-evidence", action="store_true", help="write raw text into decision records"
    )
    serve.add_argument(
        "--check", action="store_true", help="validate the config and load the policies, then exit"
    )
    serve.set_defaults(func=_serve)
    sidecar.set_defaults(func=lambda args: _help(sidecar))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _validate(args: argparse.Namespace) -> int:
    try:
        config = load_sidecar_config(args.path)
        policies = config.policies.path
        rules = 0
        if policies:
            from checkstream.policy import PolicyError, load_policy_set

            try:
                rules = len(load_policy_set([policies]).rules)
            except PolicyError as err:
                raise SidecarConfigError(f"{args.path}: policies.path: {err}") from None
        masking = config.guardrails.preventive.logit_masking
        if masking.banned_tokens_file:
            _check_banned_file(masking.banned_tokens_file)
    except SidecarConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    summary = {
        "config": args.path,
        "policy_rules": rules,
        "banned_phrases": len(masking.phrases),
        "adaptive_decoding": config.guardrails.preventive.adaptive_decoding.enabled,
        "tool_arguments": sorted(config.guardrails.tools.arguments),
        "warnings": config_warnings(config),
    }
    print(json.dumps(summary))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging

    from checkstream.policy import PolicyError
    from checkstream.proxy.config import ConfigError
    from checkstream.sidecar.serve import proxy_config, resolve_backend, socket_transport

    try:
        sidecar = load_sidecar_config(args.config)
        vllm_url, vllm_socket = resolve_backend(
            sidecar, vllm_url=args.vllm_url, vllm_socket=args.vllm_socket
        )
        cfg = proxy_config(
            sidecar,
            vllm_url=vllm_url,
            host=args.host,
            port=args.port,
            decision_log=args.decision_log,
            full_evidence=args.full_evidence,
            source=args.config,
        )
        logging.basicConfig(
            level=cfg.telemetry.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)
        warnings = config_warnings(sidecar)
        for warning in warnings:
            logging.getLogger("checkstream.sidecar").warning("%s: %s", args.config, warning)
        from checkstream.proxy.app import create_app

        transport = socket_transport(vllm_socket) if vllm_socket is not None else None
        app = create_app(cfg, transport=transport)
    except (SidecarConfigError, ConfigError, PolicyError, ValueError) as err:
        print(f"checkstream sidecar serve: {err}", file=sys.stderr)
        return 2
    mid = cfg.guardrails.midstream
    runtime = next(iter(app.extensions["checkstream"].runtimes.values()))
    summary = {
        "listen": f"{cfg.server.host}:{cfg.server.port}",
        "vllm": cfg.backend.url if vllm_socket is None else f"unix:{vllm_socket}",
        "policy_version": runtime.store.current.version,
        "holdback_size": mid.holdback_size if mid.enabled else None,
        "check_interval": mid.check_interval,
        "decision_log": str(cfg.telemetry.decision_log) if cfg.telemetry.decision_log else None,
        "warnings": warnings,
    }
    print(json.dumps(summary), flush=True)
    if args.check:
        return 0
    from checkstream.proxy.server import serve

    serve(
        app,
        host=cfg.server.host,
        port=cfg.server.port,
        graceful_timeout=cfg.server.graceful_timeout,
    )
    return 0


def _check_banned_file(path: str) -> None:
    """Shape check only; token ids are checked against the model's vocabulary at start-up."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as err:
        raise SidecarConfigError(
            f"{path}: cannot read banned tokens file: {err.strerror}"
        ) from None
    except json.JSONDecodeError as err:
        raise SidecarConfigError(f"{path}: invalid JSON: {err}") from None
    if not isinstance(data, list | dict):
        raise SidecarConfigError(f"{path}: expected a JSON list or object")
