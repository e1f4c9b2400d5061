"""``checkstream classifiers ...``: list the registry, evaluate it on held-out data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser("classifiers", help="list and evaluate the classifiers")
    sub = parser.add_subparsers(dest="classifiers_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    lst = sub.add_parser("list", help="show each classifier, its version and provider in use")
    lst.add_argument(
        "--config", type=Path, default=None, help="classifiers.yaml (default: shipped)"
    )
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=_list)

    ev = sub.add_parser(
        "eval",
        help="precision/recall/F1/ROC-AUC on held-out data vs the keyword baseline",
    )
    ev.add_argument("--config", type=Path, default=None, help="classifiers.yaml (default: shipped)")
    ev.add_argument("--data", type=Path, default=None, help="data directory (default: ./data)")
    ev.add_argument("--only", nargs="*", default=None, help="classifier names to evaluate")
    ev.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    ev.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="score threshold for every classifier (default: each classifier's own)",
    )
    ev.set_defaults(func=_eval)


def _list(args: argparse.Namespace) -> int:
    from checkstream.classifiers.base import ClassifierError
    from checkstream.classifiers.registry import load_registry

    try:
        registry = load_registry(args.config)
    except ClassifierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    entries = registry.describe()
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for e in entries:
        aliases = ", ".join(e["aliases"]) if e["aliases"] else "-"  # type: ignore[arg-type]
        print(
            f"{e['name']:<18} {e['kind']:<8} {e['version']}  {e['provider']:<22}"
            f" threshold={e['threshold']} timeout={e['timeout_ms']}ms fail={e['fail_mode']}"
            f" labels={','.join(e['labels'])} aliases={aliases}"  # type: ignore[arg-type]
        )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from checkstream.classifiers.base import ClassifierError
    from checkstream.classifiers.evaluation import (
        default_data_dir,
        evaluate,
        load_eval_sets,
        markdown_table,
    )
    from checkstream.classifiers.registry import load_registry

    data = args.data
    if data is None:
        cwd = Path("data")
        data = cwd if (cwd / "finance_advice.jsonl").is_file() else default_data_dir()
    if data is None:
        print("error: no evaluation data found; pass --data DIR (the repository's data/)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        registry = load_registry(args.config)
        sets = load_eval_sets(data)
    except (ClassifierError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.only:
        unknown = [n for n in args.only if n not in registry]
        if unknown:
            print(f"error: unknown classifier(s) {unknown}; known: {sorted(registry.names())}",
                  file=sys.stderr)  # fmt: skip
            return 2
        wanted = {registry.canonical(n) for n in args.only}
        sets = [s for s in sets if s.classifier in wanted]
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        print(f"error: --threshold must be in [0, 1], got {args.threshold}", file=sys.stderr)
        return 2
    rows = evaluate(registry, sets, threshold=args.threshold)
    which = "each classifier's own" if args.threshold is None else f"{args.threshold:g} for all"
    print(f"data: {data.resolve()}   threshold: {which}; baseline: substring keywords")
    print(markdown_table(rows))
    for e in registry.describe():
        if e["name"] in {r.classifier for r in rows}:
            print(f"  {e['name']}: version {e['version']} on {e['provider']}")
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r in rows], indent=2) + "\n")
    return 0
