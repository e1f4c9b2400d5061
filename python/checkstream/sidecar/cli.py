"""``checkstream sidecar ...`` commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from checkstream.sidecar.config import SidecarConfigError, load_sidecar_config


def add_commands(subparsers: Any) -> None:
    sidecar = subparsers.add_parser("sidecar", help="vLLM sidecar (logits-processor plugin)")
    sub = sidecar.add_subparsers(dest="sidecar_command", metavar="COMMAND")
    validate = sub.add_parser(
        "validate-config", help="check a sidecar-config.yaml (and the policies it names)"
    )
    validate.add_argument("path", help="sidecar-config.yaml")
    validate.set_defaults(func=_validate)
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
    }
    print(json.dumps(summary))
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
