"""Export decision records for people and tools: CSV (one row per record) or JSON lines.

JSON lines are the log's own entries, byte for byte, so every exported line can still be checked
against its hash and signature on its own. CSV flattens what a reviewer filters on (who, which
model, which rules fired under which regulation, what was done) and keeps the whole record as
canonical JSON in the last column. Filters: the time the log accepted the record (``since``
inclusive, ``until`` exclusive), a rule name, a regulation reference (case-insensitive substring,
so ``"COBS"`` finds ``"COBS 9A"``).

The exporter reads the files in chain order and skips only lines that are not entries (a torn
write excused by a recovery entry); run :func:`checkstream.audit.verify_log` first to know the log
is intact (the CLI does).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Literal

from checkstream.audit.canonical import canonical_json
from checkstream.audit.verify import expand_paths, first_seq, iter_lines

__all__ = ["CSV_COLUMNS", "ExportFilter", "export", "iter_entries", "parse_time", "rule_hits"]

ExportFormat = Literal["csv", "jsonl"]

CSV_COLUMNS = (
    "seq",
    "ts",
    "kind",
    "request_id",
    "tenant",
    "endpoint",
    "model",
    "policy_version",
    "decision",
    "actions",
    "rules",
    "regulations",
    "input_sha256",
    "output_sha256",
    "hash",
    "record",
)
_CONTEXT_FIELDS = ("request_id", "tenant", "endpoint", "model", "policy_version", "decision")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 date or date-time; a value without a zone is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 date or time (e.g. 2026-11-27 or 2026-11-27T08:00:00Z)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ExportFilter:
    since: datetime | None = None
    until: datetime | None = None
    rule: str | None = None
    regulation: str | None = None

    def accepts(self, entry: Mapping[str, Any]) -> bool:
        if self.since is not None or self.until is not None:
            ts = parse_time(str(entry.get("ts", "")))
            if self.since is not None and ts < self.since:
                return False
            if self.until is not None and ts >= self.until:
                return False
        if self.rule is None and self.regulation is None:
            return True
        hits = rule_hits(entry.get("record", {}))
        if self.rule is not None and not any(h.get("rule") == self.rule for h in hits):
            return False
        if self.regulation is not None:
            wanted = self.regulation.casefold()
            return any(wanted in str(h.get("regulation") or "").casefold() for h in hits)
        return True


def rule_hits(record: Any) -> list[Mapping[str, Any]]:
    """Every rule hit in a record: any object with a string ``rule`` field, wherever it sits.

    Looking for the shape rather than a fixed path keeps export working whether hits are listed
    per phase, per stream or at the top of the record.
    """
    found: list[Mapping[str, Any]] = []
    stack = [record]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            if isinstance(item.get("rule"), str):
                found.append(item)
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found


def iter_entries(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """Yield ``(line, entry)`` for every entry of the log, in chain order."""
    files = expand_paths(paths)
    keyed = [(first_seq(file), index, file) for index, file in enumerate(files)]
    for _, _, file in sorted(keyed):
        for line in iter_lines(file):
            if not line.complete:
                continue
            try:
                entry = json.loads(line.data)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield line.data, entry


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # Spreadsheets run cells that start like a formula; a rule name or model id must stay text.
    return "'" + text if text.startswith(_FORMULA_START) else text


def _context(record: Mapping[str, Any], name: str) -> Any:
    if name in record:
        return record[name]
    for value in record.values():
        if isinstance(value, Mapping) and name in value:
            return value[name]
    return None


def _csv_row(entry: Mapping[str, Any]) -> list[str]:
    record = entry.get("record", {})
    if not isinstance(record, Mapping):
        record = {}
    hits = rule_hits(record)

    def unique(key: str) -> str:
        return ";".join(dict.fromkeys(str(h[key]) for h in hits if h.get(key)))

    row: list[Any] = [entry.get("seq"), entry.get("ts"), entry.get("kind")]
    row += [_context(record, name) for name in _CONTEXT_FIELDS]
    row += [unique("action"), unique("rule"), unique("regulation")]
    row += [_context(record, "input_sha256"), _context(record, "output_sha256"), entry.get("hash")]
    row.append(canonical_json(record).decode("utf-8"))
    return [_cell(value) for value in row]


def export(
    paths: Sequence[str | os.PathLike[str]],
    out: IO[str],
    *,
    format: ExportFormat = "csv",
    filter: ExportFilter | None = None,
) -> int:
    """Write the matching entries of the log to ``out``; return how many were written."""
    if format not in ("csv", "jsonl"):
        raise ValueError(f"export format must be 'csv' or 'jsonl', not {format!r}")
    wanted = filter or ExportFilter()
    writer = csv.writer(out, lineterminator="\n") if format == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    count = 0
    for line, entry in iter_entries(paths):
        if not wanted.accepts(entry):
            continue
        if writer is not None:
            writer.writerow(_csv_row(entry))
        else:
            out.write(line.decode("utf-8") + "\n")
        count += 1
    return count
