"""Exporting shipped evidence for an auditor: one node's log as JSON lines, or CSV for any nodes.

Before anything is written, the stored log is checked again from its first record (the same chain
check as at upload), so that an export never hands out a file the control plane's own disk has
altered since: a failure is :class:`EvidenceCorrupt`, naming the node and the place.

* ``jsonl``: the node's entries byte for byte, so ``checkstream audit verify`` runs on the file as
  is (with ``--pruned`` when ``since`` cut off the start of the chain, and the node's
  ``--hmac-key``/``--public-key`` to check its seals).
* ``csv``: a ``node_id`` column, then the columns of ``checkstream audit export``
  (:data:`checkstream.audit.export.CSV_COLUMNS`); one row per record, nodes in name order.

Time filters apply to the time the node's log accepted each record (``ts``).
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from checkstream.audit.export import CSV_COLUMNS, ExportFilter, export
from checkstream.control.evidence_chain import ChainHead, SegmentRefused, check_segment
from checkstream.control.evidence_store import EvidenceStore

__all__ = ["EvidenceCorrupt", "export_csv", "export_jsonl", "verify_stored"]

_CHUNK_BYTES = 4 * 1024 * 1024


class EvidenceCorrupt(Exception):
    """The control plane's stored copy of a node's log no longer passes the chain check."""


def verify_stored(store: EvidenceStore, node_id: str, *, chunk_bytes: int = _CHUNK_BYTES) -> int:
    """Check the node's whole stored log, ``chunk_bytes`` of lines at a time (memory stays
    bounded however long the log); return its record count."""
    return _verify_lines(store.lines(node_id), node_id, chunk_bytes)


def _verify_lines(lines: Iterable[bytes], node_id: str, chunk_bytes: int = _CHUNK_BYTES) -> int:
    head: ChainHead | None = None
    chunk: list[bytes] = []
    size = 0
    records = 0

    def flush() -> None:
        nonlocal head, chunk, size, records
        if chunk:
            try:
                checked = check_segment(b"".join(chunk), head, first_line=records + 1)
            except SegmentRefused as exc:
                raise EvidenceCorrupt(
                    f"the stored evidence of node {node_id!r} fails the chain check in lines "
                    f"{records + 1}..{records + len(chunk)} ({exc.reason}: {exc})") from None
            head, records = checked.head, records + checked.records
        chunk, size = [], 0

    for line in lines:
        chunk.append(line)
        size += len(line)
        if size >= chunk_bytes:
            flush()
    flush()
    return records


def export_jsonl(store: EvidenceStore, node_id: str, flt: ExportFilter, out: IO[str]) -> int:
    """Write the node's verified entries that pass ``flt``; return how many."""
    with tempfile.TemporaryDirectory(prefix="checkstream-export-") as tmp:
        return export([_snapshot(store, node_id, Path(tmp))], out, format="jsonl", filter=flt)


def export_csv(
    store: EvidenceStore, node_ids: Iterable[str], flt: ExportFilter, out: IO[str]
) -> int:
    """Write the verified entries of ``node_ids`` as CSV with a leading node_id column."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("node_id", *CSV_COLUMNS))
    count = 0
    with tempfile.TemporaryDirectory(prefix="checkstream-export-") as tmp:
        for node_id in node_ids:
            buffer = io.StringIO()
            export([_snapshot(store, node_id, Path(tmp))], buffer, format="csv", filter=flt)
            rows = csv.reader(io.StringIO(buffer.getvalue()))
            next(rows)  # the audit exporter's header
            for row in rows:
                writer.writerow((node_id, *row))
                count += 1
    return count


def _snapshot(store: EvidenceStore, node_id: str, tmp: Path) -> Path:
    """The node's committed lines copied aside and checked there: the exporter reads files, the
    live file may grow while it reads, and what is exported must be what was checked."""
    path = tmp / node_id / "decisions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for line in store.lines(node_id):
            f.write(line)
    with path.open("rb") as f:
        _verify_lines(f, node_id)
    return path
