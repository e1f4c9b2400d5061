"""``checkstream control serve``, ``checkstream control bundle build|sign|verify|push``,
``checkstream control certs`` and ``checkstream agent`` (release, rollback, history and evidence
export are in :mod:`checkstream.control.admin_cli`).

Keys are Ed25519 PEM files from ``checkstream audit keygen PREFIX``. Exit status: 0 success,
1 a bundle failed verification (or was refused), 2 usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from checkstream.control.admin_cli import (
    ADMIN_TOKEN_ENV,
    add_admin_commands,
    add_client_options,
    admin_client,
)

NODE_TOKEN_ENV = "CHECKSTREAM_NODE_TOKEN"


def add_commands(subparsers: Any) -> None:
    control = subparsers.add_parser(
        "control", help="the control plane: policy bundles, fleet view, evidence export",
        description="Version, sign and distribute policy bundles; collect node telemetry.")
    sub = control.add_subparsers(dest="control_command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the control plane server")
    serve.add_argument("--data", type=Path, required=True, help="data directory (created)")
    serve.add_argument("--signing-key", type=Path, required=True,
                       help="Ed25519 private key (PEM) that signs every bundle")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument("--admin-token", default=os.environ.get(ADMIN_TOKEN_ENV),
                       help=f"admin bearer token (default: ${ADMIN_TOKEN_ENV})")
    serve.add_argument("--admin-tokens", type=Path,
                       help="YAML mapping label: admin token (the label is recorded as who "
                       "released what); sha256:<hex> allowed")
    serve.add_argument("--node-tokens", type=Path,
                       help="YAML mapping node_id: token ('*': any node); sha256:<hex> allowed. "
                       "Under mutual TLS, a second factor next to the node's certificate")
    serve.add_argument("--down-after", type=float, default=90.0,
                       help="seconds without a heartbeat before a node is down (default 90)")
    serve.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    serve.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    serve.add_argument("--client-ca", type=Path,
                       help="mutual TLS: require client certificates issued by this CA (PEM); "
                       "a node's certificate must name the node id it posts as")
    serve.add_argument("--accept-evidence", action="store_true",
                       help="accept full-evidence uploads (decision logs, which may hold raw "
                       "prompts); off by default")
    serve.set_defaults(func=_serve)

    certs = sub.add_parser(
        "certs", help="make a throwaway CA, server and client certificates (tests, demos)",
        description="Write ca.pem/ca.key, server.pem/server.key and NAME.pem/NAME.key for each "
        "--node and --client into OUT. Not a PKI: use your own CA in production.")
    certs.add_argument("out", type=Path)
    certs.add_argument("--node", action="append", default=[],
                       help="a node id (its certificate names urn:checkstream:node:<id>)")
    certs.add_argument("--client", action="append", default=None,
                       help="a client certificate that names no node (default: admin)")
    certs.add_argument("--server-name", action="append", default=None,
                       help="DNS name of the control plane (default: localhost)")
    certs.add_argument("--server-ip", action="append", default=None,
                       help="IP address of the control plane (default: 127.0.0.1 and ::1)")
    certs.add_argument("--days", type=int, default=30)
    certs.set_defaults(func=_certs)
    add_admin_commands(sub)

    bundle = sub.add_parser("bundle", help="build, sign, verify or push a policy bundle")
    bsub = bundle.add_subparsers(dest="bundle_command", metavar="COMMAND", required=True)
    build = bsub.add_parser("build", help="bundle a policy directory (checked by loading it)")
    build.add_argument("policy_dir", type=Path)
    build.add_argument("-o", "--output", type=Path, required=True)
    build.add_argument("--sign", type=Path, metavar="KEY", help="also sign with this key")
    build.set_defaults(func=_build)
    sign = bsub.add_parser("sign", help="sign a bundle with an Ed25519 key")
    sign.add_argument("bundle", type=Path)
    sign.add_argument("--key", type=Path, required=True)
    sign.add_argument("-o", "--output", type=Path, help="default: overwrite BUNDLE")
    sign.set_defaults(func=_sign)
    verify = bsub.add_parser("verify", help="check signature, hashes and that the policy loads")
    verify.add_argument("bundle", type=Path)
    verify.add_argument("--public-key", type=Path, required=True)
    verify.set_defaults(func=_verify)
    push = bsub.add_parser("push", help="upload a policy directory or bundle to a control plane")
    push.add_argument("source", type=Path, help="policy directory or bundle file")
    push.add_argument("--channel", default="stable")
    add_client_options(push)
    push.set_defaults(func=_push)

    agent = subparsers.add_parser(
        "agent", help="keep a node's policies on the control plane's latest signed bundle",
        description="Poll the control plane, verify and install new bundles into "
        "POLICIES_DIR/current (point the proxy's policies.path there, with hot_reload), and send "
        "heartbeats.")
    agent.add_argument("--control", required=True, help="control plane URL")
    agent.add_argument("--node-id", required=True)
    agent.add_argument("--token", default=os.environ.get(NODE_TOKEN_ENV),
                       help=f"node token (default: ${NODE_TOKEN_ENV})")
    agent.add_argument("--public-key", type=Path, required=True,
                       help="the control plane's Ed25519 public key (pinned)")
    agent.add_argument("--policies-dir", type=Path, required=True)
    agent.add_argument("--channel", default="stable")
    agent.add_argument("--mode", choices=("proxy", "sidecar"), default="proxy")
    agent.add_argument("--interval", type=float, default=30.0, help="seconds between polls")
    agent.add_argument("--once", action="store_true", help="poll and heartbeat once, then exit")
    agent.add_argument("--ca", type=Path, help="CA certificate(s) to trust for https:// (PEM)")
    agent.add_argument("--cert", type=Path,
                       help="this node's client certificate (PEM), for mutual TLS")
    agent.add_argument("--key", type=Path, help="the client certificate's private key (PEM)")
    agent.add_argument("--ship-evidence", type=Path, metavar="DECISION_LOG",
                       help="also upload this decision log (opt-in: it may hold raw prompts)")
    agent.add_argument("--state-dir", type=Path,
                       help="where the agent keeps what it has shipped (default: POLICIES_DIR)")
    agent.set_defaults(func=_agent)


def _fail(message: str, status: int = 2) -> int:
    print(f"checkstream: {message}", file=sys.stderr)
    return status


def _serve(args: argparse.Namespace) -> int:
    from checkstream.audit.errors import AuditKeyError
    from checkstream.audit.keys import load_signing_key
    from checkstream.control.auth import Tokens, load_admin_tokens, load_node_tokens
    from checkstream.control.server import serve_control
    from checkstream.control.tls import ServerTLS

    if not args.admin_token and not args.admin_tokens:
        return _fail(f"control serve: give --admin-token, --admin-tokens or set {ADMIN_TOKEN_ENV}")
    if (args.tls_cert is None) != (args.tls_key is None):
        return _fail("control serve: give both --tls-cert and --tls-key")
    if args.client_ca is not None and args.tls_cert is None:
        return _fail("control serve: --client-ca (mutual TLS) needs --tls-cert and --tls-key")
    tls = ServerTLS(args.tls_cert, args.tls_key, args.client_ca) if args.tls_cert else None
    try:
        key = load_signing_key(args.signing_key)
        admins = load_admin_tokens(args.admin_tokens) if args.admin_tokens else {}
        if args.admin_token:
            admins.setdefault("admin", args.admin_token)
        nodes = load_node_tokens(args.node_tokens) if args.node_tokens else {}
        tokens = Tokens(admins, nodes)
        if tls is not None:
            tls.context()  # fail now, naming the file, rather than at the first connection
    except (AuditKeyError, OSError, ValueError) as exc:
        return _fail(f"control serve: {exc}")
    if not nodes and not (tls and tls.mutual):
        print("checkstream: control serve: no --node-tokens and no --client-ca: no node can "
              "authenticate", file=sys.stderr)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve_control(args.data, key, tokens, host=args.host, port=args.port,
                  down_after=args.down_after, tls=tls, accept_evidence=args.accept_evidence)
    return 0


def _certs(args: argparse.Namespace) -> int:
    from checkstream.control.certs import write_demo_pki

    try:
        written = write_demo_pki(
            args.out, nodes=args.node, clients=args.client or ["admin"],
            server_names=args.server_name or ["localhost"],
            server_ips=args.server_ip or ["127.0.0.1", "::1"], days=args.days)
    except (OSError, ValueError) as exc:
        return _fail(f"control certs: {exc}")
    print(f"wrote {len(written)} files to {args.out} (throwaway CA, valid {args.days} days; keys "
          "are mode 600):")
    for path in written:
        print(f"  {path.name}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from checkstream.audit.errors import AuditKeyError
    from checkstream.control.bundle import BundleError, build_bundle, sign_bundle

    try:
        bundle = build_bundle(args.policy_dir)
        if args.sign:
            bundle = sign_bundle(bundle, args.sign)
        args.output.write_bytes(bundle.to_bytes())
    except BundleError as exc:
        return _fail(f"bundle build: {exc}", 1)
    except (AuditKeyError, OSError) as exc:
        return _fail(f"bundle build: {exc}")
    print(f"{args.output}: policy version {bundle.version}, {len(bundle.files)} files"
          + (f", signed by {bundle.signature.key_id}" if bundle.signature else ", unsigned"))
    return 0


def _sign(args: argparse.Namespace) -> int:
    from checkstream.audit.errors import AuditKeyError
    from checkstream.control.bundle import Bundle, BundleError, check_contents, sign_bundle

    try:
        bundle = Bundle.from_bytes(args.bundle.read_bytes())
        check_contents(bundle)  # never sign files that do not match their manifest
        signed = sign_bundle(bundle, args.key)
        (args.output or args.bundle).write_bytes(signed.to_bytes())
    except BundleError as exc:
        return _fail(f"bundle sign: {exc}", 1)
    except (AuditKeyError, OSError) as exc:
        return _fail(f"bundle sign: {exc}")
    assert signed.signature is not None
    print(f"signed policy version {signed.version} with key {signed.signature.key_id}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from checkstream.control.bundle import BundleError, verify_bundle

    try:
        bundle, policy_set = verify_bundle(args.bundle.read_bytes(), args.public_key)
    except BundleError as exc:
        return _fail(f"{args.bundle}: {exc.reason}: {exc}", 1)
    except OSError as exc:
        return _fail(f"bundle verify: {exc}")
    print(f"{args.bundle}: OK, policy version {bundle.version}, {len(policy_set.rules)} rules, "
          f"signed by {bundle.signature.key_id if bundle.signature else '?'}")
    return 0


def _push(args: argparse.Namespace) -> int:
    import httpx

    from checkstream.control.bundle import BundleError, build_bundle

    try:
        data = (build_bundle(args.source).to_bytes() if args.source.is_dir()
                else args.source.read_bytes())
        with admin_client(args) as client:
            resp = client.post("/v1/bundles", params={"channel": args.channel}, content=data,
                               headers={"Content-Type": "application/json"})
    except BundleError as exc:
        return _fail(f"bundle push: {exc}", 1)
    except (OSError, ValueError, httpx.HTTPError) as exc:
        return _fail(f"bundle push: {exc}")
    if resp.status_code not in (200, 201):
        return _fail(f"bundle push: HTTP {resp.status_code}: {resp.text}", 1)
    body = resp.json()
    print(f"channel {body['channel']}: policy version {body['version']} "
          f"({'new' if body['created'] else 'already held'}, signed by {body['key_id']})")
    return 0


def _agent(args: argparse.Namespace) -> int:
    from checkstream.audit.errors import AuditKeyError
    from checkstream.control.agent import Agent

    if not args.token and not args.cert:
        return _fail(f"agent: give --token (or set {NODE_TOKEN_ENV}), or --cert/--key for "
                     "mutual TLS")
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def main() -> int:
        agent = Agent(None, control_url=args.control, node_id=args.node_id, token=args.token,
                      public_key=args.public_key, policies_dir=args.policies_dir,
                      channel=args.channel, mode=args.mode, interval=args.interval,
                      ca=args.ca, cert=args.cert, key=args.key,
                      evidence_log=args.ship_evidence, state_dir=args.state_dir)
        try:
            if args.once:
                result = await agent.poll_once()
                shipped = await agent.ship_evidence()
                await agent.heartbeat()
                print(f"{result.outcome}: serving {result.version or 'nothing'}"
                      + (f" ({result.error})" if result.error else ""))
                if args.ship_evidence is not None:
                    print(f"evidence: shipped {shipped.records} record(s), last seq "
                          f"{shipped.last_seq}" + (f" ({shipped.error})" if shipped.error else ""))
                failed = result.outcome in ("rejected", "error") or shipped.error is not None
                return 1 if failed else 0
            await agent.run()
            return 0
        finally:
            await agent.aclose()

    try:
        return asyncio.run(main())
    except (AuditKeyError, OSError, ValueError) as exc:  # TLSConfigError is a ValueError
        return _fail(f"agent: {exc}")
    except KeyboardInterrupt:
        return 0
