"""``checkstream policy validate | test | explain``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from checkstream.policy.errors import PolicyError
from checkstream.policy.loader import load_policy_set
from checkstream.policy.policyset import describe


def add_commands(subparsers: Any) -> None:
    policy = subparsers.add_parser("policy", help="validate, test and explain policy files")
    sub = policy.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)

    validate = sub.add_parser("validate", help="load policy files; report the first error")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="policy file or directory")
    validate.set_defaults(func=_validate)

    test = sub.add_parser("test", help="run expected-decision cases; nonzero exit on mismatch")
    test.add_argument("paths", nargs="+", metavar="PATH", help="policy file or directory")
    test.add_argument(
        "--cases",
        required=True,
        action="append",
        metavar="CASES.yaml",
        help="cases file (repeatable)",
    )
    test.add_argument(
        "--stream-chunk",
        type=int,
        action="append",
        default=[],
        metavar="CHARS",
        help="also stream output cases in CHARS-character deltas; must decide the same "
        "(repeatable)",
    )
    test.set_defaults(func=_test)

    explain = sub.add_parser("explain", help="show which rules fire on a text, where and why")
    explain.add_argument("path", metavar="PATH", help="policy file or directory")
    explain.add_argument("text", help="the text to judge")
    explain.add_argument("--phase", choices=("output", "ingress", "egress"), default="output")
    explain.add_argument("--tenant", default="default")
    explain.add_argument("--model", default="test-model")
    explain.add_argument("--endpoint", default="/v1/chat/completions")
    explain.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="request metadata for context triggers (repeatable)",
    )
    explain.set_defaults(func=_explain)


def _err(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def _validate(args: argparse.Namespace) -> int:
    try:
        pset = load_policy_set(args.paths)
    except PolicyError as exc:
        return _err(exc)
    print(
        f"ok: {len(pset.files)} polic{'y' if len(pset.files) == 1 else 'ies'}, "
        f"{len(pset.rules)} rules, {len(pset.phrases)} phrases; version {pset.version}"
    )
    for source, policy in zip(pset.sources, pset.files, strict=True):
        print(f"  {policy.name} {policy.version}: {len(policy.rules)} rules ({source})")
    return 0


def _test(args: argparse.Namespace) -> int:
    from checkstream.engine import Guard
    from checkstream.policy.cases import load_cases, run_case

    try:
        pset = load_policy_set(args.paths)
        guard = Guard(pset)
        cases = [(path, case) for path in args.cases for case in load_cases(path)]
    except (PolicyError, ValueError) as exc:
        return _err(exc)
    if any(size < 1 for size in args.stream_chunk):
        return _err(ValueError("--stream-chunk must be at least 1"))
    failed = 0
    for path, case in cases:
        result = run_case(guard, case)
        if result.ok and case.phase == "output":
            text = case.input or ""
            for size in args.stream_chunk:
                chunks = [text[i : i + size] for i in range(0, len(text), size)]
                streamed = run_case(guard, case, chunks=chunks)
                if not streamed.ok:
                    result = streamed
                    result.problems = [
                        f"streamed in {size}-char deltas: {p}" for p in streamed.problems
                    ]
                    break
        if result.ok:
            print(f"PASS {Path(path).name}: {case.name}")
        else:
            failed += 1
            print(f"FAIL {Path(path).name}: {case.name}")
            for problem in result.problems:
                print(f"     {problem}")
    print(f"{len(cases) - failed} passed, {failed} failed (policy version {pset.short_version})")
    return 1 if failed else 0


def _explain(args: argparse.Namespace) -> int:
    from checkstream.engine import ChatMessage, Guard, RequestContext

    metadata: dict[str, str] = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep:
            return _err(ValueError(f"--meta wants KEY=VALUE, got {item!r}"))
        metadata[key] = value
    try:
        pset = load_policy_set(args.path)
        guard = Guard(pset)
    except (PolicyError, ValueError) as exc:
        return _err(exc)
    ctx = RequestContext("explain", args.tenant, args.endpoint, args.model, metadata)
    text: str = args.text
    verdict: str
    if args.phase == "ingress":
        ing = guard.ingress([ChatMessage("user", text)], ctx)
        hits, verdict, result = ing.hits, ing.action, ing.messages[0].content
        if ing.action == "block":
            result = f"(blocked, status {ing.block_status}) {ing.block_message}"
    elif args.phase == "egress":
        eg = guard.egress(text, ctx)
        hits, verdict = eg.hits, ("disclaimer" if eg.prepend or eg.append else "pass")
        result = eg.prepend + text + eg.append
    else:
        out = guard.check_output(text, ctx)
        hits = out.hits
        verdict = (
            "stop"
            if out.stopped
            else (
                "redact"
                if any(h.mode == "enforce" and "redact" in h.actions for h in hits)
                else "pass"
            )
        )
        result = f"(stopped) {out.stop_message}" if out.stopped else out.text
    rules = {(r.policy, r.name): r for r in pset.rules}
    print(f"policy version {pset.short_version}; phase {args.phase}; decision: {verdict}")
    if not hits:
        print("no rule fired")
    for hit in hits:
        rule = rules[(hit.policy, hit.rule)]
        span = (
            "" if hit.start is None else f" [{hit.start}:{hit.end}] {text[hit.start : hit.end]!r}"
        )
        score = "" if hit.score is None else f" score={hit.score:.3f}"
        shadow = " (shadow: recorded, not acted on)" if hit.mode == "shadow" else ""
        print(f"- {hit.policy}/{hit.rule}: {hit.action}{shadow}{span}{score}")
        print(f"    why: {hit.detail}; trigger {describe(rule.trigger)}")
        if hit.regulation or hit.citation:
            print(f"    regulation: {hit.regulation or ''} {hit.citation or ''}".rstrip())
        print(f"    defined at {rule.source}, priority {rule.priority}")
    print(f"result: {result}")
    return 0
