"""``kill -9`` while a real process is writing: at most the record being written is lost, the log
verifies up to it, and the next writer continues the chain."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checkstream.audit import DecisionLog, verify_log

# The child writes records of mixed sizes (some of 1 MiB, so that a kill often lands inside a
# write) and, in "ack" mode, prints each record's number once flush() has returned.
CHILD = r"""
import sys
from checkstream.audit import DecisionLog

path, mode = sys.argv[1], sys.argv[2]
log = DecisionLog(path, fsync="batch" if mode == "ack" else "never", rotate_bytes=8 << 20)
i = 0
while True:
    pad = "x" * ((1 << 20) if i % 3 == 2 else 64)
    log.append({"request_id": f"req-{i}", "i": i, "pad": pad})
    if mode == "ack":
        log.flush()
        print(i, flush=True)
    elif i % 50 == 0:
        print(i, flush=True)
    i += 1
"""


def _run_and_kill(path: Path, mode: str, wait_for: int) -> list[int]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    printed: list[int] = []
    deadline = time.monotonic() + 60
    while len(printed) < wait_for and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        printed.append(int(line))
    time.sleep(0.013)  # land somewhere inside the next writes, not right after a print
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    printed += [int(x) for x in rest.split()]
    assert child.returncode == -signal.SIGKILL
    assert len(printed) >= wait_for, "the child did not start writing"
    return printed


def _valid_records(path: Path) -> list[int]:
    out = []
    for file in _files(path):
        for line in file.read_bytes().splitlines(keepends=True):
            if line.endswith(b"\n"):
                with contextlib.suppress(ValueError, KeyError):
                    out.append(json.loads(line)["record"]["i"])
    return out


def _files(path: Path) -> list[Path]:
    from checkstream.audit.files import log_files

    return log_files(path)


@pytest.mark.parametrize("mode", ["ack", "firehose"])
@pytest.mark.parametrize("round_", range(3))
def test_kill_9_while_writing(tmp_path: Path, mode: str, round_: int) -> None:
    path = tmp_path / "decisions.jsonl"
    printed = _run_and_kill(path, mode, wait_for=20 + 7 * round_)

    result = verify_log([path])
    on_disk = _valid_records(path)
    # Whatever was on disk forms one unbroken chain of records 0..n-1 ...
    assert on_disk == list(range(len(on_disk)))
    assert result.records == len(on_disk)
    # ... and it either verifies, or fails only at a torn last line: the record being written.
    if not result.ok:
        assert result.first_bad is not None
        assert "incomplete last line" in result.first_bad.reason, result.first_bad
        assert result.first_bad.file == str(_files(path)[-1])
    if mode == "ack":
        # Every record whose flush() returned survived; at most the one after it was in flight.
        acked = max(printed)
        assert acked + 1 <= len(on_disk) <= acked + 2

    # The next writer takes over the chain (the kernel released the dead writer's lock).
    with DecisionLog(path) as log:
        log.append({"i": len(on_disk), "after": "restart"})
    after = verify_log([path])
    assert after.ok, after.first_bad
    assert after.records == len(on_disk) + 1 + (0 if result.ok else 1)
    assert len(after.recoveries) == (0 if result.ok else 1)
