"""The operator's commands against a running control plane: ``checkstream control release``,
``rollback``, ``history`` and ``evidence`` (export), plus the client options they share with
``bundle push`` (``--control``, ``--token``, and ``--ca``/``--cert``/``--key`` for TLS and mutual
TLS). Exit status: 0 success, 1 refused by the control plane, 2 usage or connection errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from checkstream.control.tls import TLSConfigError, client_context

__all__ = ["ADMIN_TOKEN_ENV", "add_admin_commands", "add_client_options", "admin_client"]

ADMIN_TOKEN_ENV = "CHECKSTREAM_CONTROL_ADMIN_TOKEN"


def add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control", required=True, help="control plane URL (https:// for TLS)")
    parser.add_argument("--token", default=os.environ.get(ADMIN_TOKEN_ENV),
                        help=f"admin token (default: ${ADMIN_TOKEN_ENV})")
    parser.add_argument("--ca", type=Path, help="CA certificate(s) to trust (PEM)")
    parser.add_argument("--cert", type=Path, help="client certificate (PEM), for mutual TLS")
    parser.add_argument("--key", type=Path, help="the client certificate's private key (PEM)")


def admin_client(args: argparse.Namespace, timeout: float = 60.0) -> httpx.Client:
    """An httpx client for the admin API; raises :class:`TLSConfigError` for bad TLS files and
    ``ValueError`` when no token was given."""
    if not args.token:
        raise ValueError(f"give --token or set {ADMIN_TOKEN_ENV}")
    verify: Any = True
    if args.ca or args.cert or args.key:
        verify = client_context(args.ca, args.cert, args.key)
    return httpx.Client(base_url=args.control.rstrip("/"), verify=verify, timeout=timeout,
                        headers={"Authorization": f"Bearer {args.token}"})


def add_admin_commands(sub: Any) -> None:
    release = sub.add_parser(
        "release", help="release a stored bundle version on a channel (promote)",
        description="Make a stored version the channel's latest: nodes install it at their next "
        "poll. Give VERSION (64 hex digits, or a unique prefix of 12+) or --from CHANNEL.")
    release.add_argument("version", nargs="?", metavar="VERSION")
    release.add_argument("--channel", required=True)
    release.add_argument("--from", dest="from_channel", metavar="CHANNEL",
                         help="release what this channel serves now (e.g. canary)")
    add_client_options(release)
    release.set_defaults(func=_release)

    rollback = sub.add_parser("rollback", help="go back to a channel's previous release")
    rollback.add_argument("--channel", required=True)
    add_client_options(rollback)
    rollback.set_defaults(func=_rollback)

    history = sub.add_parser("history", help="a channel's release history, newest first")
    history.add_argument("--channel", required=True)
    add_client_options(history)
    history.set_defaults(func=_history)

    evidence = sub.add_parser(
        "evidence", help="export shipped decision records (checked against their hash chain)")
    evidence.add_argument("--node", help="one node (required for jsonl)")
    evidence.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    evidence.add_argument("--since", help="ISO 8601, inclusive (the node's log time)")
    evidence.add_argument("--until", help="ISO 8601, exclusive")
    evidence.add_argument("-o", "--output", type=Path, required=True)
    add_client_options(evidence)
    evidence.set_defaults(func=_evidence)


def _fail(message: str, status: int = 2) -> int:
    print(f"checkstream: {message}", file=sys.stderr)
    return status


def _call(args: argparse.Namespace, what: str, method: str, path: str,
          **kwargs: Any) -> httpx.Response | int:
    """The response, or an exit status after printing why there is none."""
    try:
        with admin_client(args) as client:
            resp = client.request(method, path, **kwargs)
    except (TLSConfigError, ValueError) as exc:
        return _fail(f"{what}: {exc}")
    except httpx.HTTPError as exc:
        return _fail(f"{what}: {args.control}: {exc!r}")
    if resp.status_code >= 400:
        try:
            err = resp.json()["error"]
            detail = f"{err['reason']}: {err['message']}"
        except (ValueError, KeyError, TypeError):
            detail = resp.text[:300]
        return _fail(f"{what}: HTTP {resp.status_code} {detail}", 1)
    return resp


def _release(args: argparse.Namespace) -> int:
    if (args.version is None) == (args.from_channel is None):
        return _fail("control release: give VERSION or --from CHANNEL (one of them)")
    body = ({"version": args.version} if args.version is not None
            else {"from_channel": args.from_channel})
    resp = _call(args, "control release", "POST", f"/v1/channels/{args.channel}/release",
                 json=body)
    if isinstance(resp, int):
        return resp
    data = resp.json()
    state = "now serves" if data["released"] else "already serves"
    print(f"channel {data['channel']} {state} {data['version']}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    resp = _call(args, "control rollback", "POST", f"/v1/channels/{args.channel}/rollback")
    if isinstance(resp, int):
        return resp
    data = resp.json()
    print(f"channel {data['channel']} rolled back from {data['rolled_back']} "
          f"to {data['version']}")
    return 0


def _history(args: argparse.Namespace) -> int:
    resp = _call(args, "control history", "GET", f"/v1/channels/{args.channel}/history")
    if isinstance(resp, int):
        return resp
    for e in resp.json()["history"]:
        note = e.get("from_channel") or (e.get("rolled_back", "")[:12])
        print(f"{e['at']}  {e['action']:<8}  {e['version']}  by {e['by']}"
              + (f"  (from {note})" if note else ""))
    return 0


def _evidence(args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("format", args.format), ("node", args.node),
                                ("since", args.since), ("until", args.until)) if v}
    resp = _call(args, "control evidence", "GET", "/v1/evidence/export", params=params)
    if isinstance(resp, int):
        return resp
    args.output.write_bytes(resp.content)
    print(f"{args.output}: {resp.headers.get('X-Checkstream-Records', '?')} record(s)"
          + (" (check it with: checkstream audit verify "
             f"{args.output}{' --pruned' if args.since else ''})" if args.format == "jsonl"
             else ""))
    return 0
