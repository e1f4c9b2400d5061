"""The node side of full-evidence upload: cut the local decision log into segments and remember
what the control plane has accepted.

Off unless the node is started with ``--ship-evidence LOG`` (and the control plane with
``--accept-evidence``): a node logging in full-evidence mode writes raw prompts into that log.

What has been shipped is one position, kept in ``STATE_DIR/evidence-shipped.json`` (written
atomically, after the control plane answered 201)::

    {"log": "/var/log/checkstream/decisions.jsonl", "file": "decisions.jsonl",
     "offset": 48213, "seq": 211, "hash": "9f3c..."}

``file``/``offset`` say where to read next (just past record ``seq``); ``seq``/``hash`` say what
that record was. The log rotates (the active file is renamed to ``decisions-000001.jsonl``, ...),
so the offset is only trusted when the line that ends there is still record ``seq`` with that
hash; otherwise the record is looked up by ``seq`` in the log's files. A log that no longer holds
it (pruned, or rewritten: another hash) is an error, never a silent restart.

A segment is whole lines, byte for byte: only lines ended by a newline are read (the writer may be
in the middle of one), and a line that is not JSON is left out (a write torn by a crash: the
``recovery`` entry after it continues the chain from the last good record, so the chain the
control plane checks has no hole).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from checkstream.audit.files import log_files
from checkstream.audit.verify import first_seq

__all__ = ["STATE_FILE", "EvidenceShipper", "Position", "Segment", "ShipError"]

log = logging.getLogger("checkstream.control.agent")

STATE_FILE = "evidence-shipped.json"
DEFAULT_MAX_BYTES = 1024 * 1024  # per segment; the control plane takes up to 8 MiB
DEFAULT_MAX_RECORDS = 5000


class ShipError(ValueError):
    """The local log cannot be read from where the last shipment ended (or the shipping state
    cannot be read)."""


@dataclass(frozen=True, slots=True)
class Position:
    file: str  # name of the log file (in the log's directory) holding record ``seq``
    offset: int  # the byte just past that record's line
    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Segment:
    data: bytes
    first_seq: int
    last_seq: int
    end: Position

    @property
    def records(self) -> int:
        return self.last_seq - self.first_seq + 1


def _parse(line: bytes) -> tuple[int, str] | None:
    """(seq, hash) of a log line, None for a line that is not an entry (a torn write)."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or type(obj.get("seq")) is not int:
        return None
    return obj["seq"], str(obj.get("hash", ""))


def _line_ending_at(path: Path, offset: int) -> bytes | None:
    """The complete line that ends (with its newline) exactly at ``offset``."""
    if offset <= 0:
        return None
    with path.open("rb") as f:
        if f.seek(0, 2) < offset:
            return None
        chunk, start = b"", offset
        while True:
            step = min(64 * 1024, start)
            start -= step
            f.seek(start)
            chunk = f.read(step) + chunk
            body = chunk[: offset - start]
            if not body.endswith(b"\n"):
                return None
            nl = body.rfind(b"\n", 0, len(body) - 1)
            if nl != -1:
                return body[nl + 1 : -1]
            if start == 0:
                return body[:-1]


class EvidenceShipper:
    def __init__(
        self, log_path: str | os.PathLike[str], state_dir: str | os.PathLike[str], *,
        max_bytes: int = DEFAULT_MAX_BYTES, max_records: int = DEFAULT_MAX_RECORDS,
    ) -> None:
        self.log_path = Path(log_path)
        self.state_path = Path(state_dir) / STATE_FILE
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.position = self._load()

    # ---- state

    def _load(self) -> Position | None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ShipError(f"{self.state_path}: unreadable shipping state ({exc}); remove it to "
                            "realign with the control plane's stored head") from None
        if data.get("log") != str(self.log_path):
            log.warning("%s was kept for log %s, not %s: realigning with the control plane",
                        self.state_path, data.get("log"), self.log_path)
        return Position(str(data["file"]), int(data["offset"]), int(data["seq"]),
                        str(data["hash"]))

    def _save(self, position: Position | None) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        if position is None:
            self.state_path.unlink(missing_ok=True)
            return
        body = json.dumps({"log": str(self.log_path), **asdict(position)}, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".evidence-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def commit(self, segment: Segment) -> None:
        """The control plane stored ``segment``: the next one starts after it."""
        self._save(segment.end)
        self.position = segment.end

    def realign(self, seq: int | None, hash_: str | None) -> None:
        """Continue after record ``seq`` with ``hash_`` (the control plane's stored head; None:
        it holds nothing yet). Raise :class:`ShipError` when the local log does not hold it."""
        if seq is None or hash_ is None:
            self._save(None)
            self.position = None
            return
        files = log_files(self.log_path)
        position = self._find(files, seq, hash_)
        self._save(position)
        self.position = position

    # ---- reading the log

    def _find(self, files: list[Path], seq: int, hash_: str) -> Position:
        # Files are in chain order: the record is in the last one that starts at or before it.
        candidates = [f for f in files if first_seq(f) <= seq]
        if candidates:
            path, offset = candidates[-1], 0
            with path.open("rb") as f:
                for raw in f:
                    offset += len(raw)
                    parsed = _parse(raw[:-1]) if raw.endswith(b"\n") else None
                    if parsed is None or parsed[0] != seq:
                        continue
                    if parsed[1] != hash_:
                        raise ShipError(
                            f"record seq {seq} in {path} has another hash than the one shipped "
                            f"({hash_[:12]}): the local log was rewritten or replaced")
                    return Position(path.name, offset, seq, hash_)
        raise ShipError(f"record seq {seq} (the last shipped) is no longer in {self.log_path} "
                        "or its rotated files (pruned by retention?)")

    def _start(self, files: list[Path]) -> tuple[int, int]:
        """(index of the file, byte offset) where the next record to ship begins."""
        pos = self.position
        if pos is None:
            return 0, 0
        named = self.log_path.parent / pos.file
        if named in files:
            line = _line_ending_at(named, pos.offset)
            if line is not None and _parse(line) == (pos.seq, pos.hash):
                return files.index(named), pos.offset
        found = self._find(files, pos.seq, pos.hash)  # rotated since: look the record up
        return files.index(self.log_path.parent / found.file), found.offset

    def next_segment(self) -> Segment | None:
        """The next run of unshipped records (None: nothing new). Not shipped until
        :meth:`commit`."""
        files = log_files(self.log_path)
        if not files:
            return None
        index, offset = self._start(files)
        lines: list[bytes] = []
        size = 0
        first: int | None = None
        end: Position | None = None
        while index < len(files):
            path = files[index]
            with path.open("rb") as f:
                f.seek(offset)
                for raw in f:
                    if not raw.endswith(b"\n"):
                        break  # being written (or torn at the very end): not yet
                    parsed = _parse(raw[:-1])
                    offset += len(raw)
                    if parsed is None:
                        log.warning("evidence: skipping a line of %s that is not a log entry "
                                    "(a write torn by a crash)", path)
                        continue
                    if lines and (size + len(raw) > self.max_bytes
                                  or len(lines) >= self.max_records):
                        assert first is not None and end is not None
                        return Segment(b"".join(lines), first, end.seq, end)
                    lines.append(raw)
                    size += len(raw)
                    first = parsed[0] if first is None else first
                    end = Position(path.name, offset, parsed[0], parsed[1])
            index, offset = index + 1, 0
        if end is None or first is None:
            return None
        return Segment(b"".join(lines), first, end.seq, end)
