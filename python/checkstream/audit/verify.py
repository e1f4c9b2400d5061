"""Check a decision log from the files on disk and name the first place where it is not intact.

The files may be given in any order (rotated segments, the active file, a whole directory); they
are put in chain order by the ``seq`` of their first entry. Every line must be a canonical, intact
entry (hash, and MAC/signature when a key is given) whose ``seq`` is one more than the previous and
whose ``prev`` is the previous entry's hash, across file boundaries. A line that is not an entry is
accepted only when the very next entry is a ``recovery`` entry naming exactly that line's offset,
length and SHA-256 (a write torn by a crash, recorded at the next start). When the log's head file
is present it must not name an entry past the end of the log (a file cut at a line boundary), and
the entry it names must have the hash it records.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from checkstream.audit.chain import GENESIS_HASH, KIND_RECOVERY, Checker, Entry, EntryError, Head
from checkstream.audit.files import head_path, segment_paths
from checkstream.audit.keys import VerifyKeyLike, load_hmac_key, load_public_key

__all__ = ["BadRecord", "VerifyResult", "expand_paths", "first_seq", "iter_lines", "verify_log"]

PathLike = str | os.PathLike[str]


class BadRecord(NamedTuple):
    """The first place where the log is not intact: file, 1-based line number and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``ok`` when the whole chain is intact; ``records`` counts good entries before any fault."""

    ok: bool
    records: int
    first_bad: BadRecord | None
    last_seq: int | None = None
    last_hash: str | None = None
    files: tuple[str, ...] = ()
    recoveries: tuple[str, ...] = field(default=())  # "file:line: what the recovery entry says"


class _Line(NamedTuple):
    number: int
    offset: int
    data: bytes  # without the newline
    complete: bool  # ended by a newline


def iter_lines(path: Path) -> Iterator[_Line]:
    """Yield the lines of ``path`` with their 1-based number and byte offset."""
    offset = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            complete = raw.endswith(b"\n")
            yield _Line(number, offset, raw[:-1] if complete else raw, complete)
            offset += len(raw)


def expand_paths(paths: Iterable[PathLike]) -> list[Path]:
    """Files named by ``paths``, in the order given.

    A log's active file brings its rotated segments along (``decisions.jsonl`` also means
    ``decisions-000001.jsonl``, ...); a directory stands for every ``*.jsonl`` file in it (keep
    one log per directory, and exports elsewhere).
    """
    result: list[Path] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix == ".jsonl" and p.is_file())
        elif path.is_file():
            found = [*segment_paths(path), path]
        elif segment_paths(path):  # a crash between rotating and starting the new active file
            found = segment_paths(path)
        else:
            raise FileNotFoundError(f"no such log file or directory: {path}")
        for item in found:
            real = item.resolve()
            if real not in seen:
                seen.add(real)
                result.append(item)
    return result


def first_seq(path: Path) -> float:
    """The ``seq`` of the first entry in ``path`` (``inf`` if none), to put files in chain order.

    A file may start with a torn line (a crash right after a rotation), so the first few lines
    are tried, not only the first.
    """
    for line in itertools.islice(iter_lines(path), 3):
        try:
            seq = json.loads(line.data).get("seq")
        except (ValueError, UnicodeDecodeError, AttributeError):
            continue
        if type(seq) is int:
            return seq
    return float("inf")


class _Fault(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


@dataclass
class _State:
    checker: Checker
    head: Head | None
    pruned: bool = False
    records: int = 0
    last: Entry | None = None
    auth: dict[str, Any] | None = None
    recoveries: list[str] = field(default_factory=list)


def _span(first: int, last: int) -> str:
    return f"record seq {first}" if first == last else f"records seq {first}..{last}"


def _check_link(state: _State, entry: Entry, at_file_start: bool, previous_file: str) -> str | None:
    last = state.last
    if last is None:
        # With ``pruned``, older files were removed by retention: the chain is checked from here.
        if not state.pruned and entry.seq != 0:
            return f"the chain starts at seq {entry.seq}: {_span(0, entry.seq - 1)} missing"
        if not state.pruned and entry.prev != GENESIS_HASH:
            return "the first record does not link to the genesis hash"
    elif entry.seq > last.seq + 1:
        return (
            f"seq {entry.seq} follows seq {last.seq}: {_span(last.seq + 1, entry.seq - 1)} "
            "missing (deleted or moved)"
        )
    elif entry.seq <= last.seq:
        return f"seq {entry.seq} follows seq {last.seq}: records reordered or duplicated"
    elif entry.prev != last.hash:
        if at_file_start:
            return f"the first record of this file does not link to the last of {previous_file}"
        return f"prev does not match the hash of record seq {last.seq} (record replaced or spliced)"
    if state.auth is None:
        state.auth = dict(entry.auth)
    elif dict(entry.auth) != state.auth:
        return f"sealed with {dict(entry.auth) or 'no keys'}, earlier records with {state.auth}"
    return None


def _torn_named(entry: Entry, torn: _Line) -> bool:
    # The file name in the recovery entry is informational only: the file may since have been
    # rotated to a segment name. Offset, length and digest pin the torn line down.
    named = entry.record.get("torn_tail")
    return (
        isinstance(named, dict)
        and named.get("offset") == torn.offset
        and named.get("length") == len(torn.data)
        and named.get("sha256") == hashlib.sha256(torn.data).hexdigest()
    )


def _verify_file(state: _State, file: Path, previous_file: str) -> None:
    torn: _Line | None = None  # a bad line that only a following recovery entry can excuse
    torn_reason = ""
    at_file_start = True
    for line in iter_lines(file):
        if torn is not None and not line.complete:
            raise _Fault(torn.number, torn_reason)
        if not line.complete:
            raise _Fault(
                line.number,
                f"incomplete last line at byte {line.offset} (a torn write or a truncated file)",
            )
        try:
            entry = state.checker.check(line.data)
        except EntryError as exc:
            if torn is not None:
                raise _Fault(torn.number, torn_reason) from None
            torn, torn_reason = line, str(exc)
            continue
        if torn is not None:
            if entry.kind != KIND_RECOVERY or not _torn_named(entry, torn):
                raise _Fault(torn.number, torn_reason)
        elif entry.kind == KIND_RECOVERY and "torn_tail" in entry.record:
            raise _Fault(line.number, "recovery entry names a torn line that is not there")
        problem = _check_link(state, entry, at_file_start, previous_file)
        if problem is not None:
            raise _Fault(line.number, problem)
        if entry.kind == KIND_RECOVERY:
            head = entry.record.get("head")
            if isinstance(head, dict) and "head_seq" in head:
                raise _Fault(
                    line.number,
                    f"recorded at restart: {head.get('problem')} (head file: seq "
                    f"{head['head_seq']}, log ended at seq {head.get('log_next_seq', 0) - 1})",
                )
            state.recoveries.append(f"{file}:{line.number}: {json.dumps(entry.record)}")
        if state.head is not None and entry.seq == state.head.seq and entry.hash != state.head.hash:
            raise _Fault(line.number, "does not match the hash the head file records for this seq")
        torn = None
        at_file_start = False
        state.records += 1
        state.last = entry
    if torn is not None:
        raise _Fault(torn.number, torn_reason)


def verify_log(
    paths: PathLike | Sequence[PathLike],
    hmac_key: bytes | PathLike | None = None,
    public_key: VerifyKeyLike | None = None,
    *,
    head: PathLike | Literal[False] | None = None,
    pruned: bool = False,
) -> VerifyResult:
    """Verify the log made of ``paths`` (files or directories).

    ``hmac_key`` (bytes, or a file of hex) and ``public_key`` (an Ed25519 key, PEM bytes or file)
    make every entry's MAC / signature required and checked. ``head`` is the head file to check
    the end of the log against; by default ``<file>.head`` next to any given file is used, and
    ``False`` skips the check. ``pruned=True`` accepts a log whose oldest files were deleted by
    retention: the first entry given need not be seq 0 (everything after it is checked as usual).
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files = expand_paths(paths)
    if not files:
        raise FileNotFoundError("no log files given")
    files.sort(key=first_seq)  # stable: files with no readable first entry stay in given order
    checker = Checker(
        hmac_key=load_hmac_key(hmac_key) if hmac_key is not None else None,
        public_key=load_public_key(public_key) if public_key is not None else None,
    )
    head_file: Path | None = None
    if head is None:
        head_file = next((head_path(f) for f in files if head_path(f).is_file()), None)
    elif head is not False:
        head_file = Path(head)
    names = tuple(str(f) for f in files)
    state = _State(checker=checker, head=None, pruned=pruned)
    if head_file is not None:
        try:
            state.head = checker.check_head(head_file.read_bytes())
        except EntryError as exc:
            return VerifyResult(False, 0, BadRecord(str(head_file), 1, str(exc)), files=names)
    previous = ""
    for file in files:
        try:
            _verify_file(state, file, previous)
        except _Fault as fault:
            last = state.last
            return VerifyResult(
                False, state.records, BadRecord(str(file), fault.line, fault.reason),
                last.seq if last else None, last.hash if last else None, names,
                tuple(state.recoveries),
            )  # fmt: skip
        previous = str(file)
    last = state.last
    if state.head is not None and (last is None or state.head.seq > last.seq):
        end = f"seq {last.seq}" if last else "no records"
        lines = sum(1 for _ in iter_lines(files[-1]))
        return VerifyResult(
            False, state.records,
            BadRecord(
                str(files[-1]), lines + 1,
                f"the log ends at {end} but its head file ({head_file}) records seq "
                f"{state.head.seq}: the file was truncated or records were removed from the end",
            ),
            last.seq if last else None, last.hash if last else None, names,
            tuple(state.recoveries),
        )  # fmt: skip
    return VerifyResult(
        True, state.records, None, last.seq if last else None, last.hash if last else None,
        names, tuple(state.recoveries),
    )  # fmt: skip
