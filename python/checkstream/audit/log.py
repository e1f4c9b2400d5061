"""``DecisionLog``: the append-only, hash-chained decision log, written off the request path.

``append(record)`` serialises the record to canonical JSON in the caller (so a record that is not
JSON fails there, loudly, and later changes to the caller's dict cannot alter what is logged) and
puts the bytes on a queue. One background thread seals each record into the chain and writes it.

Durability (``fsync=``):

* ``"batch"`` (default): the writer drains the queue in batches; each batch's sealed lines go out
  in one ``write(2)`` (at most 1 MiB), then the file is ``fsync``-ed (group commit) and the head
  file updated. ``flush()`` returns once everything appended before it is on disk.
* ``"always"``: ``fsync`` after every record (slow; for low-volume, high-stakes logs).
* ``"never"``: no ``fsync``; the OS writes back. A killed process still loses nothing that was
  written; a power cut can lose the last seconds.

What a crash loses: records not yet written (still queued, or later in the batch being written;
``flush()`` is the barrier, and the queue is usually empty because the writer keeps up, see
``checkstream_audit_queue_depth``) and at most one torn record: the one a cut-short ``write``
was in the middle of. Nothing before it is damaged and the chain has no gap. That torn line is
found at the next start: the writer ends it with a newline, leaves its bytes in place, and writes
a ``recovery`` entry that names the torn line's offset, length and SHA-256 and links to the last
good entry, so the chain continues and the crash itself is on record. ``close()`` (also run at
interpreter exit) drains the queue: a clean shutdown loses nothing.

One process writes a log at a time (an ``flock`` on ``<path>.lock``, released by the kernel even
on ``kill -9``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

from checkstream.audit.canonical import canonical_json
from checkstream.audit.chain import (
    GENESIS_HASH,
    KIND_DECISION,
    KIND_RECOVERY,
    Checker,
    EntryError,
    Sealer,
)
from checkstream.audit.errors import (
    AuditError,
    AuditKeyError,
    LogClosedError,
    LogCorruptError,
    LogInUseError,
)
from checkstream.audit.files import (
    head_path,
    lock_path,
    log_files,
    next_segment_path,
    read_tail,
)
from checkstream.audit.keys import SigningKeyLike, load_hmac_key, load_signing_key
from checkstream.telemetry.metrics import DEFAULT as DEFAULT_METRICS
from checkstream.telemetry.metrics import Metrics

__all__ = ["DecisionLog", "FsyncPolicy"]

FsyncPolicy = Literal["batch", "always", "never"]
_FSYNC_POLICIES: Final = ("batch", "always", "never")
_MAX_BATCH: Final = 4096
_WRITE_CHUNK: Final = 1 << 20  # bytes of sealed lines gathered before a write(2)
_STOP: Final = object()
_log = logging.getLogger("checkstream.audit")
_open_logs: weakref.WeakSet[DecisionLog] = weakref.WeakSet()


def _utc_now(ns: int | None = None) -> str:
    seconds, nanos = divmod(time.time_ns() if ns is None else ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1000:06d}Z"


@atexit.register
def _close_open_logs() -> None:
    for log in list(_open_logs):
        log.close()


class DecisionLog:
    """Append-only decision log at ``path`` (the active file; rotated segments sit beside it).

    ``hmac_key`` (bytes, at least 16) adds an HMAC-SHA256 to every entry; ``signing_key`` (an
    ``Ed25519PrivateKey``, PEM bytes, 32 raw bytes or a PEM file path) adds an Ed25519 signature.
    ``rotate_bytes`` starts a new file once the active one would grow past it. ``max_pending``
    bounds the queue: past it, ``append`` waits for the writer (backpressure) rather than drop
    evidence or grow memory without limit (an asyncio caller would block its loop there, which
    only happens when the disk has stalled). ``metrics`` is the :class:`Metrics` set to count
    into (default: the process-wide one).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hmac_key: bytes | None = None,
        signing_key: SigningKeyLike | None = None,
        rotate_bytes: int | None = None,
        fsync: FsyncPolicy = "batch",
        max_pending: int = 100_000,
        metrics: Metrics | None = None,
    ) -> None:
        if rotate_bytes is not None and (type(rotate_bytes) is not int or rotate_bytes <= 0):
            raise ValueError(f"rotate_bytes must be a positive int or None, not {rotate_bytes!r}")
        if fsync not in _FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(_FSYNC_POLICIES)}, not {fsync!r}")
        if type(max_pending) is not int or max_pending <= 0:
            raise ValueError(f"max_pending must be a positive int, not {max_pending!r}")
        self.path = Path(path)
        self._metrics = metrics if metrics is not None else DEFAULT_METRICS
        self.rotate_bytes = rotate_bytes
        self.fsync: FsyncPolicy = fsync
        key = load_hmac_key(hmac_key) if hmac_key is not None else None
        signer = load_signing_key(signing_key) if signing_key is not None else None
        self._sealer = Sealer(hmac_key=key, signing_key=signer)
        self._checker = Checker(
            hmac_key=key, public_key=signer.public_key() if signer is not None else None
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_lock()
        self._fd = -1
        self._size = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._closed = False
        self._error: BaseException | None = None
        self._failed: BaseException | None = None
        try:
            self._recover()
        except BaseException:
            self._release()
            raise
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._slots = threading.Semaphore(max_pending)
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"checkstream-audit:{self.path.name}", daemon=True
        )
        self._thread.start()
        _open_logs.add(self)

    # -- public surface ---------------------------------------------------------------------

    def append(self, record: Mapping[str, Any]) -> None:
        """Queue one decision record; returns at once (unless ``max_pending`` are queued)."""
        if not isinstance(record, Mapping):
            raise TypeError(f"a decision record is a mapping, not {type(record).__name__}")
        data = canonical_json(record)
        self._slots.acquire()
        with self._close_lock:  # nothing may be queued behind close()'s stop marker
            if self._closed:
                self._slots.release()
                raise LogClosedError(f"decision log {self.path} is closed")
            self._raise_if_failed()
            self._queue.put((time.time_ns(), data))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record appended before this call is written (and synced per policy)."""
        done = threading.Event()
        with self._close_lock:
            if self._closed:
                raise LogClosedError(f"decision log {self.path} is closed")
            self._queue.put(done)
        if not done.wait(timeout):
            raise TimeoutError(f"decision log {self.path}: not flushed within {timeout} s")
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise AuditError(
                f"decision log {self.path}: the writer stopped: {self._failed!r}"
            ) from self._failed

    def close(self) -> None:
        """Write everything queued, sync, and stop the writer. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()
        self._release()
        _open_logs.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def last_error(self) -> BaseException | None:
        """The last write error (the writer retries); ``None`` once a write succeeds again."""
        return self._error

    def files(self) -> list[Path]:
        """Every file of this log, in chain order (what ``verify_log`` needs)."""
        return log_files(self.path)

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- start-up -----------------------------------------------------------------------------

    def _take_lock(self) -> int:
        fd = os.open(lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogInUseError(f"decision log {self.path} is open in another process") from None
        return fd

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = -1

    def _recover(self) -> None:
        """Find the chain's head on disk, deal with a torn last line, open the active file."""
        self._seq, self._prev = 0, GENESIS_HASH
        torn: dict[str, Any] | None = None
        for file in reversed(log_files(self.path)):
            tail = read_tail(file)
            if tail.fragment:
                if file != self.path:
                    raise LogCorruptError(
                        f"{file}: rotated segment ends in an incomplete line at byte "
                        f"{tail.fragment_offset}; run `checkstream audit verify`"
                    )
                torn = {
                    "file": file.name,
                    "offset": tail.fragment_offset,
                    "length": len(tail.fragment),
                    "sha256": hashlib.sha256(tail.fragment).hexdigest(),
                }
            if tail.last_line is None:
                continue
            try:
                entry = Checker().check(tail.last_line)
            except EntryError as exc:
                raise LogCorruptError(
                    f"{file}: the last complete record (byte {tail.last_line_offset}) fails its "
                    f"check ({exc}); the chain cannot be continued from it. Run "
                    "`checkstream audit verify` and start a new log file."
                ) from None
            if dict(entry.auth) != dict(self._sealer.auth):
                raise AuditKeyError(
                    f"{file} is sealed with {dict(entry.auth) or 'no keys'} but the log was opened "
                    f"with {dict(self._sealer.auth) or 'no keys'}; one log keeps one set of keys "
                    "(start a new log file to change them)"
                )
            self._seq, self._prev = entry.seq + 1, entry.hash
            break
        recovery: dict[str, Any] = {}
        if torn is not None:
            recovery["torn_tail"] = torn
        head_ahead = self._head_ahead()
        if head_ahead is not None:
            recovery["head"] = head_ahead
        self._open_active()
        if recovery:
            _log.warning("decision log %s: recovered after a crash: %s", self.path, recovery)
            # The torn bytes stay, ended by a newline as a line of their own; newline and recovery
            # entry go out in one write so that no crash can leave the one without the other.
            self._write_entry(
                KIND_RECOVERY,
                _utc_now(),
                canonical_json(recovery),
                prefix=b"\n" if torn is not None else b"",
            )
            self._sync()
            self._write_head()

    def _head_ahead(self) -> dict[str, Any] | None:
        """Describe the head file if it names an entry past the end of the log on disk."""
        path = head_path(self.path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            head = self._checker.check_head(data)
        except EntryError as exc:
            return {"problem": f"head file unreadable: {exc}"}
        if head.seq >= self._seq:
            problem = "records missing: the head file names an entry past the end of the log"
        elif head.seq == self._seq - 1 and head.hash != self._prev:
            # The next head write would erase this evidence, so the chain keeps it.
            problem = "the last record on disk is not the one the head file names (rewritten)"
        else:
            return None
        return {
            "problem": problem,
            "head_seq": head.seq,
            "head_hash": head.hash,
            "log_next_seq": self._seq,
        }

    def _open_active(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size

    # -- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < _MAX_BATCH:
                    batch.append(self._queue.get_nowait())
            waiters = [item for item in batch if isinstance(item, threading.Event)]
            stopping = batch[-1] is _STOP  # close() queues nothing after its stop marker
            records = [item for item in batch if isinstance(item, tuple)]
            try:
                if self._failed is None and records:
                    self._write_batch(records)
            except BaseException as exc:  # a writer that dies silently would hang every flush
                self._failed = exc
                _log.exception("decision log %s: writer stopped", self.path)
            finally:
                for _ in records:
                    self._slots.release()
                self._metrics.audit_queue_depth.set(self._queue.qsize())
                for waiter in waiters:
                    waiter.set()

    def _write_batch(self, records: list[tuple[int, bytes]]) -> None:
        started = time.perf_counter()
        for ns, data in records:
            self._write_entry(KIND_DECISION, _utc_now(ns), data)
        self._sync()
        self._write_head()
        self._metrics.audit_records_written.labels(kind=KIND_DECISION).inc(len(records))
        self._metrics.audit_batch_seconds.observe(time.perf_counter() - started)

    def _write_entry(self, kind: str, ts: str, record: bytes, *, prefix: bytes = b"") -> None:
        line, digest = self._sealer.seal(
            kind=kind, seq=self._seq, prev=self._prev, ts=ts, record=record
        )
        data = prefix + line
        if (
            self.rotate_bytes is not None
            and not prefix  # a recovery entry stays in the file whose torn line it names
            and self._size > 0
            and self._size + len(data) > self.rotate_bytes
        ):
            self._rotate()
        self._pending.append(data)
        self._pending_bytes += len(data)
        self._size += len(data)
        if self.fsync == "always":
            self._sync()
        elif self._pending_bytes >= _WRITE_CHUNK:
            self._write_pending()
        self._seq += 1
        self._prev = digest
        if kind == KIND_RECOVERY:
            self._metrics.audit_records_written.labels(kind=KIND_RECOVERY).inc()

    def _write_pending(self) -> None:
        # The sealed lines of a batch go out in one write(2). A kill can stop that write at any
        # byte: the lines before that byte are whole, the one across it is torn (the record
        # being written), and the ones after it never reached the file, like those still queued.
        # So a crash tears at most one record, and never leaves a gap inside the chain.
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            self._write_all(data)

    def _write_all(self, data: bytes) -> None:
        # A failed write (disk full, I/O error) is retried with the bytes not yet written, never
        # re-sent from the start, so a retry cannot leave half a line in the middle of the file.
        view = memoryview(data)
        delay = 0.05
        while view:
            try:
                done = os.write(self._fd, view)
            except OSError as exc:
                self._error = exc
                self._metrics.audit_write_errors.inc()
                _log.error("decision log %s: write failed (%s); retrying", self.path, exc)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            view = view[done:]
        self._error = None

    def _sync(self) -> None:
        """Write what is pending, then fsync per policy."""
        self._write_pending()
        if self.fsync != "never":
            os.fsync(self._fd)

    def _rotate(self) -> None:
        self._sync()
        os.close(self._fd)
        self._fd = -1
        os.rename(self.path, next_segment_path(self.path))
        self._sync_dir()
        self._open_active()

    def _sync_dir(self) -> None:
        if self.fsync == "never":
            return
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_head(self) -> None:
        # A head that lags behind is harmless (verify only needs head <= end of log), so a failure
        # here is reported and the records keep flowing.
        try:
            self._replace_head()
        except OSError as exc:
            self._error = exc
            self._metrics.audit_write_errors.inc()
            _log.error("decision log %s: head file not updated (%s)", self.path, exc)

    def _replace_head(self) -> None:
        # Atomic replace: a reader sees the old head or the new one, never half of one.
        data = self._sealer.seal_head(
            seq=self._seq - 1, hash=self._prev, file=self.path.name, ts=_utc_now()
        )
        target = head_path(self.path)
        tmp = target.with_name(target.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            if self.fsync != "never":
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
