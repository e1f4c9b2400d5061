"""``checkstream audit``: verify, export, keygen.

``verify`` exits 0 when the chain is intact and 1 when it is not (printing the first bad place as
``FILE:LINE: reason``); 2 for usage errors (missing file, unreadable key).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from checkstream.audit.errors import AuditError
from checkstream.audit.export import ExportFilter, export, parse_time
from checkstream.audit.keys import generate_keypair
from checkstream.audit.verify import verify_log

__all__ = ["add_commands"]


def add_commands(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit",
        help="verify and export the decision log",
        description="Verify and export the decision log; create its keys.",
    )
    commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    verify = commands.add_parser(
        "verify", help="check the whole chain and name the first bad record"
    )
    _add_log_arguments(verify)
    verify.add_argument("-q", "--quiet", action="store_true", help="print only failures")
    verify.set_defaults(func=_verify)

    exp = commands.add_parser("export", help="write records as CSV or JSON lines")
    _add_log_arguments(exp)
    exp.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    exp.add_argument("--since", type=_time_arg, help="ISO 8601, inclusive (log time, UTC)")
    exp.add_argument("--until", type=_time_arg, help="ISO 8601, exclusive (log time, UTC)")
    exp.add_argument("--rule", help="only records where this rule fired")
    exp.add_argument("--regulation", help="only records citing this regulation (substring)")
    exp.add_argument("-o", "--output", type=Path, help="output file (default: stdout)")
    exp.add_argument(
        "--no-verify", action="store_true", help="export even if the chain does not verify"
    )
    exp.set_defaults(func=_export)

    keygen = commands.add_parser("keygen", help="create an Ed25519 key pair (or an HMAC key)")
    keygen.add_argument(
        "prefix", type=Path, help="writes PREFIX.key (private, mode 600) and PREFIX.pub"
    )
    keygen.add_argument(
        "--hmac", action="store_true", help="write a random HMAC key to PREFIX.hmac"
    )
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    keygen.set_defaults(func=_keygen)


def _time_arg(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_log_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="log files or directories")
    parser.add_argument("--hmac-key", type=Path, help="file holding the HMAC key as hex")
    parser.add_argument("--public-key", type=Path, help="Ed25519 public key (PEM) to check with")
    parser.add_argument("--head", type=Path, help="head file (default: <file>.head if present)")
    parser.add_argument("--no-head", action="store_true", help="do not check the head file")
    parser.add_argument(
        "--pruned",
        action="store_true",
        help="older files were deleted by retention: start the check at the first record given",
    )


def _run_verify(args: argparse.Namespace) -> tuple[bool, str]:
    result = verify_log(
        args.paths,
        hmac_key=args.hmac_key,
        public_key=args.public_key,
        head=False if args.no_head else args.head,
        pruned=args.pruned,
    )
    if result.ok:
        first = (result.last_seq or 0) - result.records + 1
        return True, (
            f"OK: {result.records} records, seq {first}..{result.last_seq}, "
            f"{len(result.files)} file(s), last hash {result.last_hash}"
            + (f", {len(result.recoveries)} crash recovery(ies)" if result.recoveries else "")
        )
    return False, f"FAIL: {result.first_bad} ({result.records} records verified before it)"


def _verify(args: argparse.Namespace) -> int:
    try:
        ok, message = _run_verify(args)
    except (OSError, AuditError, ValueError) as exc:
        print(f"checkstream audit verify: {exc}", file=sys.stderr)
        return 2
    if not ok or not args.quiet:
        print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _export(args: argparse.Namespace) -> int:
    flt = ExportFilter(
        since=args.since, until=args.until, rule=args.rule, regulation=args.regulation
    )
    try:
        if not args.no_verify:
            ok, message = _run_verify(args)
            if not ok:
                print(
                    f"{message}; not exporting (use --no-verify to export anyway)", file=sys.stderr
                )
                return 1
        if args.output is None:
            count = export(args.paths, sys.stdout, format=args.format, filter=flt)
        else:
            with args.output.open("w", encoding="utf-8", newline="") as out:
                count = export(args.paths, out, format=args.format, filter=flt)
    except (OSError, AuditError, ValueError) as exc:
        print(f"checkstream audit export: {exc}", file=sys.stderr)
        return 2
    print(f"exported {count} record(s)", file=sys.stderr)
    return 0


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _keygen(args: argparse.Namespace) -> int:
    prefix: Path = args.prefix
    try:
        if args.hmac:
            target = prefix.with_name(prefix.name + ".hmac")
            _write_new(target, secrets.token_hex(32).encode() + b"\n", 0o600, args.force)
            print(f"wrote HMAC key {target}")
            return 0
        private, public = generate_keypair()
        key_file = prefix.with_name(prefix.name + ".key")
        pub_file = prefix.with_name(prefix.name + ".pub")
        _write_new(key_file, private, 0o600, args.force)
        _write_new(pub_file, public, 0o644, args.force)
    except FileExistsError as exc:
        print(f"checkstream audit keygen: {exc.filename} exists (use --force)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"checkstream audit keygen: {exc}", file=sys.stderr)
        return 2
    print(f"wrote signing key {key_file} (keep it secret) and public key {pub_file}")
    return 0
